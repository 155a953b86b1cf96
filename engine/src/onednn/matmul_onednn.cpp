// MatMul through oneDNN matmul. Transposes are strides on the plain operands;
// ranks are padded with leading 1s so oneDNN sees equal ranks and broadcasts
// batch dims of size 1 itself (it declines what it cannot broadcast). alpha is
// an output scale. A constant 2-D b is packed once into the layout oneDNN
// prefers. Plain input and output.
#include "onednn/onednn.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

// Descriptor of a plain operand stored as `s`, padded to `rank` dims, with the
// last two dims swapped when transposed (a view, no data moves).
memory::desc operand_desc(Shape s, size_t rank, bool transpose) {
  s.insert(s.begin(), rank - s.size(), 1);
  memory::dims dims = to_dims(s), strides(rank, 1);
  for (size_t i = rank; i-- > 1;) strides[i - 1] = strides[i] * s[i];
  if (transpose) {
    std::swap(dims[rank - 1], dims[rank - 2]);
    std::swap(strides[rank - 1], strides[rank - 2]);
  }
  return memory::desc(dims, memory::data_type::f32, strides);
}

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::MatMulT>();
  const Shape& y = ctx.out[0].shape;
  const size_t rank = y.size();
  const bool pack_b = ctx.constant[1] != nullptr && ctx.in[1].shape.size() == 2;
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        const memory::desc src = operand_desc(ctx.in[0].shape, rank, a.transpose_a);
        const memory::desc wts = operand_desc(ctx.in[1].shape, rank, a.transpose_b);
        const memory::desc wts_want =
            pack_b ? memory::desc(wts.dims(), memory::data_type::f32, memory::format_tag::any) : wts;
        const memory::desc dst = plain_desc(y, DType::kF32);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        if (a.alpha != 1.0f) attr.set_output_scales(0, {a.alpha});
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wts_want, dst), attr, cpu_engine());
        k->detail_ = pd.impl_info_str();
        ArgSource w_arg{ArgSource::kInput, 1};
        if (pack_b) {
          auto packed = pack_constant(ctx, ctx.constant[1], wts, pd.weights_desc());
          if (!packed.ok()) throw std::runtime_error(packed.status().message());
          w_arg = {ArgSource::kFixed, 0, *packed};
        }
        PrimitiveCall mm{dnnl::matmul(pd),
                         {{DNNL_ARG_SRC, src, {ArgSource::kInput, 0}},
                          {DNNL_ARG_WEIGHTS, pd.weights_desc(), w_arg},
                          {DNNL_ARG_DST, dst, {ArgSource::kOutput, 0}}}};
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) mm.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(mm));
      },
      "matmul_onednn");
  if (!st.ok()) return st;
  double batches = 1;
  for (size_t i = 0; i + 2 < rank; ++i) batches *= static_cast<double>(y[i]);
  const int64_t K = a.transpose_a ? ctx.in[0].shape[ctx.in[0].shape.size() - 2] : ctx.in[0].shape.back();
  k->flops_ = 2.0 * batches * y[rank - 2] * y[rank - 1] * K;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kMatMulOnednn;
const KernelDef kMatMulOnednn = {"matmul_onednn", false, create};

}  // namespace atrous
