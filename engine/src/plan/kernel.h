// The kernel interface: how an op's implementations plug into the planner.
//
// Each op lists KernelDefs in order of preference (oneDNN first, reference
// last). At plan time the planner calls create() on each in turn; a candidate
// either returns a Kernel or declines with Status kUnsupported and a reason
// (kept for `atrous inspect --explain`). Any other error stops planning.
// create() does all the expensive work once: primitive creation, weight
// packing (into ctx.persistent()), scratch declaration (ctx.scratch()).
// A Kernel is immutable after create and shared by every Session of the plan;
// per-session objects (oneDNN memory handles bound to the arena) live in the
// KernelState that bind() returns. run() must not allocate.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"
#include "ir/graph.h"

namespace atrous {

namespace onednn {
struct MemDesc;  // wraps dnnl::memory::desc (onednn/ is the only place that sees oneDNN)
}

// How a tensor's elements are ordered in memory. Plain is dense row-major;
// blocked is a oneDNN layout (e.g. nChw16c) known only to oneDNN kernels.
struct Layout {
  std::shared_ptr<const onednn::MemDesc> blocked;
  bool plain() const { return !blocked; }
};

struct TensorDesc {
  DType dtype = DType::kF32;
  Shape shape;
  Layout layout;
  uint64_t bytes = 0;  // storage size (blocked layouts may pad channels)
};

// Buffers of one step: arena pointers (or constant data) per node input/output.
struct RunBuffers {
  std::vector<void*> in;       // per node input; nullptr for an absent optional input
  std::vector<void*> out;      // per node output
  std::vector<void*> scratch;  // per ctx.scratch() request, in request order
};

class KernelState {
 public:
  virtual ~KernelState() = default;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Once per Session and plan, outside run(): create per-session objects.
  virtual Result<std::unique_ptr<KernelState>> bind(const RunBuffers& /*bufs*/) const {
    return std::unique_ptr<KernelState>();
  }
  virtual Status run(const RunBuffers& bufs, KernelState* state) const = 0;
  // Floating-point operations of one run (multiply-add = 2), for GFLOP/s reports.
  virtual double flops() const { return 0; }
  // Extra detail for --explain, e.g. the oneDNN implementation name.
  virtual std::string detail() const { return {}; }
};

class KernelContext;

struct KernelDef {
  const char* name;        // "<op>_<impl>", e.g. "conv2d_onednn"
  bool accepts_blocked;    // may read inputs in a oneDNN blocked layout
  Result<std::unique_ptr<Kernel>> (*create)(KernelContext& ctx);
};

// What create() sees: the node, its tensors, and plan-time services.
class KernelContext {
 public:
  const ir::Graph& graph;
  int node_index;
  const ir::Node& node;
  std::vector<TensorDesc> in;         // per node input (absent: present[i] == false)
  std::vector<bool> present;
  std::vector<const void*> constant;  // per input: host data when the input is a constant
  std::vector<TensorDesc> out;        // shapes and dtypes inferred; layout plain unless set
  std::vector<bool> out_may_block;    // the kernel may set out[i].layout to a blocked layout
  int threads = 1;

  KernelContext(const ir::Graph& g, int index)
      : graph(g), node_index(index), node(g.nodes[static_cast<size_t>(index)]) {}

  template <class T>
  const T& attrs() const { return *static_cast<const T*>(node.op.value); }
  std::string label() const { return ir::node_label(graph, node_index); }
  // A decline: kUnsupported with the reason.
  static Status decline(const std::string& reason) { return unsupported(reason); }

  // Plan-owned memory (packed weights), 64-byte aligned, zeroed, lives with the plan.
  void* persistent(uint64_t bytes);
  // Scratch in the arena for the duration of this step; returns the request index.
  int scratch(uint64_t bytes);
  // The stride of per-thread slices of a scratch buffer: `floats` rounded up to 32 KiB.
  // Measured on the causal linear cores with two threads (docs/performance.md): d = 64
  // slices 17 KiB apart ran 20-30 % slower than 32 KiB apart in a loop of the core alone,
  // Performer's 69 KiB apart 4 % slower than 96 KiB apart.
  static int64_t thread_slice_floats(int64_t floats) {
    constexpr int64_t k = 8192;
    return (floats + k - 1) / k * k;
  }
  // Says a constant's bytes were packed into persistent() memory and are not read in
  // place: their model-file pages are dropped from memory (read again if needed).
  void release_constant(const void* data, uint64_t bytes) {
    if (release_fn) release_fn(data, bytes);
  }

  // Filled by the planner.
  std::function<void*(uint64_t)> persistent_fn;
  std::function<void(const void*, uint64_t)> release_fn;
  std::vector<uint64_t> scratch_bytes;
};

}  // namespace atrous
