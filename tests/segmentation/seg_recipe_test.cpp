// The deeplabv3 and gcn recipes end to end: each state dict make_seg_cases.py saved
// with torch.save (torchvision's own deeplabv3_resnet50/101 with random seeded weights
// and measured BatchNorm statistics; the GCN networks of gcn_net.py) is converted by
// the `atrous` binary and run at every size the case lists (odd and non-square, e.g.
// 333x517); each output must equal PyTorch's within 1e-4 x max |reference|.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "atrous/model.h"
#include "atrous/session.h"
#include "cli_runner.h"
#include "convert/npz.h"

namespace fs = std::filesystem;
using atrous::test::run_cli;
using nlohmann::json;

namespace {

std::string seg_cases(const std::string& rel) {
  const char* d = std::getenv("ATROUS_SEG_CASES");
  if (!d || !*d) FAIL("set ATROUS_SEG_CASES (run through ctest)");
  return std::string(d) + "/" + rel;
}

json manifest() {
  std::ifstream f(seg_cases("recipes/manifest.json"));
  REQUIRE(f.good());
  return json::parse(f);
}

const json* find_case(const json& m, const std::string& name) {
  for (const json& c : m["cases"])
    if (c["name"] == name) return &c;
  return nullptr;
}

std::vector<std::string> convert_args(const json& c, const json& cv, const std::string& out) {
  std::vector<std::string> a = {"convert", "--arch", c["arch"], c["weights"], "-o", out};
  for (const auto& s : cv["sets"]) {
    a.push_back("--set");
    a.push_back(s);
  }
  return a;
}

// Converts (once per conversion) and returns the model path.
std::string convert(const json& c, const json& cv) {
  std::string out = atrous::test::temp_dir(c["name"].get<std::string>()) + "/model.atrous";
  auto r = run_cli(convert_args(c, cv, out));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE(fs::exists(out));
  return out;
}

void compare_at_size(atrous::Session& s, const json& cv, const json& size) {
  auto inputs = atrous::convert::load_npz(size["inputs"]);
  auto refs = atrous::convert::load_npz(size["outputs"]);
  REQUIRE(inputs.ok());
  REQUIRE(refs.ok());
  for (const auto& [name, t] : *inputs) REQUIRE(s.set_input(name, t.view()).ok());
  atrous::Status st = s.run();
  INFO(st.to_string());
  REQUIRE(st.ok());
  const double tol = cv["tolerance"].get<double>();
  for (const auto& oname : cv["output_names"]) {
    const atrous::Tensor* ref = nullptr;
    for (const auto& [n, t] : *refs)
      if (n == oname.get<std::string>()) ref = &t;
    REQUIRE(ref != nullptr);
    auto got = s.output(oname.get<std::string>());
    REQUIRE(got.ok());
    REQUIRE(got->shape == ref->shape());
    double max_abs = 0, max_ref = 0;
    const float* g = got->as<float>();
    const float* w = ref->data<float>();
    for (int64_t i = 0; i < ref->numel(); ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(g[i] - w[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(w[i])));
    }
    INFO("output " << oname << " at " << size["size"].dump() << ": max abs " << max_abs << ", max |ref| " << max_ref);
    CHECK(max_abs <= tol * max_ref);
    CHECK(max_ref > 0.1);  // the reference is not degenerate
  }
}

}  // namespace

TEST_CASE("deeplabv3 and gcn checkpoints convert and match PyTorch at every size", "[segmentation][recipes]") {
  json m = manifest();
  REQUIRE(m["cases"].size() >= 3);
  for (const json& c : m["cases"]) {
    for (size_t i = 0; i < c["conversions"].size(); ++i) {
      const json& cv = c["conversions"][i];
      DYNAMIC_SECTION(c["name"].get<std::string>() << " " << json(cv["sets"]).dump()) {
        std::string path = convert(c, cv);
        auto model = atrous::Model::open(path);
        REQUIRE(model.ok());
        auto s = atrous::Session::create(*model, {});
        REQUIRE(s.ok());
        CHECK((*s)->entry().outputs.size() == cv["output_names"].size());
        for (const json& size : cv["sizes"]) compare_at_size(**s, cv, size);
      }
    }
  }
}

