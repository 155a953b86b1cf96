#include "ops/attention_common.h"

#include <omp.h>

#include <atomic>

// GCC 12 warns about the deliberately undefined lanes inside its own AVX-512
// reduction intrinsics (_mm512_reduce_*): a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "onednn/gemm.h"
#include "ops/small_gemm.h"

namespace atrous::attn {

// ---- projections --------------------------------------------------------------
Status project(const float* src, int64_t rows, int64_t k, int64_t ld_src, const float* w, const float* b, int64_t n,
               float* dst, int64_t ld_dst) {
  if (b) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ld_dst, b, static_cast<size_t>(n) * sizeof(float));
  }
  return sgemm(false, true, rows, n, k, 1.0f, src, ld_src, w, k, b ? 1.0f : 0.0f, dst, ld_dst);
}

void project_ref(const float* src, int64_t rows, int64_t k, int64_t ld_src, const float* w, const float* b, int64_t n,
                 float* dst, int64_t ld_dst) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * ld_src;
    for (int64_t o = 0; o < n; ++o) {
      const float* wr = w + o * k;
      float acc = 0.0f;
      for (int64_t i = 0; i < k; ++i) acc += x[i] * wr[i];
      dst[r * ld_dst + o] = acc + (b ? b[o] : 0.0f);
    }
  }
}

// ---- vector math ----------------------------------------------------------------
namespace {

enum class Isa { kScalar, kAvx2, kAvx512 };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kScalar;
}

Isa isa() {
  static const Isa i = detect_isa();
  return i;
}

constexpr float kExpLo = -87.33654f;  // exp below this is < FLT_MIN: flushed to 0
constexpr float kExpHi = 88.72283f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
// Taylor coefficients of e^r, |r| <= ln2/2: truncation error < 2e-7 relative.
constexpr float kC2 = 0.5f, kC3 = 1.0f / 6, kC4 = 1.0f / 24, kC5 = 1.0f / 120, kC6 = 1.0f / 720;

__attribute__((target("avx512f"))) inline __m512 exp16(__m512 x) {
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpLo), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kC6);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(p, n));
}

__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(kExpLo), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLo)), _mm256_set1_ps(kExpHi));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kC6);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n for n in [-126, 128]: the exponent bits; n = 128 (x near kExpHi) as 2·2^127.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i big = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127));
  ni = _mm256_sub_epi32(ni, _mm256_and_si256(big, _mm256_set1_epi32(1)));
  __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
  p = _mm256_mul_ps(p, pow2);
  p = _mm256_blendv_ps(p, _mm256_add_ps(p, p), _mm256_castsi256_ps(big));
  return _mm256_andnot_ps(tiny, p);
}

__attribute__((target("avx512f"))) float max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) {
    __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
  }
  return _mm512_reduce_max_ps(m);
}

__attribute__((target("avx512f"))) float exp_shift_sum_avx512(float* x, int64_t n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    _mm512_storeu_ps(x + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), s)));
    _mm512_mask_storeu_ps(x + i, k, e);
    acc = _mm512_add_ps(acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f"))) void exp_add_avx512(const float* x, float* y, int64_t n, float add, float offset) {
  const __m512 a = _mm512_set1_ps(add), off = _mm512_set1_ps(offset);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_add_ps(exp16(_mm512_add_ps(_mm512_loadu_ps(x + i), a)), off));
  if (i < n) {
    __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, k, _mm512_add_ps(exp16(_mm512_add_ps(_mm512_maskz_loadu_ps(k, x + i), a)), off));
  }
}

__attribute__((target("avx2,fma"))) float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float max_avx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  alignas(32) float t[8];
  _mm256_store_ps(t, m);
  float r = t[0];
  for (int j = 1; j < 8; ++j) r = std::max(r, t[j]);
  for (; i < n; ++i) r = std::max(r, x[i]);
  return r;
}

