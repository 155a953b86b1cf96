// S4D: the diagonal state-space block of state-spaces/s4 (models/s4/s4d.py), with
// complex modes (C [H, N/2, 2], output 2·Re) or real ones (C [H, N]); math in
// s4d_common.h. inputs (S4DInput order): u [B, H, L] (or [B, L, H] when
// !transposed), log_dt [H], C, log_A_real [H, M], A_imag [H, M] (opt, complex only),
// D [H] (opt), out_weight [2H, H, 1] (opt), out_bias [2H] (opt),
// state [B, H, M, 2] or [B, H, M] (opt). outputs: y (u's shape), state_out (opt).
//
// Kernels: s4d_direct_* and s4d_fft_* (s4d_conv.cpp) run the convolution mode with the
// kernel K computed at plan time for the planned length; they take no state. The
// reference runs the recurrence (the "recurrent mode"), so it also serves streaming:
// a sequence fed in pieces with the state carried across equals the whole sequence.
#include <cmath>
#include <cstring>

#include "ops/s4d_common.h"

namespace atrous {

extern const KernelDef kS4DDirectAvx512, kS4DDirectAvx2, kS4DFftAvx512, kS4DFftAvx2;

namespace {

std::string label_of(const CheckContext& ctx, int i) {
  return "input " + std::to_string(i) + " " + ir::value_label(ctx.graph, ctx.node.inputs[static_cast<size_t>(i)]);
}

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kS4DU, {DType::kF32}));
  for (int i : {kS4DLogDt, kS4DC, kS4DLogAReal}) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  }
  for (int i : {kS4DAImag, kS4DD, kS4DOutWeight, kS4DOutBias})
    if (ctx.has(i)) {
      ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
      ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    }
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kS4DState, {DType::kF32}));
  const Shape& dt = ctx.value(kS4DLogDt).shape;
  if (dt.size() != 1 || dt[0] < 1) return ctx.fail(label_of(ctx, kS4DLogDt) + " (log_dt) must be [H], got " + shape_string(dt));
  const int64_t H = dt[0];
  const Shape& c = ctx.value(kS4DC).shape;
  const bool complex = c.size() == 3;
  if (!((complex && c[0] == H && c[1] >= 1 && c[2] == 2) || (c.size() == 2 && c[0] == H && c[1] >= 1)))
    return ctx.fail(label_of(ctx, kS4DC) + " (C) must be [" + std::to_string(H) + ", N/2, 2] (complex modes) or [" +
                    std::to_string(H) + ", N] (real modes), got " + shape_string(c));
  const Shape modes{H, c[1]};
  if (ctx.value(kS4DLogAReal).shape != modes)
    return ctx.fail(label_of(ctx, kS4DLogAReal) + " (log_A_real) must be " + shape_string(modes) + ", got " +
                    shape_string(ctx.value(kS4DLogAReal).shape));
  if (ctx.has(kS4DAImag)) {
    if (!complex) return ctx.fail(label_of(ctx, kS4DAImag) + " (A_imag) is given but C is real: real modes have no imaginary part");
    if (ctx.value(kS4DAImag).shape != modes)
      return ctx.fail(label_of(ctx, kS4DAImag) + " (A_imag) must be " + shape_string(modes) + ", got " +
                      shape_string(ctx.value(kS4DAImag).shape));
  }
  if (ctx.has(kS4DD) && ctx.value(kS4DD).shape != Shape{H})
    return ctx.fail(label_of(ctx, kS4DD) + " (D) must be [" + std::to_string(H) + "], got " + shape_string(ctx.value(kS4DD).shape));
  if (ctx.has(kS4DOutWeight)) {
    const Shape& w = ctx.value(kS4DOutWeight).shape;
    if (!((w.size() == 3 && w[2] == 1) || w.size() == 2) || w[0] != 2 * H || w[1] != H)
      return ctx.fail(label_of(ctx, kS4DOutWeight) + " (output_linear.0.weight) must be [" + std::to_string(2 * H) + ", " +
                      std::to_string(H) + ", 1], got " + shape_string(w));
  }
  if (ctx.has(kS4DOutBias)) {
    if (!ctx.has(kS4DOutWeight)) return ctx.fail("out_bias is given without out_weight");
    if (ctx.value(kS4DOutBias).shape != Shape{2 * H})
      return ctx.fail(label_of(ctx, kS4DOutBias) + " (output_linear.0.bias) must be [" + std::to_string(2 * H) + "], got " +
                      shape_string(ctx.value(kS4DOutBias).shape));
  }
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const bool transposed = ctx.attrs<fb::S4DT>().transposed;
  const int64_t H = ctx.in[kS4DLogDt][0];
  const Shape& c = ctx.in[kS4DC];
  const Shape& u = ctx.in[kS4DU];
  if (u.size() != 3 || u[transposed ? 1 : 2] != H)
    return ctx.fail("input u must be " + std::string(transposed ? "[B, H, L]" : "[B, L, H]") + " with H = " + std::to_string(H) +
                    ", got " + shape_string(u));
  Shape state{u[0], H, c[1]};
  if (c.size() == 3) state.push_back(2);
  if (ctx.has(kS4DState) && ctx.in[kS4DState] != state)
    return ctx.fail("input state has shape " + shape_string(ctx.in[kS4DState]) + ", expected " + shape_string(state) +
                    (c.size() == 3 ? " ([B, H, N/2, 2]: complex modes as (re, im))" : " ([B, H, N])"));
  ctx.out = {u, state};
  ctx.out.resize(ctx.node.outputs.size());
  return Status::Ok();
}

