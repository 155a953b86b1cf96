// The kernels of narrow_gemm.h.
#include "ops/narrow_gemm.h"

#include <immintrin.h>

#include <algorithm>

#include "onednn/gemm.h"

// GCC 12's avx512fintrin.h builds masked intrinsics on _mm512_undefined_ps(), which
// -Wmaybe-uninitialized reports at every use (a false positive of the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace atrous {

Status narrow_gemm_fallback(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                            int64_t ldc) {
  return sgemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}

Status narrow_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                   bool stream) {
  if (!narrow_gemm_avx512_available()) return narrow_gemm_fallback(M, N, K, A, lda, B, ldb, C, ldc);
  narrow_gemm_avx512(M, N, K, A, lda, B, ldb, C, ldc, stream);
  return Status::Ok();
}

bool narrow_gemm_avx512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

namespace {

constexpr int64_t kPanel = 48;  // columns per panel: 3 vectors
constexpr int kRows = 8;        // rows per tile

// Rows [i0, i0 + R) of C over the panel at column j0 (masks m), all of K; Relu: of
// relu(B); scale (3 vectors, or null): each column's factor, applied as C is stored.
// pf: the next panel's first column in B (or null); this tile prefetches its share of it.
template <int R, bool Relu>
__attribute__((target("avx512f"))) inline void tile(int64_t i0, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                                                    int64_t j0, const __mmask16 m[3], const __m512* scale, float* C, int64_t ldc,
                                                    bool stream, const float* pf, int64_t pf_row0, int64_t pf_rows) {
  __m512 acc[R][3];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
  const float* a = A + i0 * lda;
  const float* b = B + j0;
  for (int64_t k = 0; k < K; ++k, b += ldb) {
    if (pf && k < pf_rows) {
      const float* p = pf + (pf_row0 + k) * ldb;
      _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + 16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + 32), _MM_HINT_T0);
    }
    __m512 b0 = _mm512_maskz_loadu_ps(m[0], b), b1 = _mm512_maskz_loadu_ps(m[1], b + 16), b2 = _mm512_maskz_loadu_ps(m[2], b + 32);
    if (Relu) {
      const __m512 z = _mm512_setzero_ps();
      b0 = _mm512_max_ps(b0, z);
      b1 = _mm512_max_ps(b1, z);
      b2 = _mm512_max_ps(b2, z);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 w = _mm512_set1_ps(a[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(w, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(w, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(w, b2, acc[r][2]);
    }
  }
  const bool full = m[2] == static_cast<__mmask16>(0xffff);
  if (scale)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm512_mul_ps(acc[r][0], scale[0]);
      acc[r][1] = _mm512_mul_ps(acc[r][1], scale[1]);
      acc[r][2] = _mm512_mul_ps(acc[r][2], scale[2]);
    }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* c = C + (i0 + r) * ldc + j0;
    if (stream && full && (reinterpret_cast<uintptr_t>(c) & 63) == 0) {
      _mm512_stream_ps(c, acc[r][0]);
      _mm512_stream_ps(c + 16, acc[r][1]);
      _mm512_stream_ps(c + 32, acc[r][2]);
    } else {
      _mm512_mask_storeu_ps(c, m[0], acc[r][0]);
      _mm512_mask_storeu_ps(c + 16, m[1], acc[r][1]);
      _mm512_mask_storeu_ps(c + 32, m[2], acc[r][2]);
    }
  }
}

template <int R, bool Relu>
__attribute__((target("avx512f"))) void tail_rows(int64_t i0, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                                                  int64_t j0, const __mmask16 m[3], const __m512* scale, float* C, int64_t ldc,
                                                  bool stream, int rows) {
  if constexpr (R > 0) {
    if (rows == R) return tile<R, Relu>(i0, K, A, lda, B, ldb, j0, m, scale, C, ldc, stream, nullptr, 0, 0);
    tail_rows<R - 1, Relu>(i0, K, A, lda, B, ldb, j0, m, scale, C, ldc, stream, rows);
  }
}

// Both kernels: panel by panel; with ratio (Relu), the panel's 1 / (a · relu(B) + eps)
// first (its pass loads the panel into L1 for the tiles).
template <bool Relu>
__attribute__((target("avx512f"))) void panels(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* ratio_a,
                                               float eps, const float* B, int64_t ldb, float* C, int64_t ldc, bool stream) {
  auto mask = [&](int64_t j) -> __mmask16 {
    const int64_t left = N - j;
    return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << left) - 1);
  };
  const int64_t full_tiles = M / kRows;
  // Each full tile prefetches K / full_tiles rows (rounded up) of the next panel.
  const int64_t pf_share = full_tiles > 0 ? (K + full_tiles - 1) / full_tiles : 0;
  for (int64_t j0 = 0; j0 < N; j0 += kPanel) {
    const __mmask16 m[3] = {mask(j0), mask(j0 + 16), mask(j0 + 32)};
    __m512 inv[3];
    if (Relu) {
      __m512 d0 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps(), d2 = _mm512_setzero_ps();
      const __m512 z = _mm512_setzero_ps();
      const float* b = B + j0;
      for (int64_t k = 0; k < K; ++k, b += ldb) {
        const __m512 w = _mm512_set1_ps(ratio_a[k]);
        d0 = _mm512_fmadd_ps(w, _mm512_max_ps(_mm512_maskz_loadu_ps(m[0], b), z), d0);
        d1 = _mm512_fmadd_ps(w, _mm512_max_ps(_mm512_maskz_loadu_ps(m[1], b + 16), z), d1);
        d2 = _mm512_fmadd_ps(w, _mm512_max_ps(_mm512_maskz_loadu_ps(m[2], b + 32), z), d2);
      }
      const __m512 one = _mm512_set1_ps(1.0f), e = _mm512_set1_ps(eps);
      inv[0] = _mm512_div_ps(one, _mm512_add_ps(d0, e));
      inv[1] = _mm512_div_ps(one, _mm512_add_ps(d1, e));
      inv[2] = _mm512_div_ps(one, _mm512_add_ps(d2, e));
    }
    const __m512* scale = Relu ? inv : nullptr;
    const float* pf = j0 + 2 * kPanel <= N ? B + j0 + kPanel : nullptr;  // only full next panels
    for (int64_t t = 0; t < full_tiles; ++t) {
      const int64_t row0 = t * pf_share;
      tile<kRows, Relu>(t * kRows, K, A, lda, B, ldb, j0, m, scale, C, ldc, stream, pf, row0,
                        std::max<int64_t>(0, std::min(pf_share, K - row0)));
    }
    if (M % kRows) tail_rows<kRows - 1, Relu>(full_tiles * kRows, K, A, lda, B, ldb, j0, m, scale, C, ldc, stream, static_cast<int>(M % kRows));
  }
  _mm_sfence();
}

}  // namespace

