// The Segment Anything node types against PyTorch references (make_sam_cases.py,
// ops/): every case with every kernel of its op, and each kernel must be chosen at
// least once. MultiHeadAttention cases (short key or query side) run the folded
// kernel and the reference; the folded kernel must be the one chosen.
// Also: atrous::resize_bilinear_antialias against PIL's Image.resize(BILINEAR).
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "atrous/image.h"
#include "ops/op_registry.h"
#include "test_util.h"

namespace atrous::test {
namespace {

void run_cases(const std::string& op, const std::vector<std::string>& kernels_wanted) {
  const std::string dir = data_dir("ATROUS_SAM_CASES") + "/ops";
  const OpDef* def = nullptr;
  for (const OpDef* d : all_ops())
    if (op == d->name) def = d;
  REQUIRE(def != nullptr);
  std::vector<const KernelDef*> kernels;
  for (const KernelDef* k : def->kernels)
    if (kernels_wanted.empty() || std::find(kernels_wanted.begin(), kernels_wanted.end(), k->name) != kernels_wanted.end())
      kernels.push_back(k);
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
    for (const KernelDef* k : kernels) {
      for (int threads : {1, 2}) {
        SessionOptions opts;
        opts.threads = threads;
        if (k == def->kernels.back()) opts.reference_only = true;
        else opts.allowed_kernels = {k->name};
        RunOutput r = run_model(*model, inputs, opts);
        INFO("case " << name << ", kernel " << k->name << ", " << threads << " threads");
        REQUIRE(r.status.to_string() == "ok");
        for (const auto& s : r.plan.steps)
          if (s.kernel == k->name) used.insert(k->name);
        for (size_t i = 0; i < c.outputs.size(); ++i)
          check_close(r.outputs[i].view(), c.tensors.at(c.outputs[i]).view(), c.tol, name + " output " + c.outputs[i] + " with " + k->name);
      }
    }
  }
  INFO("op " << op);
  REQUIRE(cases > 0);
  for (const KernelDef* k : kernels) {
    INFO("kernel " << k->name << " was never chosen by any case");
    CHECK(used.count(k->name) == 1);
  }
}

TEST_CASE("WindowAttention matches segment-anything's windowed attention", "[sam][ops]") { run_cases("WindowAttention", {}); }
TEST_CASE("FeedForward matches PyTorch", "[sam][ops]") { run_cases("FeedForward", {}); }
TEST_CASE("PromptEncoding matches segment-anything's PromptEncoder", "[sam][ops]") { run_cases("PromptEncoding", {}); }
TEST_CASE("MultiHeadAttention folded kernel matches the decoder attention", "[sam][ops]") {
  run_cases("MultiHeadAttention", {"mha_folded", "mha_naive"});
}

TEST_CASE("PromptEncoding refuses an unknown label at run time", "[sam][ops]") {
  const std::string dir = data_dir("ATROUS_SAM_CASES") + "/ops";
  RefCase c = load_case(dir, "prompt_one");
  auto bytes = build_case_model(c);
  auto model = Model::from_memory(bytes.data(), bytes.size());
  REQUIRE(model.ok());
  Tensor labels = Tensor::zeros(DType::kF32, {1, 1});
  labels.data<float>()[0] = 7.0f;
  RunOutput r = run_model(*model, {{"coords", c.tensors.at("coords").view()}, {"labels", labels.view()}}, SessionOptions{});
  CHECK(r.status.code() == StatusCode::kInvalidArgument);
  CHECK(r.status.message().find("label 7") != std::string::npos);
  CHECK(r.status.message().find("'pe'") != std::string::npos);
}

TEST_CASE("resize_bilinear_antialias matches PIL", "[sam][resize]") {
  const std::string dir = data_dir("ATROUS_SAM_CASES") + "/resize";
  std::ifstream f(dir + "/index.json");
  std::stringstream ss;
  ss << f.rdbuf();
  auto index = nlohmann::json::parse(ss.str());
  REQUIRE(index.size() >= 5);
  for (const auto& e : index) {
    auto in = load_npy(dir + "/" + e["in"].get<std::string>());
    auto want = load_npy(dir + "/" + e["out"].get<std::string>());
    REQUIRE(in.ok());
    REQUIRE(want.ok());
    Image img;
    img.height = static_cast<int>(in->shape()[0]);
    img.width = static_cast<int>(in->shape()[1]);
    img.channels = 3;
    img.pixels.assign(in->data<uint8_t>(), in->data<uint8_t>() + in->numel());
    Image got = resize_bilinear_antialias(img, e["width"].get<int>(), e["height"].get<int>());
    INFO(e["in"].get<std::string>() << " " << img.width << "x" << img.height << " -> " << got.width << "x" << got.height);
    REQUIRE(static_cast<int64_t>(got.pixels.size()) == want->numel());
    size_t diff = 0;
    for (size_t i = 0; i < got.pixels.size(); ++i) diff += got.pixels[i] != want->data<uint8_t>()[i];
    CHECK(diff == 0);
  }
}

}  // namespace
}  // namespace atrous::test
