// Recipes: how a state dict of one architecture becomes an Atrous graph.
//
// A recipe is a row of one table (ATROUS_RECIPES below): a name, a one-line
// description, the config keys it declares and a build function. The build
// function gets a RecipeContext, which owns everything a conversion needs:
//  - the weights (a WeightSource, opened from the user's files);
//  - the merged config (defaults < --config FILE.json < --set KEY=VALUE);
//  - the ModelBuilder the graph goes into;
//  - a parameter accessor, param(g, key, shape), that registers a state-dict
//    tensor as a streamed constant (its bytes are read only when the model is
//    written, one tensor at a time) and records every problem instead of
//    stopping at the first: a missing key, a shape or dtype that does not match
//    what the recipe expects. A missing or mismatched parameter still yields a
//    placeholder value, so the recipe builds on and finds the next problem;
//  - helpers that infer hyperparameters from the state dict (block counts from
//    key patterns, widths from shapes).
// After the build, every tensor the recipe never asked for is an "unexpected
// key" problem (unless the config's `ignore` patterns cover it). convert()
// writes nothing when there is any problem: the caller prints them all, one
// line each, and exits non-zero.
//
// Float weights are stored in --dtype (f32, f16 or bf16) when they have two or
// more dims; one-dim tensors (biases, norm scales) and scalars stay f32, since
// they are small and precision-sensitive. Integer tensors keep their type.
//
// A minimal recipe (tools/convert/<family>_recipe.cpp):
//
//   Status build_mlp(RecipeContext& ctx) {
//     GraphBuilder& g = ctx.model().graph("main");
//     ATROUS_ASSIGN_OR_RETURN(int depth, ctx.count_blocks("layers.{i}"));
//     int64_t width = ctx.dim("layers.0.weight", 1);
//     int x = g.input("x", DType::kF32, {-1, width});
//     for (int i = 0; i < depth; ++i) {
//       std::string p = "layers." + std::to_string(i);
//       x = g.node(p, fb::LinearT{}, {x, ctx.param(g, p + ".weight", {-1, width}), ctx.optional_param(g, p + ".bias", {-1})});
//     }
//     g.output(x, "y");
//     return Status::Ok();
//   }
//   const Recipe kMlpRecipe = {"mlp", "stack of Linear layers", {}, build_mlp};
//   // ...and one line X(Mlp) in ATROUS_RECIPES.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "builder/graph_builder.h"
#include "convert/config.h"
#include "convert/weights.h"

namespace atrous::convert {

class RecipeContext;

struct Recipe {
  const char* name;
  const char* description;  // one line
  std::vector<ConfigKey> keys;  // the recipe's own keys; the common ones are added (common_config_keys())
  Status (*build)(RecipeContext& ctx);
  bool image = false;  // also declares the image keys (image_config_keys()) and may call apply_image_metadata()
};

// The one list of recipes: X(Graph) declares `extern const Recipe kGraphRecipe`,
// defined in graph_recipe.cpp. A family adds its recipe file and one line here.
#define ATROUS_RECIPES(X) \
  X(Graph)          \
  X(Sam)            \
  X(Deeplabv3)      \
  X(Gcn)

#define ATROUS_DECLARE_RECIPE(name) extern const Recipe k##name##Recipe;
ATROUS_RECIPES(ATROUS_DECLARE_RECIPE)
#undef ATROUS_DECLARE_RECIPE

const std::vector<const Recipe*>& all_recipes();
// nullptr when there is no recipe of that name.
const Recipe* find_recipe(const std::string& name);
// "graph, deeplabv3, ..." for messages.
std::string recipe_names();

// Keys every recipe accepts: `name` (model name) and `ignore` (glob patterns of
// state-dict keys that are dropped on purpose, e.g. "aux_classifier.*").
std::vector<ConfigKey> common_config_keys();
// Keys of image recipes: input size, resize policy, mean/std, value scale,
// channel order, padding, postprocessing kind, class names, palette, mask threshold.
std::vector<ConfigKey> image_config_keys();
// Everything a recipe declares: its own keys, then the common (and image) ones.
std::vector<ConfigKey> recipe_config_keys(const Recipe& r);

enum class ProblemKind { kMissing, kShape, kDType, kUnexpected, kOther };
const char* problem_kind_name(ProblemKind k);  // "missing", "shape", "dtype", "unexpected", "error"

struct Problem {
  ProblemKind kind;
  std::string key;      // the state-dict key (or config key) concerned; may be empty
  std::string message;  // one line that names the key, e.g. "missing key 'fc.weight' (expected [10, 64])"
};

struct ParamOptions {
  bool integer = false;  // the recipe expects an integer tensor (ids, indices); else a float one
  bool keep_f32 = false; // store f32 whatever --dtype says
};

class RecipeContext {
 public:
  RecipeContext(const Recipe& recipe, std::unique_ptr<WeightSource> source, Config config, DType weight_dtype,
                std::string model_name);

