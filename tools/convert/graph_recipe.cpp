// The generic JSON recipe (`--arch graph --config net.json`): a network written
// as a graph of Atrous node types, each node naming the state-dict prefix of
// its parameters. docs/converter.md has the full form and a worked example.
//
//   {
//     "vars":   {"heads": 4, "dim": {"shape_of": "embed.weight", "axis": 0}},
//     "inputs": [{"name": "x", "shape": [1, -1, "$dim"]}],
//     "nodes": [
//       {"repeat": {"prefix": "blocks.{i}", "count": "auto", "input": "x", "as": "h",
//                   "nodes": [
//         {"name": "{prefix}.norm", "op": "LayerNorm", "params": "{prefix}.norm", "inputs": ["{prev}"]},
//         {"name": "{prefix}.fc", "op": "Linear", "params": "{prefix}.fc", "attrs": {"activation": "Gelu"},
//          "inputs": ["{prefix}.norm"]},
//         {"name": "{prefix}.out", "op": "Binary", "attrs": {"kind": "Add"}, "inputs": ["{prev}", "{prefix}.fc"]}]}}
//     ],
//     "outputs": ["h"]
//   }
//
// Expansion happens first (repeats unrolled, variables substituted), then the
// nodes are added in order. A node's "inputs" are its data inputs; with
// "params" its parameter inputs come from param_table.h. Without "params", an
// input that is not a graph value is read from the state dict by its key.
#include <map>
#include <set>

#include "builder/op_json.h"
#include "convert/json_template.h"
#include "convert/param_table.h"
#include "convert/recipe.h"

namespace atrous::convert {
namespace {

using json = nlohmann::json;

struct FlatNode {
  json node;           // name, op, attrs, inputs, outputs (substituted)
  std::string params;  // key prefix ("" = none)
  std::string layout;
  std::string where;   // "nodes[3] (repeat 'blocks.{i}' i=2)" for messages
};

class GraphRecipe {
 public:
  explicit GraphRecipe(RecipeContext& ctx) : ctx_(ctx) {}

  Status build() {
    const Config& c = ctx_.config();
    ATROUS_ASSIGN_OR_RETURN(vars_, c.get_json("vars"));
    ATROUS_ASSIGN_OR_RETURN(json inputs, c.get_json("inputs"));
    ATROUS_ASSIGN_OR_RETURN(json nodes, c.get_json("nodes"));
    ATROUS_ASSIGN_OR_RETURN(json outputs, c.get_json("outputs"));
    ATROUS_ASSIGN_OR_RETURN(std::string entry, c.get_string("entry"));
    if (entry.empty()) return invalid_argument("config key 'entry': the entry point needs a name");
    GraphBuilder& g = ctx_.model().graph(entry);

    std::vector<Scope> scopes;
    std::vector<FlatNode> flat;
    ATROUS_RETURN_IF_ERROR(expand(nodes, scopes, "nodes", &flat));

    std::string first_input, first_output;
    for (size_t k = 0; k < inputs.size(); ++k) {
      std::string where = "inputs[" + std::to_string(k) + "]";
      ATROUS_ASSIGN_OR_RETURN(json in, substitute(inputs[k], lookup(scopes)));
      if (!in.is_object() || !in.contains("name") || !in["name"].is_string())
        return invalid_argument(where + ": expected {\"name\": ..., \"dtype\": ..., \"shape\": [...]}");
      for (const auto& [key, _] : in.items())
        if (key != "name" && key != "dtype" && key != "shape")
          return invalid_argument(where + ": unknown key '" + key + "' (expected name, dtype, shape)");
      std::string name = in["name"].get<std::string>();
      if (in.contains("dtype") && !in["dtype"].is_string())
        return invalid_argument(where + " '" + name + "': \"dtype\" must be a string such as \"f32\"");
      std::string dt_name = in.contains("dtype") ? in["dtype"].get<std::string>() : "f32";
      auto dt = parse_dtype(dt_name);
      if (!dt.ok()) return dt.status().with_context(where);
      if (!in.contains("shape") || check_config_type(ConfigType::kIntList, in["shape"]).ok() == false)
        return invalid_argument(where + " '" + name + "': \"shape\" must be a list of ints (-1 = any size)");
      if (names_.count(name)) return invalid_argument(where + ": name '" + name + "' is used twice");
      names_[name] = g.input(name, *dt, in["shape"].get<Shape>());
      if (first_input.empty()) first_input = name;
    }

    for (const FlatNode& n : flat) ATROUS_RETURN_IF_ERROR(add(g, n));

    for (size_t k = 0; k < outputs.size(); ++k) {
      std::string where = "outputs[" + std::to_string(k) + "]";
      ATROUS_ASSIGN_OR_RETURN(json o, substitute(outputs[k], lookup(scopes)));
      std::string value, rename;
      if (o.is_string()) {
        rename = o.get<std::string>();
        value = resolve_alias(rename);
      } else if (o.is_object() && o.contains("value") && o["value"].is_string()) {
        value = resolve_alias(o["value"].get<std::string>());
        rename = o.contains("name") && o["name"].is_string() ? o["name"].get<std::string>() : value;
      } else {
        return invalid_argument(where + ": expected a value name or {\"value\": ..., \"name\": ...}");
      }
      auto it = names_.find(value);
      if (it == names_.end()) return invalid_argument(where + ": '" + value + "' is not produced by any node");
      g.output(it->second, rename);
      if (first_output.empty()) first_output = rename;
    }
    if (first_output.empty()) return invalid_argument("config key 'outputs': the graph has no outputs");
    ATROUS_RETURN_IF_ERROR(g.status());
    return ctx_.apply_image_metadata(g, first_input, first_output);
  }

