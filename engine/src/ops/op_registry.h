// The op registry: one OpDef per node type, looked up by the schema's Op enum.
//
// An op file (ops/<op>.cpp) holds, in this order: attribute checks, shape
// inference, the reference kernel, and one registration line defining
// `const OpDef k<Op>Op`. ATROUS_OPS below lists every op once;
// the names come from the schema's union, so the two cannot drift.
//
// check() runs at load time on the trusted-after-this graph: arity was already
// checked, attribute ranges and input dtypes are checked here, and output
// dtypes are set. infer() is pure shape inference, shared by the planner, the
// converter and tests.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "plan/kernel.h"

namespace atrous {

class CheckContext {
 public:
  CheckContext(const ir::Graph& g, int index) : graph(g), node_index(index), node(g.nodes[static_cast<size_t>(index)]) {}
  const ir::Graph& graph;
  int node_index;
  const ir::Node& node;
  std::vector<DType> out_dtypes;  // to fill, one per node output

  int num_inputs() const { return static_cast<int>(node.inputs.size()); }
  bool has(int i) const { return i < num_inputs() && node.inputs[static_cast<size_t>(i)] >= 0; }
  const ir::Value& value(int i) const { return graph.values[static_cast<size_t>(node.inputs[static_cast<size_t>(i)])]; }
  DType dtype(int i) const { return value(i).dtype; }
  template <class T>
  const T& attrs() const { return *static_cast<const T*>(node.op.value); }

  // invalid_model("node 3 'conv1' (Conv2d): " + msg)
  Status fail(const std::string& msg) const;
  // Fails unless input i (when present) has one of the given dtypes.
  Status expect_dtype(int i, std::initializer_list<DType> allowed) const;
  // Fails unless input i is present and a constant.
  Status expect_constant(int i) const;
  // Sets every output dtype to t.
  void outputs_are(DType t) { out_dtypes.assign(node.outputs.size(), t); }
};

class ShapeContext {
 public:
  ShapeContext(const ir::Graph& g, int index) : graph(g), node_index(index), node(g.nodes[static_cast<size_t>(index)]) {}
  const ir::Graph& graph;
  int node_index;
  const ir::Node& node;
  std::vector<Shape> in;      // per node input (empty for absent)
  std::vector<bool> present;
  std::vector<Shape> out;     // to fill, one per node output

  template <class T>
  const T& attrs() const { return *static_cast<const T*>(node.op.value); }
  bool has(int i) const { return i < static_cast<int>(present.size()) && present[static_cast<size_t>(i)]; }
  // invalid_argument("node 3 'conv1' (Conv2d): " + msg)
  Status fail(const std::string& msg) const;
  // Fails unless input i has `rank` dims.
  Status expect_rank(int i, size_t rank) const;
};

struct OpDef {
  const char* name;
  int min_inputs, max_inputs;
  int min_outputs, max_outputs;
  Status (*check)(CheckContext& ctx);
  Status (*infer)(ShapeContext& ctx);
  std::vector<const KernelDef*> kernels;  // in order of preference, reference last
  int inplace_input = -1;  // output 0 may take this input's buffer when the input dies here
  bool view = false;       // output 0 is input 0 with another shape: no data moves
  // An input whose shape alone is used (Resize's "like"): the planner neither reorders it
  // to plain for a kernel nor lets it keep its producer from a blocked layout.
  int shape_only_input = -1;
};

// The one list of ops, in schema names: X(Conv2d) declares `extern const OpDef kConv2dOp`,
// defined by the last line of ops/conv2d.cpp; registry.cpp builds the lookup table from it.
#define ATROUS_OPS(X) \
  X(Conv2d)          \
  X(ConvTranspose2d) \
  X(BatchNorm)       \
  X(Linear)          \
  X(MatMul)          \
  X(LayerNorm)       \
  X(Unary)           \
  X(Binary)          \
  X(Concat)          \
  X(Slice)           \
  X(Pool2d)          \
  X(GlobalPool)      \
  X(Resize)          \
  X(Softmax)         \
  X(Reshape)         \
  X(Transpose)       \
  X(Argmax)          \
  X(MultiHeadAttention) \
  X(LinearAttention) \
  X(PerformerAttention) \
  X(NormAttention)   \
  X(GatedAttentionUnit) \
  X(LiteMLA) \
  X(Embedding)       \
  X(RMSNorm)         \
  X(MambaScan)       \
  X(BiMambaScan)     \
  X(S4D)             \
  X(WindowAttention) \
  X(FeedForward)     \
  X(PromptEncoding)  \
  X(BoundaryRefinement)


#define ATROUS_DECLARE_OP(name) extern const OpDef k##name##Op;
ATROUS_OPS(ATROUS_DECLARE_OP)
#undef ATROUS_DECLARE_OP

// nullptr for a type this build does not know.
const OpDef* find_op(fb::Op type);
// Every registered op, in schema order.
std::vector<const OpDef*> all_ops();

// Shared shape helpers.
// Normalises a possibly negative axis against rank; false when out of range.
bool normalize_axis(int64_t axis, size_t rank, int* out);
// Numpy broadcasting of a and b; false when incompatible.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out);
// floor((in + pads - dilation*(k-1) - 1)/stride) + 1, or <= 0 when the window does not fit.
int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end, int64_t dilation);

}  // namespace atrous
