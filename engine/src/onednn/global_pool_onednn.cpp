// GlobalPool through oneDNN pooling with one H×W window. Any input layout; the
// output keeps a blocked layout when it may (else scratch + reorder).
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::GlobalPoolT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& y = ctx.out[0].shape;
  const dnnl::algorithm alg =
      a.kind == fb::PoolKind::Max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_exclude_padding;
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const memory::desc src = desc_of(ctx.in[0]);
        const bool dst_any = ctx.out_may_block[0] || !ctx.in[0].layout.plain();
        const memory::desc dst_want = dst_any
                                          ? memory::desc(to_dims(y), memory::data_type::f32, memory::format_tag::any)
                                          : plain_desc(y, DType::kF32);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::pooling_forward::primitive_desc pd(
            dnnl::pooling_forward::desc(dnnl::prop_kind::forward_inference, alg, src, dst_want, {1, 1}, {x[2], x[3]},
                                        {0, 0}, {0, 0}),
            attr, cpu_engine());
        if (is_reference_impl(pd)) throw std::runtime_error("only oneDNN's reference pooling fits");
        k->detail_ = pd.impl_info_str();
        OutputSink dst = output_sink(ctx, pd.dst_desc());
        PrimitiveCall c{dnnl::pooling_forward(pd),
                        {{DNNL_ARG_SRC, src, {ArgSource::kInput, 0}}, {DNNL_ARG_DST, dst.md, dst.arg}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) c.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(c));
        finish_output(ctx, *k, dst);
      },
      "global_pool_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kGlobalPoolOnednn;
const KernelDef kGlobalPoolOnednn = {"global_pool_onednn", true, create};

}  // namespace atrous
