// Builds a trusted ir::Graph from one verified FlatBuffers entry point.
#pragma once

#include "format/model_file.h"
#include "ir/graph.h"

namespace atrous::ir {

// Semantic checks (indices, weight ranges, arity, per-op attributes and dtypes,
// producers, cycles). On success the graph's nodes are in topological order.
Result<Graph> load_graph(const ModelFile& file, const fb::Graph& fg);

}  // namespace atrous::ir
