// Unary through oneDNN eltwise: works on any layout; the output keeps the input's
// layout (so it declines when the input is blocked but the output must be plain).
#include "onednn/onednn.h"

namespace atrous {
namespace {

using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::UnaryT>();
  dnnl::algorithm alg;
  float alpha, beta;
  if (a.kind == fb::ActKind::Softplus) {
    if (a.beta != 1.0f) return KernelContext::decline("softplus with beta != 1");
    alg = dnnl::algorithm::eltwise_soft_relu;
    alpha = beta = 0.f;
  } else if (!eltwise_for(a.kind, a.alpha, &alg, &alpha, &beta)) {
    return KernelContext::decline(std::string("no oneDNN eltwise for ") + fb::EnumNameActKind(a.kind));
  }
  if (!ctx.in[0].layout.plain() && !ctx.out_may_block[0])
    return KernelContext::decline("input is blocked but the output must be plain");
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        dnnl::memory::desc md = desc_of(ctx.in[0]);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::eltwise_forward::primitive_desc pd(
            dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, alg, md, alpha, beta), attr, cpu_engine());
        k->detail_ = pd.impl_info_str();
        PrimitiveCall c{dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, md, {ArgSource::kInput, 0}}, {DNNL_ARG_DST, md, {ArgSource::kOutput, 0}}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) c.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(c));
        ctx.out[0].layout = ctx.in[0].layout;
        ctx.out[0].bytes = ctx.in[0].bytes;
      },
      "unary_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kUnaryOnednn;
const KernelDef kUnaryOnednn = {"unary_onednn", true, create};

}  // namespace atrous
