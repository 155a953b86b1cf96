#include "ops/small_gemm.h"

#include <immintrin.h>

#include <algorithm>

#include "onednn/gemm.h"
#include "ops/transpose_panel.h"

namespace atrous {
namespace {

constexpr int kMR = 6;        // rows of a C tile
constexpr int kNV = 4;        // 16-float vectors across a C tile
constexpr int64_t kNB = kNV * 16;
constexpr int64_t kKC = 64;   // K block: the B panel of one block is kKC × kNB floats (16 KiB)
constexpr int64_t kMaxPackedRows = 128;  // op(A) = Aᵀ panels up to kKC × 128 floats (32 KiB)
constexpr int64_t kMaxInPlaceK = 32;     // spread A and B panels of up to 32 rows are read in place

// Software prefetch of the cache lines holding floats [p, p + n): into L2 (locality 2,
// prefetcht1) or L1 (3, prefetcht0).
template <int Locality = 2>
void prefetch_row(const float* p, int64_t n) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(p + n);
  for (uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}; a < end; a += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(a), 0, Locality);
}

// The caller's prefetch regions, a few rows per tile, into L1 (prefetcht1 instead, or one
// line per K step inside the tile instead of a few rows between tiles, ran the LiteMLA
// product from the qkv map no faster or slower: docs/performance.md).
class Prefetcher {
 public:
  // tiles: how many tiles the product runs (called only when n > 0).
  template <class Tiles>
  Prefetcher(const PrefetchRows* r, int n, Tiles&& tiles) : r_(r), n_(n) {
    if (n <= 0) return;  // the usual case: nothing computed per call
    int64_t rows = 0;
    for (int i = 0; i < n; ++i) rows += std::max<int64_t>(r[i].rows, 0);
    const int64_t t = std::max<int64_t>(tiles(), 1);
    per_tile_ = (rows + t - 1) / t;
  }
  void next() {
    for (int64_t e = 0; e < per_tile_ && region_ < n_; ++e) {
      const PrefetchRows& g = r_[region_];
      if (row_ < g.rows) prefetch_row<3>(g.p + row_ * g.ld, g.cols);
      if (++row_ >= g.rows) ++region_, row_ = 0;
    }
  }

 private:
  const PrefetchRows* r_;
  int n_, region_ = 0;
  int64_t row_ = 0, per_tile_ = 0;
};

struct TileArgs {
  int64_t kc;
  const float* a;  // op(A) at (row 0 of the tile, k 0 of the block)
  int64_t lda;
  const float* b;  // op(B) at (k 0 of the block, column 0 of the tile), row-major
  int64_t ldb;
  float* c;        // C at the tile's corner
  int64_t ldc;
  const float* row_scale;  // per-row factors of alpha for the tile's rows, or nullptr
  __mmask16 last;  // lanes of the tile's last vector that are columns of C
  float alpha, beta;
  bool read_c;     // add beta · C (false: C is written, never read)
  // A second K segment added into the same accumulators (small_sgemm_concat): op(A2)
  // and op(B2) at k 0 of their block, kc2 steps (0: none).
  const float* a2 = nullptr;
  int64_t lda2 = 0;
  const float* b2 = nullptr;
  int64_t ldb2 = 0;
  int64_t kc2 = 0;
};

// acc += op(A)[tile rows, k 0..kc) · B[k 0..kc, tile columns].
template <int MR, int NV, bool TA>
__attribute__((target("avx512f"), always_inline)) inline void walk_k(__m512 (&acc)[MR][NV], const float* a, int64_t lda,
                                                                     const float* b, int64_t ldb, int64_t kc,
                                                                     __mmask16 last) {
  for (int64_t p = 0; p < kc; ++p, b += ldb) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = v + 1 < NV ? _mm512_loadu_ps(b + 16 * v) : _mm512_maskz_loadu_ps(last, b + 16 * v);
    const float* ap = TA ? a + p * lda : a + p;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(TA ? ap[r] : ap[r * lda]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
}

// One MR × NV·16 tile of C over one K block.
template <int MR, int NV, bool TA>
__attribute__((target("avx512f"))) void tile(const TileArgs& t) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  walk_k<MR, NV, TA>(acc, t.a, t.lda, t.b, t.ldb, t.kc, t.last);
  if (t.kc2 > 0) walk_k<MR, NV, TA>(acc, t.a2, t.lda2, t.b2, t.ldb2, t.kc2, t.last);
  const __m512 beta = _mm512_set1_ps(t.beta);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* c = t.c + r * t.ldc;
    const __m512 alpha = _mm512_set1_ps(t.row_scale ? t.alpha * t.row_scale[r] : t.alpha);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v + 1 < NV ? static_cast<__mmask16>(0xFFFF) : t.last;
      __m512 x = _mm512_mul_ps(alpha, acc[r][v]);
      if (t.read_c) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m, c + 16 * v), x);
      _mm512_mask_storeu_ps(c + 16 * v, m, x);
    }
  }
}

