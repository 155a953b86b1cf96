// Conv2d through oneDNN: layouts chosen by oneDNN (format_tag::any), weights
// packed once, bias + residual (sum post-op) + activation (eltwise post-op)
// fused, scratchpad in the arena. Dilated taps that only read padding are
// dropped first (conv_taps.h), so rates larger than the map cost no more than
// the taps that matter. When the output must be plain, oneDNN's layout is kept
// anyway (with a reorder into the output) if a plain destination would get its
// slow gemm-based convolution.
#include <algorithm>
#include <cstring>

#include "onednn/onednn.h"
#include "ops/conv_taps.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

bool is_gemm_impl(const dnnl::primitive_desc_base& pd) {
  const char* impl = pd.impl_info_str();
  return impl && std::strstr(impl, "gemm") != nullptr && std::strstr(impl, "brg") == nullptr;
}

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::Conv2dT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& w = ctx.in[1].shape;
  const Shape& y = ctx.out[0].shape;
  const bool has_bias = ctx.present.size() > 2 && ctx.present[2];
  const bool has_res = ctx.present.size() > 3 && ctx.present[3];
  const int64_t G = a.groups, O = w[0], Cg = w[1];

  // Drop taps that only read padding.
  TapRange th = useful_taps(x[2], w[2], a.stride_h, a.pad_top, a.dilation_h, y[2]);
  TapRange tw = useful_taps(x[3], w[3], a.stride_w, a.pad_left, a.dilation_w, y[3]);
  if (th.count == 0 || tw.count == 0) return KernelContext::decline("every tap reads padding only");
  if (!th.trimmed) th = TapRange{0, w[2], a.pad_top, a.pad_bottom, false};
  if (!tw.trimmed) tw = TapRange{0, w[3], a.pad_left, a.pad_right, false};
  const float* weights = static_cast<const float*>(ctx.constant[1]);
  std::vector<float> trimmed;
  if (th.trimmed || tw.trimmed) {
    trimmed.resize(static_cast<size_t>(O * Cg * th.count * tw.count));
    for (int64_t oc = 0; oc < O * Cg; ++oc)
      for (int64_t i = 0; i < th.count; ++i)
        for (int64_t j = 0; j < tw.count; ++j)
          trimmed[static_cast<size_t>((oc * th.count + i) * tw.count + j)] =
              weights[(oc * w[2] + th.first + i) * w[3] + tw.first + j];
    weights = trimmed.data();
  }
  // oneDNN 2.6 drops the bias from output rows whose taps all read padding (padding
  // beyond the kernel's reach) when the sum post-op adds a residual: those rows come out
  // as the residual alone (tests/ops: conv_pad_beyond_kernel_residual). Then the bias is
  // added to the residual in dst before the convolution instead.
  auto beyond = [](const TapRange& t, int64_t dilation) { return std::max(t.pad_begin, t.pad_end) > (t.count - 1) * dilation; };
  const bool bias_with_residual = has_bias && has_res && (beyond(th, a.dilation_h) || beyond(tw, a.dilation_w));
  const memory::dims kdims = G > 1 ? memory::dims{G, O / G, Cg, th.count, tw.count} : memory::dims{O, Cg, th.count, tw.count};
  const memory::desc w_plain(kdims, memory::data_type::f32, G > 1 ? memory::format_tag::goihw : memory::format_tag::oihw);

  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        memory::desc src_any(to_dims(x), memory::data_type::f32, memory::format_tag::any);
        memory::desc w_any(kdims, memory::data_type::f32, memory::format_tag::any);
        const memory::desc bias_md({O}, memory::data_type::f32, memory::format_tag::x);
        const memory::desc b_md = has_bias && !bias_with_residual ? bias_md : memory::desc();
        const memory::desc dst_any(to_dims(y), memory::data_type::f32, memory::format_tag::any);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::post_ops po;
        if (has_res) po.append_sum(1.0f);
        if (a.activation != fb::ActKind::None) {
          dnnl::algorithm alg;
          float alpha, beta;
          if (!eltwise_for(a.activation, a.act_alpha, &alg, &alpha, &beta))
            throw std::runtime_error(std::string("activation ") + fb::EnumNameActKind(a.activation) + " has no oneDNN post-op");
          po.append_eltwise(1.0f, alg, alpha, beta);
        }
        attr.set_post_ops(po);
        auto make_pd = [&](const memory::desc& dst_md) {
          dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_any,
                                            w_any, b_md, dst_md, {a.stride_h, a.stride_w},
                                            {a.dilation_h - 1, a.dilation_w - 1},  // oneDNN counts dilation from 0
                                            {th.pad_begin, tw.pad_begin}, {th.pad_end, tw.pad_end});
          return dnnl::convolution_forward::primitive_desc(d, attr, cpu_engine());
        };
        dnnl::convolution_forward::primitive_desc pd = make_pd(ctx.out_may_block[0] ? dst_any : plain_desc(y, DType::kF32));
        if (!ctx.out_may_block[0] && th.count * tw.count > 1 && is_gemm_impl(pd)) {
          // A plain (NCHW) destination mostly gets oneDNN's gemm-based convolution, which
          // for spatial kernels pays an im2col pass and runs well below its direct/brgemm
          // kernels on NHWC or blocked data. Let oneDNN pick the destination layout and
          // reorder into the plain output after: the reorder is one pass over the output
          // (docs/performance.md, "Semantic segmentation (issue 4)"). Not for 1x1 convs,
          // which are plain GEMMs already, nor when the other choice is gemm too.
          dnnl::convolution_forward::primitive_desc alt = make_pd(dst_any);
          if (!is_gemm_impl(alt)) pd = alt;
        }
        k->detail_ = pd.impl_info_str();
        if (th.trimmed || tw.trimmed)
          k->detail_ += " taps " + std::to_string(th.count) + "x" + std::to_string(tw.count) + " of " +
                        std::to_string(w[2]) + "x" + std::to_string(w[3]);

        // Source: reorder into the layout the primitive wants when it differs.
        memory::desc src_have = desc_of(ctx.in[0]);
        ArgSource src_arg{ArgSource::kInput, 0};
        if (src_have != pd.src_desc()) {
          int s = ctx.scratch(pd.src_desc().get_size());
          k->calls.push_back({dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), src_have, cpu_engine(), pd.src_desc())),
                              {{DNNL_ARG_FROM, src_have, {ArgSource::kInput, 0}}, {DNNL_ARG_TO, pd.src_desc(), {ArgSource::kScratch, s}}}});
          src_arg = {ArgSource::kScratch, s};
        }
        // Destination: the output itself, or scratch reordered into the plain output after.
        OutputSink dst = output_sink(ctx, pd.dst_desc());
        // Residual: copied into dst first, unless the planner made dst share its buffer.
        if (has_res) {
          memory::desc res_have = desc_of(ctx.in[3]);
          PrimitiveCall copy{dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), res_have, cpu_engine(), pd.dst_desc())),
                             {{DNNL_ARG_FROM, res_have, {ArgSource::kInput, 3}}, {DNNL_ARG_TO, pd.dst_desc(), dst.arg}}};
          if (!dst.via_scratch) copy.skip_if_alias = {3, 0};
          k->calls.push_back(std::move(copy));
          if (bias_with_residual) {  // dst += bias, in place, broadcast over N, H, W
            const memory::desc bias4({1, O, 1, 1}, memory::data_type::f32, memory::format_tag::nchw);
            dnnl::binary::primitive_desc bpd(dnnl::binary::desc(dnnl::algorithm::binary_add, pd.dst_desc(), bias4, pd.dst_desc()),
                                             cpu_engine());
            k->calls.push_back({dnnl::binary(bpd),
                                {{DNNL_ARG_SRC_0, pd.dst_desc(), dst.arg},
                                 {DNNL_ARG_SRC_1, bias4, {ArgSource::kFixed, 0, ctx.constant[2]}},
                                 {DNNL_ARG_DST, pd.dst_desc(), dst.arg}}});
          }
        }
        auto packed = pack_constant(ctx, weights, w_plain, pd.weights_desc());
        if (!packed.ok()) throw std::runtime_error(packed.status().message());
        PrimitiveCall conv{dnnl::convolution_forward(pd),
                           {{DNNL_ARG_SRC, pd.src_desc(), src_arg},
                            {DNNL_ARG_WEIGHTS, pd.weights_desc(), {ArgSource::kFixed, 0, *packed}},
                            {DNNL_ARG_DST, pd.dst_desc(), dst.arg}}};
        if (has_bias && !bias_with_residual) conv.args.push_back({DNNL_ARG_BIAS, b_md, {ArgSource::kFixed, 0, ctx.constant[2]}});
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) conv.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(conv));
        finish_output(ctx, *k, dst);
      },
      "conv2d_onednn");
  if (!st.ok()) return st;
  // Useful flops: oneDNN skips the products with padding, as the tap trimming above does.
  k->flops_ = 2.0 * y[0] * y[1] * Cg * in_bounds_taps(x[2], w[2], a.stride_h, a.pad_top, a.dilation_h, y[2]) *
              in_bounds_taps(x[3], w[3], a.stride_w, a.pad_left, a.dilation_w, y[3]);
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kConv2dOnednn;
const KernelDef kConv2dOnednn = {"conv2d_onednn", true, create};

}  // namespace atrous
