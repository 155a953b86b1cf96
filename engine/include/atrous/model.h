// Model: a verified, immutable model file with one or more entry points.
//
// Model::open maps the file, runs the FlatBuffers Verifier and checks every
// offset, shape, index and attribute. After that the Model is trusted and
// read-only; share it (std::shared_ptr<const Model>) between threads and create
// one Session per thread. Weights are used in place from the mapping. Plans
// (shape inference, kernels, memory) are cached inside the Model per input
// shapes and shared by Sessions.
//
//   auto model = atrous::Model::open("deeplab.atrous");
//   if (!model.ok()) { puts(model.status().to_string().c_str()); return 1; }
//   for (const auto& e : (*model)->info().entries) printf("%s\n", e.name.c_str());
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;  // -1: any size
};

// How an image becomes the model's input tensor (stored in the model file).
struct PreprocessInfo {
  enum class Resize { kKeep, kStretch, kLongestSide };
  std::string input;            // graph input that takes the image
  Resize resize = Resize::kKeep;
  int width = 0, height = 0;    // target (kStretch), or longest side in width (kLongestSide)
  bool antialias = false;       // PIL-style antialiased bilinear
  bool bgr = false;             // channel order BGR instead of RGB
  float value_scale = 1.0f;     // applied to u8 values before mean/std
  std::vector<float> mean, std; // per channel
  int pad_width = 0, pad_height = 0, pad_multiple = 0;
  float pad_value = 0.0f;
};

// How the model's output becomes a mask (stored in the model file).
struct PostprocessInfo {
  enum class Kind { kNone, kArgmaxClasses, kClassIndex, kMaskThreshold };
  Kind kind = Kind::kNone;
  std::string output;
  std::vector<std::string> class_names;
  std::vector<uint8_t> palette;  // RGB per class
  float mask_threshold = 0.0f;
};

struct EntryPointInfo {
  std::string name;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
  size_t num_nodes = 0;
  bool has_preprocess = false, has_postprocess = false;
  PreprocessInfo preprocess;
  PostprocessInfo postprocess;
};

struct ModelInfo {
  std::string path;
  std::string name, producer;
  std::map<std::string, std::string> metadata;
  std::vector<EntryPointInfo> entries;
  uint64_t file_bytes = 0, weight_bytes = 0;
  uint32_t format_major = 0, format_minor = 0;
};

struct LoadOptions {
  // Reserved for future checks; every load verifies fully.
};

namespace internal { class ModelImpl; }

class Model {
 public:
  ~Model();
  static Result<std::shared_ptr<const Model>> open(const std::string& path, const LoadOptions& options = {});
  // Copies the bytes; for embedded models and fuzzing.
  static Result<std::shared_ptr<const Model>> from_memory(const void* data, size_t size,
                                                          const LoadOptions& options = {});

  const ModelInfo& info() const;
  // Entry point by name ("" = the first); nullptr when absent.
  const EntryPointInfo* entry(const std::string& name) const;

  const internal::ModelImpl& impl() const { return *impl_; }

 private:
  Model() = default;
  std::unique_ptr<internal::ModelImpl> impl_;
};

}  // namespace atrous