using TileFn = void (*)(const TileArgs&);

template <bool TA, int MR>
constexpr TileFn row_fn(int nv) {
  return nv == 1 ? tile<MR, 1, TA> : nv == 2 ? tile<MR, 2, TA> : nv == 3 ? tile<MR, 3, TA> : tile<MR, 4, TA>;
}

// One-vector-wide tiles (N ≤ 16: the causal chunk's scores) are up to kMR1 rows tall:
// a 6 × 1 tile has six accumulators, fewer than the FMA pipes' latency needs.
constexpr int kMR1 = 8;

template <bool TA>
TileFn tile_fn(int mr, int nv) {
  if (nv == 1 && mr > kMR) return mr == 7 ? tile<7, 1, TA> : tile<8, 1, TA>;
  switch (mr) {
    case 1: return row_fn<TA, 1>(nv);
    case 2: return row_fn<TA, 2>(nv);
    case 3: return row_fn<TA, 3>(nv);
    case 4: return row_fn<TA, 4>(nv);
    case 5: return row_fn<TA, 5>(nv);
    default: return row_fn<TA, 6>(nv);
  }
}

// Rows [k0, k0 + kc) × columns [j0, j0 + w) of a row-major matrix (or of the
// transpose of one) copied to a dense row-major panel with leading dimension w.
// Head slices of a [tokens, heads × dim] tensor are rows 2 KiB or more apart;
// read in place, every row of a panel falls into the same few L1 sets and the
// panel is evicted while the tiles pass over it. Packed, it stays.
// Rows are copied with vector moves: a few hundred bytes each, which memcpy's inlined
// `rep movsq` took several times longer over (5 % of the causal linear core).
__attribute__((target("avx512f"))) void pack(const float* X, int64_t ldx, bool transposed, int64_t k0, int64_t kc,
                                             int64_t j0, int64_t w, float* dst) {
  if (transposed) return transpose_panel(X + j0 * ldx + k0, ldx, w, kc, dst, w, false);  // dst[p, j] = X[j0 + j, k0 + p]
  const __mmask16 tail = static_cast<__mmask16>((1u << (w % 16)) - 1u);
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = X + (k0 + p) * ldx + j0;
    float* out = dst + p * w;
    int64_t j = 0;
    for (; j + 16 <= w; j += 16) _mm512_storeu_ps(out + j, _mm512_loadu_ps(src + j));
    if (j < w) _mm512_mask_storeu_ps(out + j, tail, _mm512_maskz_loadu_ps(tail, src + j));
  }
}

// The vectors and the last vector's lanes of the column block [n0, n0 + min(kNB, N − n0)).
struct Columns {
  int64_t nb;
  int nv;
  __mmask16 last;
};
Columns columns(int64_t N, int64_t n0) {
  const int64_t nb = std::min(kNB, N - n0);
  const int nv = static_cast<int>((nb + 15) / 16);
  const int rem = static_cast<int>(nb - 16 * (nv - 1));
  return {nb, nv, static_cast<__mmask16>((1u << rem) - 1u)};
}

// Rows of a tile nv vectors wide.
int tile_rows(int nv) { return nv == 1 ? kMR1 : kMR; }

// f(i0, mr) for ceil(M / mr_max) row tiles of balanced heights (32 rows, mr_max 6: 6, 6,
// 5, 5, 5, 5, not 6 × 5 + 2): a 1- or 2-row tile runs at well under half the rate of a
// 6-row one.
template <class F>
void for_row_tiles(int64_t M, int mr_max, F&& f) {
  const int64_t row_tiles = (M + mr_max - 1) / mr_max;
  for (int64_t ti = 0, i0 = 0; ti < row_tiles; ++ti) {
    const int64_t left = row_tiles - ti;
    const int mr = static_cast<int>((M - i0 + left - 1) / left);
    f(i0, mr);
    i0 += mr;
  }
}

