#include "ops/activation_rows.h"

#include <immintrin.h>

// GCC 12's avx512fintrin.h builds masked and rounding intrinsics on
// _mm512_undefined_ps(), which -Wmaybe-uninitialized reports at every use (a false
// positive of the header, as in ssm_kernels_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <cmath>

#include "ops/activation.h"
#include "ops/attention_common.h"

namespace atrous {
namespace {

// GELU from e = exp(−x²/2); the loop vectorises for the ISA of the function it is inlined into.
inline void gelu_tail(float* x, const float* e, int64_t n) {
  constexpr float p = 0.3275911f, a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f,
                  a5 = 1.061405429f, kRsqrt2 = 0.70710678118654752f;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float z = std::fabs(v) * kRsqrt2;
    const float t = 1.0f / (1.0f + p * z);
    const float poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))));
    const float erf_abs = 1.0f - poly * e[i];
    x[i] = 0.5f * v * (1.0f + (v < 0.0f ? -erf_abs : erf_abs));
  }
}
inline void add_bias(float* x, const float* bias, float shift, int64_t n) {
  if (bias) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] += bias[i] + shift;
  } else if (shift != 0.0f) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] += shift;
  }
}
inline void relu(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
// SiLU from e = exp(−x): x / (1 + e). e = inf (x < −88) gives −0, as x·sigmoid(x) rounds to.
inline void negate(const float* x, float* e, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) e[i] = -x[i];
}
inline void silu_tail(float* x, const float* e, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + e[i]);
}
inline void half_square(const float* x, float* e, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) e[i] = -0.5f * x[i] * x[i];
}

// One-pass AVX-512 GELU: e^{-z²} by range reduction (n = round(y·log2 e), r = y − n·ln 2)
// and a degree-6 polynomial, 2^n by scalef; arguments below −87 give 0.
__attribute__((target("avx512f"))) void gelu_avx512(float* x, int64_t n) {
  const __m512 p = _mm512_set1_ps(0.3275911f), a1 = _mm512_set1_ps(0.254829592f), a2 = _mm512_set1_ps(-0.284496736f),
               a3 = _mm512_set1_ps(1.421413741f), a4 = _mm512_set1_ps(-1.453152027f), a5 = _mm512_set1_ps(1.061405429f);
  const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f), rs2 = _mm512_set1_ps(0.70710678118654752f);
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f), ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
  const __m512 lo = _mm512_set1_ps(-87.33654f);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), sign_mask = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  int64_t i = 0;
  for (; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __m512 z = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask)), rs2);
    // e = exp(−z²)
    __m512 y = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), z), lo);
    const __mmask16 tiny = _mm512_cmp_ps_mask(y, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    const __m512 nn = _mm512_roundscale_ps(_mm512_mul_ps(y, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nn, ln2hi, y);
    r = _mm512_fnmadd_ps(nn, ln2lo, r);
    __m512 e = _mm512_set1_ps(1.0f / 720);
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 120));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 24));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 6));
    e = _mm512_fmadd_ps(e, r, half);
    e = _mm512_fmadd_ps(e, r, one);
    e = _mm512_fmadd_ps(e, r, one);
    e = _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(e, nn));
    // erf(z) = 1 − t·poly(t)·e, t = 1 / (1 + p·z)
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(p, z, one));
    __m512 poly = _mm512_fmadd_ps(a5, t, a4);
    poly = _mm512_fmadd_ps(poly, t, a3);
    poly = _mm512_fmadd_ps(poly, t, a2);
    poly = _mm512_fmadd_ps(poly, t, a1);
    poly = _mm512_mul_ps(poly, t);
    __m512 erf = _mm512_fnmadd_ps(poly, e, one);
    erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf), _mm512_and_si512(_mm512_castps_si512(v), sign_mask)));
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf)));
  }
}

#define ATROUS_ISA_VARIANTS(name, params, args)                                        \
  __attribute__((target("avx512f"))) void name##_avx512 params { name args; }         \
  __attribute__((target("avx2,fma"))) void name##_avx2 params { name args; }
__attribute__((target("avx2,fma"))) void gelu_tail_avx2(float* x, const float* e, int64_t n) { gelu_tail(x, e, n); }
ATROUS_ISA_VARIANTS(add_bias, (float* x, const float* b, float s, int64_t n), (x, b, s, n))
ATROUS_ISA_VARIANTS(relu, (float* x, int64_t n), (x, n))
ATROUS_ISA_VARIANTS(negate, (const float* x, float* e, int64_t n), (x, e, n))
ATROUS_ISA_VARIANTS(silu_tail, (float* x, const float* e, int64_t n), (x, e, n))
__attribute__((target("avx2,fma"))) void half_square_avx2(const float* x, float* e, int64_t n) { half_square(x, e, n); }
#undef ATROUS_ISA_VARIANTS

int isa() {
  static const int i = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
  return i;
}

}  // namespace

void bias_activate_row(float* x, int64_t n, const float* bias, float shift, fb::ActKind act, float alpha, float* scratch) {
  const int v = isa();
  if (v == 2) add_bias_avx512(x, bias, shift, n);
  else if (v == 1) add_bias_avx2(x, bias, shift, n);
  else add_bias(x, bias, shift, n);
  switch (act) {
    case fb::ActKind::None:
    case fb::ActKind::Identity:
      return;
    case fb::ActKind::Relu:
      if (v == 2) relu_avx512(x, n);
      else if (v == 1) relu_avx2(x, n);
      else relu(x, n);
      return;
    case fb::ActKind::Gelu:
      if (v == 2) return gelu_avx512(x, n);
      if (v == 1) half_square_avx2(x, scratch, n);
      else half_square(x, scratch, n);
      attn::exp_add(scratch, scratch, n, 0.0f);
      if (v == 1) gelu_tail_avx2(x, scratch, n);
      else gelu_tail(x, scratch, n);
      return;
    case fb::ActKind::Silu:
      if (v == 2) negate_avx512(x, scratch, n);
      else if (v == 1) negate_avx2(x, scratch, n);
      else negate(x, scratch, n);
      attn::exp_add(scratch, scratch, n, 0.0f);
      if (v == 2) silu_tail_avx512(x, scratch, n);
      else if (v == 1) silu_tail_avx2(x, scratch, n);
      else silu_tail(x, scratch, n);
      return;
    default:
      for (int64_t i = 0; i < n; ++i) x[i] = activate(x[i], act, alpha);
  }
}

}  // namespace atrous
