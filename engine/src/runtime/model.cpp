// Model: open, verify, expose info; caches for converted weights and plans.
#include <algorithm>
#include <unordered_set>

#include "atrous/model.h"
#include "ir/graph_loader.h"
#include "runtime/model_impl.h"

namespace atrous {
namespace internal {
namespace {

PreprocessInfo to_info(const fb::PreprocessT& p, const ir::Graph& g) {
  PreprocessInfo o;
  o.input = p.input.empty() && !g.inputs.empty() ? g.values[static_cast<size_t>(g.inputs[0])].name : p.input;
  o.resize = p.resize == fb::ResizePolicy::Stretch       ? PreprocessInfo::Resize::kStretch
             : p.resize == fb::ResizePolicy::LongestSide ? PreprocessInfo::Resize::kLongestSide
                                                         : PreprocessInfo::Resize::kKeep;
  o.width = p.width;
  o.height = p.height;
  o.antialias = p.antialias;
  o.bgr = p.channel_order == fb::ChannelOrder::BGR;
  o.value_scale = p.value_scale;
  o.mean = p.mean;
  o.std = p.std;
  o.pad_width = p.pad_width;
  o.pad_height = p.pad_height;
  o.pad_multiple = p.pad_multiple;
  o.pad_value = p.pad_value;
  return o;
}

PostprocessInfo to_info(const fb::PostprocessT& p, const ir::Graph& g) {
  PostprocessInfo o;
  switch (p.kind) {
    case fb::PostKind::ArgmaxClasses: o.kind = PostprocessInfo::Kind::kArgmaxClasses; break;
    case fb::PostKind::ClassIndex: o.kind = PostprocessInfo::Kind::kClassIndex; break;
    case fb::PostKind::MaskThreshold: o.kind = PostprocessInfo::Kind::kMaskThreshold; break;
    default: o.kind = PostprocessInfo::Kind::kNone;
  }
  o.output = p.output.empty() && !g.outputs.empty() ? g.values[static_cast<size_t>(g.outputs[0])].name : p.output;
  o.class_names = p.class_names;
  o.palette = p.palette;
  o.mask_threshold = p.mask_threshold;
  return o;
}

TensorInfo tensor_info(const ir::Value& v) { return TensorInfo{v.name, v.dtype, v.shape}; }

}  // namespace

int ModelImpl::find_graph(const std::string& name) const {
  if (name.empty()) return graphs.empty() ? -1 : 0;
  for (size_t i = 0; i < graphs.size(); ++i)
    if (graphs[i].name == name) return static_cast<int>(i);
  return -1;
}

Result<const void*> ModelImpl::constant_data(const ir::Graph& g, int value) const {
  const ir::Value& v = g.values[static_cast<size_t>(value)];
  if (v.storage_dtype == v.dtype) return static_cast<const void*>(v.data);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = f32_constants_.find(v.data);
  if (it != f32_constants_.end()) return static_cast<const void*>(it->second->raw());
  auto t = std::make_shared<Tensor>(Tensor::zeros(DType::kF32, v.shape));
  if (!t->raw()) return out_of_memory("cannot allocate an f32 copy of weight '" + v.name + "'");
  float* dst = t->data<float>();
  const auto* src = reinterpret_cast<const uint16_t*>(v.data);
  int64_t n = t->numel();
  if (v.storage_dtype == DType::kF16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
  }
  f32_constants_[v.data] = t;
  return static_cast<const void*>(t->raw());
}

Result<std::shared_ptr<const Plan>> ModelImpl::plan(int graph, const std::vector<Shape>& shapes,
                                                    const PlanOptions& opts) const {
  PlanKey key{graph, shapes, opts.threads, opts.reference_only, opts.fuse, opts.allowed_kernels, opts.excluded_kernels, opts.max_memory, opts.expose, opts.keep_inputs};
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = plans_.begin(); it != plans_.end(); ++it) {
      if (it->first == key) {
        plans_.splice(plans_.begin(), plans_, it);  // most recent first
        return plans_.front().second;
      }
    }
  }
  // Planning runs without the lock: two sessions asking for the same new shapes
  // may both plan; the second result is dropped.
  ATROUS_ASSIGN_OR_RETURN(std::shared_ptr<const Plan> p, build_plan(*this, graph, shapes, opts));
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& entry : plans_)
    if (entry.first == key) return entry.second;
  plans_.emplace_front(std::move(key), p);
  while (plans_.size() > kPlanCacheSize) plans_.pop_back();
  return p;
}

