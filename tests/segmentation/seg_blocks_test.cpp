// The segmentation blocks against PyTorch (make_seg_cases.py, blocks/): ASPP as
// torchvision builds it, GCN blocks up to k = 21 (larger than the map), Boundary
// Refinement, and GCN → BR. Each runs with the default plan (oneDNN kernels, fusion,
// blocked layouts) and with reference kernels only. Then the plans are checked:
// BatchNorm and ReLU fold into the convs, a rate beyond the map costs one tap, the
// GCN branch sum is the residual (oneDNN's sum post-op) of one branch's last conv, BR is
// one fused pass (boundary_refinement_fused) or, without it, two convs. The 19- and
// 21-class convs of the GCN cases run conv2d_spatial (plain layout); with both excluded,
// oneDNN keeps its blocked layout from block to block.
#include <algorithm>

#include "test_util.h"

namespace atrous::test {
namespace {

struct Ran {
  RefCase c;
  RunOutput fast, ref;
};

Ran run_case(const std::string& name, const std::vector<std::string>& excluded = {}) {
  Ran r;
  r.c = load_case(data_dir("ATROUS_SEG_CASES") + "/blocks", name);
  auto bytes = build_case_model(r.c);
  auto model = Model::from_memory(bytes.data(), bytes.size());
  REQUIRE(model.ok());
  std::vector<std::pair<std::string, TensorView>> inputs;
  for (const auto& n : r.c.inputs) inputs.emplace_back(n, r.c.tensors.at(n).view());
  SessionOptions opts;
  opts.threads = 2;
  opts.excluded_kernels = excluded;
  r.fast = run_model(*model, inputs, opts);
  REQUIRE(r.fast.status.to_string() == "ok");
  opts.reference_only = true;
  r.ref = run_model(*model, inputs, opts);
  REQUIRE(r.ref.status.to_string() == "ok");
  for (size_t i = 0; i < r.c.outputs.size(); ++i) {
    const TensorView want = r.c.tensors.at(r.c.outputs[i]).view();
    check_close(r.fast.outputs[i].view(), want, r.c.tol, name + ": default plan vs PyTorch");
    check_close(r.ref.outputs[i].view(), want, r.c.tol, name + ": reference kernels vs PyTorch");
  }
  return r;
}

const std::vector<std::string> kOnednnOnly = {"conv2d_spatial", "boundary_refinement_fused"};

std::string describe(const PlanInfo& p) {
  std::string s;
  for (const StepInfo& st : p.steps) {
    s += "\n  " + st.op + " " + st.node + " [" + st.kernel + "] -> " + (st.output_layouts.empty() ? "" : st.output_layouts[0]);
    for (const auto& f : st.fused) s += " +" + f;
    if (!st.detail.empty()) s += "  (" + st.detail + ")";
  }
  return s;
}

const StepInfo* step_named(const PlanInfo& p, const std::string& node) {
  for (const StepInfo& s : p.steps)
    if (s.node == node) return &s;
  return nullptr;
}

int count_op(const PlanInfo& p, const std::string& op) {
  return static_cast<int>(std::count_if(p.steps.begin(), p.steps.end(), [&](const StepInfo& s) { return s.op == op; }));
}

bool fused_into(const StepInfo* s, const std::string& name) {
  return s && std::find(s->fused.begin(), s->fused.end(), name) != s->fused.end();
}

// No planner-inserted reorder; every step runs a oneDNN kernel and, but the last (the
// graph output, plain), writes a blocked layout. `plain_ok` lists steps allowed to be
// plain: ASPP's image-pooling branch works on a 1x1 map (the same bytes in any layout),
// and its broadcast back is written plain and taken into the concat's layout by the
// concat kernel itself.
void check_blocked_until_output(const PlanInfo& p, const std::vector<std::string>& plain_ok = {}) {
  CHECK(count_op(p, "Reorder") == 0);
  for (size_t i = 0; i + 1 < p.steps.size(); ++i) {
    INFO("step " << i << " " << p.steps[i].node);
    CHECK(p.steps[i].kernel.find("_onednn") != std::string::npos);
    if (std::find(plain_ok.begin(), plain_ok.end(), p.steps[i].node) == plain_ok.end())
      CHECK(p.steps[i].output_layouts.at(0) != "plain");
  }
  CHECK(p.steps.back().output_layouts.at(0) == "plain");
}

const std::vector<std::string> kImagePooling = {"aspp.convs.4.0", "aspp.convs.4.1", "aspp.convs.4"};

TEST_CASE("every segmentation block matches PyTorch, fast and reference kernels", "[segmentation][blocks]") {
  const std::string dir = data_dir("ATROUS_SEG_CASES") + "/blocks";
  std::vector<std::string> names = list_cases(dir);
  REQUIRE(names.size() >= 8);
  for (const std::string& n : names) {
    INFO("case " << n);
    run_case(n);
  }
}

TEST_CASE("ASPP: BN and ReLU fold into the convs, rates beyond the map cost one tap, blocked through the concat",
          "[segmentation][blocks][aspp]") {
  Ran r = run_case("aspp_rates_beyond_map");  // rates 12/24/36 on a 9x11 map
  const PlanInfo& p = r.fast.plan;
  INFO("plan:" << describe(p));
  CHECK(count_op(p, "BatchNorm") == 0);
  CHECK(count_op(p, "Unary") == 0);
  for (int i = 1; i <= 3; ++i) {
    const std::string b = "aspp.convs." + std::to_string(i);
    const StepInfo* s = step_named(p, b + ".0");
    REQUIRE(s != nullptr);
    CHECK(fused_into(s, b + ".1"));
    CHECK(fused_into(s, b));
    // every dilated tap but the centre reads padding only: the conv runs as a 1x1
    CHECK(s->detail.find("taps 1x1 of 3x3") != std::string::npos);
    CHECK(s->flops == Approx(2.0 * 32 * 9 * 11 * 48));
  }
  check_blocked_until_output(p, kImagePooling);

  // Rates 6/12/18 on 33x29: the 6 and 12 taps all land inside, 18 only partly.
  // The scaffold conv before the block has 24 outputs on a 29-column map, which
  // conv2d_spatial would take; the layout checks are about oneDNN's chain.
  Ran q = run_case("aspp_rates_partly_inside", kOnednnOnly);
  INFO("plan:" << describe(q.fast.plan));
  const StepInfo* s18 = step_named(q.fast.plan, "aspp.convs.3.0");
  REQUIRE(s18 != nullptr);
  CHECK(s18->detail.find("taps") == std::string::npos);  // 18 < 29: all three taps read the map
  check_blocked_until_output(q.fast.plan, kImagePooling);
}

// The convs of `names` run conv2d_spatial and write plain NCHW; the only reorder is the
// one that makes the blocked output of the oneDNN conv before them plain.
void check_spatial(const PlanInfo& p, const std::vector<std::string>& names) {
  CHECK(count_op(p, "Reorder") <= 1);
  for (const std::string& n : names) {
    INFO("step " << n);
    const StepInfo* s = step_named(p, n);
    REQUIRE(s != nullptr);
    CHECK(s->kernel == "conv2d_spatial");
    CHECK(s->output_layouts.at(0) == "plain");
  }
}

TEST_CASE("GCN block: the branch sum is fused as the residual of one branch's last conv", "[segmentation][blocks][gcn]") {
  // gcn_k3's map is 10 columns wide: conv2d_spatial declines rows under 16 columns.
  for (const char* name : {"gcn_k15", "gcn_k21_beyond_map", "gcn_k7", "gcn_k3"}) {
    const bool narrow_map = std::string(name) == "gcn_k3";
    for (bool onednn_only : {false, true}) {
      Ran r = run_case(name, onednn_only ? kOnednnOnly : std::vector<std::string>{});
      const PlanInfo& p = r.fast.plan;
      INFO(name << (onednn_only ? " without conv2d_spatial" : "") << " plan:" << describe(p));
      // pre, conv_l1, conv_r1, conv_r2, conv_l2 (+ the Add, with conv_r2's output as its
      // residual), and with conv2d_spatial the reorder of pre's output to plain
      REQUIRE(p.steps.size() - static_cast<size_t>(count_op(p, "Reorder")) == 5);
      CHECK(count_op(p, "Binary") == 0);
      const StepInfo* l2 = step_named(p, "gcm.conv_l2");
      REQUIRE(l2 != nullptr);
      CHECK(fused_into(l2, "gcm"));
      CHECK(p.steps.back().node == "gcm.conv_l2");
      if (onednn_only || narrow_map) check_blocked_until_output(p);
      else check_spatial(p, {"gcm.conv_l1", "gcm.conv_r1", "gcm.conv_r2", "gcm.conv_l2"});
    }
  }
}

TEST_CASE("Boundary Refinement: one fused pass, or two convs with the ReLU and the residual add fused",
          "[segmentation][blocks][br]") {
  for (bool onednn_only : {false, true}) {
    const std::vector<std::string> excluded = onednn_only ? kOnednnOnly : std::vector<std::string>{};
    INFO((onednn_only ? "without conv2d_spatial and boundary_refinement_fused" : "default kernels"));
    // A 15-column map: oneDNN's kernels either way.
    Ran r = run_case("br_plain_input", excluded);
    const PlanInfo& p = r.fast.plan;
    INFO("plan:" << describe(p));
    REQUIRE(p.steps.size() == 2);
    CHECK(fused_into(step_named(p, "brm.conv1"), "brm.relu"));
    CHECK(fused_into(step_named(p, "brm.conv2"), "brm"));
    CHECK(p.steps[0].output_layouts.at(0) != "plain");

    Ran g = run_case("gcn_then_br", excluded);
    INFO("plan:" << describe(g.fast.plan));
    // pre, l1, r1, r2, l2 (+gcm), then brm.conv1 (+relu) and brm.conv2 (+brm), or one
    // BoundaryRefinement step for all four; + pre's reorder
    CHECK(g.fast.plan.steps.size() - static_cast<size_t>(count_op(g.fast.plan, "Reorder")) == (onednn_only ? 7u : 6u));
    CHECK(count_op(g.fast.plan, "Binary") == 0);
    CHECK(count_op(g.fast.plan, "Unary") == 0);
    if (onednn_only) {
      check_blocked_until_output(g.fast.plan);
      CHECK(count_op(g.fast.plan, "BoundaryRefinement") == 0);
    } else {
      check_spatial(g.fast.plan, {"gcm.conv_l1", "gcm.conv_r1", "gcm.conv_r2", "gcm.conv_l2"});
      const StepInfo* br = step_named(g.fast.plan, "brm");  // named after the block
      REQUIRE(br != nullptr);
      CHECK(br->op == "BoundaryRefinement");
      CHECK(br->kernel == "boundary_refinement_fused");
      for (const char* f : {"brm.conv1", "brm.relu", "brm.conv2", "brm"}) CHECK(fused_into(br, f));
    }
  }
}

// 2 · O · C · the (output, tap) pairs of a stride-1, "same"-sized convolution whose input
// pixel lies inside the h × w map, counted one by one (not with conv_taps.h).
double useful_flops(int64_t c, int64_t o, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t dil) {
  const int64_t ph = (kh - 1) / 2 * dil, pw = (kw - 1) / 2 * dil;
  int64_t n = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t iy = y - ph + i * dil, ix = x - pw + j * dil;
          n += iy >= 0 && iy < h && ix >= 0 && ix < w;
        }
  return 2.0 * static_cast<double>(c * o * n);
}

TEST_CASE("Convolution flops count only the products with pixels inside the map, on every kernel",
          "[segmentation][blocks][flops]") {
  // The reported GFLOP/s (atrous bench, tools/bench/seg_bench.py) must not credit a kernel
  // with products of padding: DeepLab's dilated taps and GCN's 15-tall kernels on small maps.
  for (int mode = 0; mode < 2; ++mode) {
    const std::vector<std::string> excluded = mode == 0 ? std::vector<std::string>{} : kOnednnOnly;
    INFO((mode == 0 ? "default kernels" : "oneDNN only"));
    Ran a = run_case("aspp_rates_partly_inside", excluded);  // 40 -> 24 channels, 33 x 29, rates 6/12/18
    for (const auto* plan : {&a.fast.plan, &a.ref.plan}) {
      const int rates[] = {6, 12, 18};
      for (int i = 1; i <= 3; ++i) {
        const StepInfo* s = step_named(*plan, "aspp.convs." + std::to_string(i) + ".0");
        REQUIRE(s != nullptr);
        INFO(s->node << " on " << s->kernel);
        CHECK(s->flops == Approx(useful_flops(40, 24, 33, 29, 3, 3, rates[i - 1])));
      }
    }
    Ran g = run_case("gcn_then_br", excluded);  // 32 -> 21, k = 15, on 24 x 20; BR of 21 channels
    for (const auto* plan : {&g.fast.plan, &g.ref.plan}) {
      const struct {
        const char* node;
        int64_t c, kh, kw;
      } convs[] = {{"gcm.conv_l1", 32, 15, 1}, {"gcm.conv_r1", 32, 1, 15}, {"gcm.conv_r2", 21, 15, 1}, {"gcm.conv_l2", 21, 1, 15}};
      for (const auto& cv : convs) {
        const StepInfo* s = step_named(*plan, cv.node);
        REQUIRE(s != nullptr);
        INFO(s->node << " on " << s->kernel);
        CHECK(s->flops == Approx(useful_flops(cv.c, 21, 24, 20, cv.kh, cv.kw, 1)));
      }
      const double br = useful_flops(21, 21, 24, 20, 3, 3, 1);
      // The fused node, or two convs (then "brm" is the add, or fused into conv2).
      const StepInfo* s = step_named(*plan, "brm");
      if (s != nullptr && s->op == "BoundaryRefinement") {
        INFO(s->node << " on " << s->kernel);
        CHECK(s->flops == Approx(2 * br));
      } else {
        for (const char* n : {"brm.conv1", "brm.conv2"}) {
          const StepInfo* c = step_named(*plan, n);
          REQUIRE(c != nullptr);
          INFO(c->node << " on " << c->kernel);
          CHECK(c->flops == Approx(br));
        }
      }
    }
  }
}

}  // namespace
}  // namespace atrous::test
