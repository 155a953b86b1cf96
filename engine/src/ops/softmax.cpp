// Softmax along one axis: y = exp(x − max) / Σ exp(x − max), the max taken
// along the axis for numerical stability.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/axis_split.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kSoftmaxOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::SoftmaxT>();
  int axis;
  if (!normalize_axis(a.axis, ctx.in[0].size(), &axis))
    return ctx.fail("axis " + std::to_string(a.axis) + " is out of range for input " + shape_string(ctx.in[0]));
  ctx.out = {ctx.in[0]};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Works on [outer, D, inner] (axis_split.h), inner positions in blocks so the
// passes over D read contiguous rows.
class SoftmaxRef : public Kernel {
 public:
  explicit SoftmaxRef(AxisSplit s) : s_(s) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    float* dst = static_cast<float*>(b.out[0]);
    const int64_t D = s_.dim, inner = s_.inner, blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < s_.outer; ++o) {
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t i0 = blk * kInnerBlock, len = std::min(kInnerBlock, inner - i0);
        const float* x = src + o * D * inner + i0;
        float* y = dst + o * D * inner + i0;
        float mx[kInnerBlock], sum[kInnerBlock] = {};
        for (int64_t i = 0; i < len; ++i) mx[i] = -std::numeric_limits<float>::infinity();
        for (int64_t d = 0; d < D; ++d)
          for (int64_t i = 0; i < len; ++i) mx[i] = std::max(mx[i], x[d * inner + i]);
        for (int64_t d = 0; d < D; ++d)
          for (int64_t i = 0; i < len; ++i) {
            float e = std::exp(x[d * inner + i] - mx[i]);
            y[d * inner + i] = e;
            sum[i] += e;
          }
        for (int64_t i = 0; i < len; ++i) sum[i] = 1.0f / sum[i];
        for (int64_t d = 0; d < D; ++d)
          for (int64_t i = 0; i < len; ++i) y[d * inner + i] *= sum[i];
      }
    }
    return Status::Ok();
  }

 private:
  AxisSplit s_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  int axis;
  normalize_axis(ctx.attrs<fb::SoftmaxT>().axis, ctx.in[0].shape.size(), &axis);
  return std::unique_ptr<Kernel>(new SoftmaxRef(split_at_axis(ctx.in[0].shape, axis)));
}

const KernelDef kSoftmaxRef = {"softmax_ref", false, create_ref};

}  // namespace

const OpDef kSoftmaxOp = {"Softmax", 1, 1, 1, 1, check, infer, {&kSoftmaxOnednn, &kSoftmaxRef}, /*inplace_input=*/0};

}  // namespace atrous
