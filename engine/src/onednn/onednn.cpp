#include "onednn/onednn.h"

#include <cstring>

namespace atrous::onednn {

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::memory::data_type to_dnnl(DType t) {
  switch (t) {
    case DType::kF32: return dnnl::memory::data_type::f32;
    case DType::kF16: return dnnl::memory::data_type::f16;
    case DType::kBF16: return dnnl::memory::data_type::bf16;
    case DType::kI32: return dnnl::memory::data_type::s32;
    case DType::kU8: return dnnl::memory::data_type::u8;
    case DType::kI64: return dnnl::memory::data_type::undef;
  }
  return dnnl::memory::data_type::undef;
}

dnnl::memory::dims to_dims(const Shape& s) { return dnnl::memory::dims(s.begin(), s.end()); }

dnnl::memory::desc plain_desc(const Shape& s, DType t) {
  dnnl::memory::dims strides(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) strides[i - 1] = strides[i] * s[i];
  return dnnl::memory::desc(to_dims(s), to_dnnl(t), strides);
}

dnnl::memory::desc desc_of(const TensorDesc& t) {
  return t.layout.plain() ? plain_desc(t.shape, t.dtype) : t.layout.blocked->md;
}

Layout layout_of(const dnnl::memory::desc& md, const Shape& shape, DType t) {
  Layout l;
  if (md == plain_desc(shape, t)) return l;
  auto d = std::make_shared<MemDesc>();
  d->md = md;
  l.blocked = std::move(d);
  return l;
}

std::string layout_name(const Layout& l, size_t rank) {
  if (l.plain()) return "plain";
  const dnnl_memory_desc_t& c = l.blocked->md.data;
  if (c.format_kind != dnnl_blocked) return "opaque";
  // Outer dims by decreasing stride, then inner blocks: e.g. "nChw16c".
  const auto& b = c.format_desc.blocking;
  std::vector<int> order;
  for (int i = 0; i < c.ndims; ++i) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return b.strides[x] > b.strides[y]; });
  const char* letters = rank == 4 ? "nchw" : "abcdefgh";
  std::string s;
  for (int i : order) {
    bool blocked = false;
    for (int k = 0; k < b.inner_nblks; ++k) blocked |= b.inner_idxs[k] == i;
    char ch = letters[i];
    s += blocked ? static_cast<char>(ch - 'a' + 'A') : ch;
  }
  for (int k = 0; k < b.inner_nblks; ++k) s += std::to_string(b.inner_blks[k]) + letters[b.inner_idxs[k]];
  return s;
}

bool same_layout(const Layout& a, const Layout& b) {
  if (a.plain() || b.plain()) return a.plain() == b.plain();
  return a.blocked->md == b.blocked->md;
}

bool eltwise_for(fb::ActKind act, float act_alpha, dnnl::algorithm* alg, float* alpha, float* beta) {
  *alpha = 0.f;
  *beta = 0.f;
  using A = dnnl::algorithm;
  switch (act) {
    case fb::ActKind::Relu: *alg = A::eltwise_relu; return true;
    case fb::ActKind::LeakyRelu: *alg = A::eltwise_relu; *alpha = act_alpha; return true;
    case fb::ActKind::Relu6: *alg = A::eltwise_clip_v2; *alpha = 0.f; *beta = 6.f; return true;
    case fb::ActKind::Gelu: *alg = A::eltwise_gelu_erf; return true;
    case fb::ActKind::GeluTanh: *alg = A::eltwise_gelu_tanh; return true;
    case fb::ActKind::Silu: *alg = A::eltwise_swish; *alpha = 1.f; return true;
    case fb::ActKind::Sigmoid: *alg = A::eltwise_logistic; return true;
    case fb::ActKind::Tanh: *alg = A::eltwise_tanh; return true;
    case fb::ActKind::Elu: *alg = A::eltwise_elu; *alpha = act_alpha; return true;
    case fb::ActKind::HardSwish: *alg = A::eltwise_hardswish; return true;
    case fb::ActKind::Exp: *alg = A::eltwise_exp; return true;
    case fb::ActKind::Sqrt: *alg = A::eltwise_sqrt; return true;
    case fb::ActKind::Abs: *alg = A::eltwise_abs; return true;
    case fb::ActKind::Square: *alg = A::eltwise_square; return true;
    case fb::ActKind::Log: *alg = A::eltwise_log; return true;
    case fb::ActKind::Identity: *alg = A::eltwise_linear; *alpha = 1.f; return true;
    case fb::ActKind::Neg: *alg = A::eltwise_linear; *alpha = -1.f; return true;
    default: return false;
  }
}

namespace {

struct PrimitiveState : KernelState {
  dnnl::stream stream;
  std::vector<std::vector<dnnl::memory>> mems;       // keep handles alive
  std::vector<std::vector<dnnl_exec_arg_t>> args;    // prebuilt C argument arrays
  std::vector<bool> skip;
};

}  // namespace

