// RMSNorm over the last axis, as mamba_ssm's RMSNorm (no mean, no bias):
//   s = x (+ residual);  y = s / sqrt(mean(s²) + eps) · weight
// inputs: x [..., D], weight [D] (optional), residual [..., D] (optional)
// outputs: y [..., D], s [..., D] (optional: the sum, i.e. the next residual of a
//          pre-norm residual stack — mamba_ssm's fused add + norm)
#include <cmath>

#include "ops/op_registry.h"

namespace atrous {
namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::RMSNormT>();
  if (!(a.eps >= 0.0f) || !std::isfinite(a.eps)) return ctx.fail("eps must be finite and >= 0, got " + std::to_string(a.eps));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(2, {DType::kF32}));
  if (ctx.has(1)) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(1));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
    if (ctx.value(1).shape.size() != 1) return ctx.fail("weight must be [D], got " + shape_string(ctx.value(1).shape));
  }
  if (ctx.node.outputs.size() > 1 && !ctx.has(2)) return ctx.fail("the sum output needs a residual input");
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const Shape& x = ctx.in[0];
  if (x.empty()) return ctx.fail("input must have rank >= 1");
  if (ctx.has(1) && ctx.in[1][0] != x.back())
    return ctx.fail("input " + shape_string(x) + " has " + std::to_string(x.back()) + " features, the weight " +
                    shape_string(ctx.in[1]) + " " + std::to_string(ctx.in[1][0]));
  if (ctx.has(2) && ctx.in[2] != x)
    return ctx.fail("residual " + shape_string(ctx.in[2]) + " must have the input's shape " + shape_string(x));
  ctx.out.assign(ctx.node.outputs.size(), x);
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class RMSNormRef : public Kernel {
 public:
  RMSNormRef(int64_t rows, int64_t d, float eps, const float* weight) : rows_(rows), d_(d), eps_(eps), weight_(weight) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);
    const float* r = b.in.size() > 2 ? static_cast<const float*>(b.in[2]) : nullptr;
    float* y = static_cast<float*>(b.out[0]);
    float* s = b.out.size() > 1 ? static_cast<float*>(b.out[1]) : nullptr;
    const int64_t D = d_;
#pragma omp parallel for schedule(static) if (rows_ * D > 16384)
    for (int64_t i = 0; i < rows_; ++i) {
      const float* xr = x + i * D;
      const float* rr = r ? r + i * D : nullptr;
      float* sr = s ? s + i * D : nullptr;
      float ss = 0.0f;
      // Pass 1 reads x (and the residual) only, so y may share x's buffer.
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < D; ++j) {
        const float v = rr ? xr[j] + rr[j] : xr[j];
        if (sr) sr[j] = v;
        ss += v * v;
      }
      const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps_);
      float* yr = y + i * D;
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) {
        const float v = (rr ? xr[j] + rr[j] : xr[j]) * rstd;
        yr[j] = weight_ ? v * weight_[j] : v;
      }
    }
    return Status::Ok();
  }
  double flops() const override { return 4.0 * static_cast<double>(rows_ * d_); }

 private:
  int64_t rows_, d_;
  float eps_;
  const float* weight_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  const Shape& x = ctx.in[0].shape;
  const int64_t d = x.back();
  const bool has_w = ctx.present.size() > 1 && ctx.present[1];
  return std::unique_ptr<Kernel>(new RMSNormRef(checked_numel(x).value() / d, d, ctx.attrs<fb::RMSNormT>().eps,
                                                has_w ? static_cast<const float*>(ctx.constant[1]) : nullptr));
}

const KernelDef kRMSNormRef = {"rms_norm_ref", false, create_ref};

}  // namespace

const OpDef kRMSNormOp = {"RMSNorm", 1, 3, 1, 2, check, infer, {&kRMSNormRef}, /*inplace_input=*/0};

}  // namespace atrous