__attribute__((target("avx512f"))) void narrow_gemm_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                                                           const float* B, int64_t ldb, float* C, int64_t ldc, bool stream) {
  panels<false>(M, N, K, A, lda, nullptr, 0.0f, B, ldb, C, ldc, stream);
}

__attribute__((target("avx512f"))) void narrow_ratio_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* a,
                                                            float eps, const float* B, int64_t ldb, float* C, int64_t ldc, bool stream) {
  panels<true>(M, N, K, A, lda, a, eps, B, ldb, C, ldc, stream);
}

void narrow_ratio_fallback(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* a, float eps, const float* B,
                           int64_t ldb, float* C, int64_t ldc) {
  constexpr int64_t kCols = 256;  // columns at a time: relu(B) and the denominators stay in cache
  float rb[kCols], den[kCols];
  for (int64_t j0 = 0; j0 < N; j0 += kCols) {
    const int64_t nc = std::min(kCols, N - j0);
    std::fill(den, den + nc, 0.0f);
    for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc + j0, C + i * ldc + j0 + nc, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const float* b = B + k * ldb + j0;
      for (int64_t j = 0; j < nc; ++j) rb[j] = b[j] > 0.0f ? b[j] : 0.0f;
      for (int64_t j = 0; j < nc; ++j) den[j] += a[k] * rb[j];
      for (int64_t i = 0; i < M; ++i) {
        const float w = A[i * lda + k];
        float* c = C + i * ldc + j0;
        for (int64_t j = 0; j < nc; ++j) c[j] += w * rb[j];
      }
    }
    for (int64_t j = 0; j < nc; ++j) den[j] = 1.0f / (den[j] + eps);
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc + j0;
      for (int64_t j = 0; j < nc; ++j) c[j] *= den[j];
    }
  }
}

void narrow_ratio(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* a, float eps, const float* B, int64_t ldb,
                  float* C, int64_t ldc, bool stream) {
  if (narrow_gemm_avx512_available()) return narrow_ratio_avx512(M, N, K, A, lda, a, eps, B, ldb, C, ldc, stream);
  narrow_ratio_fallback(M, N, K, A, lda, a, eps, B, ldb, C, ldc);
}

}  // namespace atrous
