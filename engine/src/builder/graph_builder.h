// Builds model files programmatically: used by tests and by the converter.
//
// A ModelBuilder holds one or more GraphBuilders (entry points). Nodes take
// their attributes as the schema's object-API tables (fb::Conv2dT, ...), so
// the builder, the loader and the ops share one definition of every attribute.
// Each node is checked as it is added (arity, attribute ranges, dtypes) with
// the same per-op check() the loader runs; the first error is kept and
// returned by save(). save() writes through a temporary file and then opens
// the result with the full loader: a model that saves is a model that loads.
//
//   ModelBuilder mb("tiny", "tests");
//   GraphBuilder& g = mb.graph("main");
//   int x = g.input("x", DType::kF32, {1, 3, -1, -1});
//   int w = g.constant("conv.weight", weight_tensor);
//   int y = g.node("conv", conv_attrs, {x, w});
//   g.output(y, "y");
//   ATROUS_RETURN_IF_ERROR(mb.save("tiny.atrous"));
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"
#include "format/model_writer.h"
#include "ir/graph.h"

namespace atrous {

class ModelBuilder;

class GraphBuilder {
 public:
  int input(const std::string& name, DType dtype, const Shape& shape);
  // Copies the data now.
  int constant(const std::string& name, DType dtype, const Shape& shape, const void* data);
  int constant(const std::string& name, const Tensor& t) { return constant(name, t.dtype(), t.shape(), t.raw()); }
  int constant_f32(const std::string& name, const Shape& shape, const std::vector<float>& data);
  // A constant of this graph that reuses the bytes of a constant of another graph of
  // the same model (no second copy in the file): e.g. a "step" entry point sharing
  // the weights of the full-sequence one.
  int shared_constant(const std::string& name, const GraphBuilder& src, int src_value);
  // Produces the bytes at save time (stored as `dtype`); for large converted weights.
  int constant_streamed(const std::string& name, DType dtype, const Shape& shape, ModelWriter::Fill fill);

  // Adds a node; returns its output value ids (-1s after an error). Output values are
  // named after the node ("name", or "name:k" for k > 0).
  template <class Attrs>
  std::vector<int> node_n(const std::string& name, Attrs attrs, const std::vector<int>& inputs, int num_outputs) {
    fb::OpUnion u;
    u.Set(std::move(attrs));
    return add_node(name, std::move(u), inputs, num_outputs);
  }
  template <class Attrs>
  int node(const std::string& name, Attrs attrs, const std::vector<int>& inputs) {
    return node_n(name, std::move(attrs), inputs, 1)[0];
  }
  std::vector<int> add_node(const std::string& name, fb::OpUnion op, const std::vector<int>& inputs, int num_outputs);

  // Marks a value as an entry-point output, optionally renaming it.
  void output(int value, const std::string& rename = "");

  void set_preprocess(const fb::PreprocessT& p) { preprocess_ = std::make_unique<fb::PreprocessT>(p); }
  void set_postprocess(const fb::PostprocessT& p) { postprocess_ = std::make_unique<fb::PostprocessT>(p); }

  DType dtype(int value) const;
  const std::string& name() const { return g_.name; }
  const Status& status() const { return status_; }
  // Number of values so far (ids are 0..n-1).
  size_t num_values() const { return g_.values.size(); }

 private:
  friend class ModelBuilder;
  GraphBuilder(ModelBuilder* owner, std::string name);
  int add_value(ir::Value v);
  void fail(Status s) {
    if (status_.ok()) status_ = std::move(s);
  }

  ModelBuilder* owner_;
  ir::Graph g_;                       // mirror used for per-node checks
  std::vector<uint64_t> offsets_;     // per value: data offset (constants)
  std::unique_ptr<fb::PreprocessT> preprocess_;
  std::unique_ptr<fb::PostprocessT> postprocess_;
  Status status_;
};

class ModelBuilder {
 public:
  explicit ModelBuilder(std::string name = "", std::string producer = "atrous");
  ~ModelBuilder();
  GraphBuilder& graph(const std::string& entry_name);
  void set_metadata(const std::string& key, const std::string& value);

  // First error of any graph, or ok.
  Status status() const;
  // Writes, then loads the file back with the full verifier; removes it on failure.
  Status save(const std::string& path) const;
  Result<std::vector<uint8_t>> to_bytes() const;

 private:
  friend class GraphBuilder;
  Result<std::unique_ptr<fb::ModelT>> build() const;

  std::string name_, producer_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<std::unique_ptr<GraphBuilder>> graphs_;
  ModelWriter writer_;
};

}  // namespace atrous