template <bool TA>
void run_blocks(bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                int64_t ldb, float beta, float* C, int64_t ldc, const float* row_scale, const PrefetchRows* prefetch,
                int n_prefetch) {
  alignas(64) float b_panel[kKC * kNB];
  alignas(64) float a_panel[kKC * kMaxPackedRows];
  // op(A) = Aᵀ is read along rows of A, kc of them per block, several tiles apart:
  // packed when the block fits (M ≤ kMaxPackedRows). Otherwise A is read along its
  // own rows (six streams), which the prefetchers follow.
  // The B panel is reused by every row tile: packed when it is spread out and there
  // is more than one tile.
  // Neither is packed when K ≤ kMaxInPlaceK: so few rows stay in L1 where they are (the
  // causal linear core's S += φKcᵀ Vc over a 32-token chunk: 1.09× faster in place).
  const bool in_place = K <= kMaxInPlaceK;
  const bool pack_a = TA && M <= kMaxPackedRows && lda > 2 * M && !in_place;
  const bool pack_b = trans_b || (M > kMR && ldb > 2 * std::min(N, kNB) && !in_place);
  // The next K block's rows (of A when op(A) = Aᵀ, of B when op(B) = B) are prefetched a
  // few per tile when spread out: rows of head slices are too far apart for the hardware
  // prefetchers to run ahead of the kernel (dense rows they follow).
  const bool ahead_a = TA && lda > 2 * M, ahead_b = !trans_b && ldb > 2 * std::min(N, kNB);
  Prefetcher caller(prefetch, n_prefetch, [&] {
    const int mr = tile_rows(columns(N, 0).nv);
    return ((K + kKC - 1) / kKC) * ((N + kNB - 1) / kNB) * ((M + mr - 1) / mr);
  });
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    if (pack_a) pack(A, lda, false, k0, kc, 0, M, a_panel);
    int64_t ahead = ahead_a || ahead_b ? k0 + kc : K;
    const int64_t ahead_end = std::min(K, ahead + kKC);
    const int mr0 = tile_rows(columns(N, 0).nv);
    const int64_t tiles = ((M + mr0 - 1) / mr0) * ((N + kNB - 1) / kNB);
    const int64_t ahead_per_tile = (ahead_end - ahead + tiles - 1) / tiles;
    for (int64_t n0 = 0; n0 < N; n0 += kNB) {
      const auto [nb, nv, last] = columns(N, n0);
      TileArgs t;
      t.kc = kc;
      t.last = last;
      t.alpha = alpha;
      t.beta = k0 == 0 ? beta : 1.0f;
      t.read_c = t.beta != 0.0f;
      t.ldc = ldc;
      t.lda = pack_a ? M : lda;
      if (pack_b) {
        pack(B, ldb, trans_b, k0, kc, n0, nb, b_panel);
        t.b = b_panel;
        t.ldb = nb;
      } else {
        t.b = B + k0 * ldb + n0;
        t.ldb = ldb;
      }
      const int mr_max = tile_rows(nv);
      const TileFn full = tile_fn<TA>(mr_max, nv);
      for_row_tiles(M, mr_max, [&](int64_t i0, int mr) {
        for (int64_t e = 0; e < ahead_per_tile && ahead < ahead_end; ++e, ++ahead) {
          if (ahead_a) prefetch_row(A + ahead * lda, M);
          if (ahead_b) prefetch_row(B + ahead * ldb, N);
        }
        caller.next();
        t.a = pack_a ? a_panel + i0 : TA ? A + k0 * lda + i0 : A + i0 * lda + k0;
        t.c = C + i0 * ldc + n0;
        t.row_scale = row_scale ? row_scale + i0 : nullptr;
        (mr == mr_max ? full : tile_fn<TA>(mr, nv))(t);
      });
    }
  }
}