__attribute__((target("avx2,fma"))) float exp_shift_sum_avx2(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum8(acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

__attribute__((target("avx2,fma"))) void exp_add_avx2(const float* x, float* y, int64_t n, float add, float offset) {
  const __m256 a = _mm256_set1_ps(add), off = _mm256_set1_ps(offset);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(exp8(_mm256_add_ps(_mm256_loadu_ps(x + i), a)), off));
  for (; i < n; ++i) y[i] = std::exp(x[i] + add) + offset;
}

__attribute__((target("avx512f"))) void elu_add_avx512(float* x, int64_t n, float add) {
  const __m512 a = _mm512_set1_ps(add), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
    __m512 neg = _mm512_sub_ps(exp16(_mm512_min_ps(v, zero)), one);
    _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_mask_mov_ps(neg, pos, v), a));
  }
  for (; i < n; ++i) x[i] = (x[i] > 0.0f ? x[i] : std::expm1(x[i])) + add;
}

__attribute__((target("avx2,fma"))) void elu_add_avx2(float* x, int64_t n, float add) {
  const __m256 a = _mm256_set1_ps(add), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 pos = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
    __m256 neg = _mm256_sub_ps(exp8(_mm256_min_ps(v, zero)), one);
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_blendv_ps(neg, v, pos), a));
  }
  for (; i < n; ++i) x[i] = (x[i] > 0.0f ? x[i] : std::expm1(x[i])) + add;
}

// inverse_denominators, R rows at a time: R independent dot products (and row sums)
// walk the row in 16-lane vectors, so no FMA waits on the one before it.
template <int R, bool QSUM>
__attribute__((target("avx512f"))) void inv_den_rows(const float* q, int64_t ldq, const float* z, int64_t d,
                                                     const float* extra, float eps, float eps_qsum, float* inv) {
  __m512 dot[R], qs[R];
  for (int r = 0; r < R; ++r) dot[r] = qs[r] = _mm512_setzero_ps();
  for (int64_t f = 0; f < d; f += 16) {
    const __mmask16 m = d - f >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (d - f)) - 1u);
    const __m512 zv = _mm512_maskz_loadu_ps(m, z + f);
    for (int r = 0; r < R; ++r) {
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + r * ldq + f);
      dot[r] = _mm512_fmadd_ps(qv, zv, dot[r]);
      if (QSUM) qs[r] = _mm512_add_ps(qs[r], qv);
    }
  }
  for (int r = 0; r < R; ++r) {
    float den = _mm512_reduce_add_ps(dot[r]) + (extra ? extra[r] : 0.0f) + eps;
    if (QSUM) den += eps_qsum * _mm512_reduce_add_ps(qs[r]);
    inv[r] = 1.0f / den;
  }
}

template <bool QSUM>
void inv_den_avx512(const float* q, int64_t ldq, int64_t n, const float* z, int64_t d, const float* extra, float eps,
                    float eps_qsum, float* inv) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    inv_den_rows<4, QSUM>(q + i * ldq, ldq, z, d, extra ? extra + i : nullptr, eps, eps_qsum, inv + i);
  for (; i < n; ++i) inv_den_rows<1, QSUM>(q + i * ldq, ldq, z, d, extra ? extra + i : nullptr, eps, eps_qsum, inv + i);
}

// add_column_sums: 64 columns at a time in two sets of four registers, even and odd
// rows, so that eight add chains run at once however narrow the rows are.
__attribute__((target("avx512f"))) void column_sums_avx512(const float* k, int64_t ldk, int64_t n, int64_t d, float* z) {
  constexpr int kV = 4;
  for (int64_t f0 = 0; f0 < d; f0 += 16 * kV) {
    __m512 even[kV], odd[kV];
    __mmask16 m[kV];
    for (int v = 0; v < kV; ++v) {
      const int64_t f = f0 + 16 * v;
      m[v] = f >= d ? 0 : d - f >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (d - f)) - 1u);
      even[v] = _mm512_maskz_loadu_ps(m[v], z + f);
      odd[v] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
      const float* r0 = k + j * ldk + f0;
      const float* r1 = r0 + ldk;
      for (int v = 0; v < kV; ++v) {
        even[v] = _mm512_add_ps(even[v], _mm512_maskz_loadu_ps(m[v], r0 + 16 * v));
        odd[v] = _mm512_add_ps(odd[v], _mm512_maskz_loadu_ps(m[v], r1 + 16 * v));
      }
    }
    if (j < n)
      for (int v = 0; v < kV; ++v) even[v] = _mm512_add_ps(even[v], _mm512_maskz_loadu_ps(m[v], k + j * ldk + f0 + 16 * v));
    for (int v = 0; v < kV; ++v) _mm512_mask_storeu_ps(z + f0 + 16 * v, m[v], _mm512_add_ps(even[v], odd[v]));
  }
}

