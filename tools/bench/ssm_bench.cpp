// ssm_bench: benchmarks of the state-space kernels and a Mamba language model.
// Commands, not tests: docs/performance.md ("State-space models") quotes their output.
//
//   ssm_bench bandwidth [--mib 768] [--runs 10]          STREAM-like probe (copy, triad, read)
//   ssm_bench scan  [--tokens 2048] [--d-inner 1536] [--d-state 16] [--runs 7]
//                                                        selective scan kernel and MambaScan node, every ISA
//   ssm_bench model [--tokens 2048] [--d-model 768] [--layers 24] [--vocab 50280] [--runs 3]
//                   [--torch 0|1|2|3] [--torch-runs 1]
//                                                        whole-sequence forward of a random-weight Mamba LM,
//                                                        then PyTorch on the same math (1: as installed,
//                                                        2: oneDNN projections, 3: both)
//   ssm_bench step  [--tokens 64] [--d-model 768] ... [--mib 768]
//                                                        per-token "step" entry point vs weight bytes / bandwidth
//   ssm_bench s4d   [--channels 256] [--d-state 64]      direct vs FFT causal convolution by length
// Every command takes --threads (default 2). Times are medians; the machine is shared,
// so check `uptime` and re-run when the load is high.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "atrous/atrous.h"
#include "builder/graph_builder.h"
#include "models/mamba.h"
#include "ops/mamba_path.h"
#include "ops/ssm_kernels.h"

#ifndef ATROUS_PYTHON
#define ATROUS_PYTHON "/usr/bin/python3"
#endif
#ifndef ATROUS_BENCH_DIR
#define ATROUS_BENCH_DIR "tools/bench"
#endif

using namespace atrous;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::map<std::string, std::string> kv;
  int64_t get(const std::string& k, int64_t def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::atoll(it->second.c_str());
  }
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double time_median(int runs, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    fn();
    t.push_back(seconds_since(t0));
  }
  return median(t);
}

// Deterministic fast random numbers in [-1, 1).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  float next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int64_t>(s >> 40) - (1ll << 23)) / static_cast<float>(1ll << 23);
  }
};

// ---- bandwidth ---------------------------------------------------------------------
struct Bandwidth {
  double copy, triad, read;  // GB/s, medians
};

Bandwidth measure_bandwidth(int64_t mib, int runs, int threads) {
  const int64_t n = mib * (1 << 20) / 4 / 3;  // three arrays of floats
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) { a[i] = 1.0f; b[i] = 2.0f; c[i] = 0.0f; }
  const double bytes = static_cast<double>(n) * 4;
  float* A = a.get();
  float* B = b.get();
  float* C = c.get();
  Bandwidth r{};
  r.copy = 2 * bytes / time_median(runs, [&] {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) C[i] = A[i];
  }) / 1e9;
  r.triad = 3 * bytes / time_median(runs, [&] {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) A[i] = B[i] + 3.0f * C[i];
  }) / 1e9;
  // Read: sixteen independent partial sums so that the adds keep up with memory.
  volatile float sink = 0;
  r.read = bytes / time_median(runs, [&] {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      float acc[16] = {};
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n / 16; ++i) {
#pragma omp simd
        for (int j = 0; j < 16; ++j) acc[j] += A[i * 16 + j];
      }
      for (float v : acc) total += v;
    }
    sink = total;
  }) / 1e9;
  (void)sink;
  return r;
}

int cmd_bandwidth(const Args& a, int threads) {
  const int64_t mib = a.get("mib", 768);
  Bandwidth bw = measure_bandwidth(mib, static_cast<int>(a.get("runs", 10)), threads);
  std::printf("bandwidth, %d threads, %lld MiB working set: copy %.1f GB/s, triad %.1f GB/s, read %.1f GB/s (medians)\n",
              threads, static_cast<long long>(mib), bw.copy, bw.triad, bw.read);
  return 0;
}

