// The kernels of transpose_panel.h.
#include "ops/transpose_panel.h"

#include <immintrin.h>

#include <algorithm>

// GCC 12's avx512fintrin.h builds some intrinsics on _mm512_undefined_*(), which
// -Wuninitialized reports at every use (a false positive of the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace atrous {
namespace {

void edges(const float* src, int64_t lds, int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* dst, int64_t ldd, bool relu) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) {
      const float x = src[r * lds + c];
      dst[c * ldd + r] = relu && !(x > 0.0f) ? 0.0f : x;
    }
}

template <bool Relu>
__attribute__((target("avx512f"))) inline void block16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    r[i] = _mm512_loadu_ps(src + i * lds);
    if (Relu) r[i] = _mm512_max_ps(r[i], _mm512_setzero_ps());
  }
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4g + c]: lane L holds column 4L + c of rows 4g .. 4g + 3
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
    const __m512 v2 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE), v3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    _mm512_storeu_ps(dst + c * ldd, _mm512_shuffle_f32x4(v0, v1, 0x88));
    _mm512_storeu_ps(dst + (4 + c) * ldd, _mm512_shuffle_f32x4(v0, v1, 0xDD));
    _mm512_storeu_ps(dst + (8 + c) * ldd, _mm512_shuffle_f32x4(v2, v3, 0x88));
    _mm512_storeu_ps(dst + (12 + c) * ldd, _mm512_shuffle_f32x4(v2, v3, 0xDD));
  }
}

}  // namespace

bool transpose_panel_avx512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

void transpose_panel_scalar(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, bool relu) {
  edges(src, lds, 0, rows, 0, cols, dst, ldd, relu);
}

__attribute__((target("avx512f"))) void transpose_panel_avx512(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
                                                               int64_t ldd, bool relu) {
  const int64_t r16 = rows / 16 * 16, c16 = cols / 16 * 16;
  for (int64_t r = 0; r < r16; r += 16)
    for (int64_t c = 0; c < c16; c += 16) {
      if (relu) block16<true>(src + r * lds + c, lds, dst + c * ldd + r, ldd);
      else block16<false>(src + r * lds + c, lds, dst + c * ldd + r, ldd);
    }
  edges(src, lds, 0, r16, c16, cols, dst, ldd, relu);
  edges(src, lds, r16, rows, 0, cols, dst, ldd, relu);
}

void transpose_panel(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, bool relu) {
  if (transpose_panel_avx512_available()) return transpose_panel_avx512(src, lds, rows, cols, dst, ldd, relu);
  transpose_panel_scalar(src, lds, rows, cols, dst, ldd, relu);
}

}  // namespace atrous
