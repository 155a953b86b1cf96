// BatchNorm (inference): y = (x − mean[c]) / sqrt(var[c] + eps) · weight[c] + bias[c]
// over axis 1 of a tensor of any rank >= 2.
//
// After a convolution the planner folds it into the conv's weights
// (plan/fusion.cpp); this op runs when there is nothing to fold into. The four
// per-channel inputs are usually constants but may be computed.
#include <cmath>

#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kBatchNormOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::BatchNormT>();
  if (!(a.eps >= 0.0f) || !std::isfinite(a.eps)) return ctx.fail("eps must be finite and >= 0");
  for (int i = 0; i < 5; ++i) ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const Shape& x = ctx.in[0];
  if (x.size() < 2) return ctx.fail("input must have rank >= 2 (channels on axis 1), got " + shape_string(x));
  const char* names[] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 1; i < 5; ++i)
    if (ctx.in[static_cast<size_t>(i)] != Shape{x[1]})
      return ctx.fail(std::string(names[i - 1]) + " must be [" + std::to_string(x[1]) + "], got " +
                      shape_string(ctx.in[static_cast<size_t>(i)]));
  ctx.out = {x};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class BatchNormRef : public Kernel {
 public:
  BatchNormRef(float eps, const Shape& x) : eps_(eps), N_(x[0]), C_(x[1]), inner_(1) {
    for (size_t i = 2; i < x.size(); ++i) inner_ *= x[i];
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);    // [N, C, ...]
    const float* gamma = static_cast<const float*>(b.in[1]);  // [C]
    const float* beta = static_cast<const float*>(b.in[2]);   // [C]
    const float* mean = static_cast<const float*>(b.in[3]);   // [C]
    const float* var = static_cast<const float*>(b.in[4]);    // [C]
    float* dst = static_cast<float*>(b.out[0]);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N_; ++n) {
      for (int64_t c = 0; c < C_; ++c) {
        const float scale = gamma[c] / std::sqrt(var[c] + eps_);
        const float shift = beta[c] - mean[c] * scale;
        const int64_t base = (n * C_ + c) * inner_;
        for (int64_t i = 0; i < inner_; ++i) dst[base + i] = src[base + i] * scale + shift;
      }
    }
    return Status::Ok();
  }

 private:
  float eps_;
  int64_t N_, C_, inner_;  // x [N, C, ...], inner = product of the dims after C
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new BatchNormRef(ctx.attrs<fb::BatchNormT>().eps, ctx.in[0].shape));
}

const KernelDef kBatchNormRef = {"batch_norm_ref", false, create_ref};

}  // namespace

// clang-format off
const OpDef kBatchNormOp = {"BatchNorm", 5, 5, 1, 1, check, infer, {&kBatchNormOnednn, &kBatchNormRef}, /*inplace_input=*/0};
// clang-format on

}  // namespace atrous