// causal_mask_rows: 16 columns at a time, the lanes past the diagonal zeroed by a mask.
__attribute__((target("avx512f"))) void mask_rows_avx512(float* a, int64_t lda, int64_t c, float* sums) {
  for (int64_t i = 0; i < c; ++i) {
    float* ai = a + i * lda;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j0 = 0; j0 < c; j0 += 16) {
      const int64_t w = std::min<int64_t>(16, c - j0);
      const __mmask16 in_row = static_cast<__mmask16>((1u << w) - 1u);
      const int64_t keep = std::clamp<int64_t>(i + 1 - j0, 0, 16);  // lanes at or before the diagonal
      const __mmask16 kept = static_cast<__mmask16>(keep == 16 ? 0xFFFFu : (1u << keep) - 1u);
      const __m512 x = _mm512_maskz_loadu_ps(kept, ai + j0);
      _mm512_mask_storeu_ps(ai + j0, in_row, x);
      acc = _mm512_add_ps(acc, x);
    }
    if (sums) sums[i] = _mm512_reduce_add_ps(acc);
  }
}

}  // namespace

void elu_add_serial(float* x, int64_t n, float add) {
  switch (isa()) {
    case Isa::kAvx512: return elu_add_avx512(x, n, add);
    case Isa::kAvx2: return elu_add_avx2(x, n, add);
    default: break;
  }
  for (int64_t j = 0; j < n; ++j) x[j] = (x[j] > 0.0f ? x[j] : std::expm1(x[j])) + add;
}

float row_max(const float* x, int64_t n) {
  switch (isa()) {
    case Isa::kAvx512: return max_avx512(x, n);
    case Isa::kAvx2: return max_avx2(x, n);
    default: break;
  }
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

float exp_shift_sum(float* x, int64_t n, float shift) {
  switch (isa()) {
    case Isa::kAvx512: return exp_shift_sum_avx512(x, n, shift);
    case Isa::kAvx2: return exp_shift_sum_avx2(x, n, shift);
    default: break;
  }
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    s += x[i];
  }
  return s;
}

void exp_add(const float* x, float* y, int64_t n, float add, float offset) {
  switch (isa()) {
    case Isa::kAvx512: return exp_add_avx512(x, y, n, add, offset);
    case Isa::kAvx2: return exp_add_avx2(x, y, n, add, offset);
    default: break;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] + add) + offset;
}

void inverse_denominators_scalar(const float* q, int64_t ldq, int64_t n, const float* z, int64_t d, const float* extra,
                                 float eps, float eps_qsum, float* inv) {
  for (int64_t i = 0; i < n; ++i) {
    const float* qi = q + i * ldq;
    float den = 0.0f, qs = 0.0f;
#pragma omp simd reduction(+ : den, qs)
    for (int64_t f = 0; f < d; ++f) {
      den += qi[f] * z[f];
      qs += qi[f];
    }
    inv[i] = 1.0f / (den + (extra ? extra[i] : 0.0f) + eps + eps_qsum * qs);
  }
}

void inverse_denominators(const float* q, int64_t ldq, int64_t n, const float* z, int64_t d, const float* extra, float eps,
                          float eps_qsum, float* inv) {
  if (isa() != Isa::kAvx512) return inverse_denominators_scalar(q, ldq, n, z, d, extra, eps, eps_qsum, inv);
  if (eps_qsum != 0.0f) return inv_den_avx512<true>(q, ldq, n, z, d, extra, eps, eps_qsum, inv);
  inv_den_avx512<false>(q, ldq, n, z, d, extra, eps, eps_qsum, inv);
}

void add_column_sums_scalar(const float* k, int64_t ldk, int64_t n, int64_t d, float* z) {
  for (int64_t j = 0; j < n; ++j) {
    const float* kj = k + j * ldk;
#pragma omp simd
    for (int64_t f = 0; f < d; ++f) z[f] += kj[f];
  }
}

void add_column_sums(const float* k, int64_t ldk, int64_t n, int64_t d, float* z) {
  if (isa() != Isa::kAvx512) return add_column_sums_scalar(k, ldk, n, d, z);
  column_sums_avx512(k, ldk, n, d, z);
}

