// Every reference case of make_ssm_cases.py, run with every kernel of its op: the
// vectorised kernels (AVX-512, AVX2) are forced one at a time through
// SessionOptions::allowed_kernels, the scalar reference through reference_only. A kernel
// that declines a case (S4D's convolution kernels with a state, the direct one above its
// length limit) falls back to the reference for that case; each kernel must still be
// chosen by some case (unless this CPU lacks its instruction set).
#include <set>

#include "ops/op_registry.h"
#include "ops/ssm_kernels.h"
#include "test_util.h"

namespace atrous::test {
namespace {

bool cpu_lacks(const std::string& kernel) {
  if (kernel.find("avx512") != std::string::npos) return ssm::ssm_isa_avx512() == nullptr;
  if (kernel.find("avx2") != std::string::npos) return ssm::ssm_isa_avx2() == nullptr;
  return false;
}

void run_ssm_cases(const std::string& op) {
  const std::string dir = data_dir("ATROUS_SSM_CASES");
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
      if (k == def->kernels.back()) opts.reference_only = true;
      else opts.allowed_kernels = {k->name};
      RunOutput r = run_model(*model, inputs, opts);
      INFO("case " << name << ", kernel " << k->name);
      REQUIRE(r.status.to_string() == "ok");
      for (const auto& s : r.plan.steps)
        if (s.kernel == k->name) used.insert(k->name);
      for (size_t i = 0; i < c.outputs.size(); ++i)
        check_close(r.outputs[i].view(), c.tensors.at(c.outputs[i]).view(), c.tol,
                    name + " output " + c.outputs[i] + " with " + k->name);
    }
  }
  INFO("op " << op);
  REQUIRE(cases > 0);
  for (const KernelDef* k : def->kernels) {
    if (cpu_lacks(k->name)) {
      WARN("kernel " << k->name << " not run: this CPU lacks its instruction set");
      continue;
    }
    INFO("kernel " << k->name << " was never chosen by any case: add a case it accepts");
    CHECK(used.count(k->name) == 1);
  }
}

}  // namespace

TEST_CASE("MambaScan matches the PyTorch selective-scan recurrence", "[ssm]") { run_ssm_cases("MambaScan"); }
TEST_CASE("BiMambaScan matches Vision Mamba v2", "[ssm]") { run_ssm_cases("BiMambaScan"); }
TEST_CASE("S4D matches PyTorch FFT convolution and recurrence", "[ssm]") { run_ssm_cases("S4D"); }
TEST_CASE("RMSNorm matches PyTorch", "[ssm]") { run_ssm_cases("RMSNorm"); }
TEST_CASE("Embedding matches PyTorch", "[ssm]") { run_ssm_cases("Embedding"); }

}  // namespace atrous::test
