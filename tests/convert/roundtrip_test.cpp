// The round-trip harness, C++ side: every case make_convert_cases.py wrote
// (roundtrip.py) is converted with `atrous convert` from both its .pth and its
// .safetensors file, in every --dtype the case lists, run by the engine and
// compared with PyTorch's outputs: max abs error <= tolerance x max |reference|
// (1e-4 for f32 weights). Then the conversion is repeated with --check, which
// must pass and compare the reference intermediates. New cases need no C++.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "atrous/model.h"
#include "atrous/session.h"
#include "cli_runner.h"
#include "convert/check.h"
#include "convert/npz.h"
#include "ops/op_registry.h"

namespace fs = std::filesystem;
using atrous::test::run_cli;
using nlohmann::json;

namespace {

json manifest() {
  std::ifstream f(atrous::test::cases_path("manifest.json"));
  REQUIRE(f.good());
  return json::parse(f);
}

bool ops_registered(const json& c) {
  if (!c.contains("requires_ops")) return true;
  for (const auto& op : c["requires_ops"]) {
    bool found = false;
    for (const atrous::OpDef* d : atrous::all_ops()) found = found || op.get<std::string>() == d->name;
    if (!found) return false;
  }
  return true;
}

std::vector<std::string> convert_args(const json& c, const std::string& weights, const std::string& out,
                                      const std::string& dtype) {
  std::vector<std::string> a = {"convert", "--arch", c["arch"], "--config", c["config"], weights, "-o", out, "--dtype", dtype};
  for (const auto& s : c["sets"]) {
    a.push_back("--set");
    a.push_back(s);
  }
  return a;
}

double value(const atrous::TensorView& t, int64_t i) {
  switch (t.dtype) {
    case atrous::DType::kF32: return t.as<float>()[i];
    case atrous::DType::kI64: return static_cast<double>(t.as<int64_t>()[i]);
    case atrous::DType::kI32: return t.as<int32_t>()[i];
    default: FAIL("unexpected dtype in a reference");
  }
  return 0;
}

// Runs the model on the case's inputs and compares every output (independently of --check).
void compare_outputs(const json& c, const std::string& model_path, double tolerance) {
  auto model = atrous::Model::open(model_path);
  INFO(model.status().to_string());
  REQUIRE(model.ok());
  auto inputs = atrous::convert::load_npz(c["inputs"]);
  auto refs = atrous::convert::load_npz(c["outputs"]);
  REQUIRE(inputs.ok());
  REQUIRE(refs.ok());
  auto s = atrous::Session::create(*model, {});
  REQUIRE(s.ok());
  for (const auto& [name, t] : *inputs) REQUIRE((*s)->set_input(name, t.view()).ok());
  atrous::Status st = (*s)->run();
  INFO(st.to_string());
  REQUIRE(st.ok());
  for (const auto& name : c["output_names"]) {
    const atrous::Tensor* ref = nullptr;
    for (const auto& [n, t] : *refs)
      if (n == name.get<std::string>()) ref = &t;
    REQUIRE(ref != nullptr);
    auto got = (*s)->output(name.get<std::string>());
    REQUIRE(got.ok());
    REQUIRE(got->shape == ref->shape());
    double max_abs = 0, max_ref = 0;
    for (int64_t i = 0; i < ref->numel(); ++i) {
      max_abs = std::max(max_abs, std::fabs(value(*got, i) - value(ref->view(), i)));
      max_ref = std::max(max_ref, std::fabs(value(ref->view(), i)));
    }
    INFO("output " << name << ": max abs " << max_abs << ", max |ref| " << max_ref << ", tolerance " << tolerance);
    CHECK(max_abs <= tolerance * max_ref);
  }
}

}  // namespace

TEST_CASE("round trip: each case converts from .pth and .safetensors and matches PyTorch") {
  json m = manifest();
  REQUIRE(m["cases"].size() >= 3);
  for (const json& c : m["cases"]) {
    if (!ops_registered(c)) {
      WARN("skipping case " << c["name"] << ": needs ops this build does not register");
      continue;
    }
    for (const auto& w : c["weights"])
      for (const auto& dt : c["dtypes"]) {
        std::string dtype = dt;
        DYNAMIC_SECTION(c["name"].get<std::string>() << " from " << fs::path(w.get<std::string>()).filename().string()
                                                     << " as " << dtype) {
          std::string out = atrous::test::temp_dir("rt") + "/model.atrous";
          auto r = run_cli(convert_args(c, w, out, dtype));
          INFO(r.out << r.err);
          REQUIRE(r.code == 0);
          REQUIRE(fs::exists(out));
          double tol = c["tolerance"].is_number() ? c["tolerance"].get<double>()
                                                  : atrous::convert::default_tolerance(*atrous::parse_dtype(dtype));
          compare_outputs(c, out, tol);
        }
      }
  }
}

TEST_CASE("round trip: --check passes and compares the reference intermediates") {
  json m = manifest();
  for (const json& c : m["cases"]) {
    if (!ops_registered(c)) continue;
    DYNAMIC_SECTION(c["name"].get<std::string>()) {
      std::string out = atrous::test::temp_dir("check") + "/model.atrous";
      auto args = convert_args(c, c["weights"][0], out, "f32");
      args.insert(args.end(), {"--check", c["inputs"], c["outputs"]});
      auto r = run_cli(args);
      INFO(r.out << r.err);
      REQUIRE(r.code == 0);
      CHECK(r.out.find("check passed") != std::string::npos);
      CHECK(r.out.find(std::to_string(c["intermediates"].size()) + " reference intermediates compared in execution order: all within tolerance") !=
            std::string::npos);
      for (const auto& o : c["output_names"]) CHECK(r.out.find("output " + o.get<std::string>() + " [") != std::string::npos);
      CHECK(fs::exists(out));
      CHECK(atrous::test::list_dir(fs::path(out).parent_path().string()).size() == 1);  // no temporaries left
    }
  }
}

TEST_CASE("round trip: the convnet model carries its image metadata and its source") {
  json m = manifest();
  const json& c = m["cases"][0];
  REQUIRE(c["name"] == "convnet");
  std::string out = atrous::test::temp_dir("meta") + "/model.atrous";
  auto r = run_cli(convert_args(c, c["weights"][1], out, "f32"));
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto model = atrous::Model::open(out);
  REQUIRE(model.ok());
  const atrous::ModelInfo& info = (*model)->info();
  CHECK(info.name == "tiny_convnet");
  CHECK(info.metadata.at("convert.arch") == "graph");
  CHECK(info.metadata.at("convert.source").find("safetensors") != std::string::npos);
  json cfg = json::parse(info.metadata.at("convert.config"));
  CHECK(cfg["vars"]["bn_eps"] == 1e-5);
  const atrous::EntryPointInfo& e = info.entries.at(0);
  REQUIRE(e.has_preprocess);
  CHECK(e.preprocess.input == "x");
  CHECK(e.preprocess.mean.size() == 3);
  CHECK(e.preprocess.value_scale == Approx(1 / 255.0));
  REQUIRE(e.has_postprocess);
  CHECK(e.postprocess.kind == atrous::PostprocessInfo::Kind::kArgmaxClasses);
  CHECK(e.postprocess.output == "seg");
  CHECK(e.postprocess.class_names.size() == 5);
  CHECK(e.postprocess.palette.size() == 15);
  CHECK(e.outputs.size() == 2);
}
