// atrous bench MODEL: latency (min / median / p90) and a per-node table
// (median time, share, GFLOP/s). Inputs are random unless given as .npy. Each run
// copies its inputs in (part of the latency), unless --keep-inputs: then they are
// staged in the arena once (SessionOptions::keep_inputs) and runs time the nodes only,
// as SamPredictor's decodes against one image.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "atrous/npy.h"
#include "cli.h"

namespace atrous::cli {
namespace {

struct Options {
  std::string model, entry;
  std::vector<std::string> shapes, inputs, excluded;
  int runs = 10, warmup = 2, threads = 0, top = 25;
  bool json = false, reference = false, keep_inputs = false;
};

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  double pos = q * static_cast<double>(v.size() - 1);
  size_t i = static_cast<size_t>(pos);
  double f = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

Result<Tensor> random_tensor(const std::string& name, DType dt, const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::zeros(dt, shape);
  if (!t.raw()) return out_of_memory("cannot allocate input '" + name + "' " + shape_string(shape) + " (" + std::to_string(t.nbytes()) + " bytes)");
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  if (dt == DType::kF32)
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

int run(const Options& o) {
  auto model = Model::open(o.model);
  if (!model.ok()) return fail(model.status());
  SessionOptions so;
  so.entry = o.entry;
  so.threads = o.threads;
  so.reference_only = o.reference;
  so.excluded_kernels = o.excluded;
  so.profile = true;
  so.keep_inputs = o.keep_inputs;
  auto s = Session::create(*model, so);
  if (!s.ok()) return fail(s.status());
  const EntryPointInfo& e = (*s)->entry();
  auto shapes = default_input_shapes(e, o.shapes);
  if (!shapes.ok()) return fail(shapes.status());
  std::vector<Tensor> held(e.inputs.size());
  std::vector<bool> given(e.inputs.size(), false);
  for (const auto& spec : o.inputs) {
    auto [name, file] = split_assignment(spec);
    size_t idx = e.inputs.size();
    for (size_t i = 0; i < e.inputs.size(); ++i)
      if (e.inputs[i].name == name || (name.empty() && e.inputs.size() == 1)) idx = i;
    if (idx == e.inputs.size()) return fail("no input named '" + name + "'");
    auto t = load_npy(file);
    if (!t.ok()) return fail(t.status());
    held[idx] = std::move(t).value();
    given[idx] = true;
    (*shapes)[idx] = held[idx].shape();
  }
  // Plan first: the planner's memory budget refuses shapes too large for this machine with
  // a clear error before any input is allocated.
  if (Status st = (*s)->reshape(*shapes); !st.ok()) return fail(st);
  for (size_t i = 0; i < e.inputs.size(); ++i) {
    if (given[i]) continue;
    auto t = random_tensor(e.inputs[i].name, e.inputs[i].dtype, (*shapes)[i], static_cast<uint32_t>(i + 1));
    if (!t.ok()) return fail(t.status());
    held[i] = std::move(t).value();
  }
  // --keep-inputs: staged once into the planned arena, and every run reads them there.
  if (o.keep_inputs)
    for (size_t i = 0; i < e.inputs.size(); ++i)
      if (Status st = (*s)->stage_input(e.inputs[i].name, held[i].view()); !st.ok()) return fail(st);
  auto set_all = [&]() -> Status {
    if (o.keep_inputs) return Status::Ok();
    for (size_t i = 0; i < e.inputs.size(); ++i) ATROUS_RETURN_IF_ERROR((*s)->set_input(e.inputs[i].name, held[i].view()));
    return Status::Ok();
  };
  std::vector<double> lat;
  std::vector<std::vector<double>> step_times;
  for (int r = 0; r < o.warmup + o.runs; ++r) {
    Status st = set_all();
    if (st.ok()) {
      auto t0 = std::chrono::steady_clock::now();
      st = (*s)->run();
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r >= o.warmup) {
        lat.push_back(dt);
        const auto& times = (*s)->step_times();
        if (step_times.empty()) step_times.resize(times.size());
        for (size_t k = 0; k < times.size(); ++k) step_times[k].push_back(times[k]);
      }
    }
    if (!st.ok()) return fail(st);
  }
  PlanInfo plan = *(*s)->plan_info();
  double med = percentile(lat, 0.5);
  double total_flops = 0;
  for (const auto& si : plan.steps) total_flops += si.flops;
  struct Row { size_t step; double t; };
  std::vector<Row> rows;
  double sum_steps = 0;
  for (size_t k = 0; k < step_times.size(); ++k) {
    rows.push_back({k, percentile(step_times[k], 0.5)});
    sum_steps += rows.back().t;
  }
  if (o.json) {
    nlohmann::json j = {{"model", o.model}, {"entry", e.name}, {"threads", plan.threads}, {"runs", o.runs},
                        {"input_shapes", *shapes}, {"latency_s", {{"min", percentile(lat, 0)}, {"median", med}, {"p90", percentile(lat, 0.9)}}}, {"runs_s", lat},
                        {"gflop", total_flops / 1e9}, {"gflops_per_s", med > 0 ? total_flops / med / 1e9 : 0}};
    for (const Row& r : rows) {
      const StepInfo& si = plan.steps[r.step];
      j["steps"].push_back({{"node", si.node}, {"op", si.op}, {"kernel", si.kernel}, {"median_s", r.t},
                            {"share", sum_steps > 0 ? r.t / sum_steps : 0}, {"gflop", si.flops / 1e9},
                            {"gflops_per_s", r.t > 0 ? si.flops / r.t / 1e9 : 0}});
    }
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::string shape_desc;
  for (size_t i = 0; i < e.inputs.size(); ++i) shape_desc += (i ? ", " : "") + e.inputs[i].name + "=" + shape_string(held[i].shape());
  std::printf("%s '%s' %s, %d threads, %d runs (+%d warm-up)\n", o.model.c_str(), e.name.c_str(), shape_desc.c_str(), plan.threads,
              o.runs, o.warmup);
  std::printf("latency: min %s, median %s, p90 %s; %.3f GFLOP -> %.1f GFLOP/s\n", format_seconds(percentile(lat, 0)).c_str(),
              format_seconds(med).c_str(), format_seconds(percentile(lat, 0.9)).c_str(), total_flops / 1e9,
              med > 0 ? total_flops / med / 1e9 : 0.0);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.t > b.t; });
  int op_w = 16, kernel_w = 20;  // wide enough for every row shown
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < o.top; ++i) {
    op_w = std::max(op_w, static_cast<int>(plan.steps[rows[i].step].op.size()));
    kernel_w = std::max(kernel_w, static_cast<int>(plan.steps[rows[i].step].kernel.size()));
  }
  std::printf("%-5s %-32s %-*s %-*s %10s %7s %9s\n", "step", "node", op_w, "op", kernel_w, "kernel", "median", "share", "GFLOP/s");
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < o.top; ++i) {
    const StepInfo& si = plan.steps[rows[i].step];
    std::printf("%-5zu %-32.32s %-*s %-*s %10s %6.1f%% %9.1f\n", rows[i].step, si.node.empty() ? "-" : si.node.c_str(), op_w,
                si.op.c_str(), kernel_w, si.kernel.c_str(), format_seconds(rows[i].t).c_str(),
                sum_steps > 0 ? 100 * rows[i].t / sum_steps : 0.0, rows[i].t > 0 ? si.flops / rows[i].t / 1e9 : 0.0);
  }
  if (rows.size() > static_cast<size_t>(o.top)) std::printf("(%zu more steps; --top N to show more)\n", rows.size() - static_cast<size_t>(o.top));
  return 0;
}

Runner setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.description("Measure latency and per-node time");
  app.add_option("model", o->model, "model file (.atrous)")->required();
  app.add_option("--runs", o->runs, "timed runs")->check(CLI::Range(1, 1 << 20));
  app.add_option("--warmup", o->warmup, "untimed runs first")->check(CLI::Range(0, 1 << 20));
  app.add_option("--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, atrous::kMaxThreads));
  app.add_option("--shape", o->shapes, "input shape NAME=1,3,512,512");
  app.add_option("--input", o->inputs, "input data NAME=FILE.npy instead of random values");
  app.add_option("--entry", o->entry, "entry point");
  app.add_option("--top", o->top, "rows of the per-node table")->check(CLI::Range(0, 1 << 20));
  app.add_flag("--json", o->json, "JSON output");
  app.add_flag("--reference", o->reference, "reference kernels only");
  app.add_flag("--keep-inputs", o->keep_inputs, "stage the inputs in the arena once instead of copying them in on every run");
  app.add_option("--exclude-kernel", o->excluded, "never choose this kernel (repeatable), e.g. to time the next candidate");
  return [o] { return run(*o); };
}

}  // namespace

extern const Command kBench;
const Command kBench = {"bench", setup};

}  // namespace atrous::cli
