// The in-memory graph: what a verified model file says, in plain C++ types.
//
// An ir::Graph is built from one entry point of a ModelFile (graph_loader.cpp)
// after every index, offset, shape and attribute has been checked; afterwards it
// is trusted. Node attributes stay in the FlatBuffers object-API types
// (fb::Conv2dT, ...), so there is one definition of every attribute: the schema.
// Constants point into the mapped file; the Model keeps the file alive.
// The planner copies a Graph and rewrites the copy (BN folding, fusion).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "atrous/atrous_generated.h"
#include "atrous/tensor.h"

namespace atrous::ir {

enum class ValueKind { kIntermediate, kInput, kConstant };

struct Value {
  std::string name;
  DType dtype = DType::kF32;          // logical type seen by ops (f16/bf16 constants read as f32)
  DType storage_dtype = DType::kF32;  // constants: as stored in the file
  Shape shape;                        // constants: exact; inputs: -1 = free; others: inferred
  ValueKind kind = ValueKind::kIntermediate;
  const uint8_t* data = nullptr;      // constants: storage_dtype elements
  uint64_t nbytes = 0;                // constants: bytes at data
  int producer = -1;                  // node index, intermediates only
};

struct Node {
  std::string name;
  fb::OpUnion op;
  std::vector<int> inputs;   // value indices; -1 = absent optional input
  std::vector<int> outputs;  // value indices
};

struct Graph {
  std::string name;
  std::vector<Value> values;
  std::vector<Node> nodes;  // topological order
  std::vector<int> inputs;
  std::vector<int> outputs;
  std::shared_ptr<const fb::PreprocessT> preprocess;    // null when absent
  std::shared_ptr<const fb::PostprocessT> postprocess;  // null when absent
  // Buffers that constants created after loading (folded weights) point into.
  std::vector<std::shared_ptr<void>> owned;
};

// "node 3 'backbone.conv1' (Conv2d)"
std::string node_label(const Graph& g, int node_index);
// "'backbone.conv1.weight'"
std::string value_label(const Graph& g, int value_index);

// Adds a constant owned by the graph (64-byte aligned, zeroed); returns its index.
int add_owned_constant(Graph& g, const std::string& name, DType dtype, const Shape& shape, void** data_out);

}  // namespace atrous::ir