TEST_CASE("deeplabv3: metadata, class names, and a plan with every BatchNorm folded", "[segmentation][recipes]") {
  json m = manifest();
  const json* c = find_case(m, "deeplabv3_resnet50");
  REQUIRE(c != nullptr);
  std::string path = convert(*c, (*c)["conversions"][0]);
  auto model = atrous::Model::open(path);
  REQUIRE(model.ok());
  const atrous::ModelInfo& info = (*model)->info();
  CHECK(info.metadata.at("deeplabv3.backbone") == "resnet50 (bottleneck 3-4-6-3), widths 256-512-1024-2048");
  CHECK(info.metadata.at("deeplabv3.output_stride") == "8");
  CHECK(info.metadata.at("deeplabv3.atrous_rates") == "12,24,36");
  const atrous::EntryPointInfo& e = info.entries.at(0);
  REQUIRE(e.outputs.size() == 1);  // aux head dropped by default
  CHECK(e.outputs[0].name == "out");
  REQUIRE(e.has_preprocess);
  CHECK(e.preprocess.mean.size() == 3);
  CHECK(e.preprocess.value_scale == Approx(1 / 255.0));
  REQUIRE(e.has_postprocess);
  CHECK(e.postprocess.kind == atrous::PostprocessInfo::Kind::kArgmaxClasses);
  REQUIRE(e.postprocess.class_names.size() == 21);
  CHECK(e.postprocess.class_names[15] == "person");

  // At 64x64 the layer4 map is 8x8: every ASPP rate (12/24/36) reads padding only
  // outside the centre tap, so the three dilated 3x3 convs run as 1x1 convs.
  atrous::SessionOptions so;
  so.threads = 2;
  auto s = atrous::Session::create(*model, so);
  REQUIRE(s.ok());
  REQUIRE((*s)->reshape({{1, 3, 64, 64}}).ok());
  atrous::PlanInfo p = *(*s)->plan_info();
  int convs = 0, reorders = 0;
  std::string plan;
  for (const auto& st : p.steps) {
    plan += "\n  " + st.op + " " + st.node + " -> " + st.output_layouts.at(0) + " " + st.detail;
    CHECK(st.op != "BatchNorm");
    CHECK(st.op != "Unary");
    convs += st.op == "Conv2d";
    reorders += st.op == "Reorder";
    if (st.node == "classifier.0.convs.1.0" || st.node == "classifier.0.convs.2.0" || st.node == "classifier.0.convs.3.0")
      CHECK(st.detail.find("taps 1x1 of 3x3") != std::string::npos);
  }
  INFO("plan:" << plan);
  CHECK(convs == 53 + 6 + 2);  // backbone 53, ASPP 5 + projection, head 2
  CHECK(reorders == 0);
}

TEST_CASE("gcn: metadata and per-stage kernel sizes come from the weights", "[segmentation][recipes]") {
  json m = manifest();
  const json* c = find_case(m, "gcn_tiny_dilated");
  REQUIRE(c != nullptr);
  auto model = atrous::Model::open(convert(*c, (*c)["conversions"][0]));
  REQUIRE(model.ok());
  const auto& md = (*model)->info().metadata;
  CHECK(md.at("gcn.kernel_sizes") == "21,15,9,5");
  CHECK(md.at("gcn.num_classes") == "5");
  CHECK(md.at("gcn.backbone") == "resnet (bottleneck 1-2-1-2), widths 32-32-64-64");
}

