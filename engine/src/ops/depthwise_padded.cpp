// The kernels of depthwise_padded.h.
#include "ops/depthwise_padded.h"

#include <immintrin.h>

#include <algorithm>

// GCC 12's avx512fintrin.h builds masked intrinsics on _mm512_undefined_ps(), which
// -Wmaybe-uninitialized reports at every use (a false positive of the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace atrous {

void depthwise_padded(const float* pad, int64_t ldp, const float* w, int64_t k, int64_t H, int64_t W, float* dst) {
  for (int64_t y = 0; y < H; ++y) {
    float* d = dst + y * W;
    std::fill(d, d + W, 0.0f);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) {
        const float wt = w[i * k + j];
        const float* s = pad + (y + i) * ldp + j;
        for (int64_t x = 0; x < W; ++x) d[x] += wt * s[x];
      }
  }
}

bool depthwise_padded_avx512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

namespace {

// Rows y (and y + 1 when Two) of a 64-column tile at x0; m[v] masks the tile's vectors.
template <bool Two>
__attribute__((target("avx512f"))) inline void tile(const float* pad, int64_t ldp, const float* w, int64_t k, int64_t y,
                                                    int64_t x0, int64_t W, const __mmask16 m[4], float* dst) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps(), b3 = _mm512_setzero_ps();
  const int64_t rows = Two ? k + 1 : k;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = pad + (y + r) * ldp + x0;
    const bool first = r < k, second = Two && r >= 1;  // tap row r of row y, r − 1 of row y + 1
    for (int64_t j = 0; j < k; ++j) {
      const __m512 s0 = _mm512_maskz_loadu_ps(m[0], row + j), s1 = _mm512_maskz_loadu_ps(m[1], row + j + 16);
      const __m512 s2 = _mm512_maskz_loadu_ps(m[2], row + j + 32), s3 = _mm512_maskz_loadu_ps(m[3], row + j + 48);
      if (first) {
        const __m512 wt = _mm512_set1_ps(w[r * k + j]);
        a0 = _mm512_fmadd_ps(wt, s0, a0);
        a1 = _mm512_fmadd_ps(wt, s1, a1);
        a2 = _mm512_fmadd_ps(wt, s2, a2);
        a3 = _mm512_fmadd_ps(wt, s3, a3);
      }
      if (second) {
        const __m512 wt = _mm512_set1_ps(w[(r - 1) * k + j]);
        b0 = _mm512_fmadd_ps(wt, s0, b0);
        b1 = _mm512_fmadd_ps(wt, s1, b1);
        b2 = _mm512_fmadd_ps(wt, s2, b2);
        b3 = _mm512_fmadd_ps(wt, s3, b3);
      }
    }
  }
  float* d = dst + y * W + x0;
  _mm512_mask_storeu_ps(d, m[0], a0);
  _mm512_mask_storeu_ps(d + 16, m[1], a1);
  _mm512_mask_storeu_ps(d + 32, m[2], a2);
  _mm512_mask_storeu_ps(d + 48, m[3], a3);
  if (Two) {
    d += W;
    _mm512_mask_storeu_ps(d, m[0], b0);
    _mm512_mask_storeu_ps(d + 16, m[1], b1);
    _mm512_mask_storeu_ps(d + 32, m[2], b2);
    _mm512_mask_storeu_ps(d + 48, m[3], b3);
  }
}

}  // namespace

__attribute__((target("avx512f"))) void depthwise_padded_avx512(const float* pad, int64_t ldp, const float* w, int64_t k,
                                                                int64_t H, int64_t W, float* dst) {
  auto mask = [&](int64_t x) -> __mmask16 {
    const int64_t left = W - x;
    return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << left) - 1);
  };
  for (int64_t x0 = 0; x0 < W; x0 += 64) {
    const __mmask16 m[4] = {mask(x0), mask(x0 + 16), mask(x0 + 32), mask(x0 + 48)};
    int64_t y = 0;
    for (; y + 2 <= H; y += 2) tile<true>(pad, ldp, w, k, y, x0, W, m, dst);
    if (y < H) tile<false>(pad, ldp, w, k, y, x0, W, m, dst);
  }
}

}  // namespace atrous
