// Pool2d through oneDNN pooling_forward. Any input layout; the output keeps a
// blocked layout when it may (else scratch + reorder, see output_sink()).
//
// oneDNN has no ceil mode: its output is floor((H + pl + pr − k) / s) + 1, so
// pr is widened until that equals PyTorch's size. Max pooling ignores padding
// and exclude-padding averages divide by the real elements, both as PyTorch.
// Include-padding averages divide by kH·kW in oneDNN, but PyTorch clips the
// window to the declared padding, so those decline when a window reaches into
// the widening (ceil mode only).
#include <algorithm>

#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

// Right padding that makes oneDNN's floor formula give `out`.
int64_t pad_end_for(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end, int64_t out) {
  return std::max(pad_end, (out - 1) * stride + k - in - pad_begin);
}

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::Pool2dT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& y = ctx.out[0].shape;
  const int64_t pb = pad_end_for(x[2], a.kernel_h, a.stride_h, a.pad_top, a.pad_bottom, y[2]);
  const int64_t pr = pad_end_for(x[3], a.kernel_w, a.stride_w, a.pad_left, a.pad_right, y[3]);
  dnnl::algorithm alg = dnnl::algorithm::pooling_max;
  if (a.kind == fb::PoolKind::Avg) {
    if (a.count_include_pad && (pb > a.pad_bottom || pr > a.pad_right))
      return KernelContext::decline(
          "ceil-mode windows pass the padding: PyTorch's include-padding divisor clips them, oneDNN's does not");
    alg = a.count_include_pad ? dnnl::algorithm::pooling_avg_include_padding
                              : dnnl::algorithm::pooling_avg_exclude_padding;
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
        dnnl::pooling_forward::primitive_desc pd(
            dnnl::pooling_forward::desc(dnnl::prop_kind::forward_inference, alg, src, dst_want,
                                        {a.stride_h, a.stride_w}, {a.kernel_h, a.kernel_w}, {a.pad_top, a.pad_left},
                                        {pb, pr}),
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
      "pool2d_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kPool2dOnednn;
const KernelDef kPool2dOnednn = {"pool2d_onednn", true, create};

}  // namespace atrous