void causal_mask_rows_scalar(float* a, int64_t lda, int64_t c, float* sums) {
  for (int64_t i = 0; i < c; ++i) {
    float* ai = a + i * lda;
    std::fill(ai + i + 1, ai + c, 0.0f);
    if (!sums) continue;
    float rs = 0.0f;
    for (int64_t j = 0; j <= i; ++j) rs += ai[j];
    sums[i] = rs;
  }
}

void causal_mask_rows(float* a, int64_t lda, int64_t c, float* sums) {
  if (isa() != Isa::kAvx512) return causal_mask_rows_scalar(a, lda, c, sums);
  mask_rows_avx512(a, lda, c, sums);
}

const char* vector_isa() {
  switch (isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

// ---- linear attention core ---------------------------------------------------------
int64_t LinearCore::scratch_floats() const {
  const int64_t c = s_.chunk;
  // non-causal: read()'s; causal: the masked scores [c, c], 1 / denominators [c]
  return std::max(read_scratch_floats(), c * c + c);
}

double LinearCore::flops() const {
  const double d = static_cast<double>(s_.d), m = static_cast<double>(s_.m);
  if (!s_.causal) return 2.0 * (s_.lk + s_.lq) * d * m;
  double f = 0;
  for (int64_t r0 = 0; r0 < s_.lq; r0 += s_.chunk) {
    const double c = static_cast<double>(std::min(s_.chunk, s_.lq - r0));
    f += 2.0 * (c * c * d + c * (d + c) * m + d * c * m);  // Qc Kcᵀ, [Qc | A][S ; Vc], Kcᵀ Vc
  }
  return f;
}

Status LinearCore::run(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv, float* y,
                       int64_t ldy, float* state, float* scratch) const {
  const int64_t C = s_.chunk, d = s_.d, m = s_.m;
  if (!s_.causal) {
    ATROUS_RETURN_IF_ERROR(accumulate(k, ldk, v, ldv, s_.lk, state));
    return read(q, ldq, s_.lq, y, ldy, state, scratch);
  }
  // Causal, chunk by chunk: y_c = ([Qc | tril(Qc Kcᵀ)] [S ; Vc]) / denominators, one
  // product for the earlier chunks (through S) and this one (through the masked scores),
  // with Qc and Vc read in place (small_sgemm_concat); then S += Kcᵀ Vc. The
  // denominators are q · z plus the masked scores' row sums.
  float* a = scratch;        // [C, C]: the chunk's masked scores
  float* inv = a + C * C;    // [C]: 1 / denominator per row
  float* sv = state;         // [d, m]: the running S, updated in place
  float* z = state + d * m;  // [d]: Σ k (with a denominator)
  const bool den = s_.denominator;
  for (int64_t r0 = 0; r0 < s_.lq; r0 += C) {
    const int64_t c = std::min(C, s_.lq - r0);
    const float* qc = q + r0 * ldq;
    const float* kc = k + r0 * ldk;
    const float* vc = v + r0 * ldv;
    // The next chunk's rows of v and y: head slices of [tokens, heads × m] tensors, rows
    // 1 KiB or more apart, which the hardware prefetchers do not run ahead along.
    for (int64_t i = r0 + C; i < std::min(r0 + 2 * C, s_.lq); ++i)
      for (int64_t e = 0; e < m; e += 16) {
        __builtin_prefetch(v + i * ldv + e, 0, 3);
        __builtin_prefetch(y + i * ldy + e, 1, 3);
      }
    ATROUS_RETURN_IF_ERROR(small_sgemm(false, true, c, c, d, 1.0f, qc, ldq, kc, ldk, 0.0f, a, C));
    causal_mask_rows(a, C, c, den ? inv : nullptr);  // the row sums: the denominators' extra term
    if (den) inverse_denominators(qc, ldq, c, z, d, inv, s_.eps, s_.eps_qsum, inv);
    ATROUS_RETURN_IF_ERROR(small_sgemm_concat(c, m, d, qc, ldq, sv, m, c, a, C, vc, ldv, y + r0 * ldy, ldy,
                                              den ? inv : nullptr));
    ATROUS_RETURN_IF_ERROR(small_sgemm(true, false, d, m, c, 1.0f, kc, ldk, vc, ldv, 1.0f, sv, m));
    if (den) add_column_sums(kc, ldk, c, d, z);
  }
  return Status::Ok();
}

Status LinearCore::accumulate(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t rows,
                              float* state) const {
  const int64_t d = s_.d, m = s_.m;
  ATROUS_RETURN_IF_ERROR(small_sgemm(true, false, d, m, rows, 1.0f, k, ldk, v, ldv, 1.0f, state, m));
  if (s_.denominator) add_column_sums(k, ldk, rows, d, state + d * m);
  return Status::Ok();
}

Status LinearCore::read(const float* q, int64_t ldq, int64_t rows, float* y, int64_t ldy, const float* state,
                        float* scratch) const {
  const int64_t d = s_.d, m = s_.m;
  const float* z = state + d * m;
  float* inv = scratch;
  for (int64_t r0 = 0; r0 < rows; r0 += kReadBlock) {
    const int64_t n = std::min(kReadBlock, rows - r0);
    const float* qb = q + r0 * ldq;
    if (s_.denominator)
      inverse_denominators(qb, ldq, n, z, d, nullptr, s_.eps, s_.eps_qsum, inv);
    ATROUS_RETURN_IF_ERROR(small_sgemm(false, false, n, m, d, 1.0f, qb, ldq, state, m, 0.0f, y + r0 * ldy, ldy,
                                       s_.denominator ? inv : nullptr));
  }
  return Status::Ok();
}

void LinearCore::run_ref(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv, float* y,
                         int64_t ldy, float* state) const {
  const int64_t d = s_.d, m = s_.m;
  float* z = state + d * m;
  auto add_key = [&](int64_t j) {
    for (int64_t f = 0; f < d; ++f) {
      const float kf = k[j * ldk + f];
      for (int64_t e = 0; e < m; ++e) state[f * m + e] += kf * v[j * ldv + e];
      if (s_.denominator) z[f] += kf;
    }
  };
  auto read = [&](int64_t i) {
    const float* qi = q + i * ldq;
    float* yi = y + i * ldy;
    for (int64_t e = 0; e < m; ++e) {
      float acc = 0.0f;
      for (int64_t f = 0; f < d; ++f) acc += qi[f] * state[f * m + e];
      yi[e] = acc;
    }
    if (!s_.denominator) return;
    float den = 0.0f, qs = 0.0f;
    for (int64_t f = 0; f < d; ++f) {
      den += qi[f] * z[f];
      qs += qi[f];
    }
    den += s_.eps + s_.eps_qsum * qs;
    for (int64_t e = 0; e < m; ++e) yi[e] /= den;
  };
  if (s_.causal) {
    for (int64_t i = 0; i < s_.lq; ++i) {  // the RNN form: update first (inclusive), then read
      add_key(i);
      read(i);
    }
    return;
  }
  for (int64_t j = 0; j < s_.lk; ++j) add_key(j);
  for (int64_t i = 0; i < s_.lq; ++i) read(i);
}

void state_in(const float* kv, const float* z, int64_t d, int64_t m, bool with_z, float* state) {
  if (kv) std::memcpy(state, kv, static_cast<size_t>(d * m) * sizeof(float));
  else std::fill(state, state + d * m, 0.0f);
  if (!with_z) return;
  if (z) std::memcpy(state + d * m, z, static_cast<size_t>(d) * sizeof(float));
  else std::fill(state + d * m, state + d * m + d, 0.0f);
}

void state_out(const float* state, int64_t d, int64_t m, bool with_z, float* kv, float* z) {
  if (kv) std::memcpy(kv, state, static_cast<size_t>(d * m) * sizeof(float));
  if (with_z && z) std::memcpy(z, state + d * m, static_cast<size_t>(d) * sizeof(float));
}

// ---- shared node layout ---------------------------------------------------------------
void add_residual(const float* residual, float* y, int64_t n, int threads) {
  if (!residual) return;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; ++i) y[i] += residual[i];
}

Status check_projections(CheckContext& ctx) {
  for (int i : {kQuery, kKey, kValue}) ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  for (int i : {kWq, kWk, kWv, kWo}) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    if (ctx.value(i).shape.size() != 2) return ctx.fail("projection weight " + ir::value_label(ctx.graph, ctx.node.inputs[static_cast<size_t>(i)]) + " must be 2-D, got " + shape_string(ctx.value(i).shape));
  }
  for (int i : {kBq, kBk, kBv, kBo}) {
    if (!ctx.has(i)) continue;
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    if (ctx.value(i).shape.size() != 1 || ctx.value(i).shape[0] != ctx.value(i - 1).shape[0])
      return ctx.fail("projection bias " + ir::value_label(ctx.graph, ctx.node.inputs[static_cast<size_t>(i)]) + " must be [" +
                      std::to_string(ctx.value(i - 1).shape[0]) + "], got " + shape_string(ctx.value(i).shape));
  }
  return Status::Ok();
}