Result<std::unique_ptr<ModelImpl>> load_model(std::shared_ptr<const ModelFile> file) {
  auto m = std::make_unique<ModelImpl>();
  const fb::Model* root = file->root();
  const std::string who = "'" + file->path() + "'";
  if (root->graphs()->size() == 0) return invalid_model(who + " has no entry points");
  std::unordered_set<std::string> names;
  for (const fb::Graph* fg : *root->graphs()) {
    auto g = ir::load_graph(*file, *fg);
    if (!g.ok()) return g.status().with_context(who);
    if (!names.insert(g->name).second) return invalid_model(who + ": entry point '" + g->name + "' appears twice");
    m->graphs.push_back(std::move(g).value());
  }
  ModelInfo& info = m->info;
  info.path = file->path();
  info.name = root->name() ? root->name()->str() : "";
  info.producer = root->producer() ? root->producer()->str() : "";
  if (root->metadata())
    for (const fb::KeyValue* kv : *root->metadata())
      info.metadata[kv->key()->str()] = kv->value() ? kv->value()->str() : "";
  info.file_bytes = file->file_size();
  info.weight_bytes = file->data_size();
  info.format_major = file->header().version_major;
  info.format_minor = file->header().version_minor;
  for (const ir::Graph& g : m->graphs) {
    EntryPointInfo e;
    e.name = g.name;
    for (int i : g.inputs) e.inputs.push_back(tensor_info(g.values[static_cast<size_t>(i)]));
    for (int o : g.outputs) e.outputs.push_back(tensor_info(g.values[static_cast<size_t>(o)]));
    e.num_nodes = g.nodes.size();
    if (g.preprocess) {
      e.has_preprocess = true;
      e.preprocess = to_info(*g.preprocess, g);
    }
    if (g.postprocess) {
      e.has_postprocess = true;
      e.postprocess = to_info(*g.postprocess, g);
    }
    info.entries.push_back(std::move(e));
  }
  m->file = std::move(file);
  return m;
}

}  // namespace internal

Model::~Model() = default;

Result<std::shared_ptr<const Model>> Model::open(const std::string& path, const LoadOptions&) {
  ATROUS_ASSIGN_OR_RETURN(auto file, ModelFile::open(path));
  ATROUS_ASSIGN_OR_RETURN(auto impl, internal::load_model(std::move(file)));
  std::shared_ptr<Model> m(new Model());
  m->impl_ = std::move(impl);
  return std::shared_ptr<const Model>(std::move(m));
}

Result<std::shared_ptr<const Model>> Model::from_memory(const void* data, size_t size, const LoadOptions&) {
  ATROUS_ASSIGN_OR_RETURN(auto file, ModelFile::from_memory(data, size));
  ATROUS_ASSIGN_OR_RETURN(auto impl, internal::load_model(std::move(file)));
  std::shared_ptr<Model> m(new Model());
  m->impl_ = std::move(impl);
  return std::shared_ptr<const Model>(std::move(m));
}

const ModelInfo& Model::info() const { return impl_->info; }

const EntryPointInfo* Model::entry(const std::string& name) const {
  int i = impl_->find_graph(name);
  return i < 0 ? nullptr : &impl_->info.entries[static_cast<size_t>(i)];
}

}  // namespace atrous
