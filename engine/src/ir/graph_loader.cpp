// Semantic verification of one entry point, building the trusted ir::Graph.
//
// The FlatBuffers Verifier has already proved every table and vector in bounds.
// Here we check what it cannot: enum ranges, indices, weight offsets and sizes
// (overflow-checked), arity, attribute ranges and dtypes per node type, a
// single producer per value, every input produced or given, and no cycles.
// Every failure names the graph, the node or the value.
#include "ir/graph_loader.h"

#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "ops/op_registry.h"

namespace atrous::ir {

std::string node_label(const Graph& g, int node_index) {
  const Node& n = g.nodes[static_cast<size_t>(node_index)];
  const OpDef* def = find_op(n.op.type);
  return "node " + std::to_string(node_index) + " '" + n.name + "' (" + (def ? def->name : "?") + ")";
}

std::string value_label(const Graph& g, int value_index) {
  if (value_index < 0 || static_cast<size_t>(value_index) >= g.values.size()) return "<absent>";
  return "'" + g.values[static_cast<size_t>(value_index)].name + "'";
}

int add_owned_constant(Graph& g, const std::string& name, DType dtype, const Shape& shape, void** data_out) {
  Tensor t = Tensor::zeros(dtype, shape);
  Value v;
  v.name = name;
  v.dtype = dtype;
  v.storage_dtype = dtype;
  v.shape = shape;
  v.kind = ValueKind::kConstant;
  v.data = static_cast<const uint8_t*>(t.raw());
  v.nbytes = t.nbytes();
  *data_out = t.raw();
  // Keep the buffer alive with the graph: a Tensor shares ownership of its buffer.
  g.owned.push_back(std::shared_ptr<void>(new Tensor(t), [](void* p) { delete static_cast<Tensor*>(p); }));
  g.values.push_back(std::move(v));
  return static_cast<int>(g.values.size()) - 1;
}

namespace {

bool valid_dtype(fb::DType t) { return t >= fb::DType::MIN && t <= fb::DType::MAX; }

Status load_values(const ModelFile& file, const fb::Graph& fg, const std::string& gname, Graph* g) {
  const auto* values = fg.values();
  std::unordered_set<std::string> names;
  g->values.resize(values->size());
  for (flatbuffers::uoffset_t i = 0; i < values->size(); ++i) {
    const fb::Value* fv = values->Get(i);
    Value& v = g->values[i];
    v.name = fv->name()->str();
    std::string who = "graph '" + gname + "' value " + std::to_string(i) + " '" + v.name + "'";
    if (v.name.empty()) return invalid_model(who + ": empty name");
    if (!names.insert(v.name).second) return invalid_model(who + ": name used twice");
    if (!valid_dtype(fv->dtype()))
      return invalid_model(who + ": unknown dtype code " + std::to_string(static_cast<int>(fv->dtype())));
    v.storage_dtype = static_cast<DType>(fv->dtype());
    v.dtype = v.storage_dtype;
    if (fv->kind() < fb::ValueKind::MIN || fv->kind() > fb::ValueKind::MAX)
      return invalid_model(who + ": unknown value kind " + std::to_string(static_cast<int>(fv->kind())));
    v.kind = static_cast<ValueKind>(fv->kind());
    if (fv->shape()) {
      if (fv->shape()->size() > 8) return invalid_model(who + ": rank " + std::to_string(fv->shape()->size()) + " is above the limit of 8");
      v.shape.assign(fv->shape()->begin(), fv->shape()->end());
    }
    for (int64_t d : v.shape) {
      bool ok = v.kind == ValueKind::kInput ? d >= -1 : d >= 0;
      if (!ok) return invalid_model(who + ": invalid dimension " + std::to_string(d) + " in shape " + shape_string(v.shape));
    }
    if (v.kind == ValueKind::kConstant) {
      if (!fv->shape()) return invalid_model(who + ": a constant needs a shape");
      auto nb = checked_nbytes(v.shape, v.storage_dtype);
      if (!nb.ok()) return invalid_model(who + ": " + nb.status().message());
      uint64_t off = fv->data_offset(), len = fv->data_length();
      if (off % kDataAlignment != 0)
        return invalid_model(who + ": data offset " + std::to_string(off) + " is not a multiple of 64");
      if (off > file.data_size() || len > file.data_size() - off)
        return invalid_model(who + ": data [" + std::to_string(off) + ", +" + std::to_string(len) +
                             ") lies outside the data section (" + std::to_string(file.data_size()) + " bytes)");
      if (len != *nb)
        return invalid_model(who + ": shape " + shape_string(v.shape) + " of " + dtype_name(v.storage_dtype) +
                             " needs " + std::to_string(*nb) + " bytes but the file stores " + std::to_string(len));
      v.data = file.data_section() + off;
      v.nbytes = len;
      // Half-precision weights are read as f32 by the ops (converted at plan time).
      if (v.storage_dtype == DType::kF16 || v.storage_dtype == DType::kBF16) v.dtype = DType::kF32;
    }
  }
  return Status::Ok();
}

Status check_index_list(const flatbuffers::Vector<uint32_t>* list, const Graph& g, const std::string& what,
                        const std::string& gname, std::vector<int>* out) {
  if (!list) return Status::Ok();
  for (uint32_t idx : *list) {
    if (idx >= g.values.size())
      return invalid_model("graph '" + gname + "': " + what + " refers to value " + std::to_string(idx) +
                           ", but there are only " + std::to_string(g.values.size()));
    out->push_back(static_cast<int>(idx));
  }
  return Status::Ok();
}

Status load_nodes(const fb::Graph& fg, const std::string& gname, Graph* g) {
  if (!fg.nodes()) return Status::Ok();
  const auto* nodes = fg.nodes();
  g->nodes.resize(nodes->size());
  for (flatbuffers::uoffset_t i = 0; i < nodes->size(); ++i) {
    const fb::Node* fn = nodes->Get(i);
    Node& n = g->nodes[i];
    n.name = fn->name() ? fn->name()->str() : "";
    std::string who = "graph '" + gname + "' node " + std::to_string(i) + " '" + n.name + "'";
    const OpDef* def = find_op(fn->op_type());
    if (!def)
      return invalid_model(who + ": unknown node type " + std::to_string(static_cast<int>(fn->op_type())) +
                           " (this build knows types 1.." + std::to_string(static_cast<int>(fb::Op::MAX)) +
                           "; the file may need a newer Atrous)");
    if (!fn->op()) return invalid_model(who + ": missing attributes table");
    n.op.type = fn->op_type();
    n.op.value = fb::OpUnion::UnPack(fn->op(), fn->op_type(), nullptr);
    who += " (" + std::string(def->name) + ")";
    int nin = fn->inputs() ? static_cast<int>(fn->inputs()->size()) : 0;
    int nout = fn->outputs() ? static_cast<int>(fn->outputs()->size()) : 0;
    if (nin < def->min_inputs || nin > def->max_inputs)
      return invalid_model(who + ": has " + std::to_string(nin) + " inputs, expected " +
                           (def->min_inputs == def->max_inputs ? std::to_string(def->min_inputs)
                                                               : std::to_string(def->min_inputs) + " to " +
                                                                     std::to_string(def->max_inputs)));
    if (nout < def->min_outputs || nout > def->max_outputs)
      return invalid_model(who + ": has " + std::to_string(nout) + " outputs, expected " +
                           std::to_string(def->min_outputs) +
                           (def->min_outputs == def->max_outputs ? "" : " to " + std::to_string(def->max_outputs)));
    for (int k = 0; k < nin; ++k) {
      int32_t idx = fn->inputs()->Get(static_cast<flatbuffers::uoffset_t>(k));
      if (idx == -1 && k >= def->min_inputs) {
        n.inputs.push_back(-1);
        continue;
      }
      if (idx < 0 || static_cast<size_t>(idx) >= g->values.size())
        return invalid_model(who + ": input " + std::to_string(k) + " refers to value " + std::to_string(idx) +
                             (idx == -1 ? ", but that input is required" :
                              ", but there are only " + std::to_string(g->values.size()) + " values"));
      n.inputs.push_back(idx);
    }
    for (int k = 0; k < nout; ++k) {
      uint32_t idx = fn->outputs()->Get(static_cast<flatbuffers::uoffset_t>(k));
      if (idx >= g->values.size())
        return invalid_model(who + ": output " + std::to_string(k) + " refers to value " + std::to_string(idx) +
                             ", but there are only " + std::to_string(g->values.size()) + " values");
      Value& v = g->values[idx];
      if (v.kind != ValueKind::kIntermediate)
        return invalid_model(who + ": output '" + v.name + "' is a graph input or constant, not an intermediate");
      if (v.producer >= 0)
        return invalid_model(who + ": value '" + v.name + "' is already produced by node " + std::to_string(v.producer));
      v.producer = static_cast<int>(i);
      n.outputs.push_back(static_cast<int>(idx));
    }
  }
  return Status::Ok();
}

// Kahn's algorithm; reorders nodes topologically, or names a node on a cycle.
Status sort_nodes(const std::string& gname, Graph* g) {
  size_t n = g->nodes.size();
  std::vector<int> pending(n, 0);
  std::vector<std::vector<int>> consumers(n);
  for (size_t i = 0; i < n; ++i) {
    for (int in : g->nodes[i].inputs) {
      if (in < 0) continue;
      const Value& v = g->values[static_cast<size_t>(in)];
      if (v.kind != ValueKind::kIntermediate) continue;
      if (v.producer < 0)
        return invalid_model("graph '" + gname + "' node " + std::to_string(i) + " '" + g->nodes[i].name +
                             "': input '" + v.name + "' is neither a graph input, a constant, nor produced by any node");
      consumers[static_cast<size_t>(v.producer)].push_back(static_cast<int>(i));
      ++pending[i];
    }
  }
  std::vector<int> order, ready;
  for (size_t i = n; i-- > 0;)
    if (pending[i] == 0) ready.push_back(static_cast<int>(i));
  while (!ready.empty()) {
    int x = ready.back();
    ready.pop_back();
    order.push_back(x);
    for (auto it = consumers[static_cast<size_t>(x)].rbegin(); it != consumers[static_cast<size_t>(x)].rend(); ++it)
      if (--pending[static_cast<size_t>(*it)] == 0) ready.push_back(*it);
  }
  if (order.size() != n) {
    for (size_t i = 0; i < n; ++i)
      if (pending[i] > 0)
        return invalid_model("graph '" + gname + "' has a cycle through node " + std::to_string(i) + " '" +
                             g->nodes[i].name + "'");
  }
  // Renumber: nodes in topological order, producers updated.
  std::vector<Node> sorted;
  sorted.reserve(n);
  for (int x : order) sorted.push_back(std::move(g->nodes[static_cast<size_t>(x)]));
  g->nodes = std::move(sorted);
  for (size_t i = 0; i < n; ++i)
    for (int o : g->nodes[i].outputs) g->values[static_cast<size_t>(o)].producer = static_cast<int>(i);
  return Status::Ok();
}

Status check_pre_post(const std::string& gname, Graph* g) {
  auto find_name = [&](const std::vector<int>& list, const std::string& name) {
    for (int v : list)
      if (g->values[static_cast<size_t>(v)].name == name) return true;
    return false;
  };
  if (const fb::PreprocessT* p = g->preprocess.get()) {
    std::string who = "graph '" + gname + "' preprocessing";
    if (!p->input.empty() && !find_name(g->inputs, p->input))
      return invalid_model(who + ": input '" + p->input + "' is not a graph input");
    if (g->inputs.empty()) return invalid_model(who + ": the graph has no input to take an image");
    if (p->resize < fb::ResizePolicy::MIN || p->resize > fb::ResizePolicy::MAX)
      return invalid_model(who + ": unknown resize policy");
    if (p->channel_order < fb::ChannelOrder::MIN || p->channel_order > fb::ChannelOrder::MAX)
      return invalid_model(who + ": unknown channel order");
    if (p->resize != fb::ResizePolicy::Keep && (p->width <= 0 || p->width > 65536 || p->height < 0 || p->height > 65536))
      return invalid_model(who + ": resize target " + std::to_string(p->width) + "x" + std::to_string(p->height) + " is out of range");
    if (p->mean.size() > 4 || p->std.size() > 4 || (!p->std.empty() && p->std.size() != p->mean.size()))
      return invalid_model(who + ": mean and std must have one entry per channel");
    for (float s : p->std)
      if (!(s > 0)) return invalid_model(who + ": std must be positive");
    if (p->pad_width < 0 || p->pad_height < 0 || p->pad_width > 65536 || p->pad_height > 65536 ||
        p->pad_multiple < 0 || p->pad_multiple > 4096)
      return invalid_model(who + ": padding out of range");
  }
  if (const fb::PostprocessT* p = g->postprocess.get()) {
    std::string who = "graph '" + gname + "' postprocessing";
    if (!p->output.empty() && !find_name(g->outputs, p->output))
      return invalid_model(who + ": output '" + p->output + "' is not a graph output");
    if (p->kind < fb::PostKind::MIN || p->kind > fb::PostKind::MAX) return invalid_model(who + ": unknown kind");
    if (p->palette.size() % 3 != 0) return invalid_model(who + ": palette length is not a multiple of 3");
  }
  return Status::Ok();
}

}  // namespace

Result<Graph> load_graph(const ModelFile& file, const fb::Graph& fg) {
  Graph g;
  g.name = fg.name()->str();
  if (g.name.empty()) return invalid_model("a graph has an empty entry-point name");
  const std::string& gname = g.name;
  ATROUS_RETURN_IF_ERROR(load_values(file, fg, gname, &g));
  ATROUS_RETURN_IF_ERROR(check_index_list(fg.inputs(), g, "input list", gname, &g.inputs));
  ATROUS_RETURN_IF_ERROR(check_index_list(fg.outputs(), g, "output list", gname, &g.outputs));
  for (int i : g.inputs)
    if (g.values[static_cast<size_t>(i)].kind != ValueKind::kInput)
      return invalid_model("graph '" + gname + "': listed input '" + g.values[static_cast<size_t>(i)].name +
                           "' is not of kind Input");
  for (size_t i = 0; i < g.values.size(); ++i) {
    if (g.values[i].kind != ValueKind::kInput) continue;
    bool listed = false;
    for (int x : g.inputs) listed |= x == static_cast<int>(i);
    if (!listed) return invalid_model("graph '" + gname + "': value '" + g.values[i].name + "' is an Input but not in the input list");
  }
  ATROUS_RETURN_IF_ERROR(load_nodes(fg, gname, &g));
  ATROUS_RETURN_IF_ERROR(sort_nodes(gname, &g));
  for (int o : g.outputs) {
    const Value& v = g.values[static_cast<size_t>(o)];
    if (v.kind == ValueKind::kIntermediate && v.producer < 0)
      return invalid_model("graph '" + gname + "': output '" + v.name + "' is not produced by any node");
  }
  // Per-op checks in topological order: attribute ranges, input dtypes, output dtypes.
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const OpDef* def = find_op(g.nodes[i].op.type);
    CheckContext ctx(g, static_cast<int>(i));
    ATROUS_RETURN_IF_ERROR(def->check(ctx).with_context("graph '" + gname + "'"));
    if (ctx.out_dtypes.size() != g.nodes[i].outputs.size())
      return internal_error(node_label(g, static_cast<int>(i)) + ": check() did not set every output dtype");
    for (size_t k = 0; k < ctx.out_dtypes.size(); ++k) {
      Value& v = g.values[static_cast<size_t>(g.nodes[i].outputs[k])];
      if (v.dtype != ctx.out_dtypes[k])
        return invalid_model("graph '" + gname + "' " + node_label(g, static_cast<int>(i)) + ": output '" + v.name +
                             "' is declared " + dtype_name(v.dtype) + " but the node produces " +
                             dtype_name(ctx.out_dtypes[k]));
    }
  }
  if (fg.preprocess()) g.preprocess = std::shared_ptr<const fb::PreprocessT>(fg.preprocess()->UnPack());
  if (fg.postprocess()) g.postprocess = std::shared_ptr<const fb::PostprocessT>(fg.postprocess()->UnPack());
  ATROUS_RETURN_IF_ERROR(check_pre_post(gname, &g));
  return g;
}

}  // namespace atrous::ir
