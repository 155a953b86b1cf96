// The oneDNN adapter: the only place that includes oneDNN headers.
//
// Everything oneDNN-specific the rest of the engine needs goes through here:
// the CPU engine, layout descriptors (MemDesc, opaque elsewhere), a reorder
// kernel the planner inserts at layout edges, and a base class that executes a
// primitive with per-session memory handles built once in bind(). dnnl::error
// never escapes: create paths turn it into a decline or a Status.
#pragma once

#include <dnnl.hpp>

#include <memory>
#include <string>
#include <vector>

#include "plan/kernel.h"

namespace atrous::onednn {

struct MemDesc {
  dnnl::memory::desc md;
};

dnnl::engine& cpu_engine();

dnnl::memory::data_type to_dnnl(DType t);
dnnl::memory::dims to_dims(const Shape& s);
// Dense row-major descriptor of a shape.
dnnl::memory::desc plain_desc(const Shape& s, DType t);
// The descriptor of a tensor as it lies (plain or blocked).
dnnl::memory::desc desc_of(const TensorDesc& t);
// A Layout holding md when md is not plain row-major; plain otherwise.
Layout layout_of(const dnnl::memory::desc& md, const Shape& shape, DType t);
// "plain", "nChw16c", ...
std::string layout_name(const Layout& l, size_t rank);
bool same_layout(const Layout& a, const Layout& b);
// The oneDNN post-op algorithm for an activation; false when oneDNN has none that matches.
bool eltwise_for(fb::ActKind act, float act_alpha, dnnl::algorithm* alg, float* alpha, float* beta);

// Where a primitive argument lives.
struct ArgSource {
  enum Kind { kInput, kOutput, kScratch, kFixed } kind;
  int index = 0;            // input / output / scratch index
  const void* fixed = nullptr;  // kFixed: persistent or constant data
};
struct Arg {
  int id;                   // DNNL_ARG_*
  dnnl::memory::desc md;
  ArgSource src;
};

// One primitive with its arguments; bind() makes the memory objects once.
struct PrimitiveCall {
  dnnl::primitive prim;
  std::vector<Arg> args;
  // {input, output}: skip this call when the planner gave both the same buffer
  // (e.g. the residual copy of a conv computing in place over its residual).
  std::pair<int, int> skip_if_alias{-1, -1};
};

// Runs a sequence of primitives (e.g. reorder then convolution).
class PrimitiveKernel : public Kernel {
 public:
  Result<std::unique_ptr<KernelState>> bind(const RunBuffers& bufs) const override;
  Status run(const RunBuffers& bufs, KernelState* state) const override;
  double flops() const override { return flops_; }
  std::string detail() const override { return detail_; }

  std::vector<PrimitiveCall> calls;
  double flops_ = 0;
  std::string detail_;
};

// Creates a primitive descriptor, turning dnnl::error into a decline.
template <class F>
Status try_dnnl(F&& f, const std::string& what) {
  try {
    f();
    return Status::Ok();
  } catch (const dnnl::error& e) {
    return unsupported(what + ": oneDNN: " + e.what());
  } catch (const std::exception& e) {
    return unsupported(what + ": " + e.what());
  }
}

// Scratchpad of a primitive descriptor as a scratch request; returns the index or -1.
int request_scratchpad(KernelContext& ctx, const dnnl::memory::desc& md);

// True when oneDNN offers only its reference implementation ("ref:any"), which
// for simple ops is slower than our own reference kernels: such kernels decline.
bool is_reference_impl(const dnnl::primitive_desc_base& pd);

// Output 0 of a primitive that produces it in layout `md`. When md is not plain
// but the output must be (ctx.out_may_block[0] is false), the primitive writes
// to scratch and finish_output() appends a reorder into the plain output;
// otherwise the primitive writes the output directly and finish_output() records
// md as the output's layout.
struct OutputSink {
  dnnl::memory::desc md;
  ArgSource arg;
  bool via_scratch = false;
};
OutputSink output_sink(KernelContext& ctx, const dnnl::memory::desc& md);
// Call after pushing the primitive that writes the sink.
void finish_output(KernelContext& ctx, PrimitiveKernel& k, const OutputSink& sink);

// Planner-inserted layout change: blocked → plain.
Result<std::unique_ptr<Kernel>> make_reorder_to_plain(const TensorDesc& src);
extern const KernelDef kReorderOnednn;

// Reorders constant data (plain) into `dst_md` in a persistent buffer; returns it.
Result<const void*> pack_constant(KernelContext& ctx, const void* src, const dnnl::memory::desc& src_md,
                                  const dnnl::memory::desc& dst_md);

}  // namespace atrous::onednn
