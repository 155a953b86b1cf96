#include "builder/graph_builder.h"

#include <cstdio>
#include <cstring>

#include "atrous/model.h"
#include "ops/op_registry.h"

namespace atrous {

GraphBuilder::GraphBuilder(ModelBuilder* owner, std::string name) : owner_(owner) { g_.name = std::move(name); }

int GraphBuilder::add_value(ir::Value v) {
  for (const ir::Value& o : g_.values)
    if (o.name == v.name) {
      fail(invalid_argument("graph '" + g_.name + "': value name '" + v.name + "' used twice"));
      return -1;
    }
  g_.values.push_back(std::move(v));
  offsets_.push_back(0);
  return static_cast<int>(g_.values.size()) - 1;
}

int GraphBuilder::input(const std::string& name, DType dtype, const Shape& shape) {
  ir::Value v;
  v.name = name;
  v.dtype = v.storage_dtype = dtype;
  v.shape = shape;
  v.kind = ir::ValueKind::kInput;
  int id = add_value(std::move(v));
  if (id >= 0) g_.inputs.push_back(id);
  return id;
}

int GraphBuilder::constant_streamed(const std::string& name, DType dtype, const Shape& shape, ModelWriter::Fill fill) {
  auto nb = checked_nbytes(shape, dtype);
  if (!nb.ok()) {
    fail(nb.status().with_context("constant '" + name + "'"));
    return -1;
  }
  ir::Value v;
  v.name = name;
  v.storage_dtype = dtype;
  v.dtype = (dtype == DType::kF16 || dtype == DType::kBF16) ? DType::kF32 : dtype;
  v.shape = shape;
  v.kind = ir::ValueKind::kConstant;
  v.nbytes = *nb;
  int id = add_value(std::move(v));
  if (id >= 0) offsets_[static_cast<size_t>(id)] = owner_->writer_.add_data(*nb, std::move(fill));
  return id;
}

int GraphBuilder::shared_constant(const std::string& name, const GraphBuilder& src, int src_value) {
  if (src.owner_ != owner_ || src_value < 0 || src_value >= static_cast<int>(src.g_.values.size()) ||
      src.g_.values[static_cast<size_t>(src_value)].kind != ir::ValueKind::kConstant) {
    fail(invalid_argument("shared constant '" + name + "': the source is not a constant of this model"));
    return -1;
  }
  ir::Value v = src.g_.values[static_cast<size_t>(src_value)];
  v.name = name;
  int id = add_value(std::move(v));
  if (id >= 0) offsets_[static_cast<size_t>(id)] = src.offsets_[static_cast<size_t>(src_value)];
  return id;
}

int GraphBuilder::constant(const std::string& name, DType dtype, const Shape& shape, const void* data) {
  auto nb = checked_nbytes(shape, dtype);
  if (!nb.ok()) {
    fail(nb.status().with_context("constant '" + name + "'"));
    return -1;
  }
  auto copy = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + *nb);
  return constant_streamed(name, dtype, shape, [copy](void* dst) {
    if (!copy->empty()) std::memcpy(dst, copy->data(), copy->size());
    return Status::Ok();
  });
}

int GraphBuilder::constant_f32(const std::string& name, const Shape& shape, const std::vector<float>& data) {
  auto n = checked_numel(shape);
  if (!n.ok() || static_cast<size_t>(*n) != data.size()) {
    fail(invalid_argument("constant '" + name + "': " + std::to_string(data.size()) + " values for shape " + shape_string(shape)));
    return -1;
  }
  return constant(name, DType::kF32, shape, data.data());
}

std::vector<int> GraphBuilder::add_node(const std::string& name, fb::OpUnion op, const std::vector<int>& inputs, int num_outputs) {
  std::vector<int> outs(static_cast<size_t>(std::max(num_outputs, 1)), -1);
  if (!status_.ok()) return outs;
  const OpDef* def = find_op(op.type);
  if (!def) {
    fail(invalid_argument("node '" + name + "': unknown op type"));
    return outs;
  }
  int nin = static_cast<int>(inputs.size());
  if (nin < def->min_inputs || nin > def->max_inputs || num_outputs < def->min_outputs || num_outputs > def->max_outputs) {
    fail(invalid_argument("node '" + name + "' (" + def->name + "): " + std::to_string(nin) + " inputs / " +
                          std::to_string(num_outputs) + " outputs, expected " + std::to_string(def->min_inputs) + ".." +
                          std::to_string(def->max_inputs) + " / " + std::to_string(def->min_outputs) + ".." +
                          std::to_string(def->max_outputs)));
    return outs;
  }
  for (int k = 0; k < nin; ++k) {
    int v = inputs[static_cast<size_t>(k)];
    if (v < -1 || v >= static_cast<int>(g_.values.size()) || (v == -1 && k < def->min_inputs)) {
      fail(invalid_argument("node '" + name + "' (" + def->name + "): input " + std::to_string(k) + " is not a valid value"));
      return outs;
    }
  }
  ir::Node n;
  n.name = name;
  n.op = std::move(op);
  n.inputs = inputs;
  n.outputs.assign(static_cast<size_t>(num_outputs), -1);  // ids assigned after the check
  g_.nodes.push_back(std::move(n));
  int index = static_cast<int>(g_.nodes.size()) - 1;
  CheckContext ctx(g_, index);
  Status st = def->check(ctx);
  if (st.ok() && ctx.out_dtypes.size() != static_cast<size_t>(num_outputs))
    st = internal_error("check() of " + std::string(def->name) + " did not set every output dtype");
  if (!st.ok()) {
    g_.nodes.pop_back();
    fail(Status(StatusCode::kInvalidArgument, st.message()));
    return outs;
  }
  for (int k = 0; k < num_outputs; ++k) {
    ir::Value v;
    v.name = k == 0 ? name : name + ":" + std::to_string(k);
    v.dtype = v.storage_dtype = ctx.out_dtypes[static_cast<size_t>(k)];
    v.kind = ir::ValueKind::kIntermediate;
    v.producer = index;
    outs[static_cast<size_t>(k)] = add_value(std::move(v));
  }
  g_.nodes.back().outputs = outs;
  return outs;
}

