#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "builder/graph_json.h"
#include "format/model_file.h"
#include "format/model_writer.h"

namespace atrous::test {

std::string data_dir(const char* env_var) {
  const char* d = std::getenv(env_var);
  if (!d) FAIL("environment variable " << env_var << " is not set (run the tests through ctest)");
  return d;
}

static std::string read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) FAIL("cannot read " << path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

static std::string safe(std::string n) {
  for (char& c : n)
    if (c == '/' || c == ':') c = '_';
  return n;
}

std::vector<std::string> list_cases(const std::string& dir) {
  return nlohmann::json::parse(read_text(dir + "/index.json")).get<std::vector<std::string>>();
}

RefCase load_case(const std::string& dir, const std::string& name) {
  RefCase c;
  c.dir = dir + "/" + name;
  c.name = name;
  auto j = nlohmann::json::parse(read_text(c.dir + "/case.json"));
  c.op = j.at("op").get<std::string>();
  c.tol = j.value("tol", 1e-4);
  c.graph_json = j.at("graph").dump();
  c.inputs = j.at("inputs").get<std::vector<std::string>>();
  c.constants = j.at("constants").get<std::vector<std::string>>();
  c.outputs = j.at("outputs").get<std::vector<std::string>>();
  for (const auto* list : {&c.inputs, &c.constants, &c.outputs})
    for (const auto& n : *list) {
      auto t = load_npy(c.dir + "/" + safe(n) + ".npy");
      if (!t.ok()) FAIL(t.status().to_string());
      c.tensors[n] = std::move(t).value();
    }
  return c;
}

std::vector<uint8_t> build_case_model(const RefCase& c) {
  ModelBuilder mb(c.name, "tests");
  GraphBuilder& g = mb.graph("main");
  Status st = build_graph_from_json(g, c.graph_json, [&](GraphBuilder& gb, const std::string& name) -> Result<int> {
    auto it = c.tensors.find(name);
    if (it == c.tensors.end()) return not_found("no constant '" + name + "' in case " + c.name);
    return gb.constant(name, it->second);
  });
  if (!st.ok()) FAIL("case " << c.name << ": " << st.to_string());
  auto bytes = mb.to_bytes();
  if (!bytes.ok()) FAIL("case " << c.name << ": " << bytes.status().to_string());
  return std::move(bytes).value();
}

RunOutput run_model(std::shared_ptr<const Model> model, const std::vector<std::pair<std::string, TensorView>>& inputs,
                    const SessionOptions& opts) {
  RunOutput r;
  auto s = Session::create(model, opts);
  if (!s.ok()) {
    r.status = s.status();
    return r;
  }
  for (const auto& [name, view] : inputs) {
    r.status = (*s)->set_input(name, view);
    if (!r.status.ok()) return r;
  }
  r.status = (*s)->run();
  if (!r.status.ok()) return r;
  for (size_t i = 0; i < (*s)->entry().outputs.size(); ++i) r.outputs.push_back(Tensor::copy_of(*(*s)->output(i)));
  r.plan = *(*s)->plan_info();
  return r;
}

void check_close(const TensorView& got, const TensorView& ref, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape == ref.shape);
  REQUIRE(got.dtype == ref.dtype);
  int64_t n = ref.numel();
  if (ref.dtype == DType::kI64 || ref.dtype == DType::kI32 || ref.dtype == DType::kU8) {
    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; ++i) {
      int64_t a = 0, b = 0;
      if (ref.dtype == DType::kI64) { a = got.as<int64_t>()[i]; b = ref.as<int64_t>()[i]; }
      else if (ref.dtype == DType::kI32) { a = got.as<int32_t>()[i]; b = ref.as<int32_t>()[i]; }
      else { a = got.as<uint8_t>()[i]; b = ref.as<uint8_t>()[i]; }
      mismatches += a != b;
    }
    CHECK(mismatches == 0);
    return;
  }
  const float* g = got.as<float>();
  const float* r = ref.as<float>();
  double max_err = 0, max_ref = 0;
  int64_t worst = 0;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(g[i]) && std::isfinite(r[i])) finite = false;
    double e = std::fabs(static_cast<double>(g[i]) - r[i]);
    if (e > max_err) { max_err = e; worst = i; }
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(r[i])));
  }
  INFO("max abs error " << max_err << " at " << worst << " (got " << g[worst] << ", want " << r[worst] << "), max |ref| "
                        << max_ref << ", tolerance " << tol << " x max|ref|");
  CHECK(finite);
  CHECK(max_err <= tol * std::max(max_ref, 1e-6));
}

std::vector<uint8_t> edit_model(const std::vector<uint8_t>& valid, const std::function<void(fb::ModelT&)>& edit) {
  FileHeader h;
  REQUIRE(valid.size() >= sizeof h);
  std::memcpy(&h, valid.data(), sizeof h);
  std::unique_ptr<fb::ModelT> m(fb::GetModel(valid.data() + kHeaderSize)->UnPack());
  edit(*m);
  ModelWriter w;
  std::vector<uint8_t> data(valid.begin() + static_cast<long>(h.data_offset), valid.end());
  w.add_data_copy(data.data(), data.size());
  auto out = w.write_to_memory(*m);
  REQUIRE(out.ok());
  return *out;
}

std::vector<float> uniform(size_t n, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

RunOutput check_kernel_against_reference(std::shared_ptr<const Model> model,
                                         const std::vector<std::pair<std::string, TensorView>>& inputs,
                                         const std::string& kernel, int threads, const std::string& what) {
  SessionOptions fast;
  fast.threads = threads;
  fast.allowed_kernels = {kernel};
  RunOutput got = run_model(model, inputs, fast);
  REQUIRE(got.status.to_string() == "ok");
  REQUIRE(got.plan.steps.size() == 1);
  REQUIRE(got.plan.steps[0].kernel == kernel);
  SessionOptions ref;
  ref.threads = 2;
  ref.reference_only = true;
  RunOutput want = run_model(model, inputs, ref);
  REQUIRE(want.status.to_string() == "ok");
  for (size_t i = 0; i < got.outputs.size(); ++i) check_close(got.outputs[i].view(), want.outputs[i].view(), 1e-4, what);
  return got;
}

}  // namespace atrous::test
