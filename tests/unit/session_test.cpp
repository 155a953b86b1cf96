// Session behaviour: no allocation in run(), re-planning for new shapes with a
// plan cache, one Model shared by 8 threads, clear errors for bad inputs.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <thread>

#include "atrous/atrous.h"
#include "builder/graph_builder.h"

// Counts operator new calls while enabled (this test binary only).
static std::atomic<bool> g_count_allocs{false};
static std::atomic<long> g_allocs{0};
static std::atomic<size_t> g_max_alloc{0};
void* operator new(std::size_t n) {
  if (g_count_allocs.load(std::memory_order_relaxed)) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    size_t m = g_max_alloc.load(std::memory_order_relaxed);
    while (n > m && !g_max_alloc.compare_exchange_weak(m, n)) {}
  }
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too: left to the runtime (ASan's, under --sanitize), their
// memory would be freed by the free() above, an allocation/deallocation mismatch.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return operator new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace atrous {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The model a builder describes, loaded from its bytes as a file's would be.
std::shared_ptr<const Model> built(const ModelBuilder& mb) {
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  auto m = Model::from_memory(bytes->data(), bytes->size());
  REQUIRE(m.ok());
  return *m;
}

// A small fully convolutional net: conv-relu, conv + skip, depthwise, conv.
std::shared_ptr<const Model> small_net() {
  ModelBuilder mb("small", "session_test");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("image", DType::kF32, {1, 3, -1, -1});
  fb::Conv2dT c3;
  c3.pad_top = c3.pad_left = c3.pad_bottom = c3.pad_right = 1;
  fb::Conv2dT c3r = c3;
  c3r.activation = fb::ActKind::Relu;
  int a = g.node("c1", c3r, {x, g.constant_f32("c1.w", {16, 3, 3, 3}, randn(16 * 27, 1, 0.3f)), g.constant_f32("c1.b", {16}, randn(16, 2))});
  int b = g.node("c2", c3, {a, g.constant_f32("c2.w", {16, 16, 3, 3}, randn(16 * 144, 3, 0.1f)), -1});
  fb::BinaryT add;
  add.kind = fb::BinaryKind::Add;
  int s = g.node("add", add, {a, b});
  fb::Conv2dT dw = c3r;
  dw.groups = 16;
  int d = g.node("dw", dw, {s, g.constant_f32("dw.w", {16, 1, 3, 3}, randn(144, 4, 0.3f)), g.constant_f32("dw.b", {16}, randn(16, 5))});
  fb::Conv2dT c1;
  int y = g.node("head", c1, {d, g.constant_f32("head.w", {5, 16, 1, 1}, randn(80, 6, 0.3f)), g.constant_f32("head.b", {5}, randn(5, 7))});
  g.output(y, "scores");
  return built(mb);
}

Tensor run_once(const std::shared_ptr<const Model>& m, const Tensor& in, int threads) {
  SessionOptions o;
  o.threads = threads;
  auto s = Session::create(m, o);
  REQUIRE(s.ok());
  REQUIRE((*s)->set_input("image", in.view()).ok());
  Status st = (*s)->run();
  REQUIRE(st.to_string() == "ok");
  return Tensor::copy_of(*(*s)->output("scores"));
}

Tensor image(int h, int w, uint32_t seed) {
  Tensor t = Tensor::zeros(DType::kF32, {1, 3, h, w});
  auto v = randn(static_cast<size_t>(3 * h * w), seed);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

// Atrous code allocates nothing in run(): the reference path makes zero
// allocations. oneDNN's primitive execute builds a small argument map per call
// (exec_ctx_t's std::unordered_map) inside the library; that path is checked to
// allocate only such bookkeeping (no tensor-sized buffer), the same count every run.
TEST_CASE("run() allocates nothing once planned", "[session]") {
  auto m = small_net();
  for (bool reference : {true, false}) {
    SessionOptions o;
    o.reference_only = reference;
    auto s = Session::create(m, o);
    REQUIRE(s.ok());
    Tensor in = image(37, 29, 1);
    REQUIRE((*s)->set_input("image", in.view()).ok());
    REQUIRE((*s)->run().ok());  // plans and binds
    long first = -1;
    for (int i = 0; i < 3; ++i) {
      REQUIRE((*s)->set_input("image", in.view()).ok());
      g_allocs = 0;
      g_max_alloc = 0;
      g_count_allocs = true;
      Status st = (*s)->run();
      g_count_allocs = false;
      REQUIRE(st.ok());
      INFO("reference_only=" << reference << " allocations " << g_allocs.load() << " largest " << g_max_alloc.load());
      if (reference) CHECK(g_allocs.load() == 0);
      CHECK(g_max_alloc.load() < 1024);
      if (first < 0) first = g_allocs.load();
      CHECK(g_allocs.load() == first);
    }
  }
}

TEST_CASE("new input shapes re-plan; plans are cached", "[session]") {
  auto m = small_net();
  auto s = Session::create(m, SessionOptions{});
  REQUIRE(s.ok());
  for (auto [h, w] : {std::pair{16, 16}, {33, 17}, {16, 16}, {7, 40}}) {
    Tensor in = image(h, w, 3);
    REQUIRE((*s)->set_input("image", in.view()).ok());
    REQUIRE((*s)->run().ok());
    auto out = (*s)->output("scores");
    REQUIRE(out.ok());
    CHECK(out->shape == Shape{1, 5, h, w});
    CHECK(run_once(m, in, 1).view().numel() == out->numel());
  }
}

TEST_CASE("one Model from 8 threads gives the single-threaded outputs", "[session][threads]") {
  auto m = small_net();
  std::vector<Tensor> inputs, expected;
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(image(20 + 7 * i, 31 - 3 * i, static_cast<uint32_t>(10 + i)));
    expected.push_back(run_once(m, inputs.back(), 1));
  }
  std::atomic<int> failures{0}, runs{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t) {
    pool.emplace_back([&, t] {
      SessionOptions o;
      o.threads = 1 + t % 2;
      auto s = Session::create(m, o);
      if (!s.ok()) { ++failures; return; }
      for (int r = 0; r < 12; ++r) {
        size_t k = static_cast<size_t>((t + r) % 4);
        if (!(*s)->set_input("image", inputs[k].view()).ok() || !(*s)->run().ok()) { ++failures; return; }
        auto out = (*s)->output("scores");
        const float* a = out->as<float>();
        const float* b = expected[k].data<float>();
        for (int64_t i = 0; i < out->numel(); ++i)
          if (std::fabs(a[i] - b[i]) > 1e-4f * (1.0f + std::fabs(b[i]))) { ++failures; return; }
        ++runs;
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(failures.load() == 0);
  CHECK(runs.load() == 8 * 12);
}

TEST_CASE("bad inputs get clear errors", "[session]") {
  auto m = small_net();
  auto s = Session::create(m, SessionOptions{});
  REQUIRE(s.ok());
  Tensor wrong_c = Tensor::zeros(DType::kF32, {1, 4, 8, 8});
  Status st = (*s)->set_input("image", wrong_c.view());
  CHECK_THAT(st.message(), Catch::Contains("has shape [1, 4, 8, 8], the model expects [1, 3, -1, -1]"));
  Tensor i64 = Tensor::zeros(DType::kI64, {1, 3, 8, 8});
  CHECK_THAT((*s)->set_input("image", i64.view()).message(), Catch::Contains("must be f32, got i64"));
  CHECK_THAT((*s)->set_input("img", wrong_c.view()).message(), Catch::Contains("has no input 'img' (inputs: image)"));
  CHECK_THAT((*s)->run().message(), Catch::Contains("input 'image' was not set"));
  Tensor tiny = image(1, 1, 1);
  REQUIRE((*s)->set_input("image", tiny.view()).ok());
  CHECK((*s)->run().ok());  // 3x3 convs with padding 1 work on a 1x1 image
  auto bad = Session::create(m, SessionOptions{"decode"});
  CHECK_THAT(bad.status().message(), Catch::Contains("entry point 'decode' is not in the model (it has: main)"));
  // Thread counts OpenMP cannot start are refused (100000 used to take the process down).
  for (int t : {-1, atrous::kMaxThreads + 1, 100000}) {
    SessionOptions o;
    o.threads = t;
    CHECK_THAT(Session::create(m, o).status().message(),
               Catch::Contains("threads must be in 0..1024 (0 = every core), got " + std::to_string(t)));
  }
  // Shapes whose activations exceed the memory budget are refused before anything is allocated.
  CHECK_THAT((*s)->reshape({{1, 3, 100000, 100000}}).message(), Catch::Contains("over the memory budget"));
}

TEST_CASE("arena stays within 5% of the lower bound", "[session][memory]") {
  auto m = small_net();
  auto s = Session::create(m, SessionOptions{});
  REQUIRE(s.ok());
  REQUIRE((*s)->reshape({{1, 3, 61, 47}}).ok());
  auto info = (*s)->plan_info();
  REQUIRE(info.ok());
  INFO("arena " << info->memory.arena_bytes << " lower bound " << info->memory.lower_bound);
  CHECK(info->memory.arena_bytes <= 1.05 * info->memory.lower_bound);
  CHECK(info->memory.naive_bytes >= info->memory.arena_bytes);
}

// Two free-length inputs summed: for input_buffer() with several inputs.
std::shared_ptr<const Model> two_input_net() {
  ModelBuilder mb("sum", "session_test");
  GraphBuilder& g = mb.graph("main");
  int a = g.input("a", DType::kF32, {1, -1});
  int b = g.input("b", DType::kF32, {1, -1});
  fb::BinaryT add;
  add.kind = fb::BinaryKind::Add;
  g.output(g.node("add", add, {a, b}), "sum");
  return built(mb);
}

bool same_values(const TensorView& a, const TensorView& b) {
  return a.shape == b.shape && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

// y = relu(x) through a view of x: without keep_inputs the planner lets the Unary, the
// last step, write in place over x's slot.
std::shared_ptr<const Model> inplace_net() {
  ModelBuilder mb("inplace", "session_test");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, -1});
  fb::ReshapeT r;
  r.shape = {0, -1};
  fb::UnaryT relu;
  relu.kind = fb::ActKind::Relu;
  g.output(g.node("relu", relu, {g.node("view", r, {x})}), "y");
  return built(mb);
}

// Equal as floats (0 == −0: relu of −0 may give either).
bool equal_floats(const TensorView& a, const Tensor& b) {
  return a.shape == b.shape() && std::equal(a.as<float>(), a.as<float>() + b.numel(), b.data<float>());
}

TEST_CASE("keep_inputs: an input staged once serves many runs, and no kernel writes over it", "[session]") {
  auto m = inplace_net();
  const int64_t n = 1000;
  Tensor x = Tensor::zeros(DType::kF32, {1, n}), want = Tensor::zeros(DType::kF32, {1, n});
  for (int64_t i = 0; i < n; ++i) {
    x.data<float>()[i] = static_cast<float>((i * 37) % 101) - 50.0f;
    want.data<float>()[i] = std::max(x.data<float>()[i], 0.0f);
  }
  // A session of these options with x staged in its arena, and the slot.
  auto staged = [&](const SessionOptions& o, TensorView* slot) {
    auto s = Session::create(m, o);
    REQUIRE(s.ok());
    REQUIRE((*s)->reshape({{1, n}}).ok());
    auto v = (*s)->input_buffer("x");
    REQUIRE(v.ok());
    std::memcpy(v->data, x.raw(), x.nbytes());
    *slot = *v;
    return std::move(s).value();
  };
  for (bool reference : {false, true}) {
    SessionOptions o;
    o.reference_only = reference;
    TensorView slot;
    // Without keep_inputs the slot is written over (so it must be refilled before each run).
    {
      auto s = staged(o, &slot);
      REQUIRE(s->run().ok());
      CHECK(equal_floats(*s->output("y"), want));
      CHECK(std::memcmp(slot.data, x.raw(), x.nbytes()) != 0);  // in place: the input is gone
      CHECK_THAT(s->run().message(), Catch::Contains("input 'x' was not set"));
    }
    o.keep_inputs = true;
    auto s = staged(o, &slot);
    for (int r = 0; r < 3; ++r) {
      INFO("run " << r << (reference ? ", reference kernels" : ""));
      REQUIRE(s->run().ok());
      CHECK(equal_floats(*s->output("y"), want));
      CHECK(std::memcmp(slot.data, x.raw(), x.nbytes()) == 0);
    }
    // set_input() still replaces it, for that run only.
    Tensor x2 = Tensor::zeros(DType::kF32, {1, n});
    REQUIRE(s->set_input("x", x2.view()).ok());
    REQUIRE(s->run().ok());
    CHECK(std::all_of(s->output("y")->as<float>(), s->output("y")->as<float>() + n, [](float v) { return v == 0.0f; }));
    CHECK_THAT(s->run().message(), Catch::Contains("input 'x' was not set"));
  }
}

TEST_CASE("inputs written into the arena through input_buffer() run as set_input() ones", "[session]") {
  auto m = small_net();
  for (bool reference : {false, true}) {
    SessionOptions o;
    o.reference_only = reference;
    o.threads = 2;
    Tensor x = image(37, 29, 21), y = image(37, 29, 22);
    auto s = Session::create(m, o);
    REQUIRE(s.ok());
    CHECK_THAT((*s)->input_buffer("image").status().message(), Catch::Contains("no plan yet: call reshape()"));
    CHECK_THAT((*s)->input_buffer("img").status().message(), Catch::Contains("has no input 'img' (inputs: image)"));
    REQUIRE((*s)->set_input("image", x.view()).ok());
    REQUIRE((*s)->run().ok());
    Tensor want_x = Tensor::copy_of(*(*s)->output("scores"));
    REQUIRE((*s)->set_input("image", y.view()).ok());
    REQUIRE((*s)->run().ok());
    Tensor want_y = Tensor::copy_of(*(*s)->output("scores"));

    // Staged twice in a row: the slot is refilled before each run, and a run without
    // refilling is refused (the last run overwrote the slot).
    REQUIRE((*s)->reshape({{1, 3, 37, 29}}).ok());
    for (int r = 0; r < 2; ++r) {
      auto slot = (*s)->input_buffer("image");
      REQUIRE(slot.ok());
      CHECK(slot->shape == Shape{1, 3, 37, 29});
      CHECK(slot->dtype == DType::kF32);
      std::memcpy(slot->data, x.raw(), x.nbytes());
      REQUIRE((*s)->run().ok());
      CHECK(same_values(*(*s)->output("scores"), want_x.view()));
    }
    CHECK_THAT((*s)->run().message(), Catch::Contains("input 'image' was not set"));

    // set_input() after input_buffer() wins.
    auto slot = (*s)->input_buffer("image");
    REQUIRE(slot.ok());
    std::memcpy(slot->data, x.raw(), x.nbytes());
    REQUIRE((*s)->set_input("image", y.view()).ok());
    REQUIRE((*s)->run().ok());
    CHECK(same_values(*(*s)->output("scores"), want_y.view()));

    // A reshape() to other shapes discards what was staged; one to the same shapes keeps it.
    slot = (*s)->input_buffer("image");
    REQUIRE(slot.ok());
    std::memcpy(slot->data, y.raw(), y.nbytes());
    REQUIRE((*s)->reshape({{1, 3, 37, 29}}).ok());
    REQUIRE((*s)->run().ok());
    CHECK(same_values(*(*s)->output("scores"), want_y.view()));
    REQUIRE((*s)->input_buffer("image").ok());
    REQUIRE((*s)->reshape({{1, 3, 8, 8}}).ok());
    CHECK_THAT((*s)->run().message(), Catch::Contains("input 'image' was not set"));

    // stage_input(): the copy with the checks. A refused tensor stages nothing.
    REQUIRE((*s)->reshape({{1, 3, 37, 29}}).ok());
    CHECK_THAT((*s)->stage_input("image", image(29, 37, 1).view()).message(),
               Catch::Contains("input 'image' is f32 [1, 3, 29, 37], the plan takes f32 [1, 3, 37, 29]"));
    Tensor i32 = Tensor::zeros(DType::kI32, {1, 3, 37, 29});
    CHECK_THAT((*s)->stage_input("image", i32.view()).message(),
               Catch::Contains("input 'image' is i32 [1, 3, 37, 29], the plan takes f32 [1, 3, 37, 29]"));
    CHECK_THAT((*s)->stage_input("img", x.view()).message(), Catch::Contains("has no input 'img' (inputs: image)"));
    CHECK_THAT((*s)->run().message(), Catch::Contains("input 'image' was not set"));
    REQUIRE((*s)->stage_input("image", y.view()).ok());
    REQUIRE((*s)->run().ok());
    CHECK(same_values(*(*s)->output("scores"), want_y.view()));
  }
  auto fresh = Session::create(m, SessionOptions{});
  REQUIRE(fresh.ok());
  CHECK_THAT((*fresh)->stage_input("image", image(8, 8, 1).view()).message(), Catch::Contains("no plan yet: call reshape()"));
}

TEST_CASE("a staged input is refused when another input's new shape needs a new plan", "[session]") {
  auto m = two_input_net();
  auto s = Session::create(m, SessionOptions{});
  REQUIRE(s.ok());
  REQUIRE((*s)->reshape({{1, 5}, {1, 5}}).ok());
  auto a = (*s)->input_buffer("a");
  REQUIRE(a.ok());
  for (int i = 0; i < 5; ++i) a->as<float>()[i] = static_cast<float>(i);
  Tensor b7 = Tensor::zeros(DType::kF32, {1, 7});
  REQUIRE((*s)->set_input("b", b7.view()).ok());
  CHECK_THAT((*s)->run().message(),
             Catch::Contains("input 'a' was written through input_buffer() for shape [1, 5], but the other inputs' shapes need a new plan"));
  // Both staged: a plain sum of what was written.
  a = (*s)->input_buffer("a");
  auto b = (*s)->input_buffer("b");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  for (int i = 0; i < 5; ++i) {
    a->as<float>()[i] = static_cast<float>(i);
    b->as<float>()[i] = 10.f * static_cast<float>(i);
  }
  REQUIRE((*s)->run().ok());
  auto out = (*s)->output("sum");
  REQUIRE(out.ok());
  for (int i = 0; i < 5; ++i) CHECK(out->as<float>()[i] == 11.f * static_cast<float>(i));
}

TEST_CASE("release_memory() frees the arena; the next run binds again and gives the same outputs", "[session][memory]") {
  auto m = small_net();
  SessionOptions o;
  o.threads = 2;
  auto s = Session::create(m, o);
  REQUIRE(s.ok());
  Tensor x = image(29, 31, 8);
  REQUIRE((*s)->set_input("image", x.view()).ok());
  REQUIRE((*s)->run().ok());
  Tensor want = Tensor::copy_of(*(*s)->output("scores"));
  REQUIRE((*s)->reshape({{1, 3, 29, 31}}).ok());
  REQUIRE((*s)->input_buffer("image").ok());  // staged, then released: gone
  (*s)->release_memory();
  CHECK_THAT((*s)->output("scores").status().message(), Catch::Contains("no output yet"));
  CHECK_THAT((*s)->plan_info().status().message(), Catch::Contains("no plan yet"));
  CHECK_THAT((*s)->run().message(), Catch::Contains("input 'image' was not set"));
  (*s)->release_memory();  // twice is fine
  for (int r = 0; r < 2; ++r) {
    REQUIRE((*s)->set_input("image", x.view()).ok());
    REQUIRE((*s)->run().ok());
    CHECK(same_values(*(*s)->output("scores"), want.view()));
    (*s)->release_memory();
  }
}

TEST_CASE("excluded kernels are never chosen; unknown kernel names are refused", "[session]") {
  auto m = small_net();
  Tensor x = image(19, 23, 5);
  Tensor want = run_once(m, x, 2);
  SessionOptions o;
  o.threads = 2;
  o.excluded_kernels = {"conv2d_onednn", "conv2d_ref"};  // the reference stays: it is every op's last resort
  auto s = Session::create(m, o);
  REQUIRE(s.ok());
  REQUIRE((*s)->set_input("image", x.view()).ok());
  REQUIRE((*s)->run().ok());
  auto info = (*s)->plan_info();
  REQUIRE(info.ok());
  int convs = 0;
  for (const auto& st : info->steps) {
    CHECK(st.kernel != "conv2d_onednn");
    convs += st.op == "Conv2d";
    if (st.op == "Conv2d") CHECK(st.kernel == "conv2d_ref");
  }
  CHECK(convs > 0);
  auto got = (*s)->output("scores");
  REQUIRE(got.ok());
  for (int64_t i = 0; i < got->numel(); ++i) REQUIRE(std::fabs(got->as<float>()[i] - want.data<float>()[i]) <= 1e-4f * (1.0f + std::fabs(want.data<float>()[i])));

  o.excluded_kernels = {"conv2d_fastest"};
  CHECK_THAT(Session::create(m, o).status().message(), Catch::Contains("unknown kernel 'conv2d_fastest'"));
  o.excluded_kernels.clear();
  o.allowed_kernels = {"no_such_kernel"};
  CHECK_THAT(Session::create(m, o).status().message(), Catch::Contains("unknown kernel 'no_such_kernel'"));
}

}  // namespace
}  // namespace atrous