// With oneDNN's kernels only, the network keeps their layouts throughout. By default the
// class-channel convs of the head on maps at least 16 columns wide (here from layer2's
// 20x28 on) run in plain NCHW: the GCN convs on conv2d_spatial, each BR block as one
// boundary_refinement_fused step; every reorder feeds one of them.
TEST_CASE("gcn: oneDNN's layouts through the network, or a plain head with conv2d_spatial", "[segmentation][recipes]") {
  json m = manifest();
  const json* c = find_case(m, "gcn_resnet18");
  REQUIRE(c != nullptr);
  auto model = atrous::Model::open(convert(*c, (*c)["conversions"][0]));
  REQUIRE(model.ok());
  for (bool onednn_only : {true, false}) {
    atrous::SessionOptions so;
    so.threads = 2;
    if (onednn_only) so.excluded_kernels = {"conv2d_spatial", "boundary_refinement_fused"};
    auto s = atrous::Session::create(*model, so);
    REQUIRE(s.ok());
    REQUIRE((*s)->reshape({{1, 3, 160, 224}}).ok());
    atrous::PlanInfo p = *(*s)->plan_info();
    std::string plan;
    for (const auto& st : p.steps) plan += "\n  " + st.op + " " + st.node + " [" + st.kernel + "] -> " + st.output_layouts.at(0);
    INFO((onednn_only ? "without conv2d_spatial and boundary_refinement_fused" : "default kernels") << " plan:" << plan);
    int resizes = 0, binaries = 0, reorders = 0, spatial = 0, br = 0;
    for (const auto& st : p.steps) {
      CHECK(st.op != "BatchNorm");
      reorders += st.op == "Reorder";
      spatial += st.kernel == "conv2d_spatial";
      br += st.kernel == "boundary_refinement_fused";
      if (st.op == "Resize") {
        ++resizes;
        // bilinear, align_corners=true, on the convs' layout
        if (onednn_only) CHECK(st.kernel == "resize_blocked");
      }
      if (st.op == "Binary") ++binaries;
      if (onednn_only && &st != &p.steps.back()) CHECK(st.output_layouts.at(0) != "plain");
      if (st.kernel == "conv2d_spatial") CHECK(st.node.rfind("gcm", 0) == 0);
      if (st.kernel == "boundary_refinement_fused") CHECK((st.node.rfind("brm", 0) == 0 && st.op == "BoundaryRefinement"));
      if (st.op == "Reorder")
        CHECK(((&st + 1)->kernel == "conv2d_spatial" || (&st + 1)->kernel == "boundary_refinement_fused"));
    }
    CHECK(resizes == 5);
    CHECK(binaries == 3);  // up + g at three stages; every GCN sum and BR residual is a conv post-op
    if (onednn_only) CHECK(reorders == 0);
    // gcm3-4 (four convs each); brm3, brm4, brm6-9
    CHECK(spatial == (onednn_only ? 0 : 2 * 4));
    CHECK(br == (onednn_only ? 0 : 6));
  }
}

TEST_CASE("recipes report what does not fit, and write nothing", "[segmentation][recipes]") {
  json m = manifest();
  const json* gcn = find_case(m, "gcn_tiny_dilated");
  const json* dl = find_case(m, "deeplabv3_resnet50");
  REQUIRE(gcn != nullptr);
  REQUIRE(dl != nullptr);
  std::string dir = atrous::test::temp_dir("bad");
  // A GCN checkpoint is not a DeepLabV3 one.
  auto r = run_cli({"convert", "--arch", "deeplabv3", (*gcn)["weights"], "-o", dir + "/x.atrous"});
  CHECK(r.code == 1);
  CHECK(r.err.find("classifier.0.convs") != std::string::npos);
  // Rates that do not match the checkpoint's ASPP.
  r = run_cli({"convert", "--arch", "deeplabv3", (*dl)["weights"], "--set", "atrous_rates=[6,12]", "-o", dir + "/x.atrous"});
  CHECK(r.code == 1);
  CHECK(r.err.find("the checkpoint's ASPP has 5 branches (1×1, one per rate, pooling), but atrous_rates lists 2 rates") !=
        std::string::npos);
  // Dilating a BasicBlock ResNet (torchvision refuses it too).
  const json* r18 = find_case(m, "gcn_resnet18");
  REQUIRE(r18 != nullptr);
  r = run_cli({"convert", "--arch", "gcn", (*r18)["weights"], "--set", "replace_stride_with_dilation=[false,true,true]", "-o",
               dir + "/x.atrous"});
  CHECK(r.code == 1);
  CHECK(r.err.find("is a BasicBlock, which torchvision does not dilate") != std::string::npos);
  CHECK(atrous::test::list_dir(dir).empty());
}