Status infer_projections(ShapeContext& ctx, int64_t heads, ProjShapes* s) {
  const Shape& q = ctx.in[kQuery];
  const Shape& k = ctx.has(kKey) ? ctx.in[kKey] : q;
  const Shape& v = ctx.has(kValue) ? ctx.in[kValue] : k;
  if (q.size() != 3) return ctx.fail("query must be [B, L, E], got " + shape_string(q));
  if (k.size() != 3 || v.size() != 3 || k[0] != q[0] || v[0] != q[0] || v[1] != k[1])
    return ctx.fail("key " + shape_string(k) + " and value " + shape_string(v) + " must be [B, Lk, E] with the query's batch " +
                    std::to_string(q[0]) + " and one length");
  const Shape &wq = ctx.in[kWq], &wk = ctx.in[kWk], &wv = ctx.in[kWv], &wo = ctx.in[kWo];
  s->batch = q[0];
  s->lq = q[1];
  s->lk = k[1];
  s->eq = q[2];
  s->ek = k[2];
  s->ev = v[2];
  if (wq[1] != s->eq || wk[1] != s->ek || wv[1] != s->ev)
    return ctx.fail("projection weights wq " + shape_string(wq) + ", wk " + shape_string(wk) + ", wv " + shape_string(wv) +
                    " do not match the input dims " + std::to_string(s->eq) + ", " + std::to_string(s->ek) + ", " + std::to_string(s->ev));
  if (wk[0] != wq[0]) return ctx.fail("wq " + shape_string(wq) + " and wk " + shape_string(wk) + " must have the same rows");
  if (wo[1] != wv[0]) return ctx.fail("wo " + shape_string(wo) + " must take the " + std::to_string(wv[0]) + " value features");
  if (heads < 1 || wq[0] % heads != 0 || wv[0] % heads != 0)
    return ctx.fail("num_heads " + std::to_string(heads) + " must divide the inner dims " + std::to_string(wq[0]) + " and " + std::to_string(wv[0]));
  s->inner = wq[0];
  s->inner_v = wv[0];
  s->heads = heads;
  s->d = s->inner / heads;
  s->m = s->inner_v / heads;
  s->eo = wo[0];
  return Status::Ok();
}

