// atrous inspect MODEL [--memory] [--explain] [--json]: what a model holds and how it would run.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>

#include "builder/op_json.h"
#include "cli.h"
#include "ops/op_registry.h"
#include "runtime/model_impl.h"

namespace atrous::cli {
namespace {

struct Options {
  std::string model, entry;
  bool memory = false, explain = false, json = false, reference = false;
  std::vector<std::string> shapes;
  int threads = 0;
};

nlohmann::json tensor_json(const TensorInfo& t) {
  return {{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}};
}

std::string describe_pre(const PreprocessInfo& p) {
  std::string s;
  switch (p.resize) {
    case PreprocessInfo::Resize::kKeep: s = "image at its own size"; break;
    case PreprocessInfo::Resize::kStretch: s = "resize to " + std::to_string(p.width) + "x" + std::to_string(p.height); break;
    case PreprocessInfo::Resize::kLongestSide: s = "longest side to " + std::to_string(p.width); break;
  }
  if (p.antialias) s += " (antialiased)";
  s += p.bgr ? ", BGR" : ", RGB";
  s += ", x" + std::to_string(p.value_scale);
  auto list = [](const std::vector<float>& v) {
    std::string r = "[";
    for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
    return r + "]";
  };
  if (!p.mean.empty()) s += ", mean " + list(p.mean);
  if (!p.std.empty()) s += ", std " + list(p.std);
  if (p.pad_width || p.pad_height) s += ", pad to " + std::to_string(p.pad_width) + "x" + std::to_string(p.pad_height);
  if (p.pad_multiple > 1) s += ", pad to a multiple of " + std::to_string(p.pad_multiple);
  return s;
}

std::string describe_post(const PostprocessInfo& p) {
  switch (p.kind) {
    case PostprocessInfo::Kind::kArgmaxClasses: return "argmax over classes of '" + p.output + "' (" + std::to_string(p.class_names.size()) + " class names)";
    case PostprocessInfo::Kind::kClassIndex: return "class indices in '" + p.output + "'";
    case PostprocessInfo::Kind::kMaskThreshold: return "mask where '" + p.output + "' > " + std::to_string(p.mask_threshold);
    default: return "none";
  }
}

int run(const Options& o) {
  auto model = Model::open(o.model);
  if (!model.ok()) return fail(model.status());
  const ModelInfo& info = (*model)->info();
  const internal::ModelImpl& mi = (*model)->impl();
  nlohmann::json doc;
  doc["path"] = info.path;
  doc["name"] = info.name;
  doc["producer"] = info.producer;
  doc["format_version"] = std::to_string(info.format_major) + "." + std::to_string(info.format_minor);
  doc["file_bytes"] = info.file_bytes;
  doc["weight_bytes"] = info.weight_bytes;
  doc["metadata"] = info.metadata;
  if (!o.json) {
    std::printf("model '%s' (producer: %s), format %u.%u, file %s, weights %s\n", info.name.c_str(), info.producer.c_str(),
                info.format_major, info.format_minor, human_bytes(info.file_bytes).c_str(), human_bytes(info.weight_bytes).c_str());
    for (const auto& [k, v] : info.metadata) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  }
  for (size_t gi = 0; gi < info.entries.size(); ++gi) {
    const EntryPointInfo& e = info.entries[gi];
    if (!o.entry.empty() && e.name != o.entry) continue;
    const ir::Graph& g = mi.graphs[gi];
    nlohmann::json je;
    je["name"] = e.name;
    for (const auto& t : e.inputs) je["inputs"].push_back(tensor_json(t));
    for (const auto& t : e.outputs) je["outputs"].push_back(tensor_json(t));
    if (e.has_preprocess) je["preprocess"] = describe_pre(e.preprocess);
    if (e.has_postprocess) {
      je["postprocess"] = describe_post(e.postprocess);
      je["class_names"] = e.postprocess.class_names;
    }
    for (const ir::Node& n : g.nodes) {
      nlohmann::json jn = {{"name", n.name}, {"op", find_op(n.op.type)->name}};
      for (int v : n.inputs) jn["inputs"].push_back(v >= 0 ? nlohmann::json(g.values[static_cast<size_t>(v)].name) : nlohmann::json());
      for (int v : n.outputs) jn["outputs"].push_back(g.values[static_cast<size_t>(v)].name);
      jn["attrs"] = nlohmann::json::parse(op_to_json(n.op), nullptr, false);
      je["nodes"].push_back(jn);
    }
    if (!o.json) {
      std::printf("\nentry point '%s': %zu nodes\n", e.name.c_str(), e.num_nodes);
      for (const auto& t : e.inputs) std::printf("  input  %-20s %-4s %s\n", t.name.c_str(), dtype_name(t.dtype), shape_string(t.shape).c_str());
      // An output the file does not declare a shape for gets it from the plan (below).
      for (const auto& t : e.outputs)
        std::printf("  output %-20s %-4s %s\n", t.name.c_str(), dtype_name(t.dtype),
                    t.shape.empty() ? "(shape follows from the inputs)" : shape_string(t.shape).c_str());
      if (e.has_preprocess) std::printf("  preprocess:  %s\n", describe_pre(e.preprocess).c_str());
      if (e.has_postprocess) std::printf("  postprocess: %s\n", describe_post(e.postprocess).c_str());
    }
    // Plan for concrete shapes.
    auto shapes = default_input_shapes(e, o.shapes);
    if (!shapes.ok()) return fail(shapes.status());
    SessionOptions so;
    so.entry = e.name;
    so.threads = o.threads;
    so.reference_only = o.reference;
    auto s = Session::create(*model, so);
    if (!s.ok()) return fail(s.status());
    Status st = (*s)->reshape(*shapes);
    if (!st.ok()) return fail(st);
    PlanInfo plan = *(*s)->plan_info();
    std::string shape_desc;
    for (size_t i = 0; i < e.inputs.size(); ++i)
      shape_desc += (i ? ", " : "") + e.inputs[i].name + "=" + shape_string((*shapes)[i]);
    double total_flops = 0;
    nlohmann::json steps = nlohmann::json::array();
    for (const StepInfo& si : plan.steps) {
      total_flops += si.flops;
      nlohmann::json js = {{"node", si.node}, {"op", si.op}, {"kernel", si.kernel}, {"detail", si.detail}, {"flops", si.flops}};
      for (size_t k = 0; k < si.output_shapes.size(); ++k) {
        js["output_shapes"].push_back(si.output_shapes[k]);
        js["output_layouts"].push_back(si.output_layouts[k]);
      }
      for (const auto& d : si.declined) js["declined"].push_back({{"kernel", d.kernel}, {"reason", d.reason}});
      if (!si.fused.empty()) js["fused"] = si.fused;
      steps.push_back(js);
    }
    const MemoryInfo& m = plan.memory;
    nlohmann::json jm = {{"naive_bytes", m.naive_bytes}, {"arena_bytes", m.arena_bytes}, {"lower_bound_bytes", m.lower_bound},
                         {"persistent_bytes", m.persistent_bytes}, {"weight_bytes", m.weight_bytes}};
    if (o.memory)
      for (const auto& b : m.buffers)
        jm["buffers"].push_back({{"label", b.label}, {"bytes", b.bytes}, {"offset", b.offset}, {"first_step", b.first_step}, {"last_step", b.last_step}});
    je["plan"] = {{"input_shapes", *shapes}, {"threads", plan.threads}, {"steps", steps}, {"memory", jm}, {"gflop", total_flops / 1e9}};
    doc["entries"].push_back(je);
    if (o.json) continue;
    std::printf("  plan for %s, %d threads, %.3f GFLOP:\n", shape_desc.c_str(), plan.threads, total_flops / 1e9);
    for (size_t i = 0; i < e.outputs.size(); ++i) {
      auto v = (*s)->output(i);  // shapes are known once planned (the data only after run())
      if (v.ok()) std::printf("    output %s %s\n", e.outputs[i].name.c_str(), shape_string(v->shape).c_str());
    }
    int op_w = 16, kernel_w = 22;  // wide enough for every step
    for (const StepInfo& si : plan.steps) {
      op_w = std::max(op_w, static_cast<int>(si.op.size()));
      kernel_w = std::max(kernel_w, static_cast<int>(si.kernel.size()));
    }
    std::printf("    %-4s %-28s %-*s %-*s %-20s %-10s %s\n", "step", "node", op_w, "op", kernel_w, "kernel", "output", "layout", "GFLOP");
    for (size_t i = 0; i < plan.steps.size(); ++i) {
      const StepInfo& si = plan.steps[i];
      std::string node = si.node.empty() ? "-" : si.node;
      if (!si.fused.empty()) {
        node += " (+";
        for (size_t k = 0; k < si.fused.size(); ++k) node += (k ? "," : "") + si.fused[k];
        node += ")";
      }
      // A node column cut at 28 characters ends in "..." to show it was cut.
      if (node.size() > 28) node = node.substr(0, 25) + "...";
      std::printf("    %-4zu %-28s %-*s %-*s %-20s %-10s %.4f\n", i, node.c_str(), op_w, si.op.c_str(), kernel_w, si.kernel.c_str(),
                  si.output_shapes.empty() ? "" : shape_string(si.output_shapes[0]).c_str(),
                  si.output_layouts.empty() ? "" : si.output_layouts[0].c_str(), si.flops / 1e9);
      if (o.explain) {
        if (!si.detail.empty()) std::printf("           implementation: %s\n", si.detail.c_str());
        for (const auto& d : si.declined) std::printf("           declined %s: %s\n", d.kernel.c_str(), d.reason.c_str());
      }
    }
    std::printf("  memory: naive %s, arena %s, lower bound %s (arena/bound %.3f); plan-owned weights %s (packed or copied); weights used %s\n",
                human_bytes(m.naive_bytes).c_str(), human_bytes(m.arena_bytes).c_str(), human_bytes(m.lower_bound).c_str(),
                m.lower_bound ? static_cast<double>(m.arena_bytes) / m.lower_bound : 1.0, human_bytes(m.persistent_bytes).c_str(),
                human_bytes(m.weight_bytes).c_str());
    if (o.memory) std::printf("  buffer timeline (label, bytes, offset, steps):\n%s", m.timeline.c_str());
  }
  if (o.json) std::printf("%s\n", doc.dump(1).c_str());
  return 0;
}

Runner setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.description("Print metadata, entry points, nodes, the kernels chosen and the memory plan");
  app.add_option("model", o->model, "model file (.atrous)")->required();
  app.add_flag("--memory", o->memory, "print every buffer of the memory plan on a timeline");
  app.add_flag("--explain", o->explain, "print why other kernels declined each node");
  app.add_flag("--json", o->json, "print everything as one JSON document");
  app.add_flag("--reference", o->reference, "plan with reference kernels only");
  app.add_option("--entry", o->entry, "only this entry point");
  app.add_option("--shape", o->shapes, "input shape for planning, NAME=1,3,512,512 (default: model/preprocess sizes, 512 for free dims)");
  app.add_option("--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, atrous::kMaxThreads));
  return [o] { return run(*o); };
}

}  // namespace

extern const Command kInspect;
const Command kInspect = {"inspect", setup};

}  // namespace atrous::cli
