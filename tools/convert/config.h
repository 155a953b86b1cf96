// A recipe's configuration: declared keys with types, defaults and help,
// merged from the defaults, then a JSON file (`--config FILE.json`), then
// `--set KEY=VALUE` assignments, in that order.
//
// Every key a user gives must be declared by the recipe: an unknown key is an
// error that names it and lists the known ones (a typo must not silently fall
// back to a default). Values are type-checked when merged, so the typed
// getters only fail for a required key that nobody gave. `--set` takes JSON
// values (`--set depth=4`, `--set mean=[0.5,0.5,0.5]`), bare text for string
// keys (`--set resize=stretch`), comma lists for list keys (`--set mean=0.5,0.5,0.5`)
// and a dotted path into an object key (`--set vars.heads=8`).
//
// A Config is a value: it owns its JSON and is immutable after make().
//
//   std::vector<ConfigKey> keys = {{"depth", ConfigType::kInt, "12", "number of blocks"}};
//   ATROUS_ASSIGN_OR_RETURN(Config c, Config::make("vit", keys, file_json, {"depth=6"}));
//   ATROUS_ASSIGN_OR_RETURN(int64_t depth, c.get_int("depth"));
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "atrous/status.h"

namespace atrous::convert {

enum class ConfigType { kBool, kInt, kFloat, kString, kIntList, kFloatList, kStringList, kObject, kArray, kAny };

// "bool", "int", "float", "string", "int list", ...
const char* config_type_name(ConfigType t);

struct ConfigKey {
  std::string name;
  ConfigType type = ConfigType::kAny;
  std::string default_json;  // the default as JSON text; "" = none (absent unless given)
  std::string help;
};

class Config {
 public:
  Config() = default;

  // `recipe` names the recipe in messages. `file` is the parsed --config document
  // (null or a JSON object), `file_name` its path for messages; `sets` are the
  // --set assignments in order. Fails on an undeclared key, a wrongly typed value
  // or a malformed assignment, naming the key and where it came from.
  static Result<Config> make(const std::string& recipe, const std::vector<ConfigKey>& keys, const nlohmann::json* file,
                             const std::string& file_name, const std::vector<std::string>& sets);

  // Declared by the recipe.
  bool declared(const std::string& name) const;
  // Given by the file or a --set (not only defaulted).
  bool given(const std::string& name) const;
  // Given or defaulted.
  bool has(const std::string& name) const;

  // Typed getters: fail when the key is absent (required and not given), or is not
  // declared (a recipe bug), naming the key.
  Result<bool> get_bool(const std::string& name) const;
  Result<int64_t> get_int(const std::string& name) const;
  Result<double> get_float(const std::string& name) const;
  Result<std::string> get_string(const std::string& name) const;
  Result<std::vector<int64_t>> get_ints(const std::string& name) const;
  Result<std::vector<double>> get_floats(const std::string& name) const;
  Result<std::vector<std::string>> get_strings(const std::string& name) const;
  // Any declared key as JSON (objects, arrays, kAny).
  Result<nlohmann::json> get_json(const std::string& name) const;

  // The merged values that were given or defaulted, for the model's metadata.
  const nlohmann::json& values() const { return values_; }
  const std::vector<ConfigKey>& keys() const { return keys_; }

 private:
  const ConfigKey* key(const std::string& name) const;
  Result<nlohmann::json> fetch(const std::string& name) const;

  std::string recipe_;
  std::vector<ConfigKey> keys_;
  nlohmann::json values_ = nlohmann::json::object();
  std::vector<std::string> given_;
};

// Checks that `v` has type `t` (an int is accepted where a float is expected);
// on failure returns the reason ("expected an int list, got a string").
Status check_config_type(ConfigType t, const nlohmann::json& v);

}  // namespace atrous::convert