// ---- reference kernel: the recurrence ----------------------------------------
class S4DRecurrent : public Kernel {
 public:
  S4DRecurrent(const S4DDims& d, const S4DModes& m, const float* D, const float* W, const float* bias)
      : d_(d), m_(m), D_(D), W_(W), bias_(bias) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    using cd = std::complex<double>;
    const int64_t H = d_.H, L = d_.L, M = d_.M;
    const float* u = static_cast<const float*>(b.in[kS4DU]);
    const float* st = b.in.size() > kS4DState ? static_cast<const float*>(b.in[kS4DState]) : nullptr;
    float* st_out = b.out.size() > 1 ? static_cast<float*>(b.out[1]) : nullptr;
    float* y = static_cast<float*>(b.scratch[static_cast<size_t>(y_)]);
    float* z = z_ >= 0 ? static_cast<float*>(b.scratch[static_cast<size_t>(z_)]) : nullptr;
    float* tmp = tmp_ >= 0 ? static_cast<float*>(b.scratch[static_cast<size_t>(tmp_)]) : nullptr;
    cd* state = static_cast<cd*>(b.scratch[static_cast<size_t>(state_)]);  // one channel's modes
    const int64_t per_mode = d_.complex ? 2 : 1;
    for (int64_t n = 0; n < d_.batch; ++n) {
      for (int64_t h = 0; h < H; ++h) {
        const float* uh = s4d_channel(d_, u, n, h, tmp);
        const int64_t base = (n * H + h) * M * per_mode;  // this channel's state
        for (int64_t l = 0; l < L; ++l) {
          double acc = 0.0;
          for (int64_t m = 0; m < M; ++m) {
            const int64_t i = h * M + m;
            cd& x = state[m];
            if (l == 0) x = st ? cd(st[base + m * per_mode], d_.complex ? st[base + m * per_mode + 1] : 0.0f) : cd(0.0, 0.0);
            x = m_.dA[i] * x + m_.dB[i] * static_cast<double>(uh[l]);
            acc += (m_.C[i] * x).real();
          }
          y[h * L + l] = static_cast<float>(m_.factor * acc + (D_ ? static_cast<double>(D_[h]) * uh[l] : 0.0));
        }
        if (st_out)
          for (int64_t m = 0; m < M; ++m) {
            st_out[base + m * per_mode] = static_cast<float>(state[m].real());
            if (d_.complex) st_out[base + m * per_mode + 1] = static_cast<float>(state[m].imag());
          }
      }
      s4d_finish_ref(d_, W_, bias_, y, z, static_cast<float*>(b.out[0]), n);
    }
    return Status::Ok();
  }
  double flops() const override { return 8.0 * static_cast<double>(d_.batch * d_.H * d_.L * d_.M); }
  std::string detail() const override { return "recurrence"; }

  int y_ = -1, z_ = -1, tmp_ = -1, state_ = -1;

 private:
  S4DDims d_;
  S4DModes m_;
  const float *D_, *W_, *bias_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  const S4DDims d = s4d_dims(ctx);
  ATROUS_ASSIGN_OR_RETURN(S4DModes m, s4d_modes(ctx, d));
  auto in = [&](int i) -> const float* {
    return ctx.present.size() > static_cast<size_t>(i) && ctx.present[static_cast<size_t>(i)]
               ? static_cast<const float*>(ctx.constant[static_cast<size_t>(i)]) : nullptr;
  };
  auto k = std::make_unique<S4DRecurrent>(d, m, in(kS4DD), in(kS4DOutWeight), in(kS4DOutBias));
  k->state_ = ctx.scratch(static_cast<uint64_t>(d.M) * sizeof(std::complex<double>));
  k->y_ = ctx.scratch(static_cast<uint64_t>(d.H * d.L) * sizeof(float));
  if (d.has_output) k->z_ = ctx.scratch(static_cast<uint64_t>(2 * d.H * d.L) * sizeof(float));
  if (!d.transposed) k->tmp_ = ctx.scratch(static_cast<uint64_t>(d.L) * sizeof(float));
  return std::unique_ptr<Kernel>(std::move(k));
}

const KernelDef kS4DRef = {"s4d_ref", false, create_ref};

}  // namespace

const OpDef kS4DOp = {"S4D", 4, 9, 1, 2, check, infer, {&kS4DDirectAvx512, &kS4DDirectAvx2, &kS4DFftAvx512, &kS4DFftAvx2, &kS4DRef}};

}  // namespace atrous
