// A small MambaLMHeadModel-shaped PyTorch module (make_ssm_cases.py: d_model 64,
// 3 layers, vocab 101 padded to 104, random seeded weights, mamba_ssm keys), built
// with models::build_mamba_model from its state dict (.npy per key): the engine's
// logits for token ids equal PyTorch's, with tied and untied heads, with every scan
// kernel; the "step" entry point fed one token at a time (and after a prefill by
// "main") reproduces the whole-sequence logits; a token id outside the vocabulary is
// a clear run-time error.
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>

#include "models/mamba.h"
#include "ops/ssm_kernels.h"
#include "test_util.h"

namespace atrous::test {
namespace {

class NpyWeights : public models::MambaWeightSource {
 public:
  explicit NpyWeights(const std::string& dir) {
    std::ifstream f(dir + "/keys.json");
    REQUIRE(f.good());
    for (const std::string& k : nlohmann::json::parse(f).get<std::vector<std::string>>()) {
      auto t = load_npy(dir + "/" + k + ".npy");
      REQUIRE(t.ok());
      tensors_[k] = std::move(t).value();
    }
  }
  const Shape* shape(const std::string& key) const override {
    auto it = tensors_.find(key);
    return it == tensors_.end() ? nullptr : &it->second.shape();
  }
  int add_constant(GraphBuilder& g, const std::string& key) const override { return g.constant(key, tensors_.at(key)); }
  bool same_data(const std::string& a, const std::string& b) const override {
    return aliases_.count(a) && aliases_.at(a) == b;
  }
  // Adds `key` holding the same tensor as `of` (what torch.save writes for tied weights).
  void alias(const std::string& key, const std::string& of) {
    tensors_[key] = tensors_.at(of);
    aliases_[key] = of;
  }

