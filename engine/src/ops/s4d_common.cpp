#include "ops/s4d_common.h"

#include <cmath>
#include <vector>

#include "onednn/gemm.h"

namespace atrous {

S4DDims s4d_dims(const KernelContext& ctx) {
  S4DDims d;
  d.transposed = ctx.attrs<fb::S4DT>().transposed;
  const Shape& u = ctx.in[kS4DU].shape;
  const Shape& c = ctx.in[kS4DC].shape;
  d.batch = u[0];
  d.H = d.transposed ? u[1] : u[2];
  d.L = d.transposed ? u[2] : u[1];
  d.complex = c.size() == 3;
  d.M = c[1];
  d.has_output = ctx.present.size() > kS4DOutWeight && ctx.present[kS4DOutWeight];
  return d;
}

Result<S4DModes> s4d_modes(KernelContext& ctx, const S4DDims& d) {
  using cd = std::complex<double>;
  auto in = [&](int i) -> const float* {
    return ctx.present.size() > static_cast<size_t>(i) && ctx.present[static_cast<size_t>(i)]
               ? static_cast<const float*>(ctx.constant[static_cast<size_t>(i)]) : nullptr;
  };
  const float *log_dt = in(kS4DLogDt), *c = in(kS4DC), *log_a = in(kS4DLogAReal), *a_imag = in(kS4DAImag);
  const uint64_t bytes = static_cast<uint64_t>(d.H * d.M) * sizeof(cd);
  auto* dA = static_cast<cd*>(ctx.persistent(bytes));
  auto* CdB = static_cast<cd*>(ctx.persistent(bytes));
  auto* C = static_cast<cd*>(ctx.persistent(bytes));
  auto* dB = static_cast<cd*>(ctx.persistent(bytes));
  if (!dA || !CdB || !C || !dB) return out_of_memory(ctx.label() + ": no memory for the discretised S4D modes");
  for (int64_t h = 0; h < d.H; ++h) {
    const double dt = std::exp(static_cast<double>(log_dt[h]));
    for (int64_t m = 0; m < d.M; ++m) {
      const int64_t i = h * d.M + m;
      const cd A(-std::exp(static_cast<double>(log_a[i])), a_imag ? static_cast<double>(a_imag[i]) : 0.0);
      const cd da = std::exp(dt * A);
      // (dA - 1)/A -> dt as A -> 0 (a zero mode is only reachable through a huge log_A_real)
      const cd db = std::abs(A) > 1e-300 ? (da - 1.0) / A : cd(dt, 0.0);
      C[i] = d.complex ? cd(c[2 * i], c[2 * i + 1]) : cd(c[i], 0.0);
      dA[i] = da;
      dB[i] = db;
      CdB[i] = C[i] * db;
    }
  }
  S4DModes m;
  m.dA = dA;
  m.dB = dB;
  m.CdB = CdB;
  m.C = C;
  m.factor = d.complex ? 2.0 : 1.0;
  return m;
}

void s4d_conv_kernel(const S4DDims& d, const S4DModes& m, float* k, int64_t ld) {
#pragma omp parallel
  {
    // Σ over modes in double; powers of dA by repeated multiplication (relative drift ~ l·1e-16).
    std::vector<std::complex<double>> p(static_cast<size_t>(d.M));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < d.H; ++h) {
      for (int64_t i = 0; i < d.M; ++i) p[static_cast<size_t>(i)] = m.CdB[h * d.M + i];
      const std::complex<double>* dA = m.dA + h * d.M;
      for (int64_t l = 0; l < d.L; ++l) {
        double s = 0.0;
        for (int64_t i = 0; i < d.M; ++i) {
          s += p[static_cast<size_t>(i)].real();
          p[static_cast<size_t>(i)] *= dA[i];
        }
        k[h * ld + l] = static_cast<float>(m.factor * s);
      }
    }
  }
}

const float* s4d_channel(const S4DDims& d, const float* u, int64_t b, int64_t h, float* tmp) {
  if (d.transposed) return u + (b * d.H + h) * d.L;
  const float* src = u + b * d.L * d.H + h;
  for (int64_t l = 0; l < d.L; ++l) tmp[l] = src[l * d.H];
  return tmp;
}

namespace {
inline float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }

// out (sequence b) from rows r[h·L + l], h < H.
void store_rows(const S4DDims& d, const float* r, float* out, int64_t b) {
  const int64_t H = d.H, L = d.L;
  float* o = out + b * H * L;
#pragma omp parallel for schedule(static) if (H * L > 65536)
  for (int64_t h = 0; h < H; ++h)
    for (int64_t l = 0; l < L; ++l) (d.transposed ? o[h * L + l] : o[l * H + h]) = r[h * L + l];
}

void glu_store(const S4DDims& d, const float* z, float* out, int64_t b) {
  const int64_t H = d.H, L = d.L;
  float* o = out + b * H * L;
#pragma omp parallel for schedule(static) if (H * L > 65536)
  for (int64_t h = 0; h < H; ++h)
    for (int64_t l = 0; l < L; ++l) {
      const float v = z[h * L + l] / (1.0f + std::exp(-z[(H + h) * L + l]));
      (d.transposed ? o[h * L + l] : o[l * H + h]) = v;
    }
}
}  // namespace

void s4d_finish_ref(const S4DDims& d, const float* W, const float* bias, float* y, float* z, float* out, int64_t b) {
  const int64_t H = d.H, L = d.L;
  if (!d.has_output) return store_rows(d, y, out, b);
  for (int64_t i = 0; i < H * L; ++i) y[i] = gelu(y[i]);
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < 2 * H; ++o)
    for (int64_t l = 0; l < L; ++l) {
      float acc = bias ? bias[o] : 0.0f;
      for (int64_t h = 0; h < H; ++h) acc += W[o * H + h] * y[h * L + l];
      z[o * L + l] = acc;
    }
  glu_store(d, z, out, b);
}

Status s4d_finish_fast(const ssm::SsmIsa& isa, const S4DDims& d, const float* W, const float* bias, float* y, float* z,
                       float* out, int64_t b) {
  const int64_t H = d.H, L = d.L;
  if (!d.has_output) {
    store_rows(d, y, out, b);
    return Status::Ok();
  }
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < H; ++h) isa.gelu(y + h * L, L);
  ATROUS_RETURN_IF_ERROR(sgemm(false, false, 2 * H, L, H, 1.0f, W, H, y, L, 0.0f, z, L));
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < 2 * H; ++o)
      for (int64_t l = 0; l < L; ++l) z[o * L + l] += bias[o];
  }
  glu_store(d, z, out, b);
  return Status::Ok();
}

}  // namespace atrous
