// ConvTranspose2d through oneDNN deconvolution: layouts chosen by oneDNN
// (format_tag::any), weights packed once, bias and activation (eltwise post-op)
// fused, scratchpad in the arena.
//
// PyTorch stores the weight as [C, O/groups, kH, kW]; oneDNN wants [G,] O, I
// order, so the plain source descriptor names the dims (g, o, i, h, w) with
// PyTorch's strides and the packing reorder does the transposition. oneDNN
// has no output padding: padding_r = pad_end − output_pad gives the same
// output size (it may be negative, which oneDNN accepts or declines).
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::ConvTranspose2dT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& w = ctx.in[1].shape;  // [C, O/G, kH, kW]
  const Shape& y = ctx.out[0].shape;
  const bool has_bias = ctx.present.size() > 2 && ctx.present[2];
  const int64_t G = a.groups, C = w[0], Og = w[1], KH = w[2], KW = w[3], Cg = C / G, O = Og * G;

  // PyTorch's weight seen with oneDNN's dim order.
  memory::dims kdims, kstrides;
  if (G > 1) {
    kdims = {G, Og, Cg, KH, KW};
    kstrides = {Cg * Og * KH * KW, KH * KW, Og * KH * KW, KW, 1};
  } else {
    kdims = {O, C, KH, KW};
    kstrides = {KH * KW, O * KH * KW, KW, 1};
  }

  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const memory::desc w_plain(kdims, memory::data_type::f32, kstrides);
        memory::desc src_any(to_dims(x), memory::data_type::f32, memory::format_tag::any);
        memory::desc w_any(kdims, memory::data_type::f32, memory::format_tag::any);
        memory::desc b_md =
            has_bias ? memory::desc({O}, memory::data_type::f32, memory::format_tag::x) : memory::desc();
        memory::desc dst_md = ctx.out_may_block[0]
                                  ? memory::desc(to_dims(y), memory::data_type::f32, memory::format_tag::any)
                                  : plain_desc(y, DType::kF32);
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
        dnnl::deconvolution_forward::desc d(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, src_any, w_any, b_md, dst_md,
            {a.stride_h, a.stride_w}, {a.dilation_h - 1, a.dilation_w - 1},  // oneDNN counts dilation from 0
            {a.pad_top, a.pad_left}, {a.pad_bottom - a.output_pad_h, a.pad_right - a.output_pad_w});
        dnnl::deconvolution_forward::primitive_desc pd(d, attr, cpu_engine());
        k->detail_ = pd.impl_info_str();

        memory::desc src_have = desc_of(ctx.in[0]);
        ArgSource src_arg{ArgSource::kInput, 0};
        if (src_have != pd.src_desc()) {
          int s = ctx.scratch(pd.src_desc().get_size());
          k->calls.push_back(
              {dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), src_have, cpu_engine(), pd.src_desc())),
               {{DNNL_ARG_FROM, src_have, {ArgSource::kInput, 0}},
                {DNNL_ARG_TO, pd.src_desc(), {ArgSource::kScratch, s}}}});
          src_arg = {ArgSource::kScratch, s};
        }
        auto packed = pack_constant(ctx, ctx.constant[1], w_plain, pd.weights_desc());
        if (!packed.ok()) throw std::runtime_error(packed.status().message());
        PrimitiveCall deconv{dnnl::deconvolution_forward(pd),
                             {{DNNL_ARG_SRC, pd.src_desc(), src_arg},
                              {DNNL_ARG_WEIGHTS, pd.weights_desc(), {ArgSource::kFixed, 0, *packed}},
                              {DNNL_ARG_DST, pd.dst_desc(), {ArgSource::kOutput, 0}}}};
        if (has_bias) deconv.args.push_back({DNNL_ARG_BIAS, b_md, {ArgSource::kFixed, 0, ctx.constant[2]}});
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) deconv.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(deconv));
        if (ctx.out_may_block[0]) {
          ctx.out[0].layout = layout_of(pd.dst_desc(), y, DType::kF32);
          ctx.out[0].bytes = pd.dst_desc().get_size();
        }
      },
      "conv_transpose2d_onednn");
  if (!st.ok()) return st;
  k->flops_ = 2.0 * x[0] * x[1] * x[2] * x[3] * Og * KH * KW;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kConvTranspose2dOnednn;
const KernelDef kConvTranspose2dOnednn = {"conv_transpose2d_onednn", true, create};

}  // namespace atrous
