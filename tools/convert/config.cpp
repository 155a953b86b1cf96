#include "convert/config.h"

#include <algorithm>

namespace atrous::convert {

const char* config_type_name(ConfigType t) {
  switch (t) {
    case ConfigType::kBool: return "bool";
    case ConfigType::kInt: return "int";
    case ConfigType::kFloat: return "float";
    case ConfigType::kString: return "string";
    case ConfigType::kIntList: return "int list";
    case ConfigType::kFloatList: return "float list";
    case ConfigType::kStringList: return "string list";
    case ConfigType::kObject: return "object";
    case ConfigType::kArray: return "array";
    case ConfigType::kAny: return "any";
  }
  return "?";
}

namespace {

const char* json_kind(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a bool";
  if (v.is_number_integer()) return "an int";
  if (v.is_number()) return "a float";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

bool all_of(const nlohmann::json& v, bool (*pred)(const nlohmann::json&)) {
  if (!v.is_array()) return false;
  for (const auto& e : v)
    if (!pred(e)) return false;
  return true;
}

bool is_int(const nlohmann::json& v) { return v.is_number_integer(); }
bool is_number(const nlohmann::json& v) { return v.is_number(); }
bool is_string(const nlohmann::json& v) { return v.is_string(); }

std::string known_keys(const std::vector<ConfigKey>& keys) {
  std::vector<std::string> names;
  for (const auto& k : keys) names.push_back(k.name);
  std::sort(names.begin(), names.end());
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// Text of a --set value as JSON of type t: JSON first, then bare text for strings,
// then comma-separated items for lists.
Result<nlohmann::json> parse_set_value(ConfigType t, const std::string& text) {
  nlohmann::json v = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!v.is_discarded() && check_config_type(t, v).ok()) return v;
  if (t == ConfigType::kString || t == ConfigType::kAny) return nlohmann::json(text);
  if (t == ConfigType::kIntList || t == ConfigType::kFloatList || t == ConfigType::kStringList) {
    nlohmann::json list = nlohmann::json::array();
    size_t p = 0;
    while (p <= text.size()) {
      size_t q = text.find(',', p);
      std::string item = text.substr(p, q == std::string::npos ? std::string::npos : q - p);
      if (t == ConfigType::kStringList) {
        list.push_back(item);
      } else {
        nlohmann::json e = nlohmann::json::parse(item, nullptr, false);
        if (e.is_discarded()) return invalid_argument("'" + text + "' is not a " + config_type_name(t));
        list.push_back(e);
      }
      if (q == std::string::npos) break;
      p = q + 1;
    }
    ATROUS_RETURN_IF_ERROR(check_config_type(t, list));
    return list;
  }
  if (v.is_discarded()) return invalid_argument("'" + text + "' is not a " + std::string(config_type_name(t)));
  ATROUS_RETURN_IF_ERROR(check_config_type(t, v));
  return v;
}

}  // namespace

Status check_config_type(ConfigType t, const nlohmann::json& v) {
  bool ok = false;
  switch (t) {
    case ConfigType::kBool: ok = v.is_boolean(); break;
    case ConfigType::kInt: ok = v.is_number_integer(); break;
    case ConfigType::kFloat: ok = v.is_number(); break;
    case ConfigType::kString: ok = v.is_string(); break;
    case ConfigType::kIntList: ok = all_of(v, is_int); break;
    case ConfigType::kFloatList: ok = all_of(v, is_number); break;
    case ConfigType::kStringList: ok = all_of(v, is_string); break;
    case ConfigType::kObject: ok = v.is_object(); break;
    case ConfigType::kArray: ok = v.is_array(); break;
    case ConfigType::kAny: ok = true; break;
  }
  if (ok) return Status::Ok();
  return invalid_argument(std::string("expected ") + (t == ConfigType::kInt || t == ConfigType::kIntList ? "an " : "a ") +
                          config_type_name(t) + ", got " + json_kind(v));
}

Result<Config> Config::make(const std::string& recipe, const std::vector<ConfigKey>& keys, const nlohmann::json* file,
                            const std::string& file_name, const std::vector<std::string>& sets) {
  Config c;
  c.recipe_ = recipe;
  c.keys_ = keys;
  for (const ConfigKey& k : keys) {
    if (k.default_json.empty()) continue;
    nlohmann::json d = nlohmann::json::parse(k.default_json, nullptr, false);
    if (d.is_discarded() || !check_config_type(k.type, d).ok())
      return internal_error("recipe '" + recipe + "': the default of config key '" + k.name + "' is not a valid " +
                            config_type_name(k.type));
    c.values_[k.name] = d;
  }
  auto unknown = [&](const std::string& name, const std::string& where) {
    return invalid_argument("unknown config key '" + name + "' " + where + " (recipe '" + recipe + "' knows: " +
                            known_keys(keys) + ")");
  };
  if (file && !file->is_null()) {
    if (!file->is_object()) return invalid_argument("config file '" + file_name + "' must hold a JSON object");
    for (const auto& [name, value] : file->items()) {
      const ConfigKey* k = c.key(name);
      if (!k) return unknown(name, "in '" + file_name + "'");
      Status st = check_config_type(k->type, value);
      if (!st.ok()) return invalid_argument("config key '" + name + "' in '" + file_name + "': " + st.message());
      c.values_[name] = value;
      c.given_.push_back(name);
    }
  }
  for (const std::string& s : sets) {
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      return invalid_argument("--set '" + s + "': expected KEY=VALUE");
    std::string path = s.substr(0, eq), text = s.substr(eq + 1);
    size_t dot = path.find('.');
    std::string name = path.substr(0, dot);
    const ConfigKey* k = c.key(name);
    if (!k) return unknown(name, "in --set " + s);
    if (dot == std::string::npos) {
      auto v = parse_set_value(k->type, text);
      if (!v.ok()) return invalid_argument("config key '" + name + "' in --set " + s + ": " + v.status().message());
      c.values_[name] = *v;
    } else {
      // A member of an object key: vars.heads=8 (members may be added).
      if (k->type != ConfigType::kObject && k->type != ConfigType::kAny)
        return invalid_argument("--set " + s + ": config key '" + name + "' is a " + config_type_name(k->type) +
                                ", not an object");
      nlohmann::json* node = &c.values_[name];
      if (!node->is_object()) *node = nlohmann::json::object();
      std::string rest = path.substr(dot + 1);
      while (true) {
        size_t d = rest.find('.');
        std::string member = rest.substr(0, d);
        if (member.empty()) return invalid_argument("--set " + s + ": empty member name in '" + path + "'");
        if (d == std::string::npos) {
          nlohmann::json v = nlohmann::json::parse(text, nullptr, false);
          (*node)[member] = v.is_discarded() ? nlohmann::json(text) : v;
          break;
        }
        node = &(*node)[member];
        if (!node->is_object()) *node = nlohmann::json::object();
        rest = rest.substr(d + 1);
      }
    }
    if (std::find(c.given_.begin(), c.given_.end(), name) == c.given_.end()) c.given_.push_back(name);
  }
  return c;
}

const ConfigKey* Config::key(const std::string& name) const {
  for (const ConfigKey& k : keys_)
    if (k.name == name) return &k;
  return nullptr;
}

bool Config::declared(const std::string& name) const { return key(name) != nullptr; }
bool Config::given(const std::string& name) const {
  return std::find(given_.begin(), given_.end(), name) != given_.end();
}
bool Config::has(const std::string& name) const { return values_.contains(name); }

Result<nlohmann::json> Config::fetch(const std::string& name) const {
  const ConfigKey* k = key(name);
  if (!k) return internal_error("recipe '" + recipe_ + "' reads config key '" + name + "' without declaring it");
  auto it = values_.find(name);
  if (it == values_.end())
    return invalid_argument("config key '" + name + "' is required by recipe '" + recipe_ + "' (" + k->help +
                            "): give it in --config FILE.json or with --set " + name + "=VALUE");
  return *it;
}

Result<bool> Config::get_bool(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!v.is_boolean()) return internal_error("config key '" + name + "' is not declared as a bool");
  return v.get<bool>();
}

Result<int64_t> Config::get_int(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!v.is_number_integer()) return internal_error("config key '" + name + "' is not declared as an int");
  return v.get<int64_t>();
}

Result<double> Config::get_float(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!v.is_number()) return internal_error("config key '" + name + "' is not declared as a float");
  return v.get<double>();
}

Result<std::string> Config::get_string(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!v.is_string()) return internal_error("config key '" + name + "' is not declared as a string");
  return v.get<std::string>();
}

Result<std::vector<int64_t>> Config::get_ints(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!all_of(v, is_int)) return internal_error("config key '" + name + "' is not declared as an int list");
  return v.get<std::vector<int64_t>>();
}

Result<std::vector<double>> Config::get_floats(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!all_of(v, is_number)) return internal_error("config key '" + name + "' is not declared as a float list");
  return v.get<std::vector<double>>();
}

Result<std::vector<std::string>> Config::get_strings(const std::string& name) const {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, fetch(name));
  if (!all_of(v, is_string)) return internal_error("config key '" + name + "' is not declared as a string list");
  return v.get<std::vector<std::string>>();
}

Result<nlohmann::json> Config::get_json(const std::string& name) const { return fetch(name); }

}  // namespace atrous::convert