 private:
  // Bindings of one repeat level: its index variable, {prefix} and {prev}.
  using Scope = std::map<std::string, json>;

  VarLookup lookup(const std::vector<Scope>& scopes) {
    return [this, scopes](const std::string& name) -> Result<json> {
      for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
        auto f = it->find(name);
        if (f != it->end()) return f->second;
      }
      return var(name);
    };
  }

  // Config variables, resolved on first use (so they may refer to each other).
  Result<json> var(const std::string& name) {
    auto done = resolved_.find(name);
    if (done != resolved_.end()) return done->second;
    if (!vars_.is_object() || !vars_.contains(name)) {
      std::string known;
      if (vars_.is_object())
        for (const auto& [k, _] : vars_.items()) known += (known.empty() ? "" : ", ") + k;
      return invalid_argument("unknown variable '" + name + "' (vars: " + (known.empty() ? "none" : known) + ")");
    }
    if (resolving_.count(name)) return invalid_argument("variable '" + name + "' refers to itself");
    if (resolving_.size() > 64) return invalid_argument("variables refer to each other more than 64 levels deep");
    resolving_.insert(name);
    Result<json> r = resolve_var(name, vars_[name]);
    resolving_.erase(name);
    if (!r.ok()) return r.status().with_context("variable '" + name + "'");
    resolved_[name] = *r;
    return r;
  }

  Result<json> resolve_var(const std::string& name, const json& raw) {
    std::vector<Scope> none;
    if (raw.is_object() && raw.contains("shape_of")) {
      ATROUS_ASSIGN_OR_RETURN(json key, substitute(raw["shape_of"], lookup(none)));
      if (!key.is_string()) return invalid_argument("\"shape_of\" must name a state-dict key");
      int axis = raw.contains("axis") && raw["axis"].is_number_integer() ? raw["axis"].get<int>() : 0;
      int64_t d = ctx_.dim(key.get<std::string>(), axis);
      if (d < 0) return not_found("cannot infer it from '" + key.get<std::string>() + "'");
      return json(d);
    }
    if (raw.is_object() && raw.contains("count")) {
      ATROUS_ASSIGN_OR_RETURN(json pattern, substitute(raw["count"], lookup(none)));
      if (!pattern.is_string()) return invalid_argument("\"count\" must be a key pattern with {i}");
      ATROUS_ASSIGN_OR_RETURN(int n, ctx_.count_blocks(pattern.get<std::string>()));
      return json(n);
    }
    (void)name;
    return substitute(raw, lookup(none));
  }

