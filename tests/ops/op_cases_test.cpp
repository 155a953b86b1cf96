// Every reference case from make_op_cases.py, run with every kernel of the op
// under test. Each op's test also asserts that each of its kernels was really
// chosen for at least one case, so no kernel goes untested.
//
// The other nodes of a case (e.g. a conv in front of the op under test) keep
// their fast kernels, so the kernel under test also meets the blocked layouts
// it would meet in a real model. The reference kernel runs twice: with the
// neighbours fast (blocked inputs reach it through planner-inserted reorders)
// and with every node on its reference kernel.
#include <algorithm>
#include <filesystem>
#include <set>

#include "ops/op_registry.h"
#include "test_util.h"

namespace atrous::test {
namespace {

struct KernelRun {
  const KernelDef* kernel;
  SessionOptions opts;
  std::string what;
};

// The runs for each kernel of `def`: a fast kernel with every kernel of the other ops
// allowed, and the fast kernels after it in the op's order (nodes of the op that it
// declines, e.g. the convolutions that make a case's blocked inputs, take those; the
// node under test takes it first where it accepts); the reference kernel with the other
// ops' kernels and alone.
std::vector<KernelRun> kernel_runs(const OpDef* def) {
  std::vector<std::string> others;
  for (const OpDef* d : all_ops())
    if (d != def)
      for (const KernelDef* k : d->kernels) others.push_back(k->name);
  std::vector<KernelRun> runs;
  for (size_t i = 0; i < def->kernels.size(); ++i) {
    const KernelDef* k = def->kernels[i];
    KernelRun r{k, {}, k->name};
    r.opts.threads = 2;
    r.opts.allowed_kernels = others;
    for (size_t j = i; j + 1 < def->kernels.size(); ++j) r.opts.allowed_kernels.push_back(def->kernels[j]->name);
    runs.push_back(r);
  }
  KernelRun ref{def->kernels.back(), {}, std::string(def->kernels.back()->name) + " (reference only)"};
  ref.opts.threads = 2;
  ref.opts.reference_only = true;
  runs.push_back(ref);
  return runs;
}

void run_op_cases(const std::string& op) {
  std::string dir = data_dir("ATROUS_OP_CASES");
  const OpDef* def = nullptr;
  for (const OpDef* d : all_ops())
    if (op == d->name) def = d;
  REQUIRE(def != nullptr);
  const std::vector<KernelRun> runs = kernel_runs(def);
  std::set<std::string> used;
  int cases = 0;
  for (const std::string& name : list_cases(dir)) {
    RefCase c = load_case(dir, name);
    if (c.op != op) continue;
    ++cases;
    auto bytes = build_case_model(c);
    auto model = Model::from_memory(bytes.data(), bytes.size());
    REQUIRE(model.ok());
    std::vector<std::pair<std::string, TensorView>> inputs;
    for (const auto& n : c.inputs) inputs.emplace_back(n, c.tensors.at(n).view());
    for (const KernelRun& run : runs) {
      RunOutput r = run_model(*model, inputs, run.opts);
      INFO("case " << name << ", kernel " << run.what);
      REQUIRE(r.status.to_string() == "ok");
      bool chosen = false;
      for (const auto& s : r.plan.steps) chosen |= s.kernel == run.kernel->name;
      if (chosen) used.insert(run.kernel->name);
      for (size_t i = 0; i < c.outputs.size(); ++i)
        check_close(r.outputs[i].view(), c.tensors.at(c.outputs[i]).view(), c.tol, name + " output " + c.outputs[i] + " with " + run.what);
    }
  }
  INFO("op " << op);
  REQUIRE(cases > 0);
  for (const KernelDef* k : def->kernels) {
    INFO("kernel " << k->name << " was never chosen by any case: add a case it accepts");
    CHECK(used.count(k->name) == 1);
  }
}

void check_arena(const PlanInfo& plan, const std::string& what) {
  INFO(what << ": arena " << plan.memory.arena_bytes << " B, lower bound " << plan.memory.lower_bound << " B\n"
            << plan.memory.timeline);
  CHECK(static_cast<double>(plan.memory.arena_bytes) <= 1.05 * static_cast<double>(plan.memory.lower_bound));
}

}  // namespace

// Issue 2's memory target, on every model the tests build and every model shipped in models/.
TEST_CASE("the arena stays within 5% of the lower bound on every test model and shipped model", "[ops][memory]") {
  const std::string dir = data_dir("ATROUS_OP_CASES");
  int checked = 0;
  for (const std::string& name : list_cases(dir)) {
    RefCase c = load_case(dir, name);
    auto bytes = build_case_model(c);
    auto model = Model::from_memory(bytes.data(), bytes.size());
    REQUIRE(model.ok());
    std::vector<std::pair<std::string, TensorView>> inputs;
    for (const auto& n : c.inputs) inputs.emplace_back(n, c.tensors.at(n).view());
    for (bool reference : {false, true}) {
      SessionOptions opts;
      opts.threads = 2;
      opts.reference_only = reference;
      RunOutput r = run_model(*model, inputs, opts);
      REQUIRE(r.status.to_string() == "ok");
      check_arena(r.plan, "case " + name + (reference ? " (reference)" : ""));
      ++checked;
    }
  }
  CHECK(checked > 20);

  const std::string models = ATROUS_MODELS_DIR;
  int shipped = 0;
  for (const auto& f : std::filesystem::directory_iterator(models)) {
    if (f.path().extension() != ".atrous") continue;
    auto model = Model::open(f.path().string());
    REQUIRE(model.ok());
    for (const EntryPointInfo& e : (*model)->info().entries) {
      for (const Shape& free_size : {Shape{161, 97}, Shape{64, 64}, Shape{333, 517}}) {
        std::vector<Shape> shapes;
        for (const TensorInfo& t : e.inputs) {
          Shape s = t.shape;
          int k = 0;
          for (size_t a = 0; a < s.size(); ++a)
            if (s[a] < 0) s[a] = a == 0 ? 1 : free_size[static_cast<size_t>(std::min(k++, 1))];  // batch 1
          shapes.push_back(s);
        }
        SessionOptions opts;
        opts.entry = e.name;
        auto session = Session::create(*model, opts);
        REQUIRE(session.ok());
        REQUIRE((*session)->reshape(shapes).to_string() == "ok");
        auto plan = (*session)->plan_info();
        REQUIRE(plan.ok());
        check_arena(*plan, f.path().filename().string() + " entry " + e.name);
      }
    }
    ++shipped;
  }
  CHECK(shipped >= 1);
}

TEST_CASE("Conv2d matches PyTorch", "[ops]") { run_op_cases("Conv2d"); }
TEST_CASE("ConvTranspose2d matches PyTorch", "[ops]") { run_op_cases("ConvTranspose2d"); }
TEST_CASE("BatchNorm matches PyTorch", "[ops]") { run_op_cases("BatchNorm"); }
TEST_CASE("Linear matches PyTorch", "[ops]") { run_op_cases("Linear"); }
TEST_CASE("MatMul matches PyTorch", "[ops]") { run_op_cases("MatMul"); }
TEST_CASE("LayerNorm matches PyTorch", "[ops]") { run_op_cases("LayerNorm"); }
TEST_CASE("Unary matches PyTorch", "[ops]") { run_op_cases("Unary"); }
TEST_CASE("Binary matches PyTorch", "[ops]") { run_op_cases("Binary"); }
TEST_CASE("Concat matches PyTorch", "[ops]") { run_op_cases("Concat"); }
TEST_CASE("Slice matches PyTorch", "[ops]") { run_op_cases("Slice"); }
TEST_CASE("Pool2d matches PyTorch", "[ops]") { run_op_cases("Pool2d"); }
TEST_CASE("GlobalPool matches PyTorch", "[ops]") { run_op_cases("GlobalPool"); }
TEST_CASE("Resize matches PyTorch", "[ops]") { run_op_cases("Resize"); }
TEST_CASE("Softmax matches PyTorch", "[ops]") { run_op_cases("Softmax"); }
TEST_CASE("Reshape matches PyTorch", "[ops]") { run_op_cases("Reshape"); }
TEST_CASE("Transpose matches PyTorch", "[ops]") { run_op_cases("Transpose"); }
TEST_CASE("Argmax matches PyTorch", "[ops]") { run_op_cases("Argmax"); }
TEST_CASE("BoundaryRefinement matches PyTorch", "[ops]") { run_op_cases("BoundaryRefinement"); }

}  // namespace atrous::test
