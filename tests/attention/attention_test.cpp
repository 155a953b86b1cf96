// The attention nodes against PyTorch references (make_attention_cases.py):
// every case with every kernel of its op (each kernel must be chosen at least once);
// MultiHeadAttention's tiled kernel against its naive one at 1e-5; and, for cases
// with a step.json, a one-token "step" entry point (sharing the weights through
// shared_constant) run token by token through a Session with its state fed back,
// which must reproduce the full causal output.
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "builder/graph_json.h"
#include "ops/lite_mla.h"
#include "ops/op_registry.h"
#include "test_util.h"

namespace atrous::test {
namespace {

const OpDef* op_named(const std::string& op) {
  for (const OpDef* d : all_ops())
    if (op == d->name) return d;
  return nullptr;
}

std::vector<std::pair<std::string, TensorView>> case_inputs(const RefCase& c) {
  std::vector<std::pair<std::string, TensorView>> in;
  for (const auto& n : c.inputs) in.emplace_back(n, c.tensors.at(n).view());
  return in;
}

// Runs one case with every kernel of `def`; returns each kernel's first output.
std::vector<Tensor> run_all_kernels(const RefCase& c, const OpDef* def, std::set<std::string>* used) {
  auto bytes = build_case_model(c);
  auto model = Model::from_memory(bytes.data(), bytes.size());
  REQUIRE(model.ok());
  std::vector<Tensor> outs;
  for (const KernelDef* k : def->kernels) {
    SessionOptions opts;
    opts.threads = 2;
    if (k == def->kernels.back()) opts.reference_only = true;
    else opts.allowed_kernels = {k->name};
    RunOutput r = run_model(*model, case_inputs(c), opts);
    INFO("case " << c.name << ", kernel " << k->name);
    REQUIRE(r.status.to_string() == "ok");
    for (const auto& s : r.plan.steps)
      if (s.kernel == k->name) used->insert(k->name);
    for (size_t i = 0; i < c.outputs.size(); ++i)
      check_close(r.outputs[i].view(), c.tensors.at(c.outputs[i]).view(), c.tol, c.name + " output " + c.outputs[i] + " with " + k->name);
    outs.push_back(std::move(r.outputs[0]));
  }
  return outs;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The case's graph as entry point "main" and step.json's graph as "step", the
// step's constants shared with main's. Then "step" runs once per token with its
// state outputs fed back as the next state inputs, for the default kernels and
// for the reference kernels.
void check_streaming(const RefCase& c) {
  auto j = nlohmann::json::parse(read_text(c.dir + "/step.json"));
  ModelBuilder mb(c.name, "tests");
  GraphBuilder& main = mb.graph("main");
  std::map<std::string, int> ids;
  Status st = build_graph_from_json(main, c.graph_json, [&](GraphBuilder& g, const std::string& name) -> Result<int> {
    int id = g.constant(name, c.tensors.at(name));
    ids[name] = id;
    return id;
  });
  REQUIRE(st.to_string() == "ok");
  GraphBuilder& step = mb.graph("step");
  st = build_graph_from_json(step, j.at("graph").dump(), [&](GraphBuilder& g, const std::string& name) -> Result<int> {
    auto it = ids.find(name);
    if (it == ids.end()) return not_found("no constant " + name);
    return g.shared_constant(name, main, it->second);
  });
  REQUIRE(st.to_string() == "ok");
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  auto model = Model::from_memory(bytes->data(), bytes->size());
  REQUIRE(model.ok());

  const auto tokens = j.at("tokens").get<std::vector<std::string>>();
  const auto states = j.at("states").get<std::map<std::string, std::string>>();
  const std::string out_name = j.at("output").get<std::string>();
  const Tensor& ref = c.tensors.at(c.outputs[0]);

  for (bool reference : {false, true}) {
    SessionOptions opts;
    opts.threads = 2;
    opts.reference_only = reference;
    opts.entry = "main";
    RunOutput full = run_model(*model, case_inputs(c), opts);
    REQUIRE(full.status.to_string() == "ok");

    opts.entry = "step";
    opts.threads = 1;  // one token: a parallel region per step would only add overhead
    auto sess = Session::create(*model, opts);
    REQUIRE(sess.ok());
    const EntryPointInfo& e = (*sess)->entry();
    std::map<std::string, Tensor> state;
    for (const auto& in : e.inputs)
      if (states.count(in.name)) state[in.name] = Tensor::zeros(DType::kF32, in.shape);
    const Shape& xs = c.tensors.at(tokens[0]).shape();
    const int64_t B = xs[0], L = xs[1];
    Tensor y = Tensor::zeros(DType::kF32, ref.shape());
    const int64_t ey = ref.shape()[2];
    std::map<std::string, Tensor> tok;
    for (const auto& t : tokens) tok[t] = Tensor::zeros(DType::kF32, {B, 1, c.tensors.at(t).shape()[2]});
    std::map<std::string, TensorView> fed;  // state inputs: zeros first, then the previous outputs
    for (auto& [n, t] : state) fed[n] = t.view();
    for (int64_t t = 0; t < L; ++t) {
      for (const auto& name : tokens) {
        const Tensor& x = c.tensors.at(name);
        const int64_t E = x.shape()[2];
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(tok[name].data<float>() + b * E, x.data<float>() + (b * L + t) * E, sizeof(float) * E);
        REQUIRE((*sess)->set_input(name, tok[name].view()).ok());
      }
      for (const auto& [n, v] : fed) REQUIRE((*sess)->set_input(n, v).ok());
      Status rs = (*sess)->run();
      INFO("case " << c.name << " step " << t);
      REQUIRE(rs.to_string() == "ok");
      auto yt = (*sess)->output(out_name);
      REQUIRE(yt.ok());
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(y.data<float>() + (b * L + t) * ey, yt->as<float>() + b * ey, sizeof(float) * ey);
      for (const auto& [in, out] : states) fed[in] = *(*sess)->output(out);
    }
    const std::string what = c.name + (reference ? " streamed (reference kernels)" : " streamed");
    check_close(y.view(), full.outputs[0].view(), 1e-5, what + " vs the full causal run");
    check_close(y.view(), ref.view(), c.tol, what + " vs PyTorch");
  }
}

void run_op(const std::string& op) {
  const std::string dir = data_dir("ATROUS_ATTENTION_CASES");
  const OpDef* def = op_named(op);
  REQUIRE(def != nullptr);
  std::set<std::string> used;
  int cases = 0, streamed = 0;
  for (const std::string& name : list_cases(dir)) {
    RefCase c = load_case(dir, name);
    if (c.op != op) continue;
    ++cases;
    std::vector<Tensor> outs = run_all_kernels(c, def, &used);
    if (op == "MultiHeadAttention")  // the memory-efficient kernel against the naive one
      check_close(outs.front().view(), outs.back().view(), 1e-5, name + ": mha_tiled vs mha_naive");
    if (std::ifstream(c.dir + "/step.json").good()) {
      check_streaming(c);
      ++streamed;
    }
  }
  INFO("op " << op);
  REQUIRE(cases > 0);
  for (const KernelDef* k : def->kernels) {
    INFO("kernel " << k->name << " was never chosen by any case");
    CHECK(used.count(k->name) == 1);
  }
  if (op == "LinearAttention" || op == "PerformerAttention" || op == "NormAttention") CHECK(streamed > 0);
}

}  // namespace

TEST_CASE("attention: MultiHeadAttention matches PyTorch; tiled equals naive", "[attention]") { run_op("MultiHeadAttention"); }
TEST_CASE("attention: LinearAttention matches PyTorch and streams", "[attention]") { run_op("LinearAttention"); }
TEST_CASE("attention: PerformerAttention matches PyTorch and streams", "[attention]") { run_op("PerformerAttention"); }
TEST_CASE("attention: NormAttention matches PyTorch and streams", "[attention]") { run_op("NormAttention"); }
TEST_CASE("attention: GatedAttentionUnit (GAU, FLASH) matches PyTorch", "[attention]") { run_op("GatedAttentionUnit"); }
TEST_CASE("attention: LiteMLA matches PyTorch", "[attention]") { run_op("LiteMLA"); }

// lite_mla_banded's qkv map: rows whole cache lines long and an odd number of them apart,
// so that a head's rows at one token do not share a cache set (16384 floats = 64 KiB).
TEST_CASE("attention: LiteMLA's banded qkv map rows are an odd number of cache lines apart", "[attention]") {
  CHECK(lite_mla_map_stride(16384) == 16400);
  CHECK(lite_mla_map_stride(1152) == 1168);  // the padded test case above
  CHECK(lite_mla_map_stride(1024) == 1040);
  CHECK(lite_mla_map_stride(1200) == 1200);  // 75 lines: as is
  CHECK(lite_mla_map_stride(1201) == 1232);  // 76 lines -> 77
  CHECK(lite_mla_map_stride(1) == 16);
  for (int64_t n = 1; n < 5000; ++n) {
    const int64_t ld = lite_mla_map_stride(n);
    INFO("n " << n << " stride " << ld);
    CHECK((ld >= n && ld % 16 == 0 && (ld / 16) % 2 == 1 && ld - n < 32));
  }
}

// linear_attention_chunked and norm_attention_gemm (the linear form): the fused kernels'
// block schedule with sgemm on the projection weights instead of packed inner products
// (taken when oneDNN has no packed form). Against the reference kernels (themselves
// checked against PyTorch above), batch 2 and 300 tokens (a whole 256-token block and a
// tail), 3 heads of 12, model dim 40, the plan's detail naming the sgemm projections.
TEST_CASE("attention: the chunked kernels run the block schedule with sgemm projections", "[attention]") {
  const int64_t B = 2, L = 300, E = 40, H = 3, D = 12, I = H * D;
  std::mt19937 rng(21);
  for (const char* op : {"LinearAttention", "NormAttention"})
    for (bool causal : {false, true}) {
      ModelBuilder mb("chunked", "tests");
      GraphBuilder& g = mb.graph("main");
      const int x = g.input("x", DType::kF32, {B, L, E});
      auto weight = [&](const char* name, const Shape& shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return g.constant_f32(name, shape, uniform(static_cast<size_t>(n), 0.3f, rng));
      };
      const std::vector<int> in = {x,  -1, -1, weight("wq", {I, E}), weight("bq", {I}), weight("wk", {I, E}), weight("bk", {I}),
                                   weight("wv", {I, E}), weight("bv", {I}), weight("wo", {E, I}), weight("bo", {E})};
      const bool linear = std::string(op) == "LinearAttention";
      if (linear) {
        fb::LinearAttentionT a;
        a.num_heads = H;
        a.causal = causal;
        a.eps = 1e-6f;
        g.output(g.node("attn", a, in), "y");
      } else {
        fb::NormAttentionT a;
        a.num_heads = H;
        a.causal = causal;
        a.norm = fb::NormAttentionNorm::SimpleRMSNorm;
        g.output(g.node("attn", a, in), "y");
      }
      auto bytes = mb.to_bytes();
      INFO(op << (causal ? " causal" : " non-causal") << ": " << bytes.status().to_string());
      REQUIRE(bytes.ok());
      auto model = Model::from_memory(bytes->data(), bytes->size());
      REQUIRE(model.ok());
      Tensor xt = Tensor::zeros(DType::kF32, {B, L, E});
      const auto xv = uniform(static_cast<size_t>(xt.numel()), 1.0f, rng);
      std::copy(xv.begin(), xv.end(), xt.data<float>());
      const RunOutput r = check_kernel_against_reference(*model, {{"x", xt.view()}},
                                                         linear ? "linear_attention_chunked" : "norm_attention_gemm", 2, op);
      CHECK(r.plan.steps[0].detail.find("sgemm projections") != std::string::npos);
    }
}

TEST_CASE("attention: Attention nodes reject bad configurations with a named reason", "[attention]") {
  ModelBuilder mb("bad", "tests");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, -1, 8});
  std::vector<float> w(64, 0.1f);
  int wq = g.constant_f32("wq", {8, 8}, w);
  fb::PerformerAttentionT a;
  a.num_heads = 2;
  a.causal = false;  // a streaming state needs causal and PerToken keys
  int pm = g.constant_f32("pm", {6, 4}, std::vector<float>(24, 0.2f));
  int kv = g.input("kv", DType::kF32, {1, 2, 6, 4});
  int z = g.input("z", DType::kF32, {1, 2, 6});
  g.node_n("perf", a, {x, -1, -1, wq, -1, wq, -1, wq, -1, wq, -1, pm, kv, z}, 3);
  REQUIRE_FALSE(g.status().ok());
  CHECK(g.status().message().find("perf") != std::string::npos);
  CHECK(g.status().message().find("causal") != std::string::npos);
}

}  // namespace atrous::test
