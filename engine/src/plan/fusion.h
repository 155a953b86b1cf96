// Plan-time graph rewrites (BatchNorm folding, activation and residual fusion).
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace atrous {
namespace internal { class ModelImpl; }

// Rewrites g in place. fused[i] lists the names of nodes merged into node i.
Status fuse_graph(ir::Graph& g, const internal::ModelImpl& model, std::vector<std::vector<std::string>>* fused);

}  // namespace atrous
