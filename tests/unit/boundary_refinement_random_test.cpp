// boundary_refinement_fused against the reference loops (boundary_refinement_ref) on random
// geometries: block and conv1 channels 1-47, odd kernels up to 15 (each side its own), maps
// from one row to 200 rows (several strips, bands whose conv1 rows carry over) and 16-300
// columns (64-column tiles and tails), batch 2, biases or not, 1-3 threads. The PyTorch
// cases (tests/ops, "br_*") pin the semantics; this sweep covers the geometry.
#include <cmath>
#include <random>

#include "test_util.h"

namespace atrous::test {
namespace {

struct BrGeo {
  int64_t n, c, m, h, w, k1h, k1w, k2h, k2w;
  bool b1, b2;
  int threads;
  std::string str() const {
    return "n" + std::to_string(n) + " c" + std::to_string(c) + " m" + std::to_string(m) + " " + std::to_string(h) + "x" +
           std::to_string(w) + " k1 " + std::to_string(k1h) + "x" + std::to_string(k1w) + " k2 " + std::to_string(k2h) + "x" +
           std::to_string(k2w) + (b1 ? " b1" : "") + (b2 ? " b2" : "") + " threads " + std::to_string(threads);
  }
};

BrGeo random_geo(std::mt19937& rng) {
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto channels = [&] {
    int64_t c;
    do c = pick(1, 47);
    while (c % 16 == 0);
    return c;
  };
  const int64_t ks[] = {1, 3, 3, 3, 5, 7, 15};
  BrGeo g{};
  g.n = pick(0, 4) == 0 ? 2 : 1;
  g.c = channels();
  g.m = channels();
  g.k1h = ks[pick(0, 6)];
  g.k1w = pick(0, 2) == 0 ? ks[pick(0, 6)] : g.k1h;
  g.k2h = ks[pick(0, 6)];
  g.k2w = pick(0, 2) == 0 ? ks[pick(0, 6)] : g.k2h;
  g.h = pick(0, 3) == 0 ? pick(60, 200) : pick(1, 40);
  g.w = pick(0, 2) == 0 ? pick(100, 300) : pick(16, 99);
  g.b1 = pick(0, 3) != 0;
  g.b2 = pick(0, 3) != 0;
  g.threads = static_cast<int>(pick(1, 3));
  // Keep the reference loops quick: at most ~8M multiply-adds per case.
  while (g.n * g.h * g.w * g.c * g.m * (g.k1h * g.k1w + g.k2h * g.k2w) > 8000000) {
    if (g.c > 4) g.c = g.c / 2 == 16 || g.c / 2 == 32 ? g.c / 2 - 1 : g.c / 2;
    else if (g.m > 4) g.m = g.m / 2 == 16 || g.m / 2 == 32 ? g.m / 2 - 1 : g.m / 2;
    else g.h = std::max<int64_t>(1, g.h / 2);
  }
  return g;
}

TEST_CASE("boundary_refinement_fused equals the reference loops on random geometries", "[ops][boundary_refinement]") {
  std::mt19937 rng(20261130);
  int multi_band = 0;
  for (int it = 0; it < 80; ++it) {
    const BrGeo g = random_geo(rng);
    INFO("case " << it << ": " << g.str());
    ModelBuilder mb("br_random", "tests");
    GraphBuilder& gb = mb.graph("main");
    const Shape xs{g.n, g.c, g.h, g.w};
    int x = gb.input("x", DType::kF32, xs);
    const float s1 = 1.0f / std::sqrt(static_cast<float>(g.c * g.k1h * g.k1w));
    const float s2 = 1.0f / std::sqrt(static_cast<float>(g.m * g.k2h * g.k2w));
    int w1 = gb.constant_f32("w1", {g.m, g.c, g.k1h, g.k1w}, uniform(static_cast<size_t>(g.m * g.c * g.k1h * g.k1w), s1, rng));
    int w2 = gb.constant_f32("w2", {g.c, g.m, g.k2h, g.k2w}, uniform(static_cast<size_t>(g.c * g.m * g.k2h * g.k2w), s2, rng));
    int b1 = g.b1 ? gb.constant_f32("b1", {g.m}, uniform(static_cast<size_t>(g.m), 1.0f, rng)) : -1;
    int b2 = g.b2 ? gb.constant_f32("b2", {g.c}, uniform(static_cast<size_t>(g.c), 1.0f, rng)) : -1;
    gb.output(gb.node("br", fb::BoundaryRefinementT{}, {x, w1, w2, b1, b2}), "y");
    auto bytes = mb.to_bytes();
    REQUIRE(bytes.ok());
    auto model = Model::from_memory(bytes->data(), bytes->size());
    REQUIRE(model.ok());

    std::vector<float> xv = uniform(static_cast<size_t>(g.n * g.c * g.h * g.w), 1.0f, rng);
    std::vector<std::pair<std::string, TensorView>> inputs{{"x", TensorView{DType::kF32, xs, xv.data()}}};
    RunOutput got = check_kernel_against_reference(*model, inputs, "boundary_refinement_fused", g.threads, g.str());
    // "..., S-row strips in B-row bands": several bands per strip carry conv1's rows over.
    const std::string& d = got.plan.steps[0].detail;
    INFO(d);
    const size_t at = d.find("-row strips in ");
    REQUIRE(at != std::string::npos);
    const int64_t strip = std::stoll(d.substr(d.rfind(' ', at - 1) + 1)), band = std::stoll(d.substr(at + 15));
    multi_band += strip > band && std::min(g.h, strip) > band;
  }
  CHECK(multi_band > 10);
}


// A hostile or mistaken BoundaryRefinement node in a model file: refused at load (or at
// plan time, for the input's shape) with the node and the reason. The builder refuses
// to write such nodes, so a valid file is edited to point the node at spare values.
TEST_CASE("BoundaryRefinement refuses malformed nodes by name", "[ops][boundary_refinement]") {
  ModelBuilder mb("br_bad", "tests");
  GraphBuilder& gb = mb.graph("main");
  auto fill = [](const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return std::vector<float>(static_cast<size_t>(n), 0.1f);
  };
  auto constant = [&](const char* name, const Shape& s) { return gb.constant_f32(name, s, fill(s)); };
  int x = gb.input("x", DType::kF32, {1, 3, 8, 20});
  int x4 = gb.input("x4", DType::kF32, {1, 4, 8, 20});
  int w1 = constant("w1", {5, 3, 3, 3}), w2 = constant("w2", {3, 5, 3, 3}), b1 = constant("b1", {5});
  int spare[] = {constant("even", {5, 3, 2, 3}), constant("w2_to_4", {4, 5, 3, 3}), constant("rank3", {3, 5, 3}),
                 constant("b1_short", {3})};
  (void)spare;
  gb.output(gb.node("brm9", fb::BoundaryRefinementT{}, {x, w1, w2, b1, -1}), "y");
  fb::UnaryT relu;
  relu.kind = fb::ActKind::Relu;
  gb.output(gb.node("other", relu, {x4}), "z");  // x4: a spare input
  auto valid = mb.to_bytes();
  INFO(valid.status().to_string());
  REQUIRE(valid.ok());
  REQUIRE(Model::from_memory(valid->data(), valid->size()).ok());

  struct Bad {
    int input;          // of the node
    const char* value;  // now refers to this value
    const char* error;
  };
  const Bad bads[] = {
      {1, "even", "w1 must have an odd kernel of at most 255"},
      {2, "w2_to_4", "w2 must be [3, 5, kH, kW] to follow w1 [5, 3, 3, 3]"},
      {2, "rank3", "w2 must be [out, in, kH, kW], got [3, 5, 3]"},
      {3, "b1_short", "b1 must be [5], got [3]"},
      {1, "x", "must be a constant"},
      {0, "x4", "input has 4 channels, w1 expects 3"},
  };
  for (const Bad& b : bads) {
    INFO("input " << b.input << " -> " << b.value);
    auto bytes = edit_model(*valid, [&](fb::ModelT& m) {
      fb::GraphT& g = *m.graphs[0];
      int at = -1;
      for (size_t v = 0; v < g.values.size(); ++v)
        if (g.values[v]->name == b.value) at = static_cast<int>(v);
      REQUIRE(at >= 0);
      for (auto& n : g.nodes)
        if (n->name == "brm9") n->inputs[static_cast<size_t>(b.input)] = at;
    });
    auto model = Model::from_memory(bytes.data(), bytes.size());
    std::string error;
    if (!model.ok()) {
      error = model.status().to_string();
    } else {
      auto session = Session::create(*model, SessionOptions{});
      REQUIRE(session.ok());
      Status st = (*session)->reshape({{1, 3, 8, 20}, {1, 4, 8, 20}});
      REQUIRE(!st.ok());
      error = st.to_string();
    }
    INFO(error);
    CHECK(error.find("'brm9' (BoundaryRefinement)") != std::string::npos);
    CHECK(error.find(b.error) != std::string::npos);
  }
}

}  // namespace
}  // namespace atrous::test
