// LayerNorm through oneDNN layer_normalization, for the last axis only (oneDNN
// normalises over the innermost dim): the input is seen as [rows, D], plain.
// Optional weight and bias map to use_scale / use_shift.
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::LayerNormT>();
  const Shape& x = ctx.in[0].shape;
  const int64_t rank = static_cast<int64_t>(x.size());
  if (a.axis != -1 && a.axis != rank - 1) return KernelContext::decline("oneDNN normalises over the last axis only");
  const bool has_w = ctx.present.size() > 1 && ctx.present[1];
  const bool has_b = ctx.present.size() > 2 && ctx.present[2];
  const int64_t D = x.back(), rows = checked_numel(x).value() / D;
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const memory::desc data = plain_desc({rows, D}, DType::kF32);
        const memory::desc channel({D}, memory::data_type::f32, memory::format_tag::x);
        auto flags = dnnl::normalization_flags::none;
        if (has_w) flags |= dnnl::normalization_flags::use_scale;
        if (has_b) flags |= dnnl::normalization_flags::use_shift;
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::layer_normalization_forward::primitive_desc pd(
            dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_inference, data, a.eps, flags), attr,
            cpu_engine());
        if (is_reference_impl(pd)) throw std::runtime_error("only oneDNN's reference layer normalization fits");
        k->detail_ = pd.impl_info_str();
        PrimitiveCall ln{dnnl::layer_normalization_forward(pd),
                         {{DNNL_ARG_SRC, data, {ArgSource::kInput, 0}}, {DNNL_ARG_DST, data, {ArgSource::kOutput, 0}}}};
        if (has_w) ln.args.push_back({DNNL_ARG_SCALE, channel, {ArgSource::kInput, 1}});
        if (has_b) ln.args.push_back({DNNL_ARG_SHIFT, channel, {ArgSource::kInput, 2}});
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) ln.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(ln));
      },
      "layer_norm_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kLayerNormOnednn;
const KernelDef kLayerNormOnednn = {"layer_norm_onednn", false, create};

}  // namespace atrous
