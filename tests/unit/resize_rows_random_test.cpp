// resize_rows (bilinear on plain NCHW, separable with reused source rows) against the
// reference loop (resize_ref) on random sizes: up, down and mixed factors, one row or
// column on either side, bands of 64 output rows, align_corners either way, 1-3
// threads. The PyTorch cases (tests/ops, "resize_*") pin the semantics.
#include <random>

#include "test_util.h"

namespace atrous::test {
namespace {

TEST_CASE("resize_rows equals the reference loop on random sizes", "[ops][resize_rows]") {
  std::mt19937 rng(1129);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  int rows = 0;
  for (int it = 0; it < 80; ++it) {
    const int64_t n = pick(1, 2), c = pick(1, 5), h = pick(1, 60), w = pick(1, 60);
    const int64_t oh = pick(1, 200), ow = pick(1, 200);
    const bool align = pick(0, 1) == 1;
    const int threads = static_cast<int>(pick(1, 3));
    INFO("case " << it << ": " << n << "x" << c << "x" << h << "x" << w << " -> " << oh << "x" << ow
                 << (align ? " align_corners" : "") << ", " << threads << " threads");
    ModelBuilder mb("resize_rows_random", "tests");
    GraphBuilder& gb = mb.graph("main");
    const Shape xs{n, c, h, w};
    int x = gb.input("x", DType::kF32, xs);
    fb::ResizeT a;
    a.mode = fb::ResizeMode::Bilinear;
    a.align_corners = align;
    a.out_h = static_cast<int>(oh);
    a.out_w = static_cast<int>(ow);
    gb.output(gb.node("rs", a, {x}), "y");
    auto bytes = mb.to_bytes();
    REQUIRE(bytes.ok());
    auto model = Model::from_memory(bytes->data(), bytes->size());
    REQUIRE(model.ok());
    std::vector<float> xv(static_cast<size_t>(n * c * h * w));
    for (float& v : xv) v = value(rng);
    std::vector<std::pair<std::string, TensorView>> inputs{{"x", TensorView{DType::kF32, xs, xv.data()}}};

    SessionOptions fast;
    fast.threads = threads;
    fast.allowed_kernels = {"resize_rows"};
    RunOutput got = run_model(*model, inputs, fast);
    REQUIRE(got.status.to_string() == "ok");
    REQUIRE(got.plan.steps.size() == 1);
    rows += got.plan.steps[0].kernel == "resize_rows";
    SessionOptions ref;
    ref.reference_only = true;
    RunOutput want = run_model(*model, inputs, ref);
    REQUIRE(want.status.to_string() == "ok");
    check_close(got.outputs[0].view(), want.outputs[0].view(), 1e-5, "resize_rows vs resize_ref");
  }
  CHECK(rows == 80);
}

}  // namespace
}  // namespace atrous::test
