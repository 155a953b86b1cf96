#include "ops/mamba_path.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "onednn/gemm.h"

namespace atrous {

namespace {
std::string input_label(const CheckContext& ctx, int i) {
  return "input " + std::to_string(i) + " " + ir::value_label(ctx.graph, ctx.node.inputs[static_cast<size_t>(i)]);
}
}  // namespace

// ---- checks and shapes ----------------------------------------------------------------
Status check_mamba_weights(CheckContext& ctx, int first, MambaDims* d) {
  const int cw = first, cb = first + 1, xp = first + 2, dp = first + 3, db = first + 4, al = first + 5, dd = first + 6;
  for (int i : {cw, xp, dp, al}) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  }
  for (int i : {cb, db, dd})
    if (ctx.has(i)) {
      ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
      ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    }
  const Shape& w = ctx.value(cw).shape;
  if (!((w.size() == 3 && w[1] == 1) || w.size() == 2) || w[0] < 1 || w.back() < 1)
    return ctx.fail(input_label(ctx, cw) + " (conv weight) must be [Di, 1, K], got " + shape_string(w));
  d->Di = w[0];
  d->K = w.back();
  d->Cp = (d->Di + 15) / 16 * 16;
  const Shape& a = ctx.value(al).shape;
  if (a.size() != 2 || a[0] != d->Di || a[1] < 1)
    return ctx.fail(input_label(ctx, al) + " (A_log) must be [" + std::to_string(d->Di) + ", N], got " + shape_string(a));
  d->N = a[1];
  const Shape& dt = ctx.value(dp).shape;
  if (dt.size() != 2 || dt[0] != d->Di || dt[1] < 1)
    return ctx.fail(input_label(ctx, dp) + " (dt_proj weight) must be [" + std::to_string(d->Di) + ", R], got " + shape_string(dt));
  d->R = dt[1];
  const Shape& x = ctx.value(xp).shape;
  const Shape want_x{d->R + 2 * d->N, d->Di};
  if (x != want_x)
    return ctx.fail(input_label(ctx, xp) + " (x_proj weight) must be " + shape_string(want_x) + " (dt_rank " +
                    std::to_string(d->R) + " + 2 x d_state " + std::to_string(d->N) + ", d_inner), got " + shape_string(x));
  for (int i : {cb, db, dd})
    if (ctx.has(i) && ctx.value(i).shape != Shape{d->Di})
      return ctx.fail(input_label(ctx, i) + " must be [" + std::to_string(d->Di) + "], got " + shape_string(ctx.value(i).shape));
  return Status::Ok();
}

Status infer_mamba_input(ShapeContext& ctx, int first, MambaDims* d) {
  const Shape& w = ctx.in[static_cast<size_t>(first)];
  d->Di = w[0];
  d->K = w.back();
  d->N = ctx.in[static_cast<size_t>(first + 5)][1];
  d->R = ctx.in[static_cast<size_t>(first + 3)][1];
  d->Cp = (d->Di + 15) / 16 * 16;
  const Shape& xz = ctx.in[0];
  if (xz.size() != 3 && xz.size() != 4)
    return ctx.fail("input xz must be [B, L, 2*Di] or [B, H, W, 2*Di], got " + shape_string(xz));
  if (xz.back() != 2 * d->Di)
    return ctx.fail("input xz " + shape_string(xz) + " must have 2 x d_inner = " + std::to_string(2 * d->Di) +
                    " channels (x then z)");
  d->batch = xz[0];
  d->L = 1;
  for (size_t i = 1; i + 1 < xz.size(); ++i) d->L *= xz[i];
  return Status::Ok();
}

MambaDims mamba_dims(const KernelContext& ctx, int first) {
  MambaDims d;
  const Shape& w = ctx.in[static_cast<size_t>(first)].shape;
  d.Di = w[0];
  d.K = w.back();
  d.N = ctx.in[static_cast<size_t>(first + 5)].shape[1];
  d.R = ctx.in[static_cast<size_t>(first + 3)].shape[1];
  d.Cp = (d.Di + 15) / 16 * 16;
  const Shape& xz = ctx.in[0].shape;
  d.batch = xz[0];
  d.L = 1;
  for (size_t i = 1; i + 1 < xz.size(); ++i) d.L *= xz[i];
  return d;
}

