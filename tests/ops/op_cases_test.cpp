// Every reference case from make_op_cases.py, run with every kernel of the op
// under test. Each op's test also asserts that each of its kernels was really
// chosen for at least one case, so no kernel goes untested.
#include <set>

#include "ops/op_registry.h"
#include "test_util.h"

namespace atrous::test {
namespace {

void run_op_cases(const std::string& op) {
  std::string dir = data_dir("ATROUS_OP_CASES");
  const OpDef* def = nullptr;
  for (const OpDef* d : all_ops())
    if (op == d->name) def = d;
  REQUIRE(def != nullptr);
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
    for (const KernelDef* k : def->kernels) {
      SessionOptions opts;
      opts.threads = 2;
      bool is_ref = k == def->kernels.back();
      if (is_ref) opts.reference_only = true;
      else opts.allowed_kernels = {k->name};
      RunOutput r = run_model(*model, inputs, opts);
      INFO("case " << name << ", kernel " << k->name);
      REQUIRE(r.status.to_string() == "ok");
      bool chosen = false;
      for (const auto& s : r.plan.steps) chosen |= s.kernel == k->name;
      if (chosen) used.insert(k->name);
      for (size_t i = 0; i < c.outputs.size(); ++i)
        check_close(r.outputs[i].view(), c.tensors.at(c.outputs[i]).view(), c.tol, name + " output " + c.outputs[i] + " with " + k->name);
    }
  }
  INFO("op " << op);
  REQUIRE(cases > 0);
  for (const KernelDef* k : def->kernels) {
    INFO("kernel " << k->name << " was never chosen by any case: add a case it accepts");
    CHECK(used.count(k->name) == 1);
  }
}

}  // namespace

TEST_CASE("Conv2d matches PyTorch", "[ops]") { run_op_cases("Conv2d"); }
TEST_CASE("Unary matches PyTorch", "[ops]") { run_op_cases("Unary"); }
TEST_CASE("Binary matches PyTorch", "[ops]") { run_op_cases("Binary"); }
TEST_CASE("Reshape matches PyTorch", "[ops]") { run_op_cases("Reshape"); }

}  // namespace atrous::test
