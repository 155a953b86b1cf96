// Resize through oneDNN resampling. Any input layout; the output keeps a
// blocked layout when it may (else scratch + reorder).
//
// oneDNN maps dst to src = (dst + 0.5) · in/out − 0.5 for both algorithms.
// Linear with that transform and edge clamping is PyTorch's bilinear with
// align_corners=false. Nearest rounds that coordinate, which equals PyTorch's
// floor(dst · in/out) only for whole upscale factors (out = f · in): the rest
// declines, as does align_corners=true.
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::ResizeT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& y = ctx.out[0].shape;
  dnnl::algorithm alg;
  if (a.mode == fb::ResizeMode::Bilinear) {
    if (a.align_corners) return KernelContext::decline("oneDNN has no align_corners=true");
    alg = dnnl::algorithm::resampling_linear;
  } else {
    if (y[2] % x[2] != 0 || y[3] % x[3] != 0)
      return KernelContext::decline(
          "nearest with a non-integer upscale factor: oneDNN rounds source coordinates differently");
    alg = dnnl::algorithm::resampling_nearest;
  }
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
        dnnl::resampling_forward::primitive_desc pd(
            dnnl::resampling_forward::desc(dnnl::prop_kind::forward_inference, alg, src, dst_want), attr, cpu_engine());
        if (is_reference_impl(pd)) throw std::runtime_error("only oneDNN's reference resampling fits");
        k->detail_ = pd.impl_info_str();
        OutputSink dst = output_sink(ctx, pd.dst_desc());
        PrimitiveCall c{dnnl::resampling_forward(pd),
                        {{DNNL_ARG_SRC, src, {ArgSource::kInput, 0}}, {DNNL_ARG_DST, dst.md, dst.arg}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) c.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(c));
        finish_output(ctx, *k, dst);
      },
      "resize_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kResizeOnednn;
const KernelDef kResizeOnednn = {"resize_onednn", true, create};

}  // namespace atrous