  const Recipe& recipe() const { return recipe_; }
  const WeightSource& source() const { return *source_; }
  const Config& config() const { return config_; }
  ModelBuilder& model() { return model_; }
  DType weight_dtype() const { return weight_dtype_; }

  // ---- parameters -------------------------------------------------------------
  // The tensor `key` as a constant of g (value name = key; a second request for the
  // same key in the same graph returns the same value). `expected`: dims, -1 = any.
  // Missing key, shape or dtype mismatch: the problem is recorded and a placeholder of
  // the expected shape is returned, so building can go on.
  int param(GraphBuilder& g, const std::string& key, const Shape& expected, const ParamOptions& o = {});
  // Any shape.
  int param_any(GraphBuilder& g, const std::string& key, const ParamOptions& o = {});
  // -1 (an absent optional input) when the key is not in the state dict.
  int optional_param(GraphBuilder& g, const std::string& key, const Shape& expected, const ParamOptions& o = {});
  // Row block `part` of `parts` equal blocks along dim 0 (a packed q/k/v projection).
  // `expected` is the block's shape. Value name: "<key>[part/parts]".
  int param_rows(GraphBuilder& g, const std::string& key, int part, int parts, const Shape& expected,
                 const ParamOptions& o = {});
  // Marks a key as used on purpose without storing it (e.g. BatchNorm's num_batches_tracked).
  void ignore(const std::string& key);

  // ---- looking at the state dict (never consumes) --------------------------------
  bool has(const std::string& key) const { return source_->find(key) != nullptr; }
  bool has_prefix(const std::string& prefix) const;
  const SourceTensor* find(const std::string& key) const { return source_->find(key); }
  // Keys starting with prefix, in file order.
  std::vector<std::string> keys_with_prefix(const std::string& prefix) const;
  // Dim `axis` (negative counts from the end) of tensor `key`; -1 after recording a
  // problem when the key is missing or has too few dims.
  int64_t dim(const std::string& key, int axis);
  // Blocks of a repeated pattern such as "layers.{i}": the number n such that keys
  // start with "layers.0.", ..., "layers.<n-1>." (or equal "layers.<k>"). Fails when
  // none is found, or the indices have a gap, naming the pattern.
  Result<int> count_blocks(const std::string& pattern) const;

  // ---- problems ----------------------------------------------------------------
  void problem(ProblemKind kind, const std::string& key, const std::string& message);
  const std::vector<Problem>& problems() const { return problems_; }
  // Records every tensor never asked for (and not matching `ignore`) as unexpected.
  void check_unused();
  // Tensors registered so far and their bytes as stored.
  size_t tensors_stored() const { return tensors_stored_; }
  uint64_t bytes_stored() const { return bytes_stored_; }

  // ---- metadata -----------------------------------------------------------------
  // Preprocess/postprocess of g from the image config keys; `input`/`output` are the
  // defaults for the image input and the scores output. Sets nothing when the config
  // gives no image key (and the recipe declares no image defaults).
  Status apply_image_metadata(GraphBuilder& g, const std::string& input, const std::string& output);

 private:
  int placeholder(GraphBuilder& g, const std::string& name, const Shape& expected, const ParamOptions& o);
  DType stored_dtype(const SourceTensor& t, const ParamOptions& o) const;
  bool check_tensor(const std::string& key, const SourceTensor& t, const Shape& shape, const Shape& expected,
                    const ParamOptions& o, const std::string& what);
  int lookup(GraphBuilder& g, const std::string& name) const;

  const Recipe& recipe_;
  std::unique_ptr<WeightSource> source_;
  Config config_;
  DType weight_dtype_;
  ModelBuilder model_;
  std::vector<bool> used_;
  std::vector<Problem> problems_;
  std::vector<std::string> ignore_patterns_;
  // (graph, value name) -> value id, so a key is registered once per graph.
  std::map<std::pair<const GraphBuilder*, std::string>, int> registered_;
  size_t tensors_stored_ = 0;
  uint64_t bytes_stored_ = 0;
};

// Glob match with '*' (any run of characters) and '?' (one character).
bool glob_match(const std::string& pattern, const std::string& text);

struct ConvertOptions {
  std::string arch;
  std::string config_file;           // "" = none
  std::vector<std::string> sets;     // KEY=VALUE
  std::vector<std::string> weights;  // files (a checkpoint, safetensors, shards, an index)
  std::string output;
  DType dtype = DType::kF32;
};

struct ConvertOutcome {
  Status status;                  // ok, or why nothing was written
  std::vector<Problem> problems;  // every weight/config problem (status is not ok when any)
  std::string source_description;
  size_t tensors_used = 0;
  uint64_t weight_bytes = 0;      // as stored in the model
};

// Opens the weights, builds the graph with the recipe, and writes `output` only
// when there is no problem at all (through a temporary file; the result is loaded
// back with the full verifier). On any failure nothing is left at `output`.
ConvertOutcome convert(const ConvertOptions& o);

}  // namespace atrous::convert
