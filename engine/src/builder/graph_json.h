// A graph written as JSON, built through GraphBuilder. Shared by the
// converter's generic recipe and the data-driven op tests.
//
// {
//   "inputs":  [{"name": "x", "dtype": "f32", "shape": [1, 3, -1, -1]}],
//   "nodes":   [{"name": "conv1", "op": "Conv2d", "attrs": {"pad_top": 1},
//                "inputs": ["x", "conv1.weight", null], "outputs": ["y"]}],
//   "outputs": ["y"]
// }
// Node inputs name graph inputs, earlier node outputs, or constants; a name
// that is none of those is asked of `constant` (which adds it to the graph and
// returns its id, or an error). null marks an absent optional input. Node
// attributes use the schema's field and enum names (see op_json.h).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "builder/graph_builder.h"

namespace atrous {

using ConstantResolver = std::function<Result<int>(GraphBuilder& g, const std::string& name)>;

// json_text: the whole document. Fills g; returns the first error with the node named.
Status build_graph_from_json(GraphBuilder& g, const std::string& json_text, const ConstantResolver& constant);

}  // namespace atrous
