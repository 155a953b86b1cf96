// The recipe mechanism without Python: config merging and typing, expressions
// and substitution, shape rules, the parameter accessor's problem list, block
// counting, and the JSON recipe on small in-memory state dicts.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <limits>
#include <fstream>
#include <nlohmann/json.hpp>

#include "atrous/model.h"
#include "convert/config.h"
#include "convert/json_template.h"
#include "convert/param_table.h"
#include "convert/recipe.h"
#include "builder/op_json.h"
#include "ops/op_registry.h"
#include <set>

namespace fs = std::filesystem;
using namespace atrous;
using namespace atrous::convert;
using nlohmann::json;

namespace {

struct FakeTensor {
  std::string name, dtype;  // safetensors dtype code ("F32", "I64")
  Shape shape;
};

// A safetensors file with the given tensors (f32 values i * 0.01, integers i).
std::vector<uint8_t> safetensors(const std::vector<FakeTensor>& ts) {
  json header = json::object();
  std::vector<uint8_t> data;
  for (const FakeTensor& t : ts) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    size_t begin = data.size();
    for (int64_t i = 0; i < n; ++i) {
      uint8_t b[8];
      float f = static_cast<float>(i) * 0.01f;
      if (t.dtype == "F32") std::memcpy(b, &f, 4);
      else std::memcpy(b, &i, 8);
      for (size_t k = 0; k < (t.dtype == "F32" ? 4u : 8u); ++k) data.push_back(b[k]);
    }
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  uint64_t len = h.size();
  std::string file(reinterpret_cast<const char*>(&len), 8);
  file += h;
  file.append(reinterpret_cast<const char*>(data.data()), data.size());
  return std::vector<uint8_t>(file.begin(), file.end());
}

std::string temp_file(const std::string& name, const std::vector<uint8_t>& bytes) {
  // One directory per process, removed when the process exits (ctest runs each case
  // as its own process: without this every run left a directory behind).
  struct Dir {
    std::string path;
    Dir() {
      path = (fs::temp_directory_path() / "atrous-recipe-test-XXXXXX").string();
      if (!mkdtemp(path.data())) path.clear();
    }
    ~Dir() {
      std::error_code ec;
      if (!path.empty()) fs::remove_all(path, ec);
    }
  };
  static Dir dir;
  REQUIRE(!dir.path.empty());
  std::string p = dir.path + "/" + name;
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return p;
}

std::string temp_text(const std::string& name, const std::string& text) {
  return temp_file(name, std::vector<uint8_t>(text.begin(), text.end()));
}

const Recipe kTestRecipe = {"test", "for tests", {{"depth", ConfigType::kInt, "2", "blocks"}}, nullptr};

struct Ctx {
  std::vector<uint8_t> bytes;
  std::unique_ptr<RecipeContext> ctx;
  explicit Ctx(const std::vector<FakeTensor>& ts, DType dtype = DType::kF32) : bytes(safetensors(ts)) {
    auto src = open_weights_from_memory(bytes.data(), bytes.size(), "mem.safetensors");
    REQUIRE(src.ok());
    auto cfg = Config::make("test", recipe_config_keys(kTestRecipe), nullptr, "", {});
    REQUIRE(cfg.ok());
    ctx = std::make_unique<RecipeContext>(kTestRecipe, std::move(src).value(), std::move(cfg).value(), dtype, "t");
  }
};

Result<json> eval(const std::string& e) {
  return eval_expression(e, [](const std::string& n) -> Result<json> {
    if (n == "dim") return json(64);
    if (n == "heads") return json(4);
    if (n == "eps") return json(1e-6);
    return invalid_argument("unknown variable '" + n + "'");
  });
}

}  // namespace