 private:
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> aliases_;
};

struct Lm {
  std::shared_ptr<const Model> model;
  models::MambaConfig cfg;
  Tensor ids, logits;
};

Lm load_lm(const std::string& name) {
  const std::string dir = data_dir("ATROUS_SSM_CASES") + "/lm_" + name;
  NpyWeights w(dir);
  ModelBuilder mb("mamba_" + name, "tests");
  auto cfg = models::build_mamba_model(mb, w);
  INFO(cfg.status().to_string());
  REQUIRE(cfg.ok());
  auto bytes = mb.to_bytes();
  INFO(bytes.status().to_string());
  REQUIRE(bytes.ok());
  auto model = Model::from_memory(bytes->data(), bytes->size());
  INFO(model.status().to_string());
  REQUIRE(model.ok());
  return {*model, *cfg, *load_npy(dir + "/input_ids.npy"), *load_npy(dir + "/logits.npy")};
}

Tensor row_slice(const Tensor& t, int64_t b, int64_t t0, int64_t len) {  // [B, L, ...] -> [1, len, ...]
  Shape s = t.shape();
  int64_t inner = 1;
  for (size_t i = 2; i < s.size(); ++i) inner *= s[i];
  const size_t es = dtype_size(t.dtype());
  const int64_t L = s[1];
  s[0] = 1;
  s[1] = len;
  Tensor r = Tensor::zeros(t.dtype(), s);
  std::memcpy(r.raw(), static_cast<const char*>(t.raw()) + ((b * L + t0) * inner) * es, static_cast<size_t>(len * inner) * es);
  return r;
}

}  // namespace

TEST_CASE("Mamba LM: sizes are inferred from the state dict", "[ssm][mamba]") {
  Lm tied = load_lm("tied");
  CHECK(tied.cfg.d_model == 64);
  CHECK(tied.cfg.n_layer == 3);
  CHECK(tied.cfg.vocab == 104);
  CHECK(tied.cfg.d_inner == 128);
  CHECK(tied.cfg.d_state == 16);
  CHECK(tied.cfg.dt_rank == 4);
  CHECK(tied.cfg.d_conv == 4);
  CHECK(tied.cfg.tied);
  CHECK_FALSE(load_lm("untied").cfg.tied);
  // A tied checkpoint that also lists lm_head.weight (same data) is still tied.
  NpyWeights both(data_dir("ATROUS_SSM_CASES") + "/lm_tied");
  both.alias("lm_head.weight", "backbone.embedding.weight");
  auto cfg = models::infer_mamba_config(both);
  REQUIRE(cfg.ok());
  CHECK(cfg->tied);
}

TEST_CASE("Mamba LM logits match PyTorch, tied and untied, every scan kernel", "[ssm][mamba]") {
  for (const char* name : {"tied", "untied"}) {
    Lm lm = load_lm(name);
    for (const char* kernel : {"mamba_scan_avx512", "mamba_scan_avx2", "reference"}) {
      if (std::string(kernel) == "mamba_scan_avx512" && !ssm::ssm_isa_avx512()) continue;
      INFO("model " << name << ", kernel " << kernel);
      SessionOptions opts;
      opts.threads = 2;
      if (std::string(kernel) == "reference") opts.reference_only = true;
      else opts.allowed_kernels = {kernel, "linear_onednn"};
      RunOutput r = run_model(lm.model, {{"input_ids", lm.ids.view()}}, opts);
      REQUIRE(r.status.to_string() == "ok");
      int scans = 0;
      for (const auto& s : r.plan.steps)
        if (s.op == "MambaScan") {
          ++scans;
          CHECK(s.kernel == (std::string(kernel) == "reference" ? "mamba_scan_ref" : kernel));
        }
      CHECK(scans == 3);
      check_close(r.outputs[0].view(), lm.logits.view(), 1e-4, std::string("logits of the ") + name + " model");
    }
  }
}

TEST_CASE("Mamba LM: the step entry point fed token by token equals the whole sequence", "[ssm][mamba][streaming]") {
  Lm lm = load_lm("untied");
  const int64_t L = lm.ids.shape()[1], n_layer = lm.cfg.n_layer;
  SessionOptions main_opts;
  main_opts.threads = 2;
  main_opts.entry = "main";
  SessionOptions step_opts = main_opts;
  step_opts.entry = "step";
  for (int64_t b = 0; b < 2; ++b) {
    INFO("sequence " << b);
    Tensor want = row_slice(lm.logits, b, 0, L);
    // Prefill the first `pre` tokens with "main" (0: start from zero states), then one token at a time.
    for (int64_t pre : {0, 20}) {
      INFO("prefill " << pre);
      std::vector<Tensor> states(static_cast<size_t>(2 * n_layer));
      for (int64_t i = 0; i < n_layer; ++i) {
        states[static_cast<size_t>(2 * i)] = Tensor::zeros(DType::kF32, {1, lm.cfg.d_inner, lm.cfg.d_conv});
        states[static_cast<size_t>(2 * i + 1)] = Tensor::zeros(DType::kF32, {1, lm.cfg.d_inner, lm.cfg.d_state});
      }
      Tensor got = Tensor::zeros(DType::kF32, want.shape());
      if (pre > 0) {
        Tensor ids = row_slice(lm.ids, b, 0, pre);
        auto s = Session::create(lm.model, main_opts);
        REQUIRE(s.ok());
        REQUIRE((*s)->set_input("input_ids", ids.view()).ok());
        REQUIRE((*s)->run().to_string() == "ok");
        const TensorView lg = *(*s)->output("logits");
        std::memcpy(got.data<float>(), lg.data, lg.nbytes());
        for (int64_t i = 0; i < n_layer; ++i) {
          states[static_cast<size_t>(2 * i)] = Tensor::copy_of(*(*s)->output("conv_state_out." + std::to_string(i)));
          states[static_cast<size_t>(2 * i + 1)] = Tensor::copy_of(*(*s)->output("ssm_state_out." + std::to_string(i)));
        }
      }
      auto s = Session::create(lm.model, step_opts);
      REQUIRE(s.ok());
      const int64_t V = lm.cfg.vocab;
      for (int64_t t = pre; t < L; ++t) {
        Tensor id = row_slice(lm.ids, b, t, 1);
        REQUIRE((*s)->set_input("input_ids", id.view()).ok());
        for (int64_t i = 0; i < n_layer; ++i) {
          REQUIRE((*s)->set_input("conv_state." + std::to_string(i), states[static_cast<size_t>(2 * i)].view()).ok());
          REQUIRE((*s)->set_input("ssm_state." + std::to_string(i), states[static_cast<size_t>(2 * i + 1)].view()).ok());
        }
        REQUIRE((*s)->run().to_string() == "ok");
        const TensorView lg = *(*s)->output("logits");
        std::memcpy(got.data<float>() + t * V, lg.data, lg.nbytes());
        for (int64_t i = 0; i < n_layer; ++i) {
          states[static_cast<size_t>(2 * i)] = Tensor::copy_of(*(*s)->output("conv_state_out." + std::to_string(i)));
          states[static_cast<size_t>(2 * i + 1)] = Tensor::copy_of(*(*s)->output("ssm_state_out." + std::to_string(i)));
        }
      }
      check_close(got.view(), want.view(), 1e-4, "streamed logits");
    }
  }
}

TEST_CASE("Mamba LM: a token id outside the vocabulary is a run-time error, not a crash", "[ssm][mamba]") {
  Lm lm = load_lm("tied");
  for (int64_t bad : {lm.cfg.vocab, int64_t{-1}}) {
    Tensor ids = Tensor::copy_of(lm.ids.view());
    ids.data<int64_t>()[5] = bad;
    SessionOptions opts;
    opts.threads = 2;
    RunOutput r = run_model(lm.model, {{"input_ids", ids.view()}}, opts);
    INFO(r.status.to_string());
    CHECK(r.status.code() == StatusCode::kInvalidArgument);
    CHECK(r.status.message().find("backbone.embedding") != std::string::npos);
    CHECK(r.status.message().find("input_ids") != std::string::npos);
    CHECK(r.status.message().find("position 5") != std::string::npos);
    CHECK(r.status.message().find(std::to_string(bad)) != std::string::npos);
  }
}

}  // namespace atrous::test