  std::string resolve_alias(const std::string& name) const {
    auto it = aliases_.find(name);
    return it == aliases_.end() ? name : it->second;
  }

  // Unrolls repeats and substitutes variables, appending plain nodes to `out`.
  Status expand(const json& nodes, std::vector<Scope>& scopes, const std::string& where, std::vector<FlatNode>* out) {
    if (!nodes.is_array()) return invalid_argument(where + ": expected a list of nodes");
    if (scopes.size() > kMaxRepeatDepth) return invalid_argument(where + ": repeats nested too deeply");
    for (size_t k = 0; k < nodes.size(); ++k) {
      const json& item = nodes[k];
      std::string here = where + "[" + std::to_string(k) + "]";
      if (!item.is_object()) return invalid_argument(here + ": expected an object");
      if (item.contains("repeat")) {
        if (item.size() != 1) return invalid_argument(here + ": a repeat item holds only \"repeat\"");
        ATROUS_RETURN_IF_ERROR(expand_repeat(item["repeat"], scopes, here + ".repeat", out));
        continue;
      }
      VarLookup vars = lookup(scopes);
      FlatNode fn;
      fn.where = here;
      json node = json::object();
      for (const auto& [key, value] : item.items()) {
        if (key == "params" || key == "layout") {
          if (!value.is_string()) return invalid_argument(here + ": \"" + key + "\" must be a string");
          ATROUS_ASSIGN_OR_RETURN(std::string s, substitute_text(value.get<std::string>(), vars));
          (key == "params" ? fn.params : fn.layout) = s;
        } else if (key == "name" || key == "op" || key == "attrs" || key == "inputs" || key == "outputs") {
          auto v = substitute(value, vars);
          if (!v.ok()) return v.status().with_context(here + "." + key);
          node[key] = std::move(v).value();
        } else {
          return invalid_argument(here + ": unknown key '" + key +
                                  "' (expected name, op, attrs, inputs, outputs, params, layout, or repeat)");
        }
      }
      if (!node.contains("name") && !fn.params.empty()) node["name"] = fn.params;
      if (!node.contains("name") || !node["name"].is_string() || node["name"].get<std::string>().empty())
        return invalid_argument(here + ": a node needs a \"name\" (or \"params\", whose prefix names it)");
      if (!node.contains("op") || !node["op"].is_string()) return invalid_argument(here + ": a node needs an \"op\"");
      if (node.contains("inputs")) {
        if (!node["inputs"].is_array()) return invalid_argument(here + ": \"inputs\" must be a list");
        for (auto& in : node["inputs"]) {
          if (in.is_string()) in = resolve_alias(in.get<std::string>());
          else if (!in.is_null()) return invalid_argument(here + ": inputs are value names or null");
        }
      }
      if (!scopes.empty()) fn.where += " (" + scope_text(scopes) + ")";
      if (out->size() >= kMaxNodes)
        return invalid_argument(here + ": the graph unrolls to more than " + std::to_string(kMaxNodes) + " nodes");
      fn.node = std::move(node);
      last_name_ = fn.node.contains("outputs") && fn.node["outputs"].is_array() && !fn.node["outputs"].empty() &&
                           fn.node["outputs"][0].is_string()
                       ? fn.node["outputs"][0].get<std::string>()
                       : fn.node["name"].get<std::string>();
      out->push_back(std::move(fn));
    }
    return Status::Ok();
  }

  static std::string scope_text(const std::vector<Scope>& scopes) {
    std::string s;
    for (const Scope& sc : scopes)
      for (const auto& [k, v] : sc)
        if (k != "prefix" && k != "prev") s += (s.empty() ? "" : ", ") + k + "=" + v.dump();
    return s;
  }