TEST_CASE("config: defaults, file, --set in that order; types checked") {
  std::vector<ConfigKey> keys = {{"depth", ConfigType::kInt, "12", "blocks"},
                                 {"mean", ConfigType::kFloatList, "", "mean"},
                                 {"resize", ConfigType::kString, "\"keep\"", "policy"},
                                 {"vars", ConfigType::kObject, "{}", "vars"},
                                 {"names", ConfigType::kStringList, "", "names"}};
  json file = {{"depth", 6}, {"mean", {0.5, 0.5, 0.5}}};
  auto c = Config::make("r", keys, &file, "f.json",
                        {"depth=4", "resize=stretch", "vars.heads=8", "vars.inner.x=1", "names=a,b", "mean=1,2"});
  INFO(c.status().to_string());
  REQUIRE(c.ok());
  CHECK(*c->get_int("depth") == 4);
  CHECK(*c->get_string("resize") == "stretch");
  CHECK(*c->get_floats("mean") == std::vector<double>{1, 2});
  CHECK(*c->get_strings("names") == std::vector<std::string>{"a", "b"});
  CHECK((*c->get_json("vars"))["heads"] == 8);
  CHECK((*c->get_json("vars"))["inner"]["x"] == 1);
  CHECK(c->given("depth"));
  CHECK(!Config::make("r", keys, nullptr, "", {})->given("depth"));
  CHECK(!c->get_ints("depth").ok());  // a recipe asking with the wrong type is a recipe bug
  CHECK(c->get_int("nokey").status().code() == StatusCode::kInternal);

  auto unknown = Config::make("r", keys, nullptr, "", {"dpeth=3"});
  REQUIRE(!unknown.ok());
  CHECK(unknown.status().message() ==
        "unknown config key 'dpeth' in --set dpeth=3 (recipe 'r' knows: depth, mean, names, resize, vars)");
  json bad_file = {{"depth", "six"}};
  auto typed = Config::make("r", keys, &bad_file, "f.json", {});
  REQUIRE(!typed.ok());
  CHECK(typed.status().message() == "config key 'depth' in 'f.json': expected an int, got a string");
  CHECK(!Config::make("r", keys, nullptr, "", {"depth"}).ok());
  CHECK(!Config::make("r", keys, nullptr, "", {"depth.x=1"}).ok());
  auto required = Config::make("r", keys, nullptr, "", {});
  CHECK(required->get_floats("mean").status().message().find("config key 'mean' is required by recipe 'r'") == 0);
}

TEST_CASE("expressions: Python-like arithmetic on config values") {
  CHECK(*eval("1 / sqrt(dim / heads)") == json(0.25));
  CHECK(*eval("dim // heads") == json(16));
  CHECK(*eval("-7 // 2") == json(-4));
  CHECK(*eval("-7 % 3") == json(2));
  CHECK(*eval("2 ** 10") == json(1024));
  CHECK(*eval("-2 ** 2") == json(-4));
  CHECK(*eval("(dim - 4) * 2 + 1") == json(121));
  CHECK(*eval("max(3, dim, 7)") == json(64));
  CHECK(*eval("int(dim / 3)") == json(21));
  CHECK(eval("eps * 10")->get<double>() == Approx(1e-5));
  CHECK(*eval("1e-3 + 1") == json(1.001));
  CHECK(eval("dim / 0").status().message().find("division by zero") != std::string::npos);
  CHECK(eval("unknown + 1").status().message() == "unknown variable 'unknown'");
  CHECK(eval("exec(1)").status().message().find("unknown function exec()") != std::string::npos);
  CHECK(!eval("1 +").ok());
  CHECK(!eval("(1").ok());
}

TEST_CASE("expressions: 64-bit integer overflow is an error, never a wrap or a trap") {
  // Written from a libFuzzer-style review of json_template.cpp: each of these was undefined
  // behaviour (INT64_MIN // -1 and % -1 raised SIGFPE) before the checks.
  const std::string min = "(-9223372036854775807 - 1)";
  auto overflow = [](const std::string& e) {
    auto r = eval(e);
    INFO(e << " -> " << (r.ok() ? r->dump() : r.status().to_string()));
    return !r.ok() && r.status().message().find("overflow") != std::string::npos;
  };
  CHECK(overflow(min + " // -1"));
  CHECK(*eval(min + " % -1") == json(0));
  CHECK(*eval(min + " // 1") == json(std::numeric_limits<int64_t>::min()));
  CHECK(*eval("7 // -1") == json(-7));
  CHECK(*eval("-7 % -3") == json(-1));
  CHECK(*eval("7 % -3") == json(-2));
  CHECK(overflow("9223372036854775807 + 1"));
  CHECK(overflow(min + " - 1"));
  CHECK(overflow("4294967296 * 4294967296"));
  CHECK(overflow("3 ** 40"));
  CHECK(*eval("3 ** 39") == json(int64_t{4052555153018976267}));
  CHECK(overflow("-" + min));
  CHECK(overflow("abs(" + min + ")"));
  CHECK(*eval("abs(-5)") == json(5));
  CHECK(!eval("int(1e300)").ok());
  CHECK(!eval("int(-9.3e18)").ok());
  CHECK(*eval("int(-9.2e18)") == json(int64_t{-9200000000000000000}));
  CHECK(!eval("int(sqrt(-0.0) / 0.0 * 0)").ok());  // division by zero before any NaN
  CHECK(eval("99999999999999999999").status().message().find("64 bits") != std::string::npos);
  CHECK(*eval("9223372036854775807") == json(std::numeric_limits<int64_t>::max()));
}

