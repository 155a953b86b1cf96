#include "builder/graph_json.h"

#include <nlohmann/json.hpp>

#include "builder/op_json.h"

namespace atrous {

Status build_graph_from_json(GraphBuilder& g, const std::string& json_text, const ConstantResolver& constant) {
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return invalid_argument("graph JSON does not parse as an object");
  for (const auto& [key, _] : doc.items())
    if (key != "inputs" && key != "nodes" && key != "outputs")
      return invalid_argument("graph JSON: unknown key '" + key + "' (expected inputs, nodes, outputs)");
  std::map<std::string, int> names;
  try {
    for (const auto& in : doc.value("inputs", nlohmann::json::array())) {
      std::string name = in.at("name").get<std::string>();
      ATROUS_ASSIGN_OR_RETURN(DType dt, parse_dtype(in.value("dtype", std::string("f32"))));
      Shape shape = in.at("shape").get<Shape>();
      names[name] = g.input(name, dt, shape);
    }
    for (const auto& node : doc.value("nodes", nlohmann::json::array())) {
      std::string name = node.value("name", std::string());
      std::string op = node.at("op").get<std::string>();
      std::string who = "node '" + name + "' (" + op + ")";
      for (const auto& [key, _] : node.items())
        if (key != "name" && key != "op" && key != "attrs" && key != "inputs" && key != "outputs")
          return invalid_argument(who + ": unknown key '" + key + "'");
      auto u = op_from_json(op, node.value("attrs", nlohmann::json::object()).dump());
      if (!u.ok()) return u.status().with_context(who);
      std::vector<int> inputs;
      for (const auto& i : node.value("inputs", nlohmann::json::array())) {
        if (i.is_null()) {
          inputs.push_back(-1);
          continue;
        }
        std::string iname = i.get<std::string>();
        auto it = names.find(iname);
        if (it != names.end()) {
          inputs.push_back(it->second);
          continue;
        }
        auto c = constant(g, iname);
        if (!c.ok()) return c.status().with_context(who);
        names[iname] = *c;
        inputs.push_back(*c);
      }
      std::vector<std::string> outs = node.value("outputs", std::vector<std::string>{name});
      if (outs.empty()) return invalid_argument(who + ": no outputs");
      std::vector<int> ids = g.add_node(name.empty() ? outs[0] : name, std::move(u).value(), inputs, static_cast<int>(outs.size()));
      if (!g.status().ok()) return g.status();
      for (size_t k = 0; k < outs.size(); ++k) {
        if (names.count(outs[k])) return invalid_argument(who + ": output name '" + outs[k] + "' is already used");
        names[outs[k]] = ids[k];
      }
    }
    for (const auto& o : doc.value("outputs", nlohmann::json::array())) {
      std::string name = o.get<std::string>();
      auto it = names.find(name);
      if (it == names.end()) return invalid_argument("graph JSON: output '" + name + "' is not produced by any node");
      g.output(it->second, name);
    }
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("graph JSON: ") + e.what());
  }
  return g.status();
}

}  // namespace atrous
