// LayerNorm over one axis: y = (x − mean) / sqrt(var + eps) · weight + bias,
// mean and biased variance (as PyTorch) taken along `axis` only. axis −1 is
// nn.LayerNorm over the last dim; axis 1 on NCHW is SAM's LayerNorm2d
// (normalise each pixel over its channels). weight and bias [D] are optional.
#include <algorithm>
#include <cmath>

#include "ops/axis_split.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kLayerNormOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::LayerNormT>();
  if (!(a.eps >= 0.0f) || !std::isfinite(a.eps)) return ctx.fail("eps must be finite and >= 0");
  for (int i = 0; i < 3; ++i) ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::LayerNormT>();
  const Shape& x = ctx.in[0];
  int axis;
  if (!normalize_axis(a.axis, x.size(), &axis))
    return ctx.fail("axis " + std::to_string(a.axis) + " is out of range for input " + shape_string(x));
  for (int i = 1; i < 3; ++i)
    if (ctx.has(i) && ctx.in[static_cast<size_t>(i)] != Shape{x[static_cast<size_t>(axis)]})
      return ctx.fail(std::string(i == 1 ? "weight" : "bias") + " must be [" +
                      std::to_string(x[static_cast<size_t>(axis)]) + "], got " +
                      shape_string(ctx.in[static_cast<size_t>(i)]));
  ctx.out = {x};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Works on [outer, D, inner] (axis_split.h); inner positions are taken in
// blocks so that the two passes over D read contiguous rows.
class LayerNormRef : public Kernel {
 public:
  LayerNormRef(float eps, AxisSplit s) : eps_(eps), s_(s) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    const float* gamma = b.in.size() > 1 ? static_cast<const float*>(b.in[1]) : nullptr;  // [D]
    const float* beta = b.in.size() > 2 ? static_cast<const float*>(b.in[2]) : nullptr;   // [D]
    float* dst = static_cast<float*>(b.out[0]);
    const int64_t D = s_.dim, inner = s_.inner, blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < s_.outer; ++o) {
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t i0 = blk * kInnerBlock, len = std::min(kInnerBlock, inner - i0);
        const float* x = src + o * D * inner + i0;
        float* y = dst + o * D * inner + i0;
        float mean[kInnerBlock] = {}, var[kInnerBlock] = {};
        for (int64_t d = 0; d < D; ++d)
          for (int64_t i = 0; i < len; ++i) mean[i] += x[d * inner + i];
        for (int64_t i = 0; i < len; ++i) mean[i] /= static_cast<float>(D);
        for (int64_t d = 0; d < D; ++d)
          for (int64_t i = 0; i < len; ++i) {
            float c = x[d * inner + i] - mean[i];
            var[i] += c * c;
          }
        for (int64_t i = 0; i < len; ++i)
          var[i] = 1.0f / std::sqrt(var[i] / static_cast<float>(D) + eps_);  // now 1/std
        for (int64_t d = 0; d < D; ++d) {
          const float g = gamma ? gamma[d] : 1.0f, sh = beta ? beta[d] : 0.0f;
          for (int64_t i = 0; i < len; ++i) y[d * inner + i] = (x[d * inner + i] - mean[i]) * var[i] * g + sh;
        }
      }
    }
    return Status::Ok();
  }

 private:
  float eps_;
  AxisSplit s_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  int axis;
  normalize_axis(ctx.attrs<fb::LayerNormT>().axis, ctx.in[0].shape.size(), &axis);
  return std::unique_ptr<Kernel>(
      new LayerNormRef(ctx.attrs<fb::LayerNormT>().eps, split_at_axis(ctx.in[0].shape, axis)));
}

const KernelDef kLayerNormRef = {"layer_norm_ref", false, create_ref};

}  // namespace

// clang-format off
const OpDef kLayerNormOp = {"LayerNorm", 1, 3, 1, 1, check, infer, {&kLayerNormOnednn, &kLayerNormRef}, /*inplace_input=*/0};
// clang-format on

}  // namespace atrous
