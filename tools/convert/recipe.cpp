#include "convert/recipe.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/file.h"

namespace atrous::convert {

// ---- the table ----------------------------------------------------------------

const std::vector<const Recipe*>& all_recipes() {
#define ATROUS_RECIPE_PTR(name) &k##name##Recipe,
  static const std::vector<const Recipe*> list = {ATROUS_RECIPES(ATROUS_RECIPE_PTR)};
#undef ATROUS_RECIPE_PTR
  return list;
}

const Recipe* find_recipe(const std::string& name) {
  for (const Recipe* r : all_recipes())
    if (name == r->name) return r;
  return nullptr;
}

std::string recipe_names() {
  std::string s;
  for (const Recipe* r : all_recipes()) s += (s.empty() ? "" : ", ") + std::string(r->name);
  return s;
}

std::vector<ConfigKey> common_config_keys() {
  return {
      {"name", ConfigType::kString, "", "model name stored in the file (default: the arch name)"},
      {"ignore", ConfigType::kStringList, "[]",
       "glob patterns of state-dict keys to drop on purpose, e.g. [\"aux_classifier.*\"]"},
  };
}

std::vector<ConfigKey> recipe_config_keys(const Recipe& r) {
  std::vector<ConfigKey> keys = r.keys;
  auto add = [&](const std::vector<ConfigKey>& more) {
    for (const ConfigKey& k : more) {
      bool own = false;
      for (const ConfigKey& o : r.keys) own = own || o.name == k.name;
      if (!own) keys.push_back(k);  // a recipe may redeclare a common key with its own default
    }
  };
  add(common_config_keys());
  if (r.image) add(image_config_keys());
  return keys;
}

const char* problem_kind_name(ProblemKind k) {
  switch (k) {
    case ProblemKind::kMissing: return "missing";
    case ProblemKind::kShape: return "shape";
    case ProblemKind::kDType: return "dtype";
    case ProblemKind::kUnexpected: return "unexpected";
    case ProblemKind::kOther: return "error";
  }
  return "error";
}

bool glob_match(const std::string& pattern, const std::string& text) {
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// ---- context ------------------------------------------------------------------

namespace {

std::string expected_string(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + (s[i] < 0 ? std::string("*") : std::to_string(s[i]));
  return r + "]";
}

bool shape_fits(const Shape& actual, const Shape& expected) {
  if (actual.size() != expected.size()) return false;
  for (size_t i = 0; i < actual.size(); ++i)
    if (expected[i] >= 0 && expected[i] != actual[i]) return false;
  return true;
}

}  // namespace

RecipeContext::RecipeContext(const Recipe& recipe, std::unique_ptr<WeightSource> source, Config config,
                             DType weight_dtype, std::string model_name)
    : recipe_(recipe),
      source_(std::move(source)),
      config_(std::move(config)),
      weight_dtype_(weight_dtype),
      model_(std::move(model_name), "atrous convert") {
  used_.assign(source_->tensors().size(), false);
  if (config_.has("ignore")) {
    auto pats = config_.get_strings("ignore");
    if (pats.ok()) ignore_patterns_ = *pats;
  }
}

void RecipeContext::problem(ProblemKind kind, const std::string& key, const std::string& message) {
  for (const Problem& p : problems_)
    if (p.kind == kind && p.key == key && (!key.empty() || p.message == message)) return;
  problems_.push_back(Problem{kind, key, message});
}

int RecipeContext::lookup(GraphBuilder& g, const std::string& name) const {
  auto it = registered_.find({&g, name});
  return it == registered_.end() ? -2 : it->second;
}

DType RecipeContext::stored_dtype(const SourceTensor& t, const ParamOptions& o) const {
  if (!stored_type_is_float(t.stored)) return t.dtype;
  if (o.keep_f32 || t.shape.size() < 2) return DType::kF32;
  return weight_dtype_;
}

int RecipeContext::placeholder(GraphBuilder& g, const std::string& name, const Shape& expected, const ParamOptions& o) {
  Shape s = expected;
  for (auto& d : s) d = d < 0 ? 1 : d;
  DType dt = o.integer ? DType::kI64 : DType::kF32;
  std::string n = name;
  int id = g.constant_streamed(n, dt, s, [n](void*) {
    return internal_error("placeholder for '" + n + "' reached the writer");
  });
  registered_[{&g, name}] = id;
  return id;
}

bool RecipeContext::check_tensor(const std::string& key, const SourceTensor& t, const Shape& shape,
                                 const Shape& expected, const ParamOptions& o, const std::string& what) {
  bool ok = true;
  bool is_float = stored_type_is_float(t.stored);
  if (o.integer && is_float) {
    problem(ProblemKind::kDType, key,
            "dtype mismatch for '" + key + "': the file has " + stored_type_name(t.stored) +
                ", the recipe expects an integer tensor");
    ok = false;
  } else if (!o.integer && !is_float) {
    problem(ProblemKind::kDType, key,
            "dtype mismatch for '" + key + "': the file has " + stored_type_name(t.stored) +
                ", the recipe expects a float tensor");
    ok = false;
  }
  if (!shape_fits(shape, expected)) {
    problem(ProblemKind::kShape, key,
            "shape mismatch for '" + key + "'" + what + ": the file has " + shape_string(shape) +
                ", the recipe expects " + expected_string(expected));
    ok = false;
  }
  return ok;
}

int RecipeContext::param(GraphBuilder& g, const std::string& key, const Shape& expected, const ParamOptions& o) {
  int known = lookup(g, key);
  if (known != -2) return known;
  const SourceTensor* t = source_->find(key);
  if (!t) {
    problem(ProblemKind::kMissing, key, "missing key '" + key + "' (expected shape " + expected_string(expected) + ")");
    return placeholder(g, key, expected, o);
  }
  size_t index = static_cast<size_t>(t - source_->tensors().data());
  used_[index] = true;
  if (!check_tensor(key, *t, t->shape, expected, o, "")) {
    Shape guess = expected;  // unconstrained dims from the file when the rank fits
    if (guess.size() == t->shape.size())
      for (size_t i = 0; i < guess.size(); ++i) guess[i] = guess[i] < 0 ? t->shape[i] : guess[i];
    return placeholder(g, key, guess, o);
  }
  DType to = stored_dtype(*t, o);
  const WeightSource* src = source_.get();
  int id = g.constant_streamed(key, to, t->shape, [src, index, to, key](void* dst) {
    Status st;
    try {
      st = src->read(index, to, dst);
    } catch (const std::bad_alloc&) {
      st = out_of_memory("not enough memory");
    }
    return st.ok() ? st : st.with_context("reading '" + key + "'");
  });
  registered_[{&g, key}] = id;
  if (id >= 0) {
    ++tensors_stored_;
    bytes_stored_ += checked_nbytes(t->shape, to).ok() ? *checked_nbytes(t->shape, to) : 0;
  }
  return id;
}

int RecipeContext::param_any(GraphBuilder& g, const std::string& key, const ParamOptions& o) {
  const SourceTensor* t = source_->find(key);
  Shape any(t ? t->shape.size() : 1, -1);
  return param(g, key, any, o);
}

int RecipeContext::optional_param(GraphBuilder& g, const std::string& key, const Shape& expected,
                                  const ParamOptions& o) {
  if (!source_->find(key) && lookup(g, key) == -2) return -1;
  return param(g, key, expected, o);
}

int RecipeContext::param_rows(GraphBuilder& g, const std::string& key, int part, int parts, const Shape& expected,
                              const ParamOptions& o) {
  std::string name = key + "[" + std::to_string(part) + "/" + std::to_string(parts) + "]";
  int known = lookup(g, name);
  if (known != -2) return known;
  const SourceTensor* t = source_->find(key);
  if (!t) {
    Shape whole = expected;
    if (!whole.empty() && whole[0] >= 0) whole[0] *= parts;
    problem(ProblemKind::kMissing, key, "missing key '" + key + "' (expected shape " + expected_string(whole) + ")");
    return placeholder(g, name, expected, o);
  }
  size_t index = static_cast<size_t>(t - source_->tensors().data());
  used_[index] = true;
  if (t->shape.empty() || parts < 1 || part < 0 || part >= parts || t->shape[0] % parts != 0) {
    problem(ProblemKind::kShape, key,
            "shape mismatch for '" + key + "': the file has " + shape_string(t->shape) + ", the recipe expects " +
                std::to_string(parts) + " equal blocks of rows");
    return placeholder(g, name, expected, o);
  }
  Shape block = t->shape;
  block[0] /= parts;
  if (!check_tensor(key, *t, block, expected, o, " (block " + std::to_string(part) + " of " + std::to_string(parts) + ")"))
    return placeholder(g, name, expected, o);
  DType to = stored_dtype(*t, o);
  const WeightSource* src = source_.get();
  auto whole_bytes = checked_nbytes(t->shape, to);
  if (!whole_bytes.ok()) {
    problem(ProblemKind::kShape, key, "tensor '" + key + "' is too large: " + whole_bytes.status().message());
    return placeholder(g, name, expected, o);
  }
  uint64_t block_bytes = *whole_bytes / static_cast<uint64_t>(parts);
  uint64_t total = *whole_bytes;
  int id = g.constant_streamed(name, to, block, [src, index, to, key, part, block_bytes, total](void* dst) {
    std::vector<uint8_t> whole;
    try {
      whole.resize(total);
    } catch (const std::bad_alloc&) {
      return out_of_memory("reading '" + key + "': " + std::to_string(total) + " bytes do not fit in memory");
    }
    Status st = src->read(index, to, whole.data());
    if (!st.ok()) return st.with_context("reading '" + key + "'");
    std::memcpy(dst, whole.data() + block_bytes * static_cast<uint64_t>(part), block_bytes);
    return Status::Ok();
  });
  registered_[{&g, name}] = id;
  if (id >= 0) {
    ++tensors_stored_;
    bytes_stored_ += block_bytes;
  }
  return id;
}

void RecipeContext::ignore(const std::string& key) {
  if (const SourceTensor* t = source_->find(key)) used_[static_cast<size_t>(t - source_->tensors().data())] = true;
}

bool RecipeContext::has_prefix(const std::string& prefix) const {
  for (const SourceTensor& t : source_->tensors())
    if (t.name.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

std::vector<std::string> RecipeContext::keys_with_prefix(const std::string& prefix) const {
  std::vector<std::string> out;
  for (const SourceTensor& t : source_->tensors())
    if (t.name.compare(0, prefix.size(), prefix) == 0) out.push_back(t.name);
  return out;
}

int64_t RecipeContext::dim(const std::string& key, int axis) {
  const SourceTensor* t = source_->find(key);
  if (!t) {
    problem(ProblemKind::kMissing, key, "missing key '" + key + "' (needed to infer a size)");
    return -1;
  }
  int rank = static_cast<int>(t->shape.size());
  int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    problem(ProblemKind::kShape, key,
            "shape mismatch for '" + key + "': the file has " + shape_string(t->shape) + ", the recipe reads dim " +
                std::to_string(axis));
    return -1;
  }
  return t->shape[static_cast<size_t>(a)];
}

Result<int> RecipeContext::count_blocks(const std::string& pattern) const {
  size_t at = pattern.find("{i}");
  if (at == std::string::npos) return invalid_argument("block pattern '" + pattern + "' has no {i}");
  std::string head = pattern.substr(0, at), tail = pattern.substr(at + 3);
  std::set<long> found;
  for (const SourceTensor& t : source_->tensors()) {
    const std::string& k = t.name;
    if (k.compare(0, head.size(), head) != 0) continue;
    size_t p = head.size(), q = p;
    while (q < k.size() && q - p < 9 && k[q] >= '0' && k[q] <= '9') ++q;
    if (q == p || (k[p] == '0' && q - p > 1)) continue;
    if (k.compare(q, tail.size(), tail) != 0) continue;
    size_t end = q + tail.size();
    if (end != k.size() && k[end] != '.') continue;
    found.insert(std::stol(k.substr(p, q - p)));
  }
  if (found.empty()) return not_found("no state-dict key matches the block pattern '" + pattern + "'");
  long n = *found.rbegin() + 1;
  if (static_cast<long>(found.size()) != n) {
    std::string list;
    for (long i : found) list += (list.empty() ? "" : ", ") + std::to_string(i);
    return invalid_argument("the blocks of '" + pattern + "' have a gap: found indices " + list);
  }
  return static_cast<int>(n);
}

void RecipeContext::check_unused() {
  const auto& ts = source_->tensors();
  for (size_t i = 0; i < ts.size(); ++i) {
    if (used_[i]) continue;
    bool ignored = false;
    for (const std::string& p : ignore_patterns_) ignored = ignored || glob_match(p, ts[i].name);
    if (ignored) continue;
    problem(ProblemKind::kUnexpected, ts[i].name,
            "unexpected key '" + ts[i].name + "' " + shape_string(ts[i].shape) + " " + stored_type_name(ts[i].stored) +
                " (not used by recipe '" + recipe_.name + "'; list it in the config's \"ignore\" to drop it)");
  }
}

// ---- the driver -----------------------------------------------------------------

namespace {

Result<nlohmann::json> read_config_file(const std::string& path) {
  ATROUS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, io::read_whole_file(path, 64 << 20, "config file"));
  std::stringstream ss(std::string(bytes.begin(), bytes.end()));
  nlohmann::json doc = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    // Parse again with exceptions to get the position for the message.
    try {
      nlohmann::json probe = nlohmann::json::parse(ss.str());
      (void)probe;
    } catch (const nlohmann::json::parse_error& e) {
      return invalid_argument("config file '" + path + "' is not valid JSON: " + e.what());
    }
    return invalid_argument("config file '" + path + "' is not valid JSON");
  }
  return doc;
}

}  // namespace

ConvertOutcome convert(const ConvertOptions& o) {
  ConvertOutcome out;
  try {
    const Recipe* recipe = find_recipe(o.arch);
    if (!recipe) {
      out.status = invalid_argument("unknown arch '" + o.arch + "' (known: " + recipe_names() + ")");
      return out;
    }
    if (o.dtype != DType::kF32 && o.dtype != DType::kF16 && o.dtype != DType::kBF16) {
      out.status = invalid_argument(std::string("--dtype ") + dtype_name(o.dtype) + ": expected f32, f16 or bf16");
      return out;
    }
    if (o.output.empty()) {
      out.status = invalid_argument("no output file (-o MODEL.atrous)");
      return out;
    }
    if (o.weights.empty()) {
      out.status = invalid_argument("no weight files given");
      return out;
    }
    for (const std::string& w : o.weights) {
      std::error_code ec;
      if (std::filesystem::equivalent(w, o.output, ec)) {
        out.status = invalid_argument("the output '" + o.output + "' is the weight file '" + w + "'");
        return out;
      }
    }
    nlohmann::json file = nullptr;
    if (!o.config_file.empty()) {
      auto doc = read_config_file(o.config_file);
      if (!doc.ok()) {
        out.status = doc.status();
        return out;
      }
      file = std::move(doc).value();
    }
    auto config = Config::make(recipe->name, recipe_config_keys(*recipe), &file, o.config_file, o.sets);
    if (!config.ok()) {
      out.status = config.status();
      return out;
    }
    auto source = open_weights(o.weights);
    if (!source.ok()) {
      out.status = source.status();
      return out;
    }
    out.source_description = (*source)->description();
    std::string model_name = recipe->name;
    if (config->has("name")) {
      auto n = config->get_string("name");
      if (n.ok()) model_name = *n;
    }
    nlohmann::json config_values = config->values();
    RecipeContext ctx(*recipe, std::move(source).value(), std::move(config).value(), o.dtype, model_name);
    Status built = recipe->build(ctx);
    if (built.ok()) ctx.check_unused();
    out.problems = ctx.problems();
    if (!built.ok()) {
      out.status = built;
      return out;
    }
    if (!out.problems.empty()) {
      out.status = invalid_argument(std::to_string(out.problems.size()) + " problem" +
                                    (out.problems.size() == 1 ? "" : "s") + " with the weights for recipe '" +
                                    recipe->name + "'; nothing was written");
      return out;
    }
    Status st = ctx.model().status();
    if (!st.ok()) {
      out.status = st;
      return out;
    }
    ModelBuilder& mb = ctx.model();
    mb.set_metadata("convert.arch", recipe->name);
    mb.set_metadata("convert.config", config_values.dump());
    mb.set_metadata("convert.source", out.source_description);
    mb.set_metadata("convert.dtype", dtype_name(o.dtype));
    out.tensors_used = ctx.tensors_stored();
    out.weight_bytes = ctx.bytes_stored();
    out.status = mb.save(o.output);
  } catch (const std::exception& e) {
    out.status = internal_error(std::string("converter: ") + e.what());
  }
  return out;
}

}  // namespace atrous::convert
