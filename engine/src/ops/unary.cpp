// Unary: element-wise activation or function (relu, gelu exact/tanh, silu, ...).
#include "ops/activation.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kUnaryOnednn;

namespace {

Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::UnaryT>();
  if (!valid_activation(a.kind) || a.kind == fb::ActKind::None) return ctx.fail("unknown or missing unary kind");
  if (a.kind == fb::ActKind::Softplus && !(a.beta > 0)) return ctx.fail("softplus beta must be > 0");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

Status infer(ShapeContext& ctx) {
  ctx.out = {ctx.in[0]};
  return Status::Ok();
}

class UnaryRef : public Kernel {
 public:
  UnaryRef(const fb::UnaryT& a, int64_t n) : a_(a), n_(n) {}
  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    float* dst = static_cast<float*>(b.out[0]);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n_; ++i) dst[i] = activate(src[i], a_.kind, a_.alpha, a_.beta, a_.threshold);
    return Status::Ok();
  }

 private:
  fb::UnaryT a_;
  int64_t n_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new UnaryRef(ctx.attrs<fb::UnaryT>(), checked_numel(ctx.in[0].shape).value()));
}

const KernelDef kUnaryRef = {"unary_ref", false, create_ref};

}  // namespace

const OpDef kUnaryOp = {"Unary", 1, 1, 1, 1, check, infer, {&kUnaryOnednn, &kUnaryRef}, /*inplace_input=*/0};

}  // namespace atrous