Result<MambaWeights> prepare_mamba_weights(KernelContext& ctx, int first, const MambaDims& d) {
  auto in = [&](int i) -> const float* {
    return ctx.present[static_cast<size_t>(i)] ? static_cast<const float*>(ctx.constant[static_cast<size_t>(i)]) : nullptr;
  };
  MambaWeights w;
  w.conv_w = in(first);
  w.conv_b = in(first + 1);
  w.x_proj = in(first + 2);
  w.dt_proj = in(first + 3);
  w.dt_bias = in(first + 4);
  w.D = in(first + 6);
  const float* a_log = in(first + 5);
  auto* conv_wt = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(d.K * d.Di) * sizeof(float)));
  auto* A = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(d.Di * d.N) * sizeof(float)));
  auto* A2_t = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(d.N * d.Cp) * sizeof(float)));
  if (!conv_wt || !A || !A2_t) return out_of_memory(ctx.label() + ": no memory for the prepared scan weights");
  for (int64_t c = 0; c < d.Di; ++c)
    for (int64_t k = 0; k < d.K; ++k) conv_wt[k * d.Di + c] = w.conv_w[c * d.K + k];
  for (int64_t c = 0; c < d.Di; ++c)
    for (int64_t n = 0; n < d.N; ++n) {
      const float a = -std::exp(a_log[c * d.N + n]);
      A[c * d.N + n] = a;
      A2_t[n * d.Cp + c] = a * 1.44269504088896341f;  // log2(e); padding lanes stay 0 (zeroed memory)
    }
  w.conv_wt = conv_wt;
  w.A = A;
  w.A2_t = A2_t;
  return w;
}

// ---- vectorised, chunked path ------------------------------------------------------------
// One parallel region per sequence. Each thread owns a slice of the channels for the whole
// sequence (a multiple of the scan's interleave unit) and, per chunk of time steps:
//   1. conv + SiLU of its channels -> u[:, own]
//   2. its partial x_proj product u[:, own] · x_proj[:, own]ᵀ -> part[chunk parity][thread]
//   -- barrier --
//   3. sums every thread's partial into its private x_dbl = [dt | B | C] rows of the chunk
//   4. delta[:, own] = dt · dt_proj[own]ᵀ, then the scan of its channels (state slice stays in
//      its cache), gate, output.
// The partials are double-buffered by chunk parity, so one barrier per chunk suffices: a
// thread writes the buffer of chunk k + 2 only after the barrier of chunk k + 1, which every
// thread reaches only after reading chunk k's buffer. GEMMs inside the region run on the
// calling thread (onednn/gemm.h).
void MambaPathScratch::request(KernelContext& ctx, const MambaDims& d) {
  const uint64_t f = sizeof(float);
  const int64_t rows = std::min(d.L, kMambaChunk), NX = d.R + 2 * d.N;
  threads = std::max(1, ctx.threads);
  u = ctx.scratch(static_cast<uint64_t>(rows * d.Di) * f);
  delta = ctx.scratch(static_cast<uint64_t>(rows * d.Di) * f);
  part = ctx.scratch(static_cast<uint64_t>(2 * threads * rows * NX) * f);
  xdbl = ctx.scratch(static_cast<uint64_t>(threads * rows * NX) * f);
  h = ctx.scratch(static_cast<uint64_t>(d.N * d.Cp) * f);
  conv_state_t = ctx.scratch(static_cast<uint64_t>(d.K * d.Di) * f);
}

namespace {
void write_conv_state(const MambaDims& d, const MambaPathIO& io) {
  const int64_t Di = d.Di, K = d.K;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t p = d.L - K + j;
    for (int64_t c = 0; c < Di; ++c)
      io.conv_state_out[c * K + j] =
          p >= 0 ? io.xz[p * 2 * Di + c] : (io.conv_state ? io.conv_state[c * K + K + p] : 0.0f);
  }
}
}  // namespace