// ---- scan ----------------------------------------------------------------------------
int cmd_scan(const Args& a, int threads) {
  const int64_t L = a.get("tokens", 2048), Di = a.get("d-inner", 1536), N = a.get("d-state", 16);
  const int runs = static_cast<int>(a.get("runs", 7));
  const int64_t Cp = (Di + 15) / 16 * 16;
  Rng rng(1);
  // 64-byte aligned, as the engine's arena and persistent buffers are (a std::vector's
  // 16-byte alignment splits every 512-bit access across two cache lines).
  struct Buf {
    Tensor t;
    explicit Buf(int64_t n, float v = 0.0f) : t(Tensor::zeros(DType::kF32, {n})) { std::fill(begin(), end(), v); }
    float* data() { return t.data<float>(); }
    float* begin() { return data(); }
    float* end() { return data() + t.numel(); }
    float& operator[](int64_t i) { return data()[i]; }
  };
  Buf delta(L * Di), u(L * Di), z(L * Di), y(L * Di), bc(L * 2 * N), A2_t(N * Cp), h(N * Cp), dtb(Di), D(Di, 1.0f);
  for (auto& v : delta) v = rng.next() * 2 - 4;
  for (auto& v : u) v = rng.next();
  for (auto& v : z) v = rng.next();
  for (auto& v : bc) v = rng.next();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < Di; ++c) A2_t[n * Cp + c] = -static_cast<float>(n + 1) * 1.44269504f;
  const double updates = static_cast<double>(L) * Di * N;
  std::printf("selective scan, batch 1, L %lld, d_inner %lld, d_state %lld, %d threads\n", static_cast<long long>(L),
              static_cast<long long>(Di), static_cast<long long>(N), threads);
  for (const ssm::SsmIsa* isa : {ssm::ssm_isa_avx512(), ssm::ssm_isa_avx2()}) {
    if (!isa) continue;
    ssm::ScanArgs s;
    s.T = L; s.C = Di; s.Cp = Cp; s.N = N;
    s.delta = delta.data(); s.ld_delta = Di; s.dt_bias = dtb.data();
    s.u = u.data(); s.ld_u = Di; s.B = bc.data(); s.Cm = bc.data() + N; s.ld_bc = 2 * N;
    s.z = z.data(); s.ld_z = Di; s.D = D.data(); s.A2_t = A2_t.data(); s.h = h.data(); s.y = y.data(); s.ld_y = Di;
    const int64_t units = (Di + isa->scan_unit - 1) / isa->scan_unit;
    // As MambaScan runs it: each thread owns a slice of the channels for the whole sequence
    // and walks it in chunks of kMambaChunk steps (the scan alone needs no barrier).
    const int64_t chunk = a.get("chunk", kMambaChunk) > 0 ? a.get("chunk", kMambaChunk) : L;
    const double sec = time_median(runs, [&] {
      std::fill(h.begin(), h.end(), 0.0f);
#pragma omp parallel num_threads(threads)
      {
        const int64_t nth = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t c0 = std::min(Di, units * t / nth * isa->scan_unit), c1 = std::min(Di, units * (t + 1) / nth * isa->scan_unit);
        for (int64_t t0 = 0; t0 < L && c0 < c1; t0 += chunk) {
          ssm::ScanArgs c = s;
          c.T = std::min(chunk, L - t0);
          c.delta += t0 * Di; c.u += t0 * Di; c.z += t0 * Di; c.y += t0 * Di;
          c.B += t0 * 2 * N; c.Cm += t0 * 2 * N;
          isa->scan(c, c0, c1);
        }
      }
    });
    std::printf("  scan kernel %-7s %8.2f ms  %.3e state updates/s\n", isa->name, sec * 1e3, updates / sec);
  }

  // The whole MambaScan node (conv, projections, scan, gate) through a Session, every kernel.
  const int64_t R = (Di / 2 + 15) / 16, K = 4;
  ModelBuilder mb("scan_bench", "ssm_bench");
  GraphBuilder& g = mb.graph("main");
  auto rnd = [&](const Shape& s, float scale) {
    std::vector<float> v(static_cast<size_t>(checked_numel(s).value()));
    for (auto& x : v) x = rng.next() * scale;
    return v;
  };
  std::vector<float> a_log(static_cast<size_t>(Di * N));
  for (int64_t c = 0; c < Di; ++c)
    for (int64_t n = 0; n < N; ++n) a_log[static_cast<size_t>(c * N + n)] = std::log(static_cast<float>(n + 1));
  std::vector<int> in = {g.input("xz", DType::kF32, {1, L, 2 * Di}),
                         g.constant_f32("conv_w", {Di, 1, K}, rnd({Di, 1, K}, 0.5f)),
                         g.constant_f32("conv_b", {Di}, rnd({Di}, 0.1f)),
                         g.constant_f32("x_proj", {R + 2 * N, Di}, rnd({R + 2 * N, Di}, 1.0f / std::sqrt(static_cast<float>(Di)))),
                         g.constant_f32("dt_proj", {Di, R}, rnd({Di, R}, 1.0f / std::sqrt(static_cast<float>(R)))),
                         g.constant_f32("dt_b", {Di}, std::vector<float>(static_cast<size_t>(Di), -4.0f)),
                         g.constant_f32("A_log", {Di, N}, a_log),
                         g.constant_f32("D", {Di}, std::vector<float>(static_cast<size_t>(Di), 1.0f))};
  g.output(g.node("scan", fb::MambaScanT{}, in), "y");
  auto bytes = mb.to_bytes();
  if (!bytes.ok()) { std::fprintf(stderr, "%s\n", bytes.status().to_string().c_str()); return 1; }
  auto model = Model::from_memory(bytes->data(), bytes->size());
  if (!model.ok()) { std::fprintf(stderr, "%s\n", model.status().to_string().c_str()); return 1; }
  Tensor xz = Tensor::zeros(DType::kF32, {1, L, 2 * Di});
  for (int64_t i = 0; i < xz.numel(); ++i) xz.data<float>()[i] = rng.next();
  for (const char* kernel : {"mamba_scan_avx512", "mamba_scan_avx2", "mamba_scan_ref"}) {
    SessionOptions o;
    o.threads = threads;
    if (std::string(kernel) == "mamba_scan_ref") o.reference_only = true;
    else o.allowed_kernels = {kernel};
    auto s = Session::create(*model, o);
    if (!s.ok() || !(*s)->set_input("xz", xz.view()).ok() || !(*s)->run().ok()) continue;
    if ((*(*s)->plan_info()).steps.back().kernel != kernel) continue;  // declined on this CPU
    const double sec = time_median(std::string(kernel) == "mamba_scan_ref" ? 1 : runs, [&] {
      (void)(*s)->set_input("xz", xz.view());  // an input is borrowed for one run
      (void)(*s)->run();
    });
    std::printf("  MambaScan node %-18s %8.2f ms  %.3e state updates/s (conv, x_proj, dt_proj, scan, gate)\n", kernel,
                sec * 1e3, updates / sec);
  }
  return 0;
}