ProjShapes proj_shapes(const KernelContext& ctx, int64_t heads) {
  ProjShapes s;
  const Shape& q = ctx.in[kQuery].shape;
  const Shape& k = present(ctx, kKey) ? ctx.in[kKey].shape : q;
  const Shape& v = present(ctx, kValue) ? ctx.in[kValue].shape : k;
  s.batch = q[0];
  s.lq = q[1];
  s.lk = k[1];
  s.eq = q[2];
  s.ek = k[2];
  s.ev = v[2];
  s.inner = ctx.in[kWq].shape[0];
  s.inner_v = ctx.in[kWv].shape[0];
  s.heads = heads;
  s.d = s.inner / heads;
  s.m = s.inner_v / heads;
  s.eo = ctx.in[kWo].shape[0];
  return s;
}

std::unique_ptr<PackedProjections> PackedProjections::create(KernelContext& ctx, const ProjShapes& s) {
  auto p = std::make_unique<PackedProjections>();
  auto make = [&](int64_t rows, int64_t e, int w, int bias, int64_t n) {
    const void* wc = w < static_cast<int>(ctx.constant.size()) ? ctx.constant[static_cast<size_t>(w)] : nullptr;
    return PackedGemm::create(ctx, rows, e, n, wc, present(ctx, bias));
  };
  p->q = make(s.batch * s.lq, s.eq, kWq, kBq, s.inner);
  p->k = make(s.batch * s.lk, s.ek, kWk, kBk, s.inner);
  p->v = make(s.batch * s.lk, s.ev, kWv, kBv, s.inner_v);
  p->o = make(s.batch * s.lq, s.inner_v, kWo, kBo, s.eo);
  return p;
}