Status run_mamba_path(const ssm::SsmIsa& isa, const MambaDims& d, const MambaWeights& w, const MambaPathIO& io,
                      const RunBuffers& bufs, const MambaPathScratch& s) {
  const int64_t Di = d.Di, N = d.N, R = d.R, K = d.K, L = d.L, Cp = d.Cp, NX = R + 2 * N;
  const int64_t rows = std::min(L, kMambaChunk);
  auto scratch = [&](int i) { return static_cast<float*>(bufs.scratch[static_cast<size_t>(i)]); };
  float *ub = scratch(s.u), *db = scratch(s.delta), *part = scratch(s.part), *xdbl = scratch(s.xdbl);
  float *h = scratch(s.h), *cst = scratch(s.conv_state_t);

  std::memset(h, 0, static_cast<size_t>(N * Cp) * sizeof(float));
  if (io.ssm_state)
    for (int64_t c = 0; c < Di; ++c)
      for (int64_t n = 0; n < N; ++n) h[n * Cp + c] = io.ssm_state[c * N + n];
  if (io.conv_state)
    for (int64_t c = 0; c < Di; ++c)
      for (int64_t k = 0; k < K; ++k) cst[k * Di + c] = io.conv_state[c * K + k];

  const int64_t units = (Di + isa.scan_unit - 1) / isa.scan_unit;
  const int64_t chunks = (L + kMambaChunk - 1) / kMambaChunk;
  // Too little work to split (a streamed step is one token): one thread. Two threads
  // would meet at a barrier per chunk, and on a loaded machine a descheduled partner
  // costs a scheduler tick (measured: 1.6-3 ms per layer per token instead of ~0.1 ms).
  const int64_t work = L * Di * (N + NX);
  const int64_t team = work < kMambaSerialWork ? 1 : std::min<int64_t>(s.threads, units);
  Status first_error;  // a GEMM failure in any thread (oneDNN errors are not expected)
#pragma omp parallel num_threads(static_cast<int>(team))
  {
    // A team of one is not an active parallel region, so oneDNN would start its own
    // threads inside; keep its GEMMs on this thread (the setting ends with the region).
    if (team == 1) omp_set_num_threads(1);
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t c0 = std::min(Di, units * tid / nth * isa.scan_unit);
    const int64_t c1 = std::min(Di, units * (tid + 1) / nth * isa.scan_unit);
    const int64_t nc = c1 - c0;
    float* my_xdbl = xdbl + tid * rows * NX;
    Status st;

    ssm::ConvArgs ca;
    ca.L = L;
    ca.C = nc;
    ca.K = K;
    ca.ld_w = Di;
    ca.x = io.xz + c0;
    ca.ld_x = 2 * Di;
    ca.w_t = w.conv_wt + c0;
    ca.bias = w.conv_b ? w.conv_b + c0 : nullptr;
    ca.state_t = io.conv_state ? cst + c0 : nullptr;
    ca.reverse = io.reverse;
    ca.u = ub + c0;
    ca.ld_u = Di;

    for (int64_t ci = 0; ci < chunks; ++ci) {
      const int64_t t0 = io.reverse ? std::max<int64_t>(0, L - (ci + 1) * kMambaChunk) : ci * kMambaChunk;
      const int64_t t1 = io.reverse ? L - ci * kMambaChunk : std::min(L, t0 + kMambaChunk);
      const int64_t T = t1 - t0;
      float* my_part = part + ((ci % 2) * nth + tid) * rows * NX;
      if (nc > 0) {
        isa.conv_silu(ca, t0, t1);
        if (st.ok()) st = sgemm(false, true, T, NX, nc, 1.0f, ub + c0, Di, w.x_proj + c0, Di, 0.0f, my_part, NX);
      } else {
        std::memset(my_part, 0, static_cast<size_t>(T * NX) * sizeof(float));
      }
#pragma omp barrier
      const float* first_part = part + (ci % 2) * nth * rows * NX;
      for (int64_t i = 0; i < T * NX; ++i) {
        float acc = 0.0f;
        for (int t = 0; t < nth; ++t) acc += first_part[t * rows * NX + i];
        my_xdbl[i] = acc;
      }
      if (nc == 0) continue;
      if (st.ok()) st = sgemm(false, true, T, nc, R, 1.0f, my_xdbl, NX, w.dt_proj + c0 * R, R, 0.0f, db + c0, Di);

      ssm::ScanArgs sa;
      sa.T = T;
      sa.C = Di;
      sa.Cp = Cp;
      sa.N = N;
      sa.dt_bias = w.dt_bias;
      sa.D = w.D;
      sa.A2_t = w.A2_t;
      sa.h = h;
      sa.out_scale = io.out_scale;
      sa.accumulate = io.accumulate;
      // Step k of the scan reads row first + k·dir of every operand.
      const int64_t first = io.reverse ? T - 1 : 0, dir = io.reverse ? -1 : 1;
      sa.delta = db + first * Di;
      sa.ld_delta = dir * Di;
      sa.u = ub + first * Di;
      sa.ld_u = dir * Di;
      sa.B = my_xdbl + first * NX + R;
      sa.Cm = my_xdbl + first * NX + R + N;
      sa.ld_bc = dir * NX;
      sa.z = io.xz + (t0 + first) * 2 * Di + Di;
      sa.ld_z = dir * 2 * Di;
      sa.y = io.y + (t0 + first) * Di;
      sa.ld_y = dir * Di;
      isa.scan(sa, c0, c1);
    }
    if (!st.ok()) {
#pragma omp critical(atrous_mamba_path_error)
      if (first_error.ok()) first_error = st;
    }
  }
  ATROUS_RETURN_IF_ERROR(first_error);

  if (io.ssm_state_out)
    for (int64_t c = 0; c < Di; ++c)
      for (int64_t n = 0; n < N; ++n) io.ssm_state_out[c * N + n] = h[n * Cp + c];
  if (io.conv_state_out) write_conv_state(d, io);
  return Status::Ok();
}