// ---- a random-weight Mamba LM ------------------------------------------------------------
class RandomMambaWeights : public models::MambaWeightSource {
 public:
  RandomMambaWeights(int64_t d_model, int64_t n_layer, int64_t vocab) {
    const int64_t Di = 2 * d_model, N = 16, R = (d_model + 15) / 16, K = 4;
    shapes_["backbone.embedding.weight"] = {vocab, d_model};
    shapes_["backbone.norm_f.weight"] = {d_model};
    for (int64_t i = 0; i < n_layer; ++i) {
      const std::string p = "backbone.layers." + std::to_string(i) + ".";
      shapes_[p + "norm.weight"] = {d_model};
      shapes_[p + "mixer.in_proj.weight"] = {2 * Di, d_model};
      shapes_[p + "mixer.conv1d.weight"] = {Di, 1, K};
      shapes_[p + "mixer.conv1d.bias"] = {Di};
      shapes_[p + "mixer.x_proj.weight"] = {R + 2 * N, Di};
      shapes_[p + "mixer.dt_proj.weight"] = {Di, R};
      shapes_[p + "mixer.dt_proj.bias"] = {Di};
      shapes_[p + "mixer.A_log"] = {Di, N};
      shapes_[p + "mixer.D"] = {Di};
      shapes_[p + "mixer.out_proj.weight"] = {d_model, Di};
    }
  }
  const Shape* shape(const std::string& key) const override {
    auto it = shapes_.find(key);
    return it == shapes_.end() ? nullptr : &it->second;
  }
  int add_constant(GraphBuilder& g, const std::string& key) const override {
    const Shape s = shapes_.at(key);
    const uint64_t seed = std::hash<std::string>{}(key);
    return g.constant_streamed(key, DType::kF32, s, [s, key, seed](void* dst) {
      float* p = static_cast<float*>(dst);
      const int64_t n = checked_numel(s).value();
      Rng r(seed);
      const auto ends = [&](const char* suffix) { return key.size() >= std::strlen(suffix) && key.compare(key.size() - std::strlen(suffix), std::string::npos, suffix) == 0; };
      if (ends("A_log")) {
        for (int64_t i = 0; i < n; ++i) p[i] = std::log(static_cast<float>(i % s[1] + 1));
      } else if (ends(".D") || ends("norm.weight") || ends("norm_f.weight")) {
        for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
      } else if (ends("dt_proj.bias")) {  // inverse softplus of dt in [1e-3, 1e-1]
        for (int64_t i = 0; i < n; ++i) {
          const float dt = std::exp(std::log(1e-3f) + (r.next() * 0.5f + 0.5f) * (std::log(1e-1f) - std::log(1e-3f)));
          p[i] = dt + std::log(-std::expm1(-dt));
        }
      } else {
        const float scale = s.size() > 1 ? 1.0f / std::sqrt(static_cast<float>(s.back())) : 0.1f;
        for (int64_t i = 0; i < n; ++i) p[i] = r.next() * scale * 1.7f;
      }
      return Status::Ok();
    });
  }
  uint64_t weight_bytes() const {
    uint64_t b = 0;
    for (const auto& [k, s] : shapes_) b += static_cast<uint64_t>(checked_numel(s).value()) * 4;
    return b;
  }

