// Plan-time graph rewrites (BatchNorm folding, activation and residual fusion).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace atrous {
namespace internal { class ModelImpl; }

// Rewrites g in place. fused[i] lists the names of nodes merged into node i.
// kernel_allowed(name): whether the session may use that kernel; a rewrite whose only
// purpose is a kernel (Boundary Refinement's fused pass) happens only when it may.
Status fuse_graph(ir::Graph& g, const internal::ModelImpl& model, const std::function<bool(const std::string&)>& kernel_allowed,
                  std::vector<std::vector<std::string>>* fused);

}  // namespace atrous