// ---- reference -------------------------------------------------------------------------
int64_t mamba_path_ref_work(const MambaDims& d) { return d.Di + (d.R + 2 * d.N) + d.Di * d.N; }

void run_mamba_path_ref(const MambaDims& d, const MambaWeights& w, const MambaPathIO& io, float* work) {
  const int64_t Di = d.Di, N = d.N, R = d.R, K = d.K, L = d.L, NX = R + 2 * N;
  float* u = work;          // [Di]
  float* xdbl = u + Di;     // [R + 2N]
  float* h = xdbl + NX;     // [Di, N], mamba_ssm's layout
  for (int64_t i = 0; i < Di * N; ++i) h[i] = io.ssm_state ? io.ssm_state[i] : 0.0f;
  for (int64_t s = 0; s < L; ++s) {
    const int64_t t = io.reverse ? L - 1 - s : s;
    for (int64_t c = 0; c < Di; ++c) {
      float acc = w.conv_b ? w.conv_b[c] : 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t p = io.reverse ? t + (K - 1 - k) : t - (K - 1) + k;
        float x = 0.0f;
        if (p >= 0 && p < L) x = io.xz[p * 2 * Di + c];
        else if (p < 0 && io.conv_state) x = io.conv_state[c * K + K + p];
        acc += w.conv_w[c * K + k] * x;
      }
      u[c] = acc / (1.0f + std::exp(-acc));
    }
    for (int64_t j = 0; j < NX; ++j) {
      float acc = 0.0f;
      for (int64_t c = 0; c < Di; ++c) acc += w.x_proj[j * Di + c] * u[c];
      xdbl[j] = acc;
    }
    const float* Bt = xdbl + R;
    const float* Ct = xdbl + R + N;
    for (int64_t c = 0; c < Di; ++c) {
      float dt = w.dt_bias ? w.dt_bias[c] : 0.0f;
      for (int64_t r = 0; r < R; ++r) dt += w.dt_proj[c * R + r] * xdbl[r];
      dt = dt > 20.0f ? dt : std::log1p(std::exp(dt));
      float y = 0.0f;
      for (int64_t n = 0; n < N; ++n) {
        float& hn = h[c * N + n];
        hn = std::exp(dt * w.A[c * N + n]) * hn + dt * Bt[n] * u[c];
        y += hn * Ct[n];
      }
      if (w.D) y += w.D[c] * u[c];
      const float z = io.xz[t * 2 * Di + Di + c];
      y *= z / (1.0f + std::exp(-z));
      y *= io.out_scale;
      float& dst = io.y[t * Di + c];
      dst = io.accumulate ? dst + y : y;
    }
  }
  if (io.ssm_state_out) std::memcpy(io.ssm_state_out, h, static_cast<size_t>(Di * N) * sizeof(float));
  if (io.conv_state_out) write_conv_state(d, io);
}

}  // namespace atrous