TEST_CASE("substitution: $name, $(expr), {name} and $$") {
  VarLookup vars = [](const std::string& n) -> Result<json> {
    if (n == "i") return json(3);
    if (n == "prefix") return json("layers.3");
    if (n == "shape") return json({1, 2});
    return invalid_argument("unknown variable '" + n + "'");
  };
  json in = {{"a", "$shape"}, {"b", "$(i * 2)"}, {"c", "{prefix}.fc{i}"}, {"d", {"x", "$i"}}, {"e", "$$i"}, {"f", "{not var}"}};
  auto out = substitute(in, vars);
  REQUIRE(out.ok());
  CHECK((*out)["a"] == json({1, 2}));
  CHECK((*out)["b"] == 6);
  CHECK((*out)["c"] == "layers.3.fc3");
  CHECK((*out)["d"] == json({"x", 3}));
  CHECK((*out)["e"] == "$i");
  CHECK((*out)["f"] == "{not var}");
  CHECK(!substitute(json("{shape}"), vars).ok());
  CHECK(substitute(json("{j}"), vars).status().message() == "in '{j}': unknown variable 'j'");
}

TEST_CASE("glob patterns for ignored keys") {
  CHECK(glob_match("aux_classifier.*", "aux_classifier.0.weight"));
  CHECK(glob_match("*.num_batches_tracked", "backbone.bn1.num_batches_tracked"));
  CHECK(glob_match("layer?.w", "layer1.w"));
  CHECK(!glob_match("aux.*", "backbone.aux.w"));
  CHECK(glob_match("*", "anything"));
}

TEST_CASE("shape rules bind symbols and check them") {
  std::map<std::string, int64_t> sym;
  Shape w = {16, 8, 3, 3};
  CHECK(*evaluate_shape_rule("[O, Ig, kH, kW]", &sym, &w) == Shape{-1, -1, -1, -1});
  CHECK(sym["O"] == 16);
  CHECK(*evaluate_shape_rule("[O]", &sym, nullptr) == Shape{16});
  sym["groups"] = 2;
  CHECK(*evaluate_shape_rule("[Ig*groups, 4]", &sym, nullptr) == Shape{16, 4});
  CHECK(!evaluate_shape_rule("O", &sym, nullptr).ok());
}

TEST_CASE("parameters: every problem is recorded, then unused keys") {
  Ctx c({{"a.weight", "F32", {4, 3}},
         {"a.bias", "F32", {5}},
         {"b.weight", "I64", {4, 4}},
         {"ids", "F32", {3}},
         {"stray", "F32", {2}},
         {"drop.me", "F32", {2}}});
  RecipeContext& ctx = *c.ctx;
  GraphBuilder& g = ctx.model().graph("main");
  CHECK(ctx.param(g, "a.weight", {4, 3}) >= 0);
  CHECK(ctx.param(g, "a.weight", {4, 3}) == ctx.param(g, "a.weight", {4, 3}));  // registered once
  CHECK(ctx.param(g, "a.bias", {4}) >= 0);      // shape problem, placeholder
  CHECK(ctx.param(g, "b.weight", {4, 4}) >= 0); // dtype problem
  CHECK(ctx.param(g, "ids", {3}, ParamOptions{true, false}) >= 0);  // expects integer
  CHECK(ctx.param(g, "c.weight", {2, -1}) >= 0);  // missing
  CHECK(ctx.optional_param(g, "c.bias", {2}) == -1);
  ctx.ignore("drop.me");
  ctx.check_unused();
  std::vector<std::string> msgs;
  for (const Problem& p : ctx.problems()) msgs.push_back(p.message);
  REQUIRE(msgs.size() == 5);
  CHECK(msgs[0] == "shape mismatch for 'a.bias': the file has [5], the recipe expects [4]");
  CHECK(msgs[1] == "dtype mismatch for 'b.weight': the file has i64, the recipe expects a float tensor");
  CHECK(msgs[2] == "dtype mismatch for 'ids': the file has f32, the recipe expects an integer tensor");
  CHECK(msgs[3] == "missing key 'c.weight' (expected shape [2, *])");
  CHECK(msgs[4] ==
        "unexpected key 'stray' [2] f32 (not used by recipe 'test'; list it in the config's \"ignore\" to drop it)");
  CHECK(ctx.problems()[4].kind == ProblemKind::kUnexpected);
}