 private:
  std::map<std::string, Shape> shapes_;
};

struct LmSetup {
  std::shared_ptr<const Model> model;
  models::MambaConfig cfg;
  uint64_t weight_bytes = 0;
};

Result<LmSetup> make_lm(const Args& a) {
  const int64_t d_model = a.get("d-model", 768), layers = a.get("layers", 24), vocab = a.get("vocab", 50280);
  RandomMambaWeights w(d_model, layers, vocab);
  ModelBuilder mb("mamba_bench", "ssm_bench");
  ATROUS_ASSIGN_OR_RETURN(models::MambaConfig cfg, models::build_mamba_model(mb, w));
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/ssm_bench_mamba_" + std::to_string(d_model) + "_" +
                           std::to_string(layers) + "_" + std::to_string(getpid()) + ".atrous";
  auto t0 = Clock::now();
  ATROUS_RETURN_IF_ERROR(mb.save(path));
  ATROUS_ASSIGN_OR_RETURN(auto model, Model::open(path));
  std::remove(path.c_str());  // the mapping keeps the data
  std::printf("model: d_model %lld, %lld layers, vocab %lld, d_inner %lld, d_state %lld, dt_rank %lld: %.1fM parameters "
              "(%.0f MB f32), built and loaded in %.1f s\n",
              static_cast<long long>(cfg.d_model), static_cast<long long>(cfg.n_layer), static_cast<long long>(cfg.vocab),
              static_cast<long long>(cfg.d_inner), static_cast<long long>(cfg.d_state), static_cast<long long>(cfg.dt_rank),
              w.weight_bytes() / 4e6, w.weight_bytes() / 1e6, seconds_since(t0));
  return LmSetup{model, cfg, w.weight_bytes()};
}