Result<std::unique_ptr<KernelState>> PrimitiveKernel::bind(const RunBuffers& bufs) const {
  auto st = std::make_unique<PrimitiveState>();
  try {
    st->stream = dnnl::stream(cpu_engine());
    for (const PrimitiveCall& call : calls) {
      std::vector<dnnl::memory> mems;
      std::vector<dnnl_exec_arg_t> args;
      for (const Arg& a : call.args) {
        void* p = nullptr;
        switch (a.src.kind) {
          case ArgSource::kInput: p = bufs.in[static_cast<size_t>(a.src.index)]; break;
          case ArgSource::kOutput: p = bufs.out[static_cast<size_t>(a.src.index)]; break;
          case ArgSource::kScratch: p = bufs.scratch[static_cast<size_t>(a.src.index)]; break;
          case ArgSource::kFixed: p = const_cast<void*>(a.src.fixed); break;
        }
        mems.emplace_back(a.md, cpu_engine(), p);
        args.push_back(dnnl_exec_arg_t{a.id, mems.back().get()});
      }
      st->mems.push_back(std::move(mems));
      st->args.push_back(std::move(args));
      auto [ai, ao] = call.skip_if_alias;
      st->skip.push_back(ai >= 0 && bufs.in[static_cast<size_t>(ai)] == bufs.out[static_cast<size_t>(ao)]);
    }
  } catch (const dnnl::error& e) {
    return internal_error(std::string("binding oneDNN memory: ") + e.what());
  }
  return std::unique_ptr<KernelState>(std::move(st));
}

Status PrimitiveKernel::run(const RunBuffers&, KernelState* state) const {
  auto* st = static_cast<PrimitiveState*>(state);
  for (size_t i = 0; i < calls.size(); ++i) {
    if (st->skip[i]) continue;
    dnnl_status_t s = dnnl_primitive_execute(calls[i].prim.get(), st->stream.get(),
                                             static_cast<int>(st->args[i].size()), st->args[i].data());
    if (s != dnnl_success) return internal_error("oneDNN primitive failed with status " + std::to_string(s));
  }
  return Status::Ok();
}

int request_scratchpad(KernelContext& ctx, const dnnl::memory::desc& md) {
  size_t bytes = md.get_size();
  return bytes ? ctx.scratch(bytes) : -1;
}

Result<const void*> pack_constant(KernelContext& ctx, const void* src, const dnnl::memory::desc& src_md,
                                  const dnnl::memory::desc& dst_md) {
  void* dst = ctx.persistent(dst_md.get_size());
  if (!dst) return out_of_memory(ctx.label() + ": cannot allocate packed weights");
  Status st = try_dnnl(
      [&] {
        dnnl::memory s(src_md, cpu_engine(), const_cast<void*>(src));
        dnnl::memory d(dst_md, cpu_engine(), dst);
        dnnl::stream stream(cpu_engine());
        dnnl::reorder(s, d).execute(stream, s, d);
        stream.wait();
      },
      ctx.label() + ": packing weights");
  if (!st.ok()) return st;
  ctx.release_constant(src, src_md.get_size());
  return static_cast<const void*>(dst);
}

bool is_reference_impl(const dnnl::primitive_desc_base& pd) {
  const char* impl = pd.impl_info_str();
  return impl && std::strncmp(impl, "ref", 3) == 0;
}

OutputSink output_sink(KernelContext& ctx, const dnnl::memory::desc& md) {
  const TensorDesc& out = ctx.out[0];
  OutputSink s{md, {ArgSource::kOutput, 0}, false};
  if (!ctx.out_may_block[0] && md != plain_desc(out.shape, out.dtype)) {
    s.via_scratch = true;
    s.arg = {ArgSource::kScratch, ctx.scratch(md.get_size())};
  }
  return s;
}

void finish_output(KernelContext& ctx, PrimitiveKernel& k, const OutputSink& sink) {
  TensorDesc& out = ctx.out[0];
  if (sink.via_scratch) {
    dnnl::memory::desc plain = plain_desc(out.shape, out.dtype);
    k.calls.push_back({dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), sink.md, cpu_engine(), plain)),
                       {{DNNL_ARG_FROM, sink.md, sink.arg}, {DNNL_ARG_TO, plain, {ArgSource::kOutput, 0}}}});
    k.detail_ += " + reorder to plain";
  } else if (ctx.out_may_block[0]) {
    out.layout = layout_of(sink.md, out.shape, out.dtype);
    out.bytes = sink.md.get_size();
  }
}

Result<std::unique_ptr<Kernel>> make_reorder_to_plain(const TensorDesc& src) {
  auto k = std::make_unique<PrimitiveKernel>();
  dnnl::memory::desc s = desc_of(src), d = plain_desc(src.shape, src.dtype);
  Status st = try_dnnl(
      [&] {
        dnnl::reorder::primitive_desc pd(cpu_engine(), s, cpu_engine(), d);
        k->calls.push_back(PrimitiveCall{dnnl::reorder(pd), {{DNNL_ARG_FROM, s, {ArgSource::kInput, 0}},
                                                             {DNNL_ARG_TO, d, {ArgSource::kOutput, 0}}}});
      },
      "reorder to plain");
  if (!st.ok()) return internal_error(st.message());
  k->detail_ = "reorder";
  return std::unique_ptr<Kernel>(std::move(k));
}

namespace {
Result<std::unique_ptr<Kernel>> reorder_create(KernelContext& ctx) { return make_reorder_to_plain(ctx.in[0]); }
}  // namespace

const KernelDef kReorderOnednn = {"reorder_onednn", true, reorder_create};

}  // namespace atrous::onednn
