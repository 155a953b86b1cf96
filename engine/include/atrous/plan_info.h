// A plan as data: what `atrous inspect --explain/--memory` prints and what an
// application can log before the first run (memory needed, kernels chosen).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "atrous/tensor.h"

namespace atrous {

struct KernelChoice {
  std::string kernel;  // "conv2d_onednn"
  std::string reason;  // empty when chosen; the decline reason otherwise
};

struct StepInfo {
  std::string node;          // node name ("" for steps the planner inserted)
  std::string op;            // "Conv2d", or "Reorder" for an inserted layout change
  std::string kernel;        // chosen kernel
  std::string detail;        // e.g. the oneDNN implementation
  std::vector<KernelChoice> declined;
  std::vector<std::string> fused;  // nodes folded into this step (BatchNorm, Unary, Binary)
  std::vector<Shape> output_shapes;
  std::vector<std::string> output_layouts;  // "plain" or the oneDNN tag, e.g. "nChw16c"
  double flops = 0;
};

struct BufferInfo {
  std::string label;
  uint64_t bytes = 0, offset = 0;
  int first_step = 0, last_step = 0;
};

struct MemoryInfo {
  uint64_t naive_bytes = 0;     // every buffer separately
  uint64_t arena_bytes = 0;     // the planned arena
  uint64_t lower_bound = 0;     // the most bytes alive at one step
  uint64_t persistent_bytes = 0;  // packed or converted weights owned by the plan
  uint64_t weight_bytes = 0;    // weights used in place from the model file
  std::vector<BufferInfo> buffers;
  std::string timeline;         // printable per-buffer timeline
};

struct PlanInfo {
  std::string entry;
  std::vector<StepInfo> steps;
  MemoryInfo memory;
  int threads = 1;
};

}  // namespace atrous
