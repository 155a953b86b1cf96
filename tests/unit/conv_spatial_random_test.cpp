// conv2d_spatial against the reference loop (conv2d_ref) on random geometries: output
// channels 1-47, kernels up to 21 wide with dilation, padding from none to beyond the
// kernel's reach on each side, maps from one row to a few hundred columns, batch 2,
// many input channels (L2 chunks and L1 sub-chunks), bias, residual and ReLU in any
// combination, 1-3 threads. The PyTorch cases (tests/ops, "conv_narrow_*") pin the
// semantics; this sweep covers the geometry the fixed cases cannot enumerate.
#include <cmath>
#include <random>

#include "test_util.h"

namespace atrous::test {
namespace {

struct Geo {
  int64_t n, c, h, w, o, kh, kw, dh, dw, pt, pb, pl, pr;
  bool bias, residual, relu;
  int threads;
  int64_t oh() const { return h + pt + pb - (kh - 1) * dh; }
  int64_t ow() const { return w + pl + pr - (kw - 1) * dw; }
  std::string str() const {
    return "n" + std::to_string(n) + " c" + std::to_string(c) + " " + std::to_string(h) + "x" + std::to_string(w) + " o" +
           std::to_string(o) + " k" + std::to_string(kh) + "x" + std::to_string(kw) + " d" + std::to_string(dh) + "x" +
           std::to_string(dw) + " pad t" + std::to_string(pt) + " b" + std::to_string(pb) + " l" + std::to_string(pl) +
           " r" + std::to_string(pr) + (bias ? " bias" : "") + (residual ? " residual" : "") + (relu ? " relu" : "") +
           " threads " + std::to_string(threads);
  }
};

Geo random_geo(std::mt19937& rng) {
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Geo g{};
  for (;;) {
    g.n = pick(0, 4) == 0 ? 2 : 1;
    g.c = pick(0, 2) == 0 ? pick(40, 300) : pick(1, 24);
    do g.o = pick(1, 47);
    while (g.o % 16 == 0);
    const int64_t ks[] = {1, 2, 3, 3, 3, 5, 7, 15, 21};
    g.kh = ks[pick(0, 8)];
    g.kw = ks[pick(0, 8)];
    if (g.kh * g.kw == 1) continue;
    const int64_t ds[] = {1, 1, 1, 2, 3, 5};
    g.dh = ds[pick(0, 5)];
    g.dw = ds[pick(0, 5)];
    auto pad = [&](int64_t k, int64_t d) { return pick(0, 3) == 0 ? pick(0, (k - 1) * d + 3) : (k - 1) * d / 2; };
    g.pt = pad(g.kh, g.dh);
    g.pb = pad(g.kh, g.dh);
    g.pl = pad(g.kw, g.dw);
    g.pr = pad(g.kw, g.dw);
    g.h = pick(1, 24);
    g.w = pick(1, 3) == 0 ? pick(100, 300) : pick(8, 90);
    if (g.c >= 40) {  // several channel chunks: few outputs, few rows, wide rows
      g.o = pick(1, 5);
      g.h = pick(1, 6);
      g.w = pick(200, 400);
    }
    g.bias = pick(0, 3) != 0;
    g.residual = pick(0, 2) == 0;
    g.relu = pick(0, 2) == 0;
    g.threads = static_cast<int>(pick(1, 3));
    if (g.oh() < 1 || g.ow() < 16) continue;
    // Keep the reference loop quick: at most ~6M multiply-adds per case.
    const int64_t macs_per_channel = g.n * g.o * g.oh() * g.ow() * g.kh * g.kw;
    g.c = std::max<int64_t>(1, std::min(g.c, 6000000 / std::max<int64_t>(macs_per_channel, 1)));
    return g;
  }
}

// Runs one geometry on conv2d_spatial and on the reference loop; returns the kernel's plan
// detail (how it split the work).
std::string check_geo(const Geo& g, std::mt19937& rng) {
  ModelBuilder mb("conv_spatial_random", "tests");
  GraphBuilder& gb = mb.graph("main");
  const Shape xs{g.n, g.c, g.h, g.w}, ys{g.n, g.o, g.oh(), g.ow()};
  int x = gb.input("x", DType::kF32, xs);
  fb::Conv2dT a;
  a.pad_top = static_cast<int>(g.pt);
  a.pad_bottom = static_cast<int>(g.pb);
  a.pad_left = static_cast<int>(g.pl);
  a.pad_right = static_cast<int>(g.pr);
  a.dilation_h = static_cast<int>(g.dh);
  a.dilation_w = static_cast<int>(g.dw);
  if (g.relu) a.activation = fb::ActKind::Relu;
  const float scale = 1.0f / std::sqrt(static_cast<float>(g.c * g.kh * g.kw));
  int w = gb.constant_f32("w", {g.o, g.c, g.kh, g.kw}, uniform(static_cast<size_t>(g.o * g.c * g.kh * g.kw), scale, rng));
  int b = g.bias ? gb.constant_f32("b", {g.o}, uniform(static_cast<size_t>(g.o), 1.0f, rng)) : -1;
  std::vector<int> ins{x, w, b};
  int r = -1;
  if (g.residual) {
    r = gb.input("r", DType::kF32, ys);
    ins.push_back(r);
  }
  gb.output(gb.node("conv", a, ins), "y");
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  auto model = Model::from_memory(bytes->data(), bytes->size());
  REQUIRE(model.ok());

  std::vector<float> xv = uniform(static_cast<size_t>(g.n * g.c * g.h * g.w), 1.0f, rng);
  std::vector<float> rv = uniform(static_cast<size_t>(g.n * g.o * g.oh() * g.ow()), 1.0f, rng);
  std::vector<std::pair<std::string, TensorView>> inputs{{"x", TensorView{DType::kF32, xs, xv.data()}}};
  if (g.residual) inputs.emplace_back("r", TensorView{DType::kF32, ys, rv.data()});

  RunOutput got = check_kernel_against_reference(*model, inputs, "conv2d_spatial", g.threads, g.str());
  return got.plan.steps[0].detail;
}

TEST_CASE("conv2d_spatial equals the reference loop on random geometries", "[ops][conv2d_spatial]") {
  std::mt19937 rng(20261129);
  int row_copies = 0;
  for (int it = 0; it < 120; ++it) {
    const Geo g = random_geo(rng);
    INFO("case " << it << ": " << g.str());
    row_copies += check_geo(g, rng).find("band rows copied") != std::string::npos;
  }
  CHECK(row_copies > 40);  // kernels wider than one column copy whole band rows
}

// A band whose rows, all columns, exceed the kernel's 1 MiB copy budget for one channel
// (tall dilated kernel, very wide map): each 64-column tile copies its own columns instead.
TEST_CASE("conv2d_spatial copies tile by tile when one channel's band rows are too wide", "[ops][conv2d_spatial]") {
  std::mt19937 rng(7);
  //           n  c  h   w     o  kh  kw dh dw pt  pb  pl pr  bias   res    relu  threads
  const Geo geos[] = {{1, 2, 3, 2700, 3, 21, 3, 5, 1, 49, 50, 1, 1, true, true, false, 2},
                      {1, 3, 2, 2900, 5, 21, 5, 5, 3, 50, 49, 7, 5, true, false, true, 3},
                      {2, 1, 4, 2650, 1, 15, 2, 7, 2, 49, 49, 0, 2, false, true, true, 1}};
  for (const Geo& g : geos) {
    INFO(g.str());
    REQUIRE(g.oh() >= 1);
    const std::string detail = check_geo(g, rng);
    INFO(detail);
    CHECK(detail.find("band rows copied") == std::string::npos);
  }
}
}  // namespace
}  // namespace atrous::test
