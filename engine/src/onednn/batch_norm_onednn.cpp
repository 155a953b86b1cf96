// BatchNorm through oneDNN batch_normalization (use_global_stats | use_scale |
// use_shift): mean, variance, scale and shift are read from the node's inputs
// as they lie. Any input layout; oneDNN's source and destination share one
// descriptor, so the output keeps the input's layout when it may stay
// blocked, and otherwise a blocked result goes through scratch and a reorder.
// Plain data of any rank is seen as [N, C, rest, 1], which oneDNN's fast
// kernels take (it has only a reference kernel for 3-D data).
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::BatchNormT>();
  const Shape& x = ctx.in[0].shape;
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const bool plain = ctx.in[0].layout.plain();
        int64_t rest = 1;
        for (size_t i = 2; i < x.size(); ++i) rest *= x[i];
        const memory::desc data = plain ? plain_desc({x[0], x[1], rest, 1}, DType::kF32) : desc_of(ctx.in[0]);
        const memory::desc channel({x[1]}, memory::data_type::f32, memory::format_tag::x);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
                     dnnl::normalization_flags::use_shift;
        dnnl::batch_normalization_forward::primitive_desc pd(
            dnnl::batch_normalization_forward::desc(dnnl::prop_kind::forward_inference, data, a.eps, flags), attr,
            cpu_engine());
        if (is_reference_impl(pd)) throw std::runtime_error("only oneDNN's reference batch normalization fits");
        k->detail_ = pd.impl_info_str();
        OutputSink dst{data, {ArgSource::kOutput, 0}, false};  // plain: written as it is
        if (!plain) dst = output_sink(ctx, data);
        PrimitiveCall bn{dnnl::batch_normalization_forward(pd),
                         {{DNNL_ARG_SRC, data, {ArgSource::kInput, 0}},
                          {DNNL_ARG_DST, data, dst.arg},
                          {DNNL_ARG_SCALE, channel, {ArgSource::kInput, 1}},
                          {DNNL_ARG_SHIFT, channel, {ArgSource::kInput, 2}},
                          {DNNL_ARG_MEAN, channel, {ArgSource::kInput, 3}},
                          {DNNL_ARG_VARIANCE, channel, {ArgSource::kInput, 4}}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) bn.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(bn));
        if (!plain) finish_output(ctx, *k, dst);
      },
      "batch_norm_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kBatchNormOnednn;
const KernelDef kBatchNormOnednn = {"batch_norm_onednn", true, create};

}  // namespace atrous
