// Variables and small arithmetic inside recipe JSON.
//
// The generic JSON recipe lets a graph description refer to named values
// (config "vars", a repeat's index, its key prefix, the previous block's
// output). Three forms, in any JSON string:
//   "$name"            the whole string becomes the variable's value (any JSON type);
//   "$(expression)"    the whole string becomes the value of the expression;
//   "text {name} text" the variable's value is spliced into the text.
// "$$..." is a literal string starting with "$".
//
// Expressions are Python-like arithmetic on ints and floats: + - * / // % **,
// unary minus, parentheses, and sqrt, int, float, abs, min, max. "/" gives a
// float; the rest keep ints when both sides are ints. No other names, no
// side effects: a config file is data, not code.
//
//   VarLookup vars = [](const std::string& n) -> Result<nlohmann::json> { return nlohmann::json(64); };
//   auto v = eval_expression("1 / sqrt(dim / 4)", vars);   // 0.25
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "atrous/status.h"

namespace atrous::convert {

// Returns the value of a variable, or an error naming it.
using VarLookup = std::function<Result<nlohmann::json>(const std::string& name)>;

// An int or float JSON value.
Result<nlohmann::json> eval_expression(const std::string& text, const VarLookup& vars);

// The value with every string substituted (recursively through arrays and objects;
// object keys are left alone).
Result<nlohmann::json> substitute(const nlohmann::json& value, const VarLookup& vars);

// Only "{name}" splicing, for names (node names, inputs, key prefixes).
Result<std::string> substitute_text(const std::string& text, const VarLookup& vars);

}  // namespace atrous::convert
