// GlobalPool: average or max over the whole spatial extent,
// [N, C, H, W] -> [N, C, 1, 1].
#include <cmath>
#include <limits>

#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kGlobalPoolOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::GlobalPoolT>();
  if (a.kind < fb::PoolKind::MIN || a.kind > fb::PoolKind::MAX) return ctx.fail("unknown pool kind");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(0, 4));
  ctx.out = {{ctx.in[0][0], ctx.in[0][1], 1, 1}};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class GlobalPoolRef : public Kernel {
 public:
  GlobalPoolRef(fb::PoolKind kind, const Shape& x) : kind_(kind), NC_(x[0] * x[1]), HW_(x[2] * x[3]) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);  // [N, C, H, W]
    float* dst = static_cast<float*>(b.out[0]);             // [N, C, 1, 1]
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC_; ++nc) {
      const float* p = src + nc * HW_;
      if (kind_ == fb::PoolKind::Max) {
        float r = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < HW_; ++i)
          if (p[i] > r || std::isnan(p[i])) r = p[i];  // NaN propagates, as in PyTorch
        dst[nc] = r;
      } else {
        double sum = 0.0;
        for (int64_t i = 0; i < HW_; ++i) sum += p[i];
        dst[nc] = static_cast<float>(sum / static_cast<double>(HW_));
      }
    }
    return Status::Ok();
  }

 private:
  fb::PoolKind kind_;
  int64_t NC_, HW_;  // planes and elements per plane of x [N, C, H, W]
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new GlobalPoolRef(ctx.attrs<fb::GlobalPoolT>().kind, ctx.in[0].shape));
}

const KernelDef kGlobalPoolRef = {"global_pool_ref", false, create_ref};

}  // namespace

const OpDef kGlobalPoolOp = {"GlobalPool", 1, 1, 1, 1, check, infer, {&kGlobalPoolOnednn, &kGlobalPoolRef}};

}  // namespace atrous
