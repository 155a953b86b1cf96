// What a Model holds: the verified file, the trusted graphs, and two caches
// (f32 copies of half-precision weights; recent plans per input shapes).
#pragma once

#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "atrous/model.h"
#include "format/model_file.h"
#include "ir/graph.h"
#include "plan/plan.h"

namespace atrous::internal {

class ModelImpl {
 public:
  std::shared_ptr<const ModelFile> file;
  ModelInfo info;
  std::vector<ir::Graph> graphs;

  // Index of the entry point, -1 when absent ("" = the first).
  int find_graph(const std::string& name) const;

  // Constant data as f32 when the value is stored as f16/bf16 (converted once,
  // cached); the stored bytes otherwise.
  Result<const void*> constant_data(const ir::Graph& g, int value) const;

  // Cached plan for these shapes and options, or a new one (kept among the
  // most recent kPlanCacheSize).
  Result<std::shared_ptr<const Plan>> plan(int graph, const std::vector<Shape>& shapes, const PlanOptions& opts) const;

  static constexpr size_t kPlanCacheSize = 4;

 private:
  struct PlanKey {
    int graph;
    std::vector<Shape> shapes;
    int threads;
    bool reference_only, fuse;
    std::vector<std::string> allowed, excluded;
    uint64_t max_memory;
    std::vector<std::string> expose;
    bool keep_inputs;
    bool operator==(const PlanKey& o) const {
      return graph == o.graph && shapes == o.shapes && threads == o.threads && reference_only == o.reference_only &&
             fuse == o.fuse && allowed == o.allowed && excluded == o.excluded && max_memory == o.max_memory && expose == o.expose &&
             keep_inputs == o.keep_inputs;
    }
  };
  mutable std::mutex mu_;
  mutable std::list<std::pair<PlanKey, std::shared_ptr<const Plan>>> plans_;  // most recent first
  mutable std::map<const void*, std::shared_ptr<Tensor>> f32_constants_;       // by stored data pointer
};

Result<std::unique_ptr<ModelImpl>> load_model(std::shared_ptr<const ModelFile> file);

}  // namespace atrous::internal
