#include "ops/rel_pos.h"

#include <algorithm>
#include <limits>

namespace atrous::relpos {

void resize_table(const float* table, int64_t len, int64_t dim, int64_t out_len, float* out) {
  const float scale = static_cast<float>(len) / static_cast<float>(out_len);
  for (int64_t i = 0; i < out_len; ++i) {
    const float src = std::max(scale * (static_cast<float>(i) + 0.5f) - 0.5f, 0.0f);
    const int64_t i0 = static_cast<int64_t>(src);
    const int64_t i1 = i0 + (i0 < len - 1 ? 1 : 0);
    const float l1 = src - static_cast<float>(i0), l0 = 1.0f - l1;
    for (int64_t d = 0; d < dim; ++d) out[i * dim + d] = l0 * table[i0 * dim + d] + l1 * table[i1 * dim + d];
  }
}

namespace {

inline void dots(const float* q, const float* table, int64_t base, int64_t count, int64_t dim, float* out) {
  for (int64_t k = 0; k < count; ++k) {
    const float* r = table + (base - k) * dim;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t d = 0; d < dim; ++d) acc += q[d] * r[d];
    out[k] = acc;
  }
}
__attribute__((target("avx512f"))) void dots_avx512(const float* q, const float* t, int64_t b, int64_t c, int64_t d, float* o) {
  dots(q, t, b, c, d, o);
}
__attribute__((target("avx2,fma"))) void dots_avx2(const float* q, const float* t, int64_t b, int64_t c, int64_t d, float* o) {
  dots(q, t, b, c, d, o);
}

inline float bias_max(float* row, const float* rh, const float* rw, int64_t sh, int64_t sw) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t ky = 0; ky < sh; ++ky) {
    float* r = row + ky * sw;
    const float b = rh[ky];
#pragma omp simd reduction(max : mx)
    for (int64_t kx = 0; kx < sw; ++kx) {
      const float v = r[kx] + (b + rw[kx]);
      r[kx] = v;
      mx = v > mx ? v : mx;
    }
  }
  return mx;
}
__attribute__((target("avx512f"))) float bias_max_avx512(float* row, const float* rh, const float* rw, int64_t sh, int64_t sw) {
  return bias_max(row, rh, rw, sh, sw);
}
__attribute__((target("avx2,fma"))) float bias_max_avx2(float* row, const float* rh, const float* rw, int64_t sh, int64_t sw) {
  return bias_max(row, rh, rw, sh, sw);
}

int isa() {
  static const int i = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
  return i;
}

}  // namespace

float add_bias_max(float* row, const float* rh, const float* rw, int64_t sh, int64_t sw) {
  if (isa() == 2) return bias_max_avx512(row, rh, rw, sh, sw);
  if (isa() == 1) return bias_max_avx2(row, rh, rw, sh, sw);
  return bias_max(row, rh, rw, sh, sw);
}

void dots_descending(const float* q, const float* table, int64_t base, int64_t count, int64_t dim, float* out) {
  if (isa() == 2) dots_avx512(q, table, base, count, dim, out);
  else if (isa() == 1) dots_avx2(q, table, base, count, dim, out);
  else dots(q, table, base, count, dim, out);
}

}  // namespace atrous::relpos