int cmd_model(const Args& a, int threads) {
  auto lm = make_lm(a);
  if (!lm.ok()) { std::fprintf(stderr, "%s\n", lm.status().to_string().c_str()); return 1; }
  const int64_t L = a.get("tokens", 2048);
  Tensor ids = Tensor::zeros(DType::kI64, {1, L});
  Rng rng(7);
  for (int64_t i = 0; i < L; ++i) ids.data<int64_t>()[i] = static_cast<int64_t>((rng.next() * 0.5 + 0.5) * (lm->cfg.vocab - 1));
  SessionOptions o;
  o.threads = threads;
  o.entry = "main";
  o.profile = true;
  auto s = Session::create(lm->model, o);
  if (!s.ok() || !(*s)->set_input("input_ids", ids.view()).ok()) return 1;
  auto t0 = Clock::now();
  Status st = (*s)->run();  // plans, packs weights
  if (!st.ok()) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
  std::printf("first run (planning, weight packing): %.2f s\n", seconds_since(t0));
  const int runs = static_cast<int>(a.get("runs", 3));
  std::vector<double> times;
  std::map<std::string, double> by_op;
  const PlanInfo plan = *(*s)->plan_info();
  for (int r = 0; r < runs; ++r) {
    t0 = Clock::now();
    (void)(*s)->set_input("input_ids", ids.view());  // an input is borrowed for one run
    (void)(*s)->run();
    times.push_back(seconds_since(t0));
    const auto& st_times = (*s)->step_times();
    for (size_t i = 0; i < st_times.size() && i < plan.steps.size(); ++i) by_op[plan.steps[i].op] += st_times[i] / runs;
  }
  const double sec = median(times);
  std::printf("whole sequence, %lld tokens, %d threads: median %.3f s (", static_cast<long long>(L), threads, sec);
  for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.3f", i ? ", " : "", times[i]);
  std::printf(") = %.1f tokens/s\n", L / sec);
  std::printf("time by op (mean per run):");
  for (const auto& [op, t] : by_op) std::printf(" %s %.3f s;", op.c_str(), t);
  std::printf("\nMambaScan state updates/s: %.3e\n",
              static_cast<double>(L) * lm->cfg.d_inner * lm->cfg.d_state * lm->cfg.n_layer / by_op["MambaScan"]);
  std::fflush(stdout);

  // PyTorch running the same math (tools/bench/ssm_bench_torch.py): --torch 1 = as installed
  // (Debian's generic BLAS), 2 = projections through oneDNN (--mkldnn), 3 = both.
  const int64_t torch_modes = a.get("torch", 0);
  for (int mode = 1; mode <= 2; ++mode) {
    if (!(torch_modes & mode)) continue;
    const std::string cmd = std::string(ATROUS_PYTHON) + " " + ATROUS_BENCH_DIR + "/ssm_bench_torch.py --threads " +
                            std::to_string(threads) + " --tokens " + std::to_string(L) + " --runs " +
                            std::to_string(a.get("torch-runs", 1)) + " --d-model " + std::to_string(lm->cfg.d_model) +
                            " --layers " + std::to_string(lm->cfg.n_layer) + " --vocab " + std::to_string(lm->cfg.vocab) +
                            (mode == 2 ? " --mkldnn" : "");
    std::printf("PyTorch: %s\n", cmd.c_str());
    std::fflush(stdout);
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) continue;
    char line[1024];
    double torch_tps = 0;
    while (std::fgets(line, sizeof line, p)) {
      std::printf("  %s", line);
      std::fflush(stdout);
      const char* k = std::strstr(line, "tokens/s");
      if (std::strncmp(line, "model:", 6) == 0 && k) {
        const char* q = k - 1;
        while (q > line && (q[-1] == '.' || (q[-1] >= '0' && q[-1] <= '9'))) --q;
        torch_tps = std::atof(q);
      }
    }
    pclose(p);
    if (torch_tps > 0)
      std::printf("engine %.1f tokens/s vs PyTorch%s %.2f tokens/s: %.1fx\n", L / sec, mode == 2 ? " (oneDNN projections)" : "",
                  torch_tps, L / sec / torch_tps);
  }
  return 0;
}

