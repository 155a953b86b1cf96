// AVX-512 instantiation of the state-space inner loops (see ssm_kernels.h).
#include <immintrin.h>

// GCC 12's avx512fintrin.h builds masked and rounding intrinsics on
// _mm512_undefined_ps(), which -Wuninitialized reports at every use (a known
// false positive of the header, not of this file).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "ops/ssm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,fma,avx2")

namespace atrous::ssm {
namespace avx512 {

struct V {
  static constexpr int W = 16;
  static constexpr int G = 4;
  using vec = __m512;
  static inline vec zero() { return _mm512_setzero_ps(); }
  static inline vec set1(float f) { return _mm512_set1_ps(f); }
  static inline vec load(const float* p) { return _mm512_loadu_ps(p); }
  static inline vec load_u(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static inline void store_u(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static inline __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static inline vec load_n(const float* p, int n) { return n == W ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask(n), p); }
  static inline void store_n(float* p, vec v, int n) {
    if (n == W) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, mask(n), v);
  }
  static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static inline vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static inline vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
  // 1/b from the 14-bit estimate and one Newton step (relative error ~2^-28): a division
  // costs ~16 cycles of the one port that divides, this three ops on either FMA port.
  static inline vec rcp(vec b) {
    const vec r = _mm512_rcp14_ps(b);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(b, r, _mm512_set1_ps(2.0f)));
  }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static inline vec fnmadd(vec a, vec b, vec c) { return _mm512_fnmadd_ps(a, b, c); }
  static inline vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
  static inline vec min(vec a, vec b) { return _mm512_min_ps(a, b); }
  static inline vec abs(vec a) { return _mm512_abs_ps(a); }
  static inline vec round(vec a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static inline vec pow2n(vec p, vec n) { return _mm512_scalef_ps(p, n); }
  // x - floor(x) in one VREDUCEPS (imm: keep 0 fraction bits, round down, no exceptions);
  // VSCALEFPS floors its exponent operand itself, so n stays unused.
  static inline vec floor_frac(vec x, vec& n) {
    n = x;
    return _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  static inline vec pow2_floor(vec p, vec x, vec) { return _mm512_scalef_ps(p, x); }
};

#include "ops/ssm_kernels.inc"

}  // namespace avx512
}  // namespace atrous::ssm

#pragma GCC pop_options

// Outside the target region: this code must run on any x86-64 CPU.
namespace atrous::ssm {

const SsmIsa* ssm_isa_avx512() {
  static const SsmIsa isa = {"avx512", 16, avx512::conv_silu, 64, avx512::scan, avx512::causal_conv, avx512::fft, avx512::gelu};
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  return ok ? &isa : nullptr;
}

}  // namespace atrous::ssm