  Status expand_repeat(const json& r, std::vector<Scope>& scopes, const std::string& here, std::vector<FlatNode>* out) {
    if (!r.is_object()) return invalid_argument(here + ": expected an object");
    for (const auto& [key, _] : r.items())
      if (key != "prefix" && key != "count" && key != "var" && key != "input" && key != "output" && key != "as" &&
          key != "nodes")
        return invalid_argument(here + ": unknown key '" + key + "' (expected prefix, count, var, input, output, as, nodes)");
    std::string var = r.contains("var") && r["var"].is_string() ? r["var"].get<std::string>() : "i";
    if (!r.contains("nodes")) return invalid_argument(here + ": no \"nodes\"");
    // The prefix keeps {var} for now; everything else is substituted.
    VarLookup outer = lookup(scopes);
    VarLookup keep_var = [&, var](const std::string& name) -> Result<json> {
      if (name == var) return json("{" + var + "}");
      return outer(name);
    };
    std::string prefix_pattern;
    if (r.contains("prefix")) {
      if (!r["prefix"].is_string()) return invalid_argument(here + ": \"prefix\" must be a string");
      ATROUS_ASSIGN_OR_RETURN(prefix_pattern, substitute_text(r["prefix"].get<std::string>(), keep_var));
    }
    int64_t count = 0;
    json c = r.contains("count") ? r["count"] : json("auto");
    if (c.is_string() && c.get<std::string>() == "auto") {
      if (prefix_pattern.find("{" + var + "}") == std::string::npos)
        return invalid_argument(here + ": \"count\": \"auto\" needs a \"prefix\" containing {" + var + "}");
      std::string pattern = prefix_pattern;
      pattern.replace(pattern.find("{" + var + "}"), var.size() + 2, "{i}");
      auto n = ctx_.count_blocks(pattern);
      if (!n.ok()) return n.status().with_context(here);
      count = *n;
    } else {
      auto v = substitute(c, outer);
      if (!v.ok()) return v.status().with_context(here + ".count");
      if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > 100000)
        return invalid_argument(here + ": \"count\" must be \"auto\" or an int in 0..100000, got " + v->dump());
      count = v->get<int64_t>();
    }
    std::string prev;
    if (r.contains("input")) {
      if (!r["input"].is_string()) return invalid_argument(here + ": \"input\" must be a value name");
      ATROUS_ASSIGN_OR_RETURN(prev, substitute_text(r["input"].get<std::string>(), outer));
      prev = resolve_alias(prev);
    }
    for (int64_t i = 0; i < count; ++i) {
      Scope s;
      s[var] = i;
      s["prev"] = prev;
      scopes.push_back(s);
      std::string prefix;
      auto p = substitute_text(prefix_pattern, lookup(scopes));
      if (!p.ok()) {
        scopes.pop_back();
        return p.status().with_context(here);
      }
      scopes.back()["prefix"] = *p;
      last_name_.clear();
      Status st = expand(r["nodes"], scopes, here + ".nodes", out);
      if (st.ok() && r.contains("output")) {
        auto o = substitute_text(r["output"].is_string() ? r["output"].get<std::string>() : "", lookup(scopes));
        if (!o.ok()) st = o.status();
        else last_name_ = resolve_alias(*o);
      }
      scopes.pop_back();
      ATROUS_RETURN_IF_ERROR(st);
      if (last_name_.empty()) return invalid_argument(here + ": the repeated block has no nodes");
      prev = last_name_;
    }
    if (r.contains("as")) {
      if (!r["as"].is_string()) return invalid_argument(here + ": \"as\" must be a name");
      ATROUS_ASSIGN_OR_RETURN(std::string as, substitute_text(r["as"].get<std::string>(), outer));
      if (prev.empty()) return invalid_argument(here + ": \"as\" names the last block's output, but there is none");
      aliases_[as] = prev;
    }
    last_name_ = prev;
    return Status::Ok();
  }