int cmd_step(const Args& a, int threads) {
  auto lm = make_lm(a);
  if (!lm.ok()) { std::fprintf(stderr, "%s\n", lm.status().to_string().c_str()); return 1; }
  const models::MambaConfig& c = lm->cfg;
  SessionOptions o;
  o.threads = threads;
  o.entry = "step";
  o.profile = true;
  auto s = Session::create(lm->model, o);
  if (!s.ok()) return 1;
  // States start as zeros; afterwards each step is fed the previous step's outputs directly
  // (views into the session's arena: run() copies inputs with memmove before it overwrites them).
  std::vector<Tensor> zeros;
  std::vector<TensorView> states;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    zeros.push_back(Tensor::zeros(DType::kF32, {1, c.d_inner, c.d_conv}));
    zeros.push_back(Tensor::zeros(DType::kF32, {1, c.d_inner, c.d_state}));
  }
  for (const Tensor& t : zeros) states.push_back(t.view());
  Tensor id = Tensor::zeros(DType::kI64, {1, 1});
  auto step = [&](int64_t token) -> Status {
    id.data<int64_t>()[0] = token;
    ATROUS_RETURN_IF_ERROR((*s)->set_input("input_ids", id.view()));
    for (int64_t i = 0; i < c.n_layer; ++i) {
      ATROUS_RETURN_IF_ERROR((*s)->set_input("conv_state." + std::to_string(i), states[static_cast<size_t>(2 * i)]));
      ATROUS_RETURN_IF_ERROR((*s)->set_input("ssm_state." + std::to_string(i), states[static_cast<size_t>(2 * i + 1)]));
    }
    ATROUS_RETURN_IF_ERROR((*s)->run());
    for (int64_t i = 0; i < c.n_layer; ++i) {
      ATROUS_ASSIGN_OR_RETURN(states[static_cast<size_t>(2 * i)], (*s)->output("conv_state_out." + std::to_string(i)));
      ATROUS_ASSIGN_OR_RETURN(states[static_cast<size_t>(2 * i + 1)], (*s)->output("ssm_state_out." + std::to_string(i)));
    }
    return Status::Ok();
  };
  auto t0 = Clock::now();
  Status st = step(1);
  if (!st.ok()) { std::fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
  std::printf("first step (planning, weight packing): %.2f s\n", seconds_since(t0));
  for (int i = 0; i < 3; ++i) (void)step(2 + i);
  const int64_t T = a.get("tokens", 64);
  std::vector<double> times;
  std::map<std::string, std::vector<double>> by_op;  // per token
  const PlanInfo plan = *(*s)->plan_info();
  for (int64_t t = 0; t < T; ++t) {
    t0 = Clock::now();
    (void)step(100 + t);
    times.push_back(seconds_since(t0));
    std::map<std::string, double> sum;
    const auto& st_times = (*s)->step_times();
    for (size_t i = 0; i < st_times.size() && i < plan.steps.size(); ++i) sum[plan.steps[i].op] += st_times[i];
    for (const auto& [op, v] : sum) by_op[op].push_back(v);
  }
  const double sec = median(times);
  Bandwidth bw = measure_bandwidth(a.get("mib", 768), 10, threads);
  const double bound = static_cast<double>(lm->weight_bytes) / (bw.read * 1e9);
  std::printf("step, %d threads: median %.2f ms/token over %lld tokens (%.1f tokens/s); weights %.0f MB "
              "(plan-owned packed copies %.0f MB)\n",
              threads, sec * 1e3, static_cast<long long>(T), 1.0 / sec, lm->weight_bytes / 1e6, plan.memory.persistent_bytes / 1e6);
  std::printf("time by op per token (medians):");
  for (const auto& [op, v] : by_op) std::printf(" %s %.2f ms;", op.c_str(), median(v) * 1e3);
  std::printf("\nbandwidth: read %.1f GB/s, triad %.1f GB/s -> weight-streaming bound %.2f ms/token; step / bound = %.2f\n",
              bw.read, bw.triad, bound * 1e3, sec / bound);
  return 0;
}

