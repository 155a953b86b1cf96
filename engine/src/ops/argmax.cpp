// Argmax along one axis: the index (i64) of the largest element, the first one
// on ties (as PyTorch on CPU); a NaN counts as the largest. keepdims keeps the
// reduced axis with size 1.
#include <algorithm>
#include <cmath>

#include "ops/axis_split.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ctx.outputs_are(DType::kI64);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::ArgmaxT>();
  const Shape& x = ctx.in[0];
  int axis;
  if (!normalize_axis(a.axis, x.size(), &axis))
    return ctx.fail("axis " + std::to_string(a.axis) + " is out of range for input " + shape_string(x));
  Shape y = x;
  if (a.keepdims)
    y[static_cast<size_t>(axis)] = 1;
  else
    y.erase(y.begin() + axis);
  ctx.out = {y};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Works on [outer, D, inner] (axis_split.h), inner positions in blocks so the
// pass over D reads contiguous rows.
class ArgmaxRef : public Kernel {
 public:
  explicit ArgmaxRef(AxisSplit s) : s_(s) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    int64_t* dst = static_cast<int64_t*>(b.out[0]);  // [outer, inner]
    const int64_t D = s_.dim, inner = s_.inner, blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < s_.outer; ++o) {
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t i0 = blk * kInnerBlock, len = std::min(kInnerBlock, inner - i0);
        const float* x = src + o * D * inner + i0;
        int64_t* y = dst + o * inner + i0;
        float best[kInnerBlock];
        for (int64_t i = 0; i < len; ++i) {
          best[i] = x[i];
          y[i] = 0;
        }
        for (int64_t d = 1; d < D; ++d)
          for (int64_t i = 0; i < len; ++i) {  // branch-free so that it vectorises
            const float v = x[d * inner + i];
            const bool take = v > best[i] || (v != v && best[i] == best[i]);  // v != v: NaN
            best[i] = take ? v : best[i];
            y[i] = take ? d : y[i];
          }
      }
    }
    return Status::Ok();
  }

 private:
  AxisSplit s_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  int axis;
  normalize_axis(ctx.attrs<fb::ArgmaxT>().axis, ctx.in[0].shape.size(), &axis);
  return std::unique_ptr<Kernel>(new ArgmaxRef(split_at_axis(ctx.in[0].shape, axis)));
}

const KernelDef kArgmaxRef = {"argmax_ref", false, create_ref};

}  // namespace

const OpDef kArgmaxOp = {"Argmax", 1, 1, 1, 1, check, infer, {&kArgmaxRef}};

}  // namespace atrous