TEST_CASE("parameters: row blocks of a packed projection") {
  Ctx c({{"attn.in_proj_weight", "F32", {6, 2}}, {"attn.in_proj_bias", "F32", {6}}});
  RecipeContext& ctx = *c.ctx;
  GraphBuilder& g = ctx.model().graph("main");
  int q = ctx.param_rows(g, "attn.in_proj_weight", 0, 3, {2, 2});
  int k = ctx.param_rows(g, "attn.in_proj_weight", 1, 3, {2, 2});
  CHECK(q >= 0);
  CHECK(k >= 0);
  CHECK(q != k);
  ctx.param_rows(g, "attn.in_proj_bias", 0, 4, {-1});
  REQUIRE(ctx.problems().size() == 1);
  CHECK(ctx.problems()[0].message ==
        "shape mismatch for 'attn.in_proj_bias': the file has [6], the recipe expects 4 equal blocks of rows");
}

TEST_CASE("hyperparameters from the state dict") {
  Ctx c({{"layers.0.w", "F32", {8, 3}},
         {"layers.1.w", "F32", {8, 8}},
         {"layers.2.w", "F32", {8, 8}},
         {"layers.10x.w", "F32", {1}},
         {"gap.0.w", "F32", {1}},
         {"gap.2.w", "F32", {1}},
         {"head", "F32", {1}}});
  RecipeContext& ctx = *c.ctx;
  CHECK(*ctx.count_blocks("layers.{i}") == 3);
  CHECK(ctx.count_blocks("gap.{i}").status().message() == "the blocks of 'gap.{i}' have a gap: found indices 0, 2");
  CHECK(ctx.count_blocks("nothing.{i}").status().message() ==
        "no state-dict key matches the block pattern 'nothing.{i}'");
  CHECK(ctx.dim("layers.0.w", 1) == 3);
  CHECK(ctx.dim("layers.0.w", -2) == 8);
  CHECK(ctx.dim("missing", 0) == -1);
  CHECK(ctx.problems().size() == 1);
  CHECK(ctx.keys_with_prefix("layers.").size() == 4);
}

TEST_CASE("param table: layouts and data inputs") {
  Ctx c({{"mha.in_proj_weight", "F32", {12, 4}},
         {"mha.in_proj_bias", "F32", {12}},
         {"mha.out_proj.weight", "F32", {4, 4}},
         {"mha.out_proj.bias", "F32", {4}},
         {"bn.weight", "F32", {3}},
         {"bn.bias", "F32", {3}},
         {"bn.running_mean", "F32", {3}},
         {"bn.running_var", "F32", {3}},
         {"bn.num_batches_tracked", "I64", {}},
         {"lin.weight", "F32", {5, 4}}});
  RecipeContext& ctx = *c.ctx;
  fb::OpUnion mha;
  mha.Set(fb::MultiHeadAttentionT{});
  auto np = plan_node_params(ctx, "MultiHeadAttention", mha, "mha", "");
  REQUIRE(np.ok());
  CHECK(np->layout == "torch");
  CHECK(np->params.size() == 8);
  CHECK(np->params[0].value_name == "mha.in_proj_weight[0/3]");
  CHECK(np->params[0].expected == Shape{-1, -1});
  CHECK(np->params[2].expected == Shape{4, 4});
  CHECK(np->data_positions == std::vector<int>{0, 1, 2, 11, 12});

  fb::OpUnion lin;
  lin.Set(fb::LinearT{});
  auto lp = plan_node_params(ctx, "Linear", lin, "lin", "");
  REQUIRE(lp.ok());
  CHECK(lp->params.size() == 1);  // no bias in the state dict: absent input
  CHECK(lp->data_positions == std::vector<int>{0});

  fb::OpUnion bn;
  bn.Set(fb::BatchNormT{});
  auto bp = plan_node_params(ctx, "BatchNorm", bn, "bn", "");
  REQUIRE(bp.ok());
  CHECK(bp->ignored == std::vector<std::string>{"bn.num_batches_tracked"});

  CHECK(plan_node_params(ctx, "Linear", lin, "lin", "nope").status().message() ==
        "unknown parameter layout 'nope' for Linear (known: torch)");
  fb::OpUnion sm;
  sm.Set(fb::SoftmaxT{});
  CHECK(plan_node_params(ctx, "Softmax", sm, "x", "").status().message().find("node type 'Softmax' has no parameter table") == 0);
}

