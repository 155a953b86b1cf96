// Where each node type's parameters live in a PyTorch state dict.
//
// For every Atrous node type that takes weights, the table lists one or more
// layouts: which op input each parameter feeds, the key suffix it is stored
// under (after the module's prefix, e.g. "backbone.conv1" + ".weight"),
// whether it may be absent (a Linear without bias), and its shape as a rule
// in symbols, e.g. Conv2d weight "[O, Ig, kH, kW]" and bias "[O]". A symbol is
// bound by the first tensor that has it and checked in every later one, so
// a bias that does not match its weight is reported before anything is
// written. A packed projection (nn.MultiheadAttention's in_proj_weight) is
// split by row blocks: `part` of `parts`.
//
// Layout choice, unless the node names one: among the layouts whose required
// keys all exist under the prefix, the one with the most keys present (so a
// layout with extra optional tensors wins over its subset); when none is
// complete, the one with the most keys present, whose missing keys are reported. Every op input that no slot fills is a data
// input (activations, masks, residuals), filled in order from the node's
// own inputs.
//
// Adding a node type: one entry in kOpParams (param_table.cpp). The generic
// JSON recipe and C++ recipes (node_inputs()) both read it.
//
//   ATROUS_ASSIGN_OR_RETURN(NodeParams np, plan_node_params(ctx, "Linear", attrs, "blocks.0.mlp.fc1", ""));
//   ATROUS_ASSIGN_OR_RETURN(std::vector<int> inputs, node_inputs(ctx, g, np, {x}));
//   int y = g.node("blocks.0.mlp.fc1", fb::LinearT{}, inputs);
#pragma once

#include <map>
#include <string>
#include <vector>

#include "convert/recipe.h"

namespace atrous::convert {

struct ParamSlot {
  int input;            // op input index
  std::string suffix;   // key suffix after "<prefix>."
  bool optional;
  std::string shape;    // rule, e.g. "[O, Ig, kH, kW]"; dims are integers, symbols or products ("Og*groups")
  int part = 0, parts = 1;  // row block of a packed tensor
  bool integer = false;     // an integer tensor (ids, indices)
};

struct ParamLayout {
  const char* name;                   // "torch", "qkv", ...
  const char* source;                 // where this layout comes from, for docs
  std::vector<ParamSlot> slots;
  std::vector<const char*> ignored;   // suffixes consumed without use (BatchNorm's num_batches_tracked)
};

struct OpParams {
  const char* op;                     // schema name, e.g. "Conv2d"
  std::vector<ParamLayout> layouts;
  // Symbols from the node's attributes (e.g. "groups"), bound before the slots.
  void (*bind_attrs)(const fb::OpUnion& op, std::map<std::string, int64_t>* symbols) = nullptr;
  // Slots that depend on the attributes (LiteMLA: two per scale), appended to every layout.
  void (*more_slots)(const fb::OpUnion& op, std::vector<ParamSlot>* slots) = nullptr;
};

const std::vector<OpParams>& all_op_params();
// nullptr when the op takes no parameters from a state dict.
const OpParams* find_op_params(const std::string& op);

// One parameter of a node, resolved against the state dict.
struct ParamRef {
  int input = 0;
  std::string key;           // state-dict key
  std::string value_name;    // graph value name: the key, or "key[part/parts]"
  int part = 0, parts = 1;
  Shape expected;            // from the rule; -1 = not constrained
  bool integer = false;
};

struct NodeParams {
  std::string layout;                   // the chosen layout's name
  std::vector<ParamRef> params;         // present (or required but missing) parameters
  std::vector<std::string> ignored;     // keys consumed without use
  std::vector<int> data_positions;      // op inputs left for the node's own inputs, in order
  int min_inputs = 0;                   // the op's arity lower bound
};

// Plans the parameters of one node: op (schema name), its attributes, the key
// prefix and an optional layout name ("" = choose). Fails when the op has no
// table entry or the layout name is unknown.
Result<NodeParams> plan_node_params(const RecipeContext& ctx, const std::string& op, const fb::OpUnion& attrs,
                                    const std::string& prefix, const std::string& layout);

// Registers one planned parameter (recording problems in ctx).
int register_param(RecipeContext& ctx, GraphBuilder& g, const ParamRef& p);

// The node's full input list: data inputs in data_positions order, parameters at
// their slots, -1 for absent ones. Fails when more data inputs are given than the
// op has room for.
Result<std::vector<int>> node_inputs(RecipeContext& ctx, GraphBuilder& g, const NodeParams& np,
                                     const std::vector<int>& data_inputs);

// Evaluates a shape rule with the symbols bound so far (unknown dims: -1), and
// binds single-symbol dims from `actual` when it has the rule's rank.
Result<Shape> evaluate_shape_rule(const std::string& rule, std::map<std::string, int64_t>* symbols,
                                  const Shape* actual);

}  // namespace atrous::convert
