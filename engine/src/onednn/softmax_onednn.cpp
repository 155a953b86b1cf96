// Softmax through oneDNN softmax_forward on plain data, seen as
// [outer, D, inner] with the softmax over the middle dim (any axis, any rank).
// oneDNN 2.6 has fast kernels only for a contiguous axis (inner = 1); the
// rest would run its reference implementation, so those decline.
#include "onednn/onednn.h"
#include "ops/axis_split.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  int axis;
  normalize_axis(ctx.attrs<fb::SoftmaxT>().axis, ctx.in[0].shape.size(), &axis);
  const AxisSplit s = split_at_axis(ctx.in[0].shape, axis);
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const memory::desc data = s.inner == 1 ? plain_desc({s.outer, s.dim}, DType::kF32)
                                               : plain_desc({s.outer, s.dim, s.inner}, DType::kF32);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::softmax_forward::primitive_desc pd(
            dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, data, 1), attr, cpu_engine());
        if (is_reference_impl(pd))
          throw std::runtime_error("only oneDNN's reference softmax fits (softmax_ref is faster)");
        k->detail_ = pd.impl_info_str();
        PrimitiveCall c{dnnl::softmax_forward(pd),
                        {{DNNL_ARG_SRC, data, {ArgSource::kInput, 0}}, {DNNL_ARG_DST, data, {ArgSource::kOutput, 0}}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) c.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(c));
      },
      "softmax_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kSoftmaxOnednn;
const KernelDef kSoftmaxOnednn = {"softmax_onednn", false, create};

}  // namespace atrous
