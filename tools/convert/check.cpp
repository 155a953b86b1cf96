#include "convert/check.h"

#include <cmath>
#include <cstdio>
#include <map>

#include "atrous/model.h"
#include "atrous/session.h"
#include "convert/npz.h"
#include "ops/op_registry.h"
#include "runtime/model_impl.h"

namespace atrous::convert {
namespace {

double element(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: return t.as<float>()[i];
    case DType::kF16: return f16_to_f32(t.as<uint16_t>()[i]);
    case DType::kBF16: return bf16_to_f32(t.as<uint16_t>()[i]);
    case DType::kI32: return t.as<int32_t>()[i];
    case DType::kI64: return static_cast<double>(t.as<int64_t>()[i]);
    case DType::kU8: return t.as<uint8_t>()[i];
  }
  return 0;
}

bool is_float(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

ValueError compare(const std::string& name, const TensorView& got, const TensorView& ref, double tolerance) {
  ValueError e;
  e.name = name;
  e.shape = got.shape;
  if (got.shape != ref.shape) {
    e.note = "shape " + shape_string(got.shape) + ", reference " + shape_string(ref.shape);
    return e;
  }
  int64_t n = got.numel();
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    double a = element(got, i), b = element(ref, i);
    if (std::isnan(a) != std::isnan(b)) nan = true;
    if (std::isnan(a) || std::isnan(b)) continue;
    e.max_abs = std::max(e.max_abs, std::fabs(a - b));
    e.max_ref = std::max(e.max_ref, std::fabs(b));
  }
  e.rel = e.max_ref > 0 ? e.max_abs / e.max_ref : e.max_abs;
  if (nan) e.note = "NaN where the reference has a number (or the reverse)";
  bool exact = !is_float(ref.dtype) || !is_float(got.dtype);
  e.ok = !nan && (exact ? e.max_abs == 0 : e.max_abs <= tolerance * e.max_ref);
  return e;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

std::string line(const ValueError& e) {
  if (!e.note.empty() && e.max_ref == 0 && e.max_abs == 0 && !e.ok) return e.name + ": not compared: " + e.note;
  std::string s = e.name + " " + shape_string(e.shape) + ": max abs " + fmt(e.max_abs) + ", max |ref| " + fmt(e.max_ref) +
                  ", rel " + fmt(e.rel) + (e.ok ? "  ok" : "  FAIL");
  if (!e.note.empty()) s += " (" + e.note + ")";
  return s;
}

}  // namespace

double default_tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF16: return 1e-2;
    case DType::kBF16: return 5e-2;
    default: return 1e-4;
  }
}

std::string CheckReport::to_text() const {
  std::string s = "check of entry '" + entry + "' (tolerance: max abs error <= " + fmt(tolerance) + " x max |ref|)\n";
  for (const ValueError& e : outputs) s += "  output " + line(e) + "\n";
  if (!intermediates.empty()) {
    s += "  " + std::to_string(intermediates.size()) + " reference intermediates compared in execution order: ";
    if (first_divergent < 0) {
      s += "all within tolerance\n";
    } else {
      const ValueError& e = intermediates[static_cast<size_t>(first_divergent)];
      s += "first divergence at node '" + e.node + "' (" + e.op + ")\n    " + line(e) + "\n";
      if (first_divergent > 0) {
        const ValueError& p = intermediates[static_cast<size_t>(first_divergent - 1)];
        s += "    last good: " + line(p) + "\n";
      }
    }
  }
  if (!unused.empty()) {
    s += "  note: " + std::to_string(unused.size()) + " array" + (unused.size() == 1 ? "" : "s") +
         " named after no input, output or node output of the entry point, ignored:";
    for (size_t i = 0; i < unused.size() && i < 8; ++i) s += " " + unused[i];
    if (unused.size() > 8) s += " ...";
    s += "\n";
  }
  s += passed ? "check passed\n" : "check FAILED\n";
  return s;
}