TEST_CASE("graph recipe: nested repeats, aliases, variables and shape_of") {
  std::vector<FakeTensor> ts;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) ts.push_back({"stage." + std::to_string(i) + ".fc." + std::to_string(j) + ".weight", "F32", {6, 6}});
  ts.push_back({"head.weight", "F32", {2, 6}});
  ts.push_back({"head.bias", "F32", {2}});
  std::string weights = temp_file("nested.safetensors", safetensors(ts));
  std::string net = R"json({
    "vars": {"width": {"shape_of": "head.weight", "axis": 1}, "double": "$(width * 2)"},
    "inputs": [{"name": "x", "shape": [-1, "$width"]}],
    "nodes": [
      {"repeat": {"prefix": "stage.{i}", "input": "x", "as": "features", "nodes": [
        {"repeat": {"prefix": "{prefix}.fc.{j}", "var": "j", "input": "{prev}", "nodes": [
          {"op": "Linear", "params": "{prefix}", "attrs": {"activation": "Relu"}, "inputs": ["{prev}"]}]}}]}},
      {"op": "Linear", "params": "head", "inputs": ["features"]}],
    "outputs": ["head"]
  })json";
  std::string cfg = temp_text("nested.json", net);
  std::string out = fs::path(cfg).parent_path().string() + "/nested.atrous";
  ConvertOptions o;
  o.arch = "graph";
  o.config_file = cfg;
  o.weights = {weights};
  o.output = out;
  ConvertOutcome r = atrous::convert::convert(o);
  INFO(r.status.to_string());
  for (const auto& p : r.problems) INFO(p.message);
  REQUIRE(r.status.ok());
  CHECK(r.tensors_used == 8);
  auto m = Model::open(out);
  REQUIRE(m.ok());
  const EntryPointInfo& e = (*m)->info().entries[0];
  CHECK(e.num_nodes == 7);
  CHECK(e.inputs[0].shape == Shape{-1, 6});
  CHECK(e.outputs[0].name == "head");
  CHECK(!e.has_preprocess);
}

TEST_CASE("graph recipe: a structural error stops with the node named, and nothing is written") {
  std::string weights = temp_file("one.safetensors", safetensors({{"fc.weight", "F32", {2, 2}}}));
  json net = {{"inputs", {{{"name", "x"}, {"shape", {1, 2}}}}},
              {"nodes", {{{"op", "Linear"}, {"params", "fc"}, {"attrs", {{"activaton", "Relu"}}}, {"inputs", {"x"}}}}},
              {"outputs", {"fc"}}};
  ConvertOptions o;
  o.arch = "graph";
  o.config_file = temp_text("typo.json", net.dump());
  o.weights = {weights};
  o.output = fs::path(o.config_file).parent_path().string() + "/typo.atrous";
  ConvertOutcome r = atrous::convert::convert(o);
  REQUIRE(!r.status.ok());
  CHECK(r.status.message().find("node 'fc' (Linear) at nodes[0]") == 0);
  CHECK(r.status.message().find("activaton") != std::string::npos);
  CHECK(!fs::exists(o.output));
}

TEST_CASE("recipes: the table") {
  REQUIRE(find_recipe("graph") != nullptr);
  CHECK(find_recipe("nope") == nullptr);
  CHECK(recipe_names().find("graph") != std::string::npos);
  for (const Recipe* r : all_recipes()) {
    CHECK(r->build != nullptr);
    auto keys = recipe_config_keys(*r);
    for (size_t i = 0; i < keys.size(); ++i)
      for (size_t j = i + 1; j < keys.size(); ++j) CHECK(keys[i].name != keys[j].name);
    // The defaults parse and have the declared types.
    CHECK(Config::make(r->name, keys, nullptr, "", {}).ok());
  }
}

