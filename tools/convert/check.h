// Checking a converted model against PyTorch: `atrous convert ... --check
// INPUTS.npz OUTPUTS.npz`.
//
// The model runs on the reference inputs (arrays named after the entry point's
// inputs) and each output is compared with the array of the same name:
// max |engine - reference| must not exceed tolerance × max |reference| (integer
// outputs must match exactly). Arrays in OUTPUTS.npz named after other values
// of the graph (node outputs are named after their node, e.g.
// "blocks.1.mlp.fc2") are reference intermediates: a second run exposes them
// (SessionOptions::expose) and the report names the first node, in execution
// order, whose output diverges — usually the layer whose conversion is wrong.
//
//   CheckOptions o; o.tolerance = 1e-4;
//   ATROUS_ASSIGN_OR_RETURN(CheckReport r, check_model("m.atrous", "in.npz", "out.npz", o));
//   std::fputs(r.to_text().c_str(), stdout);
#pragma once

#include <string>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous::convert {

struct CheckOptions {
  std::string entry;         // "" = the first entry point
  double tolerance = 1e-4;   // relative to max |reference| of each array
  int threads = 0;
  bool reference_only = false;
};

struct ValueError {
  std::string name;         // output or value name
  std::string node, op;     // producing node (intermediates)
  Shape shape;
  double max_abs = 0;       // max |engine - reference|
  double max_ref = 0;       // max |reference|
  double rel = 0;           // max_abs / max_ref (max_abs when the reference is all zeros)
  bool ok = false;
  std::string note;         // why it could not be compared, if so
};

struct CheckReport {
  std::string entry;
  double tolerance = 0;
  std::vector<ValueError> outputs;        // entry-point outputs, in order
  std::vector<ValueError> intermediates;  // in execution order
  int first_divergent = -1;               // index into intermediates, -1 = none
  std::vector<std::string> unused;        // "file.npz:name" of arrays that name no input or value
  bool passed = false;

  std::string to_text() const;
};

Result<CheckReport> check_model(const std::string& model_path, const std::string& inputs_npz,
                                const std::string& outputs_npz, const CheckOptions& options);

// The default tolerance for weights stored as `dtype` (f32 1e-4, f16 1e-2, bf16 5e-2).
double default_tolerance(DType dtype);

}  // namespace atrous::convert