Result<std::unique_ptr<BoundProjections>> PackedProjections::bind(const RunBuffers& b, float* q_dst, float* k_dst,
                                                                  float* v_dst, const float* o_src, float* y) const {
  auto in = [&](int i) { return input_or_null(b, i); };
  const float* xq = in(kQuery);
  const float* xk = in(kKey) ? in(kKey) : xq;
  const float* xv = in(kValue) ? in(kValue) : xk;
  auto bound = std::make_unique<BoundProjections>();
  if (q && q_dst) {
    ATROUS_ASSIGN_OR_RETURN(bound->q, q->bind(xq, in(kBq), q_dst, b));
  }
  if (k && k_dst) {
    ATROUS_ASSIGN_OR_RETURN(bound->k, k->bind(xk, in(kBk), k_dst, b));
  }
  if (v && v_dst) {
    ATROUS_ASSIGN_OR_RETURN(bound->v, v->bind(xv, in(kBv), v_dst, b));
  }
  if (o && y) {
    ATROUS_ASSIGN_OR_RETURN(bound->o, o->bind(o_src, in(kBo), y, b));
  }
  return bound;
}

Status project_qkv(const ProjShapes& s, const RunBuffers& b, float* q, float* k, float* v, bool ref,
                   const BoundProjections* bound) {
  auto in = [&](int i) { return input_or_null(b, i); };
  const float* xq = in(kQuery);
  const float* xk = in(kKey) ? in(kKey) : xq;
  const float* xv = in(kValue) ? in(kValue) : xk;
  struct P { const float* x; int64_t rows, e; int w, bias; float* dst; int64_t n; const PackedGemm::Bound* g; };
  const P ps[3] = {{xq, s.batch * s.lq, s.eq, kWq, kBq, q, s.inner, bound ? bound->q.get() : nullptr},
                   {xk, s.batch * s.lk, s.ek, kWk, kBk, k, s.inner, bound ? bound->k.get() : nullptr},
                   {xv, s.batch * s.lk, s.ev, kWv, kBv, v, s.inner_v, bound ? bound->v.get() : nullptr}};
  for (const P& p : ps) {
    if (!p.dst) continue;
    if (ref) project_ref(p.x, p.rows, p.e, p.e, in(p.w), in(p.bias), p.n, p.dst, p.n);
    else if (p.g) ATROUS_RETURN_IF_ERROR(p.g->run());
    else ATROUS_RETURN_IF_ERROR(project(p.x, p.rows, p.e, p.e, in(p.w), in(p.bias), p.n, p.dst, p.n));
  }
  return Status::Ok();
}

Status project_out(const ProjShapes& s, const RunBuffers& b, const float* o, float* y, bool ref,
                   const BoundProjections* bound) {
  const float* w = input_or_null(b, kWo);
  const float* bias = input_or_null(b, kBo);
  if (ref) {
    project_ref(o, s.batch * s.lq, s.inner_v, s.inner_v, w, bias, s.eo, y, s.eo);
    return Status::Ok();
  }
  if (bound && bound->o) return bound->o->run();
  return project(o, s.batch * s.lq, s.inner_v, s.inner_v, w, bias, s.eo, y, s.eo);
}

ProjectedHeadsKernel::ProjectedHeadsKernel(KernelContext& ctx, int64_t heads, bool ref, const char* what, bool fused)
    : ref_(ref), s_(proj_shapes(ctx, heads)), threads_(std::max(1, ctx.threads)), what_(what) {
  if (!ref && !fused) packed_ = PackedProjections::create(ctx, s_);  // the fused mode packs per head group
}

void ProjectedHeadsKernel::request_scratch(KernelContext& ctx) {
  const uint64_t f = sizeof(float);
  if (fused_) return request_fused_scratch(ctx);
  q_scr_ = ctx.scratch(f * s_.batch * s_.lq * s_.inner);
  k_scr_ = ctx.scratch(f * s_.batch * s_.lk * s_.inner);
  v_scr_ = ctx.scratch(f * s_.batch * s_.lk * s_.inner_v);
  o_scr_ = ctx.scratch(f * s_.batch * s_.lq * s_.inner_v);
  t_scr_ = ctx.scratch(f * threads_ * KernelContext::thread_slice_floats(thread_floats()));
}

