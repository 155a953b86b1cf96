// Row-major single-precision GEMM for the per-head products of the attention ops,
// on the calling thread:
//   C[M×N] = alpha · op(A) · op(B) + beta · C
// the same contract as sgemm (onednn/gemm.h). The shapes it is for are narrow:
// N and one of M, K a head size (16-128), the other a sequence or chunk length.
// oneDNN's sgemm reaches 16-45 % of the FMA peak there (its blocking is tuned for
// large square-ish products; per call it also repacks both operands).
//
// The AVX-512 kernel keeps a 6-row × 64-column tile of C in 24 zmm accumulators
// and walks K with one broadcast of A per row and four loads of B per step, so
// every loaded vector feeds six FMAs. Only scalars of op(A) are broadcast, so A is
// read in place whether transposed or not. K is blocked by 64; when K > 32 the B panel
// of a block (≤ 16 KiB) and, for op(A) = Aᵀ with M ≤ 128, the A panel (≤ 32 KiB) are
// packed into stack buffers (if their rows are spread out) so that they stay in L1
// while the row tiles pass over them. op(B) = Bᵀ is always packed.
// Columns past a multiple of 16 use masked loads and stores; M is split into
// ceil(M / 6) row tiles of balanced heights (32 rows: 6, 6, 5, 5, 5, 5), or, when N ≤ 16
// (one vector across), into tiles of up to 8 rows (8 accumulators). Without AVX-512 it
// calls sgemm.
//
// row_scale (optional, with beta = 0 only): C[i, :] = row_scale[i] · alpha · (op(A) op(B))[i, :],
// applied as the tile is stored (the linear attention's 1 / denominator).
//
// prefetch (optional): n_prefetch regions of the caller's next operands, fetched into L1
// (prefetcht0) a few rows per tile while this product runs (the AVX-512 kernel; the
// fallback ignores them). Operands far apart in memory (a head's rows of a [channels,
// tokens] map: 128 streams) are more than the hardware prefetchers follow; their loads
// would stall the next product. Prefetches never fault and change no result.
//
// No allocation, no threads; inside or outside parallel regions alike.
#pragma once

#include <cstdint>

#include "atrous/status.h"

namespace atrous {

// Rows [0, rows) × floats [0, cols) of a row-major region, ld floats apart.
struct PrefetchRows {
  const float* p = nullptr;
  int64_t ld = 0, rows = 0, cols = 0;
};

Status small_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* row_scale = nullptr,
                   const PrefetchRows* prefetch = nullptr, int n_prefetch = 0);

// C[M×N] = row_scale ⊙ ([A1 | A2] · [B1 ; B2]): the product over K1 + K2 of two
// side-by-side blocks of A and two stacked blocks of B, none transposed, each read in
// place with its own leading dimension (no concatenation is formed). The causal
// linear core's [Qc | scores] · [S ; Vc]. row_scale optional; C is written, not read.
Status small_sgemm_concat(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1, int64_t ldb1,
                          int64_t K2, const float* A2, int64_t lda2, const float* B2, int64_t ldb2, float* C, int64_t ldc,
                          const float* row_scale = nullptr);

// The kernels behind small_sgemm, for tests: the AVX-512 one (requires
// small_sgemm_avx512_available()) and the fallback (oneDNN sgemm, then the row scale).
bool small_sgemm_avx512_available();
void small_sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                        const float* row_scale = nullptr, const PrefetchRows* prefetch = nullptr, int n_prefetch = 0);
Status small_sgemm_fallback(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                            int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                            const float* row_scale = nullptr);
void small_sgemm_concat_avx512(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1,
                               int64_t ldb1, int64_t K2, const float* A2, int64_t lda2, const float* B2, int64_t ldb2,
                               float* C, int64_t ldc, const float* row_scale = nullptr);
Status small_sgemm_concat_fallback(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1,
                                   int64_t ldb1, int64_t K2, const float* A2, int64_t lda2, const float* B2, int64_t ldb2,
                                   float* C, int64_t ldc, const float* row_scale = nullptr);

}  // namespace atrous