TEST_CASE("param table: every entry fits its op's arity and the schema") {
  std::vector<std::string> schema = op_type_names();
  for (const OpParams& p : all_op_params()) {
    INFO(p.op);
    CHECK(std::find(schema.begin(), schema.end(), std::string(p.op)) != schema.end());
    const OpDef* def = nullptr;
    for (const OpDef* d : all_ops())
      if (std::string(d->name) == p.op) def = d;
    for (const ParamLayout& l : p.layouts) {
      INFO(l.name);
      std::set<int> inputs;
      for (const ParamSlot& s : l.slots) {
        CHECK(inputs.insert(s.input).second);  // one slot per input
        CHECK(s.input >= 1);
        if (def) CHECK(s.input < def->max_inputs);
        std::map<std::string, int64_t> sym;
        CHECK(evaluate_shape_rule(s.shape, &sym, nullptr).ok());
      }
    }
  }
}

TEST_CASE("param table: the layout with the most keys wins; attribute-driven slots") {
  Ctx c({{"a.q_proj.weight", "F32", {4, 4}}, {"a.k_proj.weight", "F32", {4, 4}}, {"a.v_proj.weight", "F32", {4, 4}},
         {"a.out_proj.weight", "F32", {4, 4}}, {"a.layer_norm.scale", "F32", {4}},
         {"m.qkv.conv.weight", "F32", {48, 8, 1, 1}}, {"m.proj.conv.weight", "F32", {8, 32, 1, 1}},
         {"m.aggreg.0.0.weight", "F32", {48, 1, 5, 5}}, {"m.aggreg.0.1.weight", "F32", {48, 8, 1, 1}}});
  fb::OpUnion na;
  na.Set(fb::NormAttentionT{});
  auto np = plan_node_params(*c.ctx, "NormAttention", na, "a", "");
  REQUIRE(np.ok());
  CHECK(np->layout == "linear_rms");
  CHECK(np->params.back().input == 11);

  fb::LiteMLAT lm;
  lm.scales = {5};
  fb::OpUnion u;
  u.Set(lm);
  auto mp = plan_node_params(*c.ctx, "LiteMLA", u, "m", "");
  REQUIRE(mp.ok());
  REQUIRE(mp->params.size() == 4);
  CHECK(mp->params[2].key == "m.aggreg.0.0.weight");
  CHECK(mp->params[2].input == 4);
  CHECK(mp->params[2].expected == Shape{48, 1, 5, 5});
  CHECK(mp->params[3].expected == Shape{48, 8, 1, 1});
  CHECK(mp->data_positions.front() == 0);
}

TEST_CASE("hostile configs: deep nesting and runaway repeats are refused, not crashed on") {
  CHECK(eval(std::string(5000, '(') + "1" + std::string(5000, ')')).status().message().find("nested too deeply") !=
        std::string::npos);
  CHECK(!eval(std::string(5000, '-') + "1").ok());
  json deep = json::array();
  for (int i = 0; i < 1000; ++i) deep = json::array({deep});
  CHECK(substitute(deep, [](const std::string&) -> Result<json> { return json(1); }).status().message() ==
        "JSON nested more than 64 levels deep");

  std::string weights = temp_file("w1.safetensors", safetensors({{"fc.weight", "F32", {2, 2}}}));
  auto run = [&](const std::string& net) {
    ConvertOptions o;
    o.arch = "graph";
    o.config_file = temp_text("hostile.json", net);
    o.weights = {weights};
    o.output = fs::path(o.config_file).parent_path().string() + "/hostile.atrous";
    ConvertOutcome r = atrous::convert::convert(o);
    CHECK(!fs::exists(o.output));
    return r.status;
  };
  std::string big = R"({"inputs": [{"name": "x", "shape": [1, 2]}], "outputs": ["x"], "nodes": [
    {"repeat": {"count": 100000, "input": "x", "nodes": [{"repeat": {"count": 100000, "var": "j", "nodes": [
      {"name": "n{i}_{j}", "op": "Unary", "attrs": {"kind": "Relu"}, "inputs": ["x"]}]}}]}}]})";
  CHECK(run(big).message().find("unrolls to more than 100000 nodes") != std::string::npos);
  std::string cyc = R"json({"vars": {"a": "$b", "b": "$(a + 1)"}, "inputs": [{"name": "x", "shape": [1, "$a"]}],
    "outputs": ["x"], "nodes": []})json";
  CHECK(run(cyc).message().find("refers to itself") != std::string::npos);
}
