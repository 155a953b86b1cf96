// Linear through oneDNN inner_product: x's leading dims flattened to M rows,
// weights packed once into the layout oneDNN chooses (format_tag::any), bias
// and activation (eltwise post-op) fused. Plain input and output.
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::LinearT>();
  const Shape& w = ctx.in[1].shape;  // [N, K]
  const int64_t N = w[0], K = w[1], M = checked_numel(ctx.in[0].shape).value() / K;
  const bool has_bias = ctx.present.size() > 2 && ctx.present[2];
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const memory::desc src = plain_desc({M, K}, DType::kF32);
        const memory::desc dst = plain_desc({M, N}, DType::kF32);
        const memory::desc w_plain = plain_desc({N, K}, DType::kF32);
        const memory::desc w_any({N, K}, memory::data_type::f32, memory::format_tag::any);
        const memory::desc b_md =
            has_bias ? memory::desc({N}, memory::data_type::f32, memory::format_tag::x) : memory::desc();
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        if (a.activation != fb::ActKind::None) {
          dnnl::algorithm alg;
          float alpha, beta;
          if (!eltwise_for(a.activation, a.act_alpha, &alg, &alpha, &beta))
            throw std::runtime_error(std::string("activation ") + fb::EnumNameActKind(a.activation) +
                                     " has no oneDNN post-op");
          dnnl::post_ops po;
          po.append_eltwise(1.0f, alg, alpha, beta);
          attr.set_post_ops(po);
        }
        dnnl::inner_product_forward::primitive_desc pd(
            dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, src, w_any, b_md, dst), attr,
            cpu_engine());
        k->detail_ = pd.impl_info_str();
        if (pd.src_desc() != src || pd.dst_desc() != dst)
          throw std::runtime_error("oneDNN wants non-plain activations");
        auto packed = pack_constant(ctx, ctx.constant[1], w_plain, pd.weights_desc());
        if (!packed.ok()) throw std::runtime_error(packed.status().message());
        PrimitiveCall ip{dnnl::inner_product_forward(pd),
                         {{DNNL_ARG_SRC, src, {ArgSource::kInput, 0}},
                          {DNNL_ARG_WEIGHTS, pd.weights_desc(), {ArgSource::kFixed, 0, *packed}},
                          {DNNL_ARG_DST, dst, {ArgSource::kOutput, 0}}}};
        if (has_bias) ip.args.push_back({DNNL_ARG_BIAS, b_md, {ArgSource::kFixed, 0, ctx.constant[2]}});
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) ip.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(ip));
      },
      "linear_onednn");
  if (!st.ok()) return st;
  k->flops_ = 2.0 * M * N * K;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kLinearOnednn;
const KernelDef kLinearOnednn = {"linear_onednn", false, create};

}  // namespace atrous
