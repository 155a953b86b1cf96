// Binary through oneDNN: src0 must have the output's shape (commutative ops swap
// operands to get there); src1 broadcasts over dims of size 1. Any layouts in;
// the output takes src0's layout when it may stay blocked.
#include "onednn/onednn.h"

namespace atrous {
namespace {

using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::BinaryT>();
  dnnl::algorithm alg;
  bool commutative = true;
  switch (a.kind) {
    case fb::BinaryKind::Add: alg = dnnl::algorithm::binary_add; break;
    case fb::BinaryKind::Mul: alg = dnnl::algorithm::binary_mul; break;
    case fb::BinaryKind::Max: alg = dnnl::algorithm::binary_max; break;
    case fb::BinaryKind::Min: alg = dnnl::algorithm::binary_min; break;
    case fb::BinaryKind::Sub: alg = dnnl::algorithm::binary_sub; commutative = false; break;
    case fb::BinaryKind::Div: alg = dnnl::algorithm::binary_div; commutative = false; break;
    default: return KernelContext::decline("unknown kind");
  }
  const Shape& out = ctx.out[0].shape;
  int i0 = 0, i1 = 1;
  if (ctx.in[0].shape != out) {
    if (!commutative || ctx.in[1].shape != out) return KernelContext::decline("the first operand is broadcast");
    std::swap(i0, i1);
  }
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        dnnl::memory::desc m0 = desc_of(ctx.in[static_cast<size_t>(i0)]);
        dnnl::memory::desc m1;
        if (ctx.in[static_cast<size_t>(i1)].shape.size() == out.size()) {
          m1 = desc_of(ctx.in[static_cast<size_t>(i1)]);
        } else {  // plain by construction (blocked tensors have the output's rank here); pad with leading 1s
          if (!ctx.in[static_cast<size_t>(i1)].layout.plain()) throw std::runtime_error("broadcast operand of lower rank is blocked");
          Shape s1 = ctx.in[static_cast<size_t>(i1)].shape;
          s1.insert(s1.begin(), out.size() - s1.size(), 1);
          m1 = plain_desc(s1, DType::kF32);
        }
        dnnl::memory::desc md_dst = ctx.out_may_block[0] ? m0 : plain_desc(out, DType::kF32);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        if (a.activation != fb::ActKind::None) {
          dnnl::algorithm ealg;
          float alpha, beta;
          if (!eltwise_for(a.activation, 1.0f, &ealg, &alpha, &beta)) throw std::runtime_error("activation has no oneDNN post-op");
          dnnl::post_ops po;
          po.append_eltwise(1.0f, ealg, alpha, beta);
          attr.set_post_ops(po);
        }
        dnnl::binary::primitive_desc pd(dnnl::binary::desc(alg, m0, m1, md_dst), attr, cpu_engine());
        k->detail_ = pd.impl_info_str();
        PrimitiveCall c{dnnl::binary(pd), {{DNNL_ARG_SRC_0, m0, {ArgSource::kInput, i0}},
                                           {DNNL_ARG_SRC_1, m1, {ArgSource::kInput, i1}},
                                           {DNNL_ARG_DST, md_dst, {ArgSource::kOutput, 0}}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) c.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(c));
        if (ctx.out_may_block[0]) {
          ctx.out[0].layout = layout_of(md_dst, out, DType::kF32);
          ctx.out[0].bytes = md_dst.get_size();
        }
      },
      "binary_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kBinaryOnednn;
const KernelDef kBinaryOnednn = {"binary_onednn", true, create};

}  // namespace atrous
