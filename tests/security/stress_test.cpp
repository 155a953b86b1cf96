// Threads: one shared Model per kind, 8 threads running mixed models and input
// shapes for a bounded time, every result checked against a single-threaded
// run; the Models in memory, then mapped from files with their pages dropped
// again and again while the threads run. Built normally it is a correctness test; under `tools/test.sh --tsan`
// (ThreadSanitizer) it must also produce no reports.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "atrous/atrous.h"
#include "builder/graph_builder.h"
#include "format/model_file.h"
#include "runtime/model_impl.h"

namespace atrous {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// In memory, or (g_mapped) written to a file and mapped: then planning drops the pages
// of packed and copied weights (ModelFile::release_pages) while other threads run.
bool g_mapped = false;

std::shared_ptr<const Model> load(const ModelBuilder& mb) {
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  if (g_mapped) {
    static int counter = 0;
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("atrous-stress-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".atrous")).string();
    {
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
    }
    auto m = Model::open(path);
    std::remove(path.c_str());  // the mapping stays valid
    REQUIRE(m.ok());
    return *m;
  }
  auto m = Model::from_memory(bytes->data(), bytes->size());
  REQUIRE(m.ok());
  return *m;
}

// A conv net (fully convolutional: any H, W) with BN folding, residual and pooling.
std::shared_ptr<const Model> conv_model() {
  ModelBuilder mb("conv", "stress");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, 3, -1, -1});
  fb::Conv2dT c;
  c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1;
  int a = g.node("c1", c, {x, g.constant_f32("c1.w", {8, 3, 3, 3}, randn(216, 1, 0.3f)), -1});
  fb::BatchNormT bn;
  int b = g.node("bn", bn, {a, g.constant_f32("g", {8}, randn(8, 2, 0.1f)), g.constant_f32("b", {8}, randn(8, 3, 0.1f)),
                            g.constant_f32("m", {8}, randn(8, 4, 0.1f)), g.constant_f32("v", {8}, std::vector<float>(8, 1.0f))});
  fb::UnaryT relu;
  relu.kind = fb::ActKind::Relu;
  int r = g.node("relu", relu, {b});
  fb::Conv2dT c2 = c;
  c2.dilation_h = c2.dilation_w = 2;
  c2.pad_top = c2.pad_left = c2.pad_bottom = c2.pad_right = 2;
  int d = g.node("c2", c2, {r, g.constant_f32("c2.w", {8, 8, 3, 3}, randn(576, 5, 0.2f)), g.constant_f32("c2.b", {8}, randn(8, 6, 0.1f))});
  fb::BinaryT add;
  add.kind = fb::BinaryKind::Add;
  int s = g.node("add", add, {d, r});
  fb::GlobalPoolT gp;
  int p = g.node("pool", gp, {s});
  int y = g.node("mix", add, {s, p});
  g.output(y, "y");
  return load(mb);
}

// A token model: Linear → LayerNorm → GELU → Linear → Softmax over [B, L, D] with free L,
// and between them two Linears with 256 KiB weights: large enough to be read in place
// by reference kernels (not copied at plan time), so dropped pages are read again.
std::shared_ptr<const Model> token_model() {
  ModelBuilder mb("tokens", "stress");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {2, -1, 16});
  fb::LinearT lin;
  int h = g.node("fc1", lin, {x, g.constant_f32("fc1.w", {32, 16}, randn(512, 7, 0.2f)), g.constant_f32("fc1.b", {32}, randn(32, 8, 0.1f))});
  fb::LayerNormT ln;
  int n = g.node("ln", ln, {h, g.constant_f32("ln.w", {32}, randn(32, 9, 0.1f)), -1});
  fb::UnaryT gelu;
  gelu.kind = fb::ActKind::Gelu;
  int a = g.node("gelu", gelu, {n});
  a = g.node("wide_in", lin, {a, g.constant_f32("wide_in.w", {2048, 32}, randn(65536, 11, 0.05f)), -1});
  a = g.node("wide_out", lin, {a, g.constant_f32("wide_out.w", {32, 2048}, randn(65536, 12, 0.05f)), -1});
  int o = g.node("fc2", lin, {a, g.constant_f32("fc2.w", {8, 32}, randn(256, 10, 0.2f)), -1});
  fb::SoftmaxT sm;
  int y = g.node("softmax", sm, {o});
  g.output(y, "y");
  return load(mb);
}

