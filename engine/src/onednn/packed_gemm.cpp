#include "onednn/packed_gemm.h"

#include "onednn/onednn.h"

#include <vector>

namespace atrous {

using dnnl::memory;
using namespace onednn;

struct PackedGemm::Impl {
  dnnl::inner_product_forward prim;
  memory::desc src, dst, w, b;
  const void* w_packed = nullptr;
  bool has_bias = false;
  std::vector<int> scratch;  // one scratchpad per concurrent slot (empty: none needed)
  memory::desc scratch_md;
};

PackedGemm::PackedGemm() : impl_(std::make_unique<Impl>()) {}
PackedGemm::~PackedGemm() = default;

std::unique_ptr<PackedGemm> PackedGemm::create(KernelContext& ctx, int64_t M, int64_t K, int64_t N, const void* w_constant,
                                               bool has_bias, int slots, const PackedGemm* share, fb::ActKind act) {
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
        if (act != fb::ActKind::None) {
          dnnl::algorithm alg;
          float alpha, beta;
          if (!eltwise_for(act, 0.0f, &alg, &alpha, &beta)) throw std::runtime_error("no eltwise post-op for the activation");
          dnnl::post_ops po;
          po.append_eltwise(1.0f, alg, alpha, beta);
          attr.set_post_ops(po);
        }
        dnnl::inner_product_forward::primitive_desc pd(
            dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, p.src, w_any, p.b, p.dst), attr,
            cpu_engine());
        if (pd.src_desc() != p.src || pd.dst_desc() != p.dst || is_reference_impl(pd))
          throw std::runtime_error("no fast plain-layout inner product");
        p.w = pd.weights_desc();
        if (share && share->impl_->w == p.w) {
          p.w_packed = share->impl_->w_packed;
        } else {
          auto packed = pack_constant(ctx, w_constant, w_plain, p.w);
          if (!packed.ok()) throw std::runtime_error(packed.status().message());
          p.w_packed = *packed;
        }
        p.has_bias = has_bias;
        p.scratch_md = pd.scratchpad_desc();
        for (int i = 0; i < slots; ++i) {
          const int id = request_scratchpad(ctx, p.scratch_md);
          if (id >= 0) p.scratch.push_back(id);
        }
        p.prim = dnnl::inner_product_forward(pd);
      },
      "packed gemm");
  if (!st.ok()) return nullptr;
  return g;
}

struct PackedGemm::Bound::Impl {
  dnnl::primitive prim;
  dnnl::stream stream;
  std::vector<memory> mems;
  std::vector<dnnl_exec_arg_t> args;
};

PackedGemm::Bound::Bound() : impl_(std::make_unique<Impl>()) {}
PackedGemm::Bound::~Bound() = default;

Result<std::unique_ptr<PackedGemm::Bound>> PackedGemm::bind(const float* x, const float* bias, float* y,
                                                            const RunBuffers& b, int slot) const {
  const Impl& p = *impl_;
  if (p.has_bias && !bias) return internal_error("packed gemm: bias missing");
  if (!p.scratch.empty() && (slot < 0 || slot >= static_cast<int>(p.scratch.size())))
    return internal_error("packed gemm: scratchpad slot " + std::to_string(slot) + " not requested");
  std::unique_ptr<Bound> bound(new Bound());
  Bound::Impl& c = *bound->impl_;
  try {
    dnnl::engine& eng = cpu_engine();
    c.prim = p.prim;
    c.stream = dnnl::stream(eng);
    c.mems.reserve(5);
    auto add = [&](int id, const memory::desc& md, const void* ptr) {
      c.mems.emplace_back(md, eng, const_cast<void*>(ptr));
      c.args.push_back(dnnl_exec_arg_t{id, c.mems.back().get()});
    };
    add(DNNL_ARG_SRC, p.src, x);
    add(DNNL_ARG_WEIGHTS, p.w, p.w_packed);
    add(DNNL_ARG_DST, p.dst, y);
    if (p.has_bias) add(DNNL_ARG_BIAS, p.b, bias);
    if (!p.scratch.empty())
      add(DNNL_ARG_SCRATCHPAD, p.scratch_md, b.scratch[static_cast<size_t>(p.scratch[static_cast<size_t>(slot)])]);
  } catch (const dnnl::error& e) {
    return internal_error(std::string("binding oneDNN memory: ") + e.what());
  }
  return bound;
}

Status PackedGemm::Bound::run() const {
  const Impl& c = *impl_;
  dnnl_status_t s = dnnl_primitive_execute(c.prim.get(), c.stream.get(), static_cast<int>(c.args.size()), c.args.data());
  if (s != dnnl_success) return internal_error("oneDNN inner product failed with status " + std::to_string(s));
  return Status::Ok();
}

Status PackedGemm::Bound::run_on(const float* x, float* y) const {
  const Impl& c = *impl_;
  // mems[0] is the source, mems[2] the destination (bind() adds them in that order).
  if (dnnl_memory_set_data_handle(c.mems[0].get(), const_cast<float*>(x)) != dnnl_success ||
      dnnl_memory_set_data_handle(c.mems[2].get(), y) != dnnl_success)
    return internal_error("oneDNN rejected a data handle");
  return run();
}

}  // namespace atrous