void GraphBuilder::output(int value, const std::string& rename) {
  if (value < 0 || value >= static_cast<int>(g_.values.size())) {
    fail(invalid_argument("graph '" + g_.name + "': output is not a valid value"));
    return;
  }
  if (!rename.empty() && rename != g_.values[static_cast<size_t>(value)].name) {
    for (const ir::Value& o : g_.values)
      if (o.name == rename) {
        fail(invalid_argument("graph '" + g_.name + "': output name '" + rename + "' is already used"));
        return;
      }
    g_.values[static_cast<size_t>(value)].name = rename;
  }
  g_.outputs.push_back(value);
}

DType GraphBuilder::dtype(int value) const {
  return value >= 0 && value < static_cast<int>(g_.values.size()) ? g_.values[static_cast<size_t>(value)].dtype : DType::kF32;
}

ModelBuilder::ModelBuilder(std::string name, std::string producer) : name_(std::move(name)), producer_(std::move(producer)) {}
ModelBuilder::~ModelBuilder() = default;

GraphBuilder& ModelBuilder::graph(const std::string& entry_name) {
  for (auto& g : graphs_)
    if (g->name() == entry_name) return *g;
  graphs_.push_back(std::unique_ptr<GraphBuilder>(new GraphBuilder(this, entry_name)));
  return *graphs_.back();
}

void ModelBuilder::set_metadata(const std::string& key, const std::string& value) {
  for (auto& kv : metadata_)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  metadata_.emplace_back(key, value);
}

Status ModelBuilder::status() const {
  if (graphs_.empty()) return invalid_argument("the model has no entry points");
  for (const auto& g : graphs_)
    if (!g->status().ok()) return g->status().with_context("graph '" + g->name() + "'");
  return Status::Ok();
}

Result<std::unique_ptr<fb::ModelT>> ModelBuilder::build() const {
  ATROUS_RETURN_IF_ERROR(status());
  auto m = std::make_unique<fb::ModelT>();
  m->name = name_;
  m->producer = producer_;
  for (const auto& [k, v] : metadata_) {
    auto kv = std::make_unique<fb::KeyValueT>();
    kv->key = k;
    kv->value = v;
    m->metadata.push_back(std::move(kv));
  }
  for (const auto& gb : graphs_) {
    const ir::Graph& g = gb->g_;
    auto fg = std::make_unique<fb::GraphT>();
    fg->name = g.name;
    for (size_t i = 0; i < g.values.size(); ++i) {
      const ir::Value& v = g.values[i];
      auto fv = std::make_unique<fb::ValueT>();
      fv->name = v.name;
      fv->dtype = static_cast<fb::DType>(v.kind == ir::ValueKind::kConstant ? v.storage_dtype : v.dtype);
      fv->kind = static_cast<fb::ValueKind>(v.kind);
      if (v.kind != ir::ValueKind::kIntermediate) fv->shape = v.shape;
      if (v.kind == ir::ValueKind::kConstant) {
        fv->data_offset = gb->offsets_[i];
        fv->data_length = v.nbytes;
      }
      fg->values.push_back(std::move(fv));
    }
    for (const ir::Node& n : g.nodes) {
      auto fn = std::make_unique<fb::NodeT>();
      fn->name = n.name;
      fn->op = n.op;
      fn->inputs.assign(n.inputs.begin(), n.inputs.end());
      fn->outputs.assign(n.outputs.begin(), n.outputs.end());
      fg->nodes.push_back(std::move(fn));
    }
    fg->inputs.assign(g.inputs.begin(), g.inputs.end());
    fg->outputs.assign(g.outputs.begin(), g.outputs.end());
    if (gb->preprocess_) fg->preprocess = std::make_unique<fb::PreprocessT>(*gb->preprocess_);
    if (gb->postprocess_) fg->postprocess = std::make_unique<fb::PostprocessT>(*gb->postprocess_);
    m->graphs.push_back(std::move(fg));
  }
  return m;
}

Status ModelBuilder::save(const std::string& path) const {
  ATROUS_ASSIGN_OR_RETURN(auto m, build());
  ATROUS_RETURN_IF_ERROR(writer_.write(*m, path));
  auto check = Model::open(path);
  if (!check.ok()) {
    std::remove(path.c_str());
    return check.status().with_context("the written model does not load back");
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> ModelBuilder::to_bytes() const {
  ATROUS_ASSIGN_OR_RETURN(auto m, build());
  return writer_.write_to_memory(*m);
}

}  // namespace atrous
