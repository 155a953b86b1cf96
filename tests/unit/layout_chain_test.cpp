// Layouts along a DeepLab-style chain: conv → conv → pool → concat → conv →
// resize, with a 1×1 conv branch off the pool feeding the concat (as ASPP).
// With default options every value between two oneDNN kernels should stay in
// oneDNN's blocked layout, so the plan has no reorder steps at all; only the
// graph output is plain. The result must match the reference kernels.
#include <cmath>

#include "test_util.h"

namespace atrous::test {
namespace {

std::vector<float> pseudo_random(size_t n, float scale, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = scale * (static_cast<float>(s >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f);
  }
  return v;
}

int conv(GraphBuilder& g, const std::string& name, int x, int64_t c_in, int64_t c_out, int k, uint32_t seed) {
  fb::Conv2dT a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = k / 2;
  a.activation = fb::ActKind::Relu;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c_in * k * k));
  int w = g.constant_f32(name + ".weight", {c_out, c_in, k, k},
                         pseudo_random(static_cast<size_t>(c_out * c_in * k * k), scale, seed));
  int b = g.constant_f32(name + ".bias", {c_out}, pseudo_random(static_cast<size_t>(c_out), 0.1f, seed + 1));
  return g.node(name, a, {x, w, b});
}

std::vector<uint8_t> chain_model() {
  ModelBuilder mb("layout_chain", "tests");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, 16, 23, 21});
  int c1 = conv(g, "conv1", x, 16, 32, 3, 1);
  int c2 = conv(g, "conv2", c1, 32, 32, 3, 3);
  fb::Pool2dT pool;
  pool.kind = fb::PoolKind::Max;
  pool.kernel_h = pool.kernel_w = 3;
  pool.stride_h = pool.stride_w = 2;
  pool.pad_top = pool.pad_left = pool.pad_bottom = pool.pad_right = 1;
  int p = g.node("pool", pool, {c2});
  int branch = conv(g, "branch", p, 32, 16, 1, 5);
  fb::ConcatT cat;
  cat.axis = 1;
  int cc = g.node("concat", cat, {p, branch});
  int c3 = conv(g, "conv3", cc, 48, 24, 3, 7);
  fb::ResizeT rs;
  rs.mode = fb::ResizeMode::Bilinear;
  int y = g.node("resize", rs, {c3, x});
  g.output(y, "y");
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  return std::move(bytes).value();
}

TEST_CASE("oneDNN chains stay blocked from conv to resize", "[plan][layout]") {
  std::vector<uint8_t> bytes = chain_model();
  auto model = Model::from_memory(bytes.data(), bytes.size());
  REQUIRE(model.ok());
  Tensor x = Tensor::zeros(DType::kF32, {1, 16, 23, 21});
  std::vector<float> xs = pseudo_random(static_cast<size_t>(x.numel()), 1.0f, 42);
  std::copy(xs.begin(), xs.end(), x.data<float>());

  SessionOptions opts;
  opts.threads = 2;
  RunOutput fast = run_model(*model, {{"x", x.view()}}, opts);
  REQUIRE(fast.status.to_string() == "ok");
  const auto& steps = fast.plan.steps;
  std::string plan;
  for (const StepInfo& s : steps)
    plan +=
        "\n  " + s.op + " " + s.node + " " + s.kernel + " -> " + (s.output_layouts.empty() ? "" : s.output_layouts[0]);
  INFO("plan:" << plan);

  REQUIRE(steps.size() == 7);  // conv1 conv2 pool branch concat conv3 resize, and no reorders
  for (const StepInfo& s : steps) {
    CHECK(s.op != "Reorder");
    CHECK(s.kernel.find("_onednn") != std::string::npos);
  }
  for (size_t i = 0; i + 1 < steps.size(); ++i) {
    INFO("step " << i << " (" << steps[i].node << ")");
    CHECK(steps[i].output_layouts.at(0) != "plain");
  }
  CHECK(steps.back().node == "resize");
  CHECK(steps.back().output_layouts.at(0) == "plain");
  CHECK(steps.back().output_shapes.at(0) == Shape{1, 24, 23, 21});

  SessionOptions ref_opts = opts;
  ref_opts.reference_only = true;
  RunOutput ref = run_model(*model, {{"x", x.view()}}, ref_opts);
  REQUIRE(ref.status.to_string() == "ok");
  for (const StepInfo& s : ref.plan.steps) CHECK(s.output_layouts.at(0) == "plain");
  REQUIRE(fast.outputs.size() == 1);
  check_close(fast.outputs[0].view(), ref.outputs[0].view(), 1e-4, "blocked chain vs reference kernels");
}

}  // namespace
}  // namespace atrous::test