struct Job {
  std::shared_ptr<const Model> model;
  Tensor input;
  Tensor expected;
};

Tensor filled(Shape s, uint32_t seed) {
  Tensor t = Tensor::zeros(DType::kF32, std::move(s));
  auto v = randn(static_cast<size_t>(t.numel()), seed, 1.0f);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

Tensor run_single(const std::shared_ptr<const Model>& m, const Tensor& in) {
  SessionOptions o;
  o.threads = 1;
  auto s = Session::create(m, o);
  REQUIRE(s.ok());
  REQUIRE((*s)->set_input("x", in.view()).ok());
  REQUIRE((*s)->run().ok());
  return Tensor::copy_of(*(*s)->output("y"));
}

TEST_CASE("8 threads, mixed models and shapes over shared Models, match single-threaded runs", "[threads][stress]") {
  // Mapped: a ninth thread keeps dropping every page of both files while the others
  // read weights in place, the worst case of the planner's page release.
  g_mapped = GENERATE(false, true);
  INFO((g_mapped ? "models mapped from files" : "models in memory"));
  auto conv = conv_model();
  auto tok = token_model();
  std::vector<Job> jobs;
  uint32_t seed = 100;
  for (auto [h, w] : {std::pair{9, 13}, {16, 16}, {31, 7}, {5, 40}}) {
    Tensor in = filled({1, 3, h, w}, seed++);
    jobs.push_back({conv, in, run_single(conv, in)});
  }
  for (int len : {1, 7, 33, 64}) {
    Tensor in = filled({2, len, 16}, seed++);
    jobs.push_back({tok, in, run_single(tok, in)});
  }
  const double seconds = std::getenv("ATROUS_STRESS_SECONDS") ? std::atof(std::getenv("ATROUS_STRESS_SECONDS")) : 3.0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::atomic<long> runs{0}, failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t));
      // Each thread keeps one session per model (sessions are per thread).
      SessionOptions o;
      o.threads = 1 + t % 2;
      o.reference_only = t % 4 == 3;  // reference kernels read the wide weights in place
      auto sc = Session::create(conv, o);
      auto st = Session::create(tok, o);
      if (!sc.ok() || !st.ok()) { ++failures; return; }
      while (std::chrono::steady_clock::now() < deadline) {
        const Job& j = jobs[rng() % jobs.size()];
        Session& s = j.model == conv ? **sc : **st;
        if (!s.set_input("x", j.input.view()).ok() || !s.run().ok()) { ++failures; return; }
        auto out = s.output("y");
        if (!out.ok() || out->shape != j.expected.shape()) { ++failures; return; }
        const float* a = out->as<float>();
        const float* b = j.expected.data<float>();
        for (int64_t i = 0; i < out->numel(); ++i)
          if (std::fabs(a[i] - b[i]) > 1e-4f * (1.0f + std::fabs(b[i]))) { ++failures; return; }
        ++runs;
      }
    });
  }
  std::atomic<long> drops{0};
  if (g_mapped)
    pool.emplace_back([&] {
      while (std::chrono::steady_clock::now() < deadline) {
        for (const auto* m : {&conv, &tok}) {
          const auto& file = *(*m)->impl().file;
          file.release_pages(file.data_section(), file.data_size(), /*partial=*/true);
        }
        ++drops;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  for (auto& th : pool) th.join();
  INFO("runs " << runs.load() << ", page drops " << drops.load());
  CHECK(failures.load() == 0);
  CHECK(runs.load() >= 8);
}

}  // namespace
}  // namespace atrous