// small_sgemm_concat: C = row_scale ⊙ ([A1 | A2] [B1 ; B2]), A and B not transposed and
// read in place. Segment 1 goes in K blocks of kKC; its last block takes segment 2 into
// the same accumulators when the two fit 2 · kKC rows of B (the causal linear core's
// [Qc | A] [S ; Vc] with d ≤ 64: one pass, C stored once); otherwise segment 2 follows in
// blocks of its own.
void run_concat(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1, int64_t ldb1, int64_t K2,
                const float* A2, int64_t lda2, const float* B2, int64_t ldb2, float* C, int64_t ldc, const float* row_scale) {
  bool first = true;
  // One K block: kc steps from (a, b), then kc2 of segment 2 from (a2, b2).
  auto block = [&](const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kc, const float* a2, const float* b2,
                   int64_t kc2) {
    for (int64_t n0 = 0; n0 < N; n0 += kNB) {
      const Columns cols = columns(N, n0);
      TileArgs t;
      t.kc = kc;
      t.lda = lda;
      t.b = b + n0;
      t.ldb = ldb;
      t.kc2 = kc2;
      t.lda2 = lda2;
      t.b2 = b2 ? b2 + n0 : nullptr;
      t.ldb2 = ldb2;
      t.last = cols.last;
      t.alpha = 1.0f;
      t.beta = first ? 0.0f : 1.0f;
      t.read_c = !first;
      t.ldc = ldc;
      for_row_tiles(M, tile_rows(cols.nv), [&](int64_t i0, int mr) {
        t.a = a + i0 * lda;
        t.a2 = a2 ? a2 + i0 * lda2 : nullptr;
        t.c = C + i0 * ldc + n0;
        t.row_scale = row_scale ? row_scale + i0 : nullptr;
        tile_fn<false>(mr, cols.nv)(t);
      });
    }
    first = false;
  };
  bool joined = false;
  for (int64_t k0 = 0; k0 < K1; k0 += kKC) {
    const int64_t kc = std::min(kKC, K1 - k0);
    joined = k0 + kc == K1 && K2 > 0 && kc + K2 <= 2 * kKC;
    block(A1 + k0, lda1, B1 + k0 * ldb1, ldb1, kc, joined ? A2 : nullptr, joined ? B2 : nullptr, joined ? K2 : 0);
  }
  if (!joined)
    for (int64_t k0 = 0; k0 < K2; k0 += kKC)
      block(A2 + k0, lda2, B2 + k0 * ldb2, ldb2, std::min(kKC, K2 - k0), nullptr, nullptr, 0);
}

// C = beta · C when K = 0 (no product to add).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

}  // namespace

bool small_sgemm_avx512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

void small_sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* row_scale,
                        const PrefetchRows* prefetch, int n_prefetch) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  if (trans_a) run_blocks<true>(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_scale, prefetch, n_prefetch);
  else run_blocks<false>(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_scale, prefetch, n_prefetch);
}

void small_sgemm_concat_avx512(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1,
                               int64_t ldb1, int64_t K2, const float* A2, int64_t lda2, const float* B2, int64_t ldb2,
                               float* C, int64_t ldc, const float* row_scale) {
  if (M <= 0 || N <= 0) return;
  if (K1 + K2 <= 0) return scale_c(M, N, 0.0f, C, ldc);
  run_concat(M, N, K1, A1, lda1, B1, ldb1, K2, A2, lda2, B2, ldb2, C, ldc, row_scale);
}

Status small_sgemm_concat_fallback(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1,
                                   int64_t ldb1, int64_t K2, const float* A2, int64_t lda2, const float* B2, int64_t ldb2,
                                   float* C, int64_t ldc, const float* row_scale) {
  if (M <= 0 || N <= 0) return Status::Ok();
  if (K1 > 0) ATROUS_RETURN_IF_ERROR(sgemm(false, false, M, N, K1, 1.0f, A1, lda1, B1, ldb1, 0.0f, C, ldc));
  else scale_c(M, N, 0.0f, C, ldc);
  if (K2 > 0) ATROUS_RETURN_IF_ERROR(sgemm(false, false, M, N, K2, 1.0f, A2, lda2, B2, ldb2, 1.0f, C, ldc));
  if (row_scale)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] *= row_scale[i];
  return Status::Ok();
}

Status small_sgemm_concat(int64_t M, int64_t N, int64_t K1, const float* A1, int64_t lda1, const float* B1, int64_t ldb1,
                          int64_t K2, const float* A2, int64_t lda2, const float* B2, int64_t ldb2, float* C, int64_t ldc,
                          const float* row_scale) {
  if (small_sgemm_avx512_available()) {
    small_sgemm_concat_avx512(M, N, K1, A1, lda1, B1, ldb1, K2, A2, lda2, B2, ldb2, C, ldc, row_scale);
    return Status::Ok();
  }
  return small_sgemm_concat_fallback(M, N, K1, A1, lda1, B1, ldb1, K2, A2, lda2, B2, ldb2, C, ldc, row_scale);
}

Status small_sgemm_fallback(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                            int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                            const float* row_scale) {
  if (row_scale && beta != 0.0f) return invalid_argument("small_sgemm: row_scale needs beta = 0");
  ATROUS_RETURN_IF_ERROR(sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
  if (row_scale)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] *= row_scale[i];
  return Status::Ok();
}

Status small_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* row_scale,
                   const PrefetchRows* prefetch, int n_prefetch) {
  if (row_scale && beta != 0.0f) return invalid_argument("small_sgemm: row_scale needs beta = 0");
  if (small_sgemm_avx512_available()) {
    small_sgemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_scale, prefetch, n_prefetch);
    return Status::Ok();
  }
  return small_sgemm_fallback(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_scale);
}

}  // namespace atrous
