// Plan: a graph specialised to concrete input shapes, ready to run.
//
// build_plan() does every expensive thing once: plan-time rewrites (BatchNorm
// folding, activation and residual fusion), shape inference, kernel choice per
// node (with the reasons other candidates declined), layout decisions (oneDNN
// blocked layouts kept between oneDNN kernels, reorders inserted only where a
// kernel needs plain data), weight packing and the static memory plan.
// A Plan is immutable and shared by every Session that runs these shapes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "atrous/plan_info.h"
#include "ir/graph.h"
#include "memory/memory_planner.h"
#include "plan/kernel.h"

namespace atrous {

namespace internal { class ModelImpl; }
struct OpDef;

struct PlanOptions {
  int threads = 1;
  bool reference_only = false;
  std::vector<std::string> allowed_kernels;
  std::vector<std::string> excluded_kernels;
  bool fuse = true;
  uint64_t max_memory = 0;  // 0 = default budget
  std::vector<std::string> expose;  // intermediate values kept as extra outputs
  bool keep_inputs = false;          // inputs keep their slots for the whole run, never written
};

constexpr uint64_t kDefaultMemoryBudget = 16ull << 30;

struct PlanValue {
  std::string name;
  TensorDesc desc;
  bool in_arena = true;            // false: a constant, read in place
  const void* constant = nullptr;  // constant data (f32 for float constants)
  int buffer = -1;                 // memory plan buffer (arena values)
};

struct PlanStep {
  std::string node;  // node name ("" for inserted reorders)
  std::string op;
  const OpDef* opdef = nullptr;  // null for inserted reorders
  const KernelDef* kernel = nullptr;
  std::unique_ptr<Kernel> impl;  // null for views (no data moves)
  std::vector<int> inputs;       // plan value ids; -1 = absent
  std::vector<int> outputs;
  std::vector<int> scratch;      // memory plan buffer ids
  std::vector<KernelChoice> declined;
  std::vector<std::string> fused;
};

struct Plan {
  int graph_index = 0;
  std::shared_ptr<const ir::Graph> graph;  // the rewritten graph (owns folded weights)
  std::vector<PlanValue> values;
  std::vector<PlanStep> steps;
  std::vector<int> inputs, outputs;        // plan value ids, in entry-point order
  std::vector<int> exposed;                // plan value ids of PlanOptions::expose, in order
  std::vector<Shape> input_shapes;
  MemoryPlan memory;
  std::vector<std::shared_ptr<void>> persistent;
  uint64_t persistent_bytes = 0;
  uint64_t weight_bytes = 0;
  int threads = 1;

  PlanInfo info(const std::string& entry) const;
};

Result<std::shared_ptr<const Plan>> build_plan(const internal::ModelImpl& model, int graph_index,
                                               const std::vector<Shape>& input_shapes, const PlanOptions& options);

}  // namespace atrous
