// Node attributes as JSON, parsed and printed by FlatBuffers' own parser
// against the embedded schema: field names, enum names and defaults are the
// schema's, and an unknown field is an error. Used by the converter's JSON
// recipes, by tests, and by `atrous inspect --json`.
//
//   auto op = op_from_json("Conv2d", R"({"stride_h": 2, "activation": "Relu"})");
#pragma once

#include <string>

#include "atrous/status.h"
#include "ir/graph.h"

namespace atrous {

// op_type: a schema union member name ("Conv2d"); attrs: a JSON object ("{}" for defaults).
Result<fb::OpUnion> op_from_json(const std::string& op_type, const std::string& attrs_json);
// The attributes as a JSON object (defaults omitted).
std::string op_to_json(const fb::OpUnion& op);
// Every op type name the schema knows.
std::vector<std::string> op_type_names();

}  // namespace atrous
