// Linear: y = act(x · weightᵀ + bias), PyTorch nn.Linear semantics.
// x [..., K], weight [N, K], bias [N] (optional) -> y [..., N]; the leading dims
// of x are flattened to M rows.
#include "ops/activation.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kLinearOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::LinearT>();
  if (!valid_activation(a.activation)) return ctx.fail("unknown activation");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_constant(1));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
  const Shape& w = ctx.value(1).shape;
  if (w.size() != 2 || w[0] < 1 || w[1] < 1)
    return ctx.fail("weight must be [N, K] with N, K >= 1, got " + shape_string(w));
  if (ctx.has(2)) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(2));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(2, {DType::kF32}));
    if (ctx.value(2).shape != Shape{w[0]})
      return ctx.fail("bias must be [" + std::to_string(w[0]) + "], got " + shape_string(ctx.value(2).shape));
  }
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const Shape& x = ctx.in[0];
  const Shape& w = ctx.in[1];
  if (x.empty()) return ctx.fail("input must have rank >= 1");
  if (x.back() != w[1])
    return ctx.fail("input " + shape_string(x) + " has " + std::to_string(x.back()) + " features, the weight " +
                    shape_string(w) + " expects " + std::to_string(w[1]));
  Shape y = x;
  y.back() = w[0];
  ctx.out = {y};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class LinearRef : public Kernel {
 public:
  LinearRef(const fb::LinearT& a, int64_t m, int64_t n, int64_t k, const float* weight, const float* bias)
      : a_(a), M_(m), N_(n), K_(k), weight_(weight), bias_(bias) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);  // [M, K]
    float* dst = static_cast<float*>(b.out[0]);             // [M, N]
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t m = 0; m < M_; ++m) {
      for (int64_t n = 0; n < N_; ++n) {
        const float* xr = src + m * K_;
        const float* wr = weight_ + n * K_;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K_; ++k) acc += xr[k] * wr[k];
        if (bias_) acc += bias_[n];
        dst[m * N_ + n] = activate(acc, a_.activation, a_.act_alpha);
      }
    }
    return Status::Ok();
  }
  double flops() const override { return 2.0 * M_ * N_ * K_; }

 private:
  fb::LinearT a_;
  int64_t M_, N_, K_;
  const float* weight_;  // [N, K]
  const float* bias_;    // [N] or null
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  const Shape& w = ctx.in[1].shape;
  int64_t m = checked_numel(ctx.in[0].shape).value() / w[1];
  return std::unique_ptr<Kernel>(
      new LinearRef(ctx.attrs<fb::LinearT>(), m, w[0], w[1], static_cast<const float*>(ctx.constant[1]),
                    ctx.present.size() > 2 && ctx.present[2] ? static_cast<const float*>(ctx.constant[2]) : nullptr));
}

const KernelDef kLinearRef = {"linear_ref", false, create_ref};

}  // namespace

const OpDef kLinearOp = {"Linear", 2, 3, 1, 1, check, infer, {&kLinearOnednn, &kLinearRef}};

}  // namespace atrous