// ---- S4D convolution: direct vs FFT ------------------------------------------------------
int cmd_s4d(const Args& a, int threads) {
  const ssm::SsmIsa* isa = ssm::ssm_isa_best();
  if (!isa) return 1;
  const int64_t H = a.get("channels", 256);
  constexpr int64_t P = ssm::causal_conv_pad();
  std::printf("S4D causal convolution of %lld channels, %s, %d threads (kernel precomputed; per call):\n",
              static_cast<long long>(H), isa->name, threads);
  Rng rng(3);
  for (int64_t L : {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}) {
    std::vector<float> k((L + P) * H, 0.0f), u((2 * P + L) * threads, 0.0f), y((L + P) * threads);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t l = 0; l < L; ++l) k[h * (L + P) + l] = rng.next();
    const double direct = time_median(5, [&] {
#pragma omp parallel num_threads(threads)
      {
        const int t = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t h = 0; h < H; ++h) isa->causal_conv(k.data() + h * (L + P), u.data() + t * (2 * P + L), y.data() + t * (L + P), L);
      }
    });
    int64_t nf = 2;
    while (nf < 2 * L) nf *= 2;
    std::vector<float> tw(nf), work(4 * nf * threads), spec(4 * nf, 0.5f);
    for (int64_t i = 0; i < nf / 2; ++i) {
      tw[i] = static_cast<float>(std::cos(-2 * M_PI * i / nf));
      tw[nf / 2 + i] = static_cast<float>(std::sin(-2 * M_PI * i / nf));
    }
    const double fft = time_median(5, [&] {
#pragma omp parallel num_threads(threads)
      {
        float* re = work.data() + omp_get_thread_num() * 4 * nf;
        float *im = re + nf, *tre = im + nf, *tim = tre + nf;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < (H + 1) / 2; ++p) {  // the work s4d_fft does per channel pair
          std::memset(re + L, 0, (nf - L) * 4);
          std::memset(im + L, 0, (nf - L) * 4);
          isa->fft(ssm::FftArgs{nf, re, im, tre, tim, tw.data(), tw.data() + nf / 2, false});
          for (int64_t q = 0; q < nf; ++q) {
            const int64_t qm = (nf - q) & (nf - 1);
            tre[q] = re[q] * spec[q] - im[q] * spec[nf + q] + re[qm] * spec[2 * nf + q] + im[qm] * spec[3 * nf + q];
            tim[q] = re[q] * spec[nf + q] + im[q] * spec[q] + re[qm] * spec[3 * nf + q] - im[qm] * spec[2 * nf + q];
          }
          isa->fft(ssm::FftArgs{nf, tre, tim, re, im, tw.data(), tw.data() + nf / 2, true});
        }
      }
    });
    std::printf("  L %5lld: direct %9.3f ms   FFT (n = %5lld) %9.3f ms   -> %s\n", static_cast<long long>(L), direct * 1e3,
                static_cast<long long>(nf), fft * 1e3, direct < fft ? "direct" : "FFT");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ssm_bench bandwidth|scan|model|step|s4d [--key value ...] (see the source header)\n");
    return 2;
  }
  Args a;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) { std::fprintf(stderr, "expected --key value, got %s\n", argv[i]); return 2; }
    a.kv[k.substr(2)] = argv[i + 1];
  }
  const int threads = static_cast<int>(a.get("threads", 2));
  const std::string cmd = argv[1];
  if (cmd == "bandwidth") return cmd_bandwidth(a, threads);
  if (cmd == "scan") return cmd_scan(a, threads);
  if (cmd == "model") return cmd_model(a, threads);
  if (cmd == "step") return cmd_step(a, threads);
  if (cmd == "s4d") return cmd_s4d(a, threads);
  std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
