// C[M×N] = A[M×K] · B[K×N], row-major, for a small M and K (up to a few hundred) and a
// long N: a grouped 1×1 convolution over a feature map, as in LiteMLA's multi-scale
// aggregation (lite_mla.cpp), where each group is [dim × dim] · [dim × H·W].
//
// oneDNN's sgemm reads this shape at about 55 % of the FMA peak (it packs B, the long
// operand, per call), small_sgemm at 35 %. The AVX-512 kernel here packs nothing: it walks
// N in panels of 48 columns and, per panel, passes tiles of 8 rows × 48 columns of C
// (24 zmm accumulators; per step of K, 3 loads of B and 8 broadcasts of A) down all M
// rows, so a [K × 48] panel of B is read from memory once and then from L1. It
// prefetches the next panel while it computes this one. Columns past a multiple of 16
// use masked loads and stores; rows past a multiple of 8 use a shorter tile.
// With stream = true, full aligned vectors of C are written with non-temporal stores
// (C that will not be read again before it leaves the cache saves the read for
// ownership); the kernel ends with a store fence either way.
// Without AVX-512 it calls oneDNN's sgemm (stream is then ignored).
// No allocation, no threads: callers split N or the groups across threads.
#pragma once

#include <cstdint>

#include "atrous/status.h"

namespace atrous {

Status narrow_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                   bool stream);

// The kernels behind narrow_gemm, for tests: the AVX-512 one (requires
// narrow_gemm_avx512_available()) and the fallback (oneDNN sgemm).
bool narrow_gemm_avx512_available();
void narrow_gemm_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                        int64_t ldc, bool stream);
Status narrow_gemm_fallback(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                            int64_t ldc);

// The ratio form, for LiteMLA's linear attention read-out (out = (v kᵀ) relu(q) over
// (Σ relu(k)) · relu(q) + eps, per token):
//   C[i, j] = Σ_k A[i, k] relu(B[k, j]) / (Σ_k a[k] relu(B[k, j]) + eps)
// The AVX-512 kernel computes a panel's denominators first (that pass brings the panel
// into L1), then its tiles with the ReLU applied to each loaded vector of B and the
// reciprocal applied as C is stored. The fallback: plain loops over blocks of 256 columns.
void narrow_ratio(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* a, float eps, const float* B, int64_t ldb,
                  float* C, int64_t ldc, bool stream);
void narrow_ratio_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* a, float eps, const float* B,
                         int64_t ldb, float* C, int64_t ldc, bool stream);
void narrow_ratio_fallback(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* a, float eps, const float* B,
                           int64_t ldb, float* C, int64_t ldc);

}  // namespace atrous
