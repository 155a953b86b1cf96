// AVX2 + FMA instantiation of the state-space inner loops (see ssm_kernels.h).
#include <immintrin.h>

#include "ops/ssm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace atrous::ssm {
namespace avx2 {

struct V {
  static constexpr int W = 8;
  static constexpr int G = 2;
  using vec = __m256;
  static inline vec zero() { return _mm256_setzero_ps(); }
  static inline vec set1(float f) { return _mm256_set1_ps(f); }
  static inline vec load(const float* p) { return _mm256_loadu_ps(p); }
  static inline vec load_u(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static inline void store_u(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static inline __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline vec load_n(const float* p, int n) { return n == W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n)); }
  static inline void store_n(float* p, vec v, int n) {
    if (n == W) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, mask(n), v);
  }
  static inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static inline vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static inline vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static inline vec div(vec a, vec b) { return _mm256_div_ps(a, b); }
  // 1/b from the 12-bit estimate and one Newton step (relative error ~2^-23).
  static inline vec rcp(vec b) {
    const vec r = _mm256_rcp_ps(b);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(b, r, _mm256_set1_ps(2.0f)));
  }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static inline vec fnmadd(vec a, vec b, vec c) { return _mm256_fnmadd_ps(a, b, c); }
  static inline vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
  static inline vec min(vec a, vec b) { return _mm256_min_ps(a, b); }
  static inline vec abs(vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static inline vec round(vec a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static inline vec floor_frac(vec x, vec& n) {
    n = _mm256_floor_ps(x);
    return _mm256_sub_ps(x, n);
  }
  // p·2^n for integral n <= 127 by building the float 2^n; n below -126 is clamped
  // (the results, below 2^-126, become p·2^-126 instead of denormals or 0: negligible).
  static inline vec pow2n(vec p, vec n) {
    n = _mm256_max_ps(n, _mm256_set1_ps(-126.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static inline vec pow2_floor(vec p, vec, vec n) { return pow2n(p, n); }
};

#include "ops/ssm_kernels.inc"

}  // namespace avx2
}  // namespace atrous::ssm

#pragma GCC pop_options

// Outside the target region: this code must run on any x86-64 CPU.
namespace atrous::ssm {

const SsmIsa* ssm_isa_avx2() {
  static const SsmIsa isa = {"avx2", 8, avx2::conv_silu, 16, avx2::scan, avx2::causal_conv, avx2::fft, avx2::gelu};
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &isa : nullptr;
}

const SsmIsa* ssm_isa_best() {
  if (const SsmIsa* i = ssm_isa_avx512()) return i;
  return ssm_isa_avx2();
}

}  // namespace atrous::ssm