  // Adds one plain node: data inputs by name, parameters from the state dict.
  Status add(GraphBuilder& g, const FlatNode& fn) {
    const json& n = fn.node;
    std::string name = n["name"].get<std::string>();
    std::string op = n["op"].get<std::string>();
    std::string who = "node '" + name + "' (" + op + ") at " + fn.where;
    json attrs = n.contains("attrs") ? n["attrs"] : json::object();
    if (!attrs.is_object()) return invalid_argument(who + ": \"attrs\" must be an object");
    auto u = op_from_json(op, attrs.dump());
    if (!u.ok()) return u.status().with_context(who);
    size_t problems_before = ctx_.problems().size();
    std::vector<int> data;
    if (n.contains("inputs"))
      for (const json& in : n["inputs"]) {
        if (in.is_null()) {
          data.push_back(-1);
          continue;
        }
        std::string iname = in.get<std::string>();
        auto it = names_.find(iname);
        if (it != names_.end()) {
          data.push_back(it->second);
        } else if (ctx_.has(iname)) {
          data.push_back(ctx_.param_any(g, iname));  // a state-dict key named directly
          names_[iname] = data.back();
        } else {
          ctx_.problem(ProblemKind::kMissing, iname,
                       "missing key '" + iname + "' (input of " + who + "; it is not a graph value either)");
          data.push_back(ctx_.param(g, iname, Shape{-1}));
          names_[iname] = data.back();
        }
      }
    std::vector<int> inputs = data;
    if (!fn.params.empty()) {
      auto np = plan_node_params(ctx_, op, *u, fn.params, fn.layout);
      if (!np.ok()) return np.status().with_context(who);
      auto full = node_inputs(ctx_, g, *np, data);
      if (!full.ok()) return full.status().with_context(who);
      inputs = std::move(full).value();
    } else if (!fn.layout.empty()) {
      return invalid_argument(who + ": \"layout\" without \"params\"");
    }
    std::vector<std::string> outs = {name};
    if (n.contains("outputs")) {
      if (!n["outputs"].is_array() || n["outputs"].empty()) return invalid_argument(who + ": \"outputs\" must be a non-empty list");
      outs.clear();
      for (const json& o : n["outputs"]) {
        if (!o.is_string()) return invalid_argument(who + ": output names are strings");
        outs.push_back(o.get<std::string>());
      }
    }
    std::vector<int> ids;
    if (ctx_.problems().size() > problems_before) {
      // This node's parameters or inputs are missing or do not fit: its outputs become placeholders
      // (the node's own checks would only trip over the placeholder weights), so that
      // the nodes after it are still built and their problems found too.
      for (size_t k = 0; k < outs.size(); ++k) {
        std::string vn = k == 0 ? name : name + ":" + std::to_string(k);
        ids.push_back(g.constant_streamed(vn, DType::kF32, {1}, [vn](void*) {
          return internal_error("placeholder for node output '" + vn + "' reached the writer");
        }));
      }
    } else {
      ids = g.add_node(name, std::move(u).value(), inputs, static_cast<int>(outs.size()));
    }
    if (!g.status().ok()) return g.status().with_context(fn.where);
    for (size_t k = 0; k < outs.size(); ++k) {
      if (names_.count(outs[k])) return invalid_argument(who + ": output name '" + outs[k] + "' is already used");
      names_[outs[k]] = ids[k];
    }
    if (!names_.count(name)) names_[name] = ids[0];
    return Status::Ok();
  }

  static constexpr size_t kMaxRepeatDepth = 8;
  static constexpr size_t kMaxNodes = 100000;

  RecipeContext& ctx_;
  json vars_;
  std::map<std::string, json> resolved_;
  std::set<std::string> resolving_;
  std::map<std::string, std::string> aliases_;
  std::map<std::string, int> names_;
  std::string last_name_;
};

Status build_graph(RecipeContext& ctx) { return GraphRecipe(ctx).build(); }

}  // namespace

const Recipe kGraphRecipe = {
    "graph",
    "any network written as a JSON graph of Atrous node types (--config net.json; see docs/converter.md)",
    {
        {"entry", ConfigType::kString, "\"main\"", "entry point name"},
        {"vars", ConfigType::kObject, "{}",
         "named values: literals, {\"shape_of\": KEY, \"axis\": N}, {\"count\": \"layers.{i}\"} or \"$(expression)\""},
        {"inputs", ConfigType::kArray, "", "graph inputs: [{\"name\", \"dtype\", \"shape\"}]"},
        {"nodes", ConfigType::kArray, "", "nodes in execution order (with \"params\" prefixes and \"repeat\" blocks)"},
        {"outputs", ConfigType::kArray, "", "graph outputs: value names, or {\"value\", \"name\"}"},
    },
    build_graph,
    /*image=*/true,
};

}  // namespace atrous::convert