Result<CheckReport> check_model(const std::string& model_path, const std::string& inputs_npz,
                                const std::string& outputs_npz, const CheckOptions& options) {
  ATROUS_ASSIGN_OR_RETURN(auto model, Model::open(model_path));
  ATROUS_ASSIGN_OR_RETURN(NamedTensors inputs, load_npz(inputs_npz));
  ATROUS_ASSIGN_OR_RETURN(NamedTensors refs, load_npz(outputs_npz));
  const EntryPointInfo* e = model->entry(options.entry);
  if (!e) return not_found("the model has no entry point '" + options.entry + "'");
  const internal::ModelImpl& mi = model->impl();
  int gi = mi.find_graph(e->name);
  if (gi < 0) return internal_error("entry point '" + e->name + "' has no graph");
  const ir::Graph& graph = mi.graphs[static_cast<size_t>(gi)];

  CheckReport report;
  report.entry = e->name;
  report.tolerance = options.tolerance;

  // Inputs by name.
  std::vector<std::pair<std::string, const Tensor*>> bound;
  for (const TensorInfo& in : e->inputs) {
    const Tensor* t = nullptr;
    for (const auto& [name, tensor] : inputs)
      if (name == in.name) t = &tensor;
    if (!t) {
      std::string have;
      for (const auto& [name, _] : inputs) have += (have.empty() ? "" : ", ") + name;
      return invalid_argument("'" + inputs_npz + "' has no array '" + in.name + "' for input '" + in.name +
                              "' of entry '" + e->name + "' (it has: " + (have.empty() ? "nothing" : have) + ")");
    }
    bound.emplace_back(in.name, t);
  }
  for (const auto& [name, _] : inputs) {
    bool used = false;
    for (const auto& b : bound) used = used || b.first == name;
    if (!used) report.unused.push_back(inputs_npz + ":" + name);
  }

  // References: outputs, then intermediates (values produced by nodes), in node order.
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, tensor] : refs) by_name[name] = &tensor;
  std::vector<std::string> output_names;
  for (const TensorInfo& o : e->outputs) output_names.push_back(o.name);
  struct Inter {
    std::string value, node, op;
  };
  std::vector<Inter> inters;
  for (const ir::Node& n : graph.nodes) {
    const OpDef* def = find_op(n.op.type);
    for (int v : n.outputs) {
      if (v < 0) continue;
      const std::string& vn = graph.values[static_cast<size_t>(v)].name;
      bool is_output = false;
      for (const auto& o : output_names) is_output = is_output || o == vn;
      if (!is_output && by_name.count(vn)) inters.push_back({vn, n.name, def ? def->name : "?"});
    }
  }
  for (const auto& [name, _] : refs) {
    bool known = false;
    for (const auto& o : output_names) known = known || o == name;
    for (const auto& it : inters) known = known || it.value == name;
    if (!known) report.unused.push_back(outputs_npz + ":" + name);
  }

  auto run = [&](const std::vector<std::string>& expose) -> Result<std::unique_ptr<Session>> {
    SessionOptions so;
    so.entry = e->name;
    so.threads = options.threads;
    so.reference_only = options.reference_only;
    so.expose = expose;
    ATROUS_ASSIGN_OR_RETURN(auto s, Session::create(model, so));
    for (const auto& [name, t] : bound) ATROUS_RETURN_IF_ERROR(s->set_input(name, t->view()).with_context("input '" + name + "'"));
    ATROUS_RETURN_IF_ERROR(s->run());
    return s;
  };

  bool ok = true;
  {
    ATROUS_ASSIGN_OR_RETURN(auto s, run({}));
    for (const std::string& name : output_names) {
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        ValueError v;
        v.name = name;
        v.note = "no reference array '" + name + "' in " + outputs_npz;
        report.outputs.push_back(v);
        ok = false;
        continue;
      }
      ATROUS_ASSIGN_OR_RETURN(TensorView got, s->output(name));
      report.outputs.push_back(compare(name, got, it->second->view(), options.tolerance));
      ok = ok && report.outputs.back().ok;
    }
  }
  if (!inters.empty()) {
    std::vector<std::string> expose;
    for (const Inter& it : inters) expose.push_back(it.value);
    ATROUS_ASSIGN_OR_RETURN(auto s, run(expose));
    for (const Inter& it : inters) {
      ATROUS_ASSIGN_OR_RETURN(TensorView got, s->output(it.value));
      ValueError v = compare(it.value, got, by_name[it.value]->view(), options.tolerance);
      v.node = it.node;
      v.op = it.op;
      report.intermediates.push_back(v);
      if (!v.ok && report.first_divergent < 0) report.first_divergent = static_cast<int>(report.intermediates.size()) - 1;
    }
    ok = ok && report.first_divergent < 0;
  }
  report.passed = ok;
  return report;
}

}  // namespace atrous::convert
