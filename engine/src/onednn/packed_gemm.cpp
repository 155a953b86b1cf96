#include "onednn/packed_gemm.h"

#include "onednn/onednn.h"

namespace atrous {

using dnnl::memory;
using namespace onednn;

struct PackedGemm::Impl {
  dnnl::inner_product_forward prim;
  memory::desc src, dst, w, b;
  const void* w_packed = nullptr;
  bool has_bias = false;
  int scratch = -1;
  memory::desc scratch_md;
  std::string detail;
};

PackedGemm::PackedGemm() : impl_(std::make_unique<Impl>()) {}
PackedGemm::~PackedGemm() = default;

std::unique_ptr<PackedGemm> PackedGemm::create(KernelContext& ctx, int64_t M, int64_t K, int64_t N, const void* w_constant,
                                               bool has_bias) {
  if (!w_constant || M < 1 || K < 1 || N < 1) return nullptr;
  std::unique_ptr<PackedGemm> g(new PackedGemm());
  Impl& p = *g->impl_;
  Status st = try_dnnl(
      [&] {
        p.src = plain_desc({M, K}, DType::kF32);
        p.dst = plain_desc({M, N}, DType::kF32);
        const memory::desc w_plain = plain_desc({N, K}, DType::kF32);
        const memory::desc w_any({N, K}, memory::data_type::f32, memory::format_tag::any);
        p.b = has_bias ? memory::desc({N}, memory::data_type::f32, memory::format_tag::x) : memory::desc();
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::inner_product_forward::primitive_desc pd(
            dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, p.src, w_any, p.b, p.dst), attr,
            cpu_engine());
        if (pd.src_desc() != p.src || pd.dst_desc() != p.dst || is_reference_impl(pd))
          throw std::runtime_error("no fast plain-layout inner product");
        auto packed = pack_constant(ctx, w_constant, w_plain, pd.weights_desc());
        if (!packed.ok()) throw std::runtime_error(packed.status().message());
        p.w = pd.weights_desc();
        p.w_packed = *packed;
        p.has_bias = has_bias;
        p.scratch_md = pd.scratchpad_desc();
        p.scratch = request_scratchpad(ctx, p.scratch_md);
        p.detail = pd.impl_info_str();
        p.prim = dnnl::inner_product_forward(pd);
      },
      "packed gemm");
  if (!st.ok()) return nullptr;
  return g;
}

Status PackedGemm::run(const float* x, const float* bias, float* y, const RunBuffers& b) const {
  const Impl& p = *impl_;
  try {
    dnnl::engine& eng = cpu_engine();
    dnnl::stream s(eng);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, memory(p.src, eng, const_cast<float*>(x))},
                                            {DNNL_ARG_WEIGHTS, memory(p.w, eng, const_cast<void*>(p.w_packed))},
                                            {DNNL_ARG_DST, memory(p.dst, eng, y)}};
    if (p.has_bias) args.emplace(DNNL_ARG_BIAS, memory(p.b, eng, const_cast<float*>(bias)));
    if (p.scratch >= 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(p.scratch_md, eng, b.scratch[static_cast<size_t>(p.scratch)]));
    p.prim.execute(s, args);
    s.wait();
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN inner product failed: ") + e.what());
  }
  return Status::Ok();
}

std::string PackedGemm::detail() const { return impl_->detail; }

}  // namespace atrous