Result<std::unique_ptr<KernelState>> ProjectedHeadsKernel::bind(const RunBuffers& b) const {
  if (fused_) return bind_fused(b);
  if (!packed_) return std::unique_ptr<KernelState>();
  auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
  ATROUS_ASSIGN_OR_RETURN(auto bound, packed_->bind(b, scr(q_scr_), scr(k_scr_), scr(v_scr_), scr(o_scr_),
                                                    static_cast<float*>(b.out[0])));
  return std::unique_ptr<KernelState>(std::move(bound));
}

Status ProjectedHeadsKernel::run(const RunBuffers& b, KernelState* state) const {
  if (fused_) return run_fused(b, state);  // before the lookups: the fused mode has none of these buffers
  auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
  float *q = scr(q_scr_), *k = scr(k_scr_), *v = scr(v_scr_), *o = scr(o_scr_), *tall = scr(t_scr_);
  const auto* bound = static_cast<const BoundProjections*>(state);
  ATROUS_RETURN_IF_ERROR(project_qkv(s_, b, q, k, v, ref_, bound));
  before_heads(q, k);
  const int64_t per_thread = KernelContext::thread_slice_floats(thread_floats());
  std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
  for (int64_t bh = 0; bh < s_.batch * s_.heads; ++bh) {
    const int64_t bi = bh / s_.heads, h = bh % s_.heads;
    float* st = tall + static_cast<int64_t>(omp_get_thread_num()) * per_thread;
    if (!head(b, bi, h, q + bi * s_.lq * s_.inner + h * s_.d, k + bi * s_.lk * s_.inner + h * s_.d,
              v + bi * s_.lk * s_.inner_v + h * s_.m, o + bi * s_.lq * s_.inner_v + h * s_.m, st)
             .ok())
      failed = true;
  }
  if (failed) return internal_error(std::string("sgemm failed in the ") + what_);
  after_heads(b, o);
  return project_out(s_, b, o, static_cast<float*>(b.out[0]), ref_, bound);
}

void ProjectedHeadsKernel::ref_core_head(const RunBuffers& b, const LinearCore& core, int64_t bh, int kv_input,
                                         int z_input, const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v,
                                         float* o, float* st) const {
  head_state_in(b, core, bh, kv_input, z_input, st);
  core.run_ref(q, ldq, k, ldk, v, s_.inner_v, o, s_.inner_v, st);
  head_state_out(b, core, bh, z_input, st);
}

void ProjectedHeadsKernel::head_state_in(const RunBuffers& b, const LinearCore& core, int64_t bh, int kv_input, int z_input,
                                         float* st) const {
  const int64_t D = core.shape().d, M = s_.m;
  const bool with_z = z_input >= 0;
  const float* kv_in = input_or_null(b, kv_input);
  const float* z_in = with_z ? input_or_null(b, z_input) : nullptr;
  state_in(kv_in ? kv_in + bh * D * M : nullptr, z_in ? z_in + bh * D : nullptr, D, M, with_z, st);
}

void ProjectedHeadsKernel::head_state_out(const RunBuffers& b, const LinearCore& core, int64_t bh, int z_input,
                                          const float* st) const {
  const int64_t D = core.shape().d, M = s_.m;
  const bool with_z = z_input >= 0;
  float* kv_out = output_or_null(b, 1);
  float* z_out = with_z ? output_or_null(b, 2) : nullptr;
  if (kv_out) state_out(st, D, M, with_z, kv_out + bh * D * M, z_out ? z_out + bh * D : nullptr);
}

double projection_flops(const ProjShapes& s) {
  return 2.0 * s.batch * (s.lq * s.eq * s.inner + s.lk * s.ek * s.inner + s.lk * s.ev * s.inner_v + s.lq * s.inner_v * s.eo);
}

Status expect_state_shape(ShapeContext& ctx, int i, const Shape& want, const char* what) {
  if (!ctx.has(i)) return Status::Ok();
  if (ctx.in[static_cast<size_t>(i)] != want)
    return ctx.fail(std::string(what) + " must be " + shape_string(want) + ", got " + shape_string(ctx.in[static_cast<size_t>(i)]));
  return Status::Ok();
}

}  // namespace atrous::attn
