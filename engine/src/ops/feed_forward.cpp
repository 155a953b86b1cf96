// FeedForward: y = act(x · w1ᵀ + b1) · w2ᵀ + b2 + residual, the transformer MLP
// (SAM's encoder MLPBlock with exact GELU, the two-way transformer's ReLU MLP).
// x [..., C], w1 [F, C], b1 [F]?, w2 [Co, F], b2 [Co]?, residual [..., Co]? -> y [..., Co];
// the leading dims are flattened to M rows. The residual may share y's buffer. w1 and the
// biases are constants; w2 may also be computed (SAM's mask head: the second upscaling
// conv, its GELU and the product with the hypernetwork outputs in one node, w2 the
// block-diagonal of those outputs).
//
// Kernels, all in chunks of rows whose hidden activations stay in scratch, with a
// vectorised activation between the two GEMMs:
//  - feed_forward_packed: w1 and w2 packed at plan time into oneDNN's inner-product
//    layout (PackedGemm; their model-file pages are then dropped), the biases inside
//    the GEMMs; a computed w2 goes through small_sgemm, rows split between threads.
//    Chunks of 512 rows, more when the hidden layer is narrow (about 1 MiB of hidden
//    activations per chunk). No call allocates, where sgemm allocates packing buffers
//    on every call, a few MiB of transient memory each (SAM's encoder: at its peak RSS).
//  - feed_forward_sgemm: chunks of 512 rows, two sgemm calls on the weights as they lie
//    in the model file.
//  - feed_forward_ref: plain loops, one row at a time.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "onednn/gemm.h"
#include "onednn/packed_gemm.h"
#include "ops/activation.h"
#include "ops/activation_rows.h"
#include "ops/attention_common.h"
#include "ops/gemm_threads.h"
#include "ops/op_registry.h"
#include "ops/small_gemm.h"

namespace atrous {
namespace {

enum Input { kX = 0, kW1, kB1, kW2, kB2, kResidual };

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::FeedForwardT>();
  if (!valid_activation(a.activation)) return ctx.fail("unknown activation");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kX, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kResidual, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_constant(kW1));
  if (!ctx.has(kW2)) return ctx.fail("w2 (input 3) is missing");
  for (int i : {kW1, kW2}) ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  // w2's shape is checked by infer(): a computed w2 has none before shapes are inferred.
  const Shape& w1 = ctx.value(kW1).shape;
  if (w1.size() != 2 || w1[0] < 1 || w1[1] < 1) return ctx.fail("w1 must be a non-empty 2-D weight, got " + shape_string(w1));
  for (int i : {kB1, kB2}) {
    if (!ctx.has(i)) continue;
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  }
  if (ctx.has(kB1) && ctx.value(kB1).shape != Shape{w1[0]})
    return ctx.fail("b1 must be [" + std::to_string(w1[0]) + "], got " + shape_string(ctx.value(kB1).shape));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const Shape& x = ctx.in[kX];
  const Shape& w1 = ctx.in[kW1];
  const Shape& w2 = ctx.in[kW2];
  if (w2.size() != 2 || w2[0] < 1 || w2[1] != w1[0])
    return ctx.fail("w2 " + shape_string(w2) + " must be [Co, " + std::to_string(w1[0]) + "]: it takes the hidden features of w1 " + shape_string(w1));
  if (ctx.has(kB2) && ctx.in[kB2] != Shape{w2[0]})
    return ctx.fail("b2 must be [" + std::to_string(w2[0]) + "], got " + shape_string(ctx.in[kB2]));
  if (x.empty() || x.back() != w1[1])
    return ctx.fail("input " + shape_string(x) + " must end in the " + std::to_string(w1[1]) + " features w1 " + shape_string(w1) + " takes");
  Shape y = x;
  y.back() = w2[0];
  if (ctx.has(kResidual) && ctx.in[kResidual] != y)
    return ctx.fail("residual " + shape_string(ctx.in[kResidual]) + " must have the output shape " + shape_string(y));
  ctx.out = {y};
  return Status::Ok();
}

// ---- kernels ----------------------------------------------------------------
struct FfnShape {
  int64_t rows = 1, c = 1, f = 1, co = 1;
  fb::ActKind act = fb::ActKind::Gelu;
  float alpha = 1.0f;
  int threads = 1;
  double flops() const { return 2.0 * rows * f * (c + co); }

  void init(const KernelContext& ctx) {
    const auto& a = ctx.attrs<fb::FeedForwardT>();
    c = ctx.in[kX].shape.back();
    rows = checked_numel(ctx.in[kX].shape).value() / c;
    f = ctx.in[kW1].shape[0];
    co = ctx.in[kW2].shape[0];
    act = a.activation;
    alpha = a.act_alpha;
    threads = std::max(1, ctx.threads);
  }
};

class FeedForwardSgemm : public Kernel {
 public:
  static constexpr int64_t kChunk = 512;
  FeedForwardSgemm(const FfnShape& s, int hidden, int row_scr) : s_(s), hidden_(hidden), row_scr_(row_scr) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[kX]);
    const float* w1 = static_cast<const float*>(b.in[kW1]);
    const float* b1 = attn::input_or_null(b, kB1);
    const float* w2 = static_cast<const float*>(b.in[kW2]);
    const float* b2 = attn::input_or_null(b, kB2);
    const float* res = attn::input_or_null(b, kResidual);
    float* y = static_cast<float*>(b.out[0]);
    float* h = static_cast<float*>(b.scratch[static_cast<size_t>(hidden_)]);        // [kChunk, F]
    float* rows_e = static_cast<float*>(b.scratch[static_cast<size_t>(row_scr_)]);  // [threads, F]
    const int64_t F = s_.f, C = s_.c, Co = s_.co;
    for (int64_t r0 = 0; r0 < s_.rows; r0 += kChunk) {
      const int64_t n = std::min(kChunk, s_.rows - r0);
      ATROUS_RETURN_IF_ERROR(sgemm_sized(s_.threads, false, true, n, F, C, 1.0f, x + r0 * C, C, w1, C, 0.0f, h, F));
      float* yc = y + r0 * Co;
      const float* rc = res ? res + r0 * Co : nullptr;
#pragma omp parallel for num_threads(s_.threads) schedule(static) if (n * F >= 16384)
      for (int64_t r = 0; r < n; ++r) {
        bias_activate_row(h + r * F, F, b1, 0.0f, s_.act, s_.alpha, rows_e + static_cast<int64_t>(omp_get_thread_num()) * F);
        float* yr = yc + r * Co;  // y = residual + b2, then += h · w2ᵀ
        for (int64_t o = 0; o < Co; ++o) yr[o] = (rc ? rc[r * Co + o] : 0.0f) + (b2 ? b2[o] : 0.0f);
      }
      ATROUS_RETURN_IF_ERROR(sgemm_sized(s_.threads, false, true, n, Co, F, 1.0f, h, F, w2, F, 1.0f, yc, Co));
    }
    return Status::Ok();
  }
  double flops() const override { return s_.flops(); }
  std::string detail() const override { return "chunks of " + std::to_string(kChunk) + " rows, " + attn::vector_isa(); }

 private:
  FfnShape s_;
  int hidden_, row_scr_;
};

Result<std::unique_ptr<Kernel>> create_sgemm(KernelContext& ctx) {
  FfnShape s;
  s.init(ctx);
  const uint64_t f = sizeof(float);
  int hidden = ctx.scratch(f * std::min(FeedForwardSgemm::kChunk, s.rows) * s.f);
  int rows = ctx.scratch(f * s.threads * s.f);
  return std::unique_ptr<Kernel>(new FeedForwardSgemm(s, hidden, rows));
}

class FeedForwardPacked : public Kernel {
 public:
  // Rows per chunk: kChunk, or more when the hidden layer is narrow, so that a chunk's
  // hidden activations fill about 1 MiB (SAM's mask head, F = 128: 2048 rows; fewer
  // chunks, fewer parallel regions).
  static int64_t chunk_rows(int64_t f) { return std::max<int64_t>(FeedForwardSgemm::kChunk, (int64_t{1} << 18) / f / 64 * 64); }
  int64_t chunk = FeedForwardSgemm::kChunk;
  // [0]: full chunks, [1]: the last, shorter chunk (null when there is none).
  std::unique_ptr<PackedGemm> g1[2], g2[2];
  int hidden = -1, staged = -1, row_scr = -1;  // scratch: h [chunk, F], t [chunk, Co] (with a residual), [threads, F]

  explicit FeedForwardPacked(const FfnShape& s) : s_(s) {}

  struct State : KernelState {
    std::unique_ptr<PackedGemm::Bound> g1[2], g2[2];
  };

  Result<std::unique_ptr<KernelState>> bind(const RunBuffers& b) const override {
    auto st = std::make_unique<State>();
    float* h = static_cast<float*>(b.scratch[static_cast<size_t>(hidden)]);
    float* t = staged >= 0 ? static_cast<float*>(b.scratch[static_cast<size_t>(staged)]) : static_cast<float*>(b.out[0]);
    for (int i = 0; i < 2; ++i) {
      if (!g1[i]) continue;
      ATROUS_ASSIGN_OR_RETURN(st->g1[i], g1[i]->bind(static_cast<const float*>(b.in[kX]), attn::input_or_null(b, kB1), h, b));
      if (g2[i]) {
        ATROUS_ASSIGN_OR_RETURN(st->g2[i], g2[i]->bind(h, attn::input_or_null(b, kB2), t, b));
      }
    }
    return std::unique_ptr<KernelState>(std::move(st));
  }

  Status run(const RunBuffers& b, KernelState* state) const override {
    const auto* st = static_cast<const State*>(state);
    const float* x = static_cast<const float*>(b.in[kX]);
    const float* res = attn::input_or_null(b, kResidual);
    float* y = static_cast<float*>(b.out[0]);
    float* h = static_cast<float*>(b.scratch[static_cast<size_t>(hidden)]);
    float* t = staged >= 0 ? static_cast<float*>(b.scratch[static_cast<size_t>(staged)]) : nullptr;
    float* rows_e = static_cast<float*>(b.scratch[static_cast<size_t>(row_scr)]);
    const int64_t F = s_.f, C = s_.c, Co = s_.co;
    for (int64_t r0 = 0; r0 < s_.rows; r0 += chunk) {
      const int64_t n = std::min(chunk, s_.rows - r0);
      const int i = r0 + chunk <= s_.rows || s_.rows < chunk ? 0 : 1;  // [1]: the shorter last chunk
      ATROUS_RETURN_IF_ERROR(st->g1[i]->run_on(x + r0 * C, h));
#pragma omp parallel for num_threads(s_.threads) schedule(static) if (n * F >= 16384)
      for (int64_t r = 0; r < n; ++r)
        bias_activate_row(h + r * F, F, nullptr, 0.0f, s_.act, s_.alpha, rows_e + static_cast<int64_t>(omp_get_thread_num()) * F);
      // With a residual (which may share y's buffer), the GEMM writes t and y = t + residual.
      if (st->g2[i])
        ATROUS_RETURN_IF_ERROR(st->g2[i]->run_on(h, t ? t : y + r0 * Co));
      else
        second_runtime(b, h, n, t ? t : y + r0 * Co);
      if (!t) continue;
      float* yc = y + r0 * Co;
      const float* rc = res + r0 * Co;
#pragma omp parallel for num_threads(s_.threads) schedule(static) if (n * Co >= 16384)
      for (int64_t r = 0; r < n; ++r)
        for (int64_t o = 0; o < Co; ++o) yc[r * Co + o] = t[r * Co + o] + rc[r * Co + o];
    }
    return Status::Ok();
  }
  double flops() const override { return s_.flops(); }
  std::string detail() const override {
    return std::string(g2[0] ? "packed weights" : "w1 packed, w2 computed (small_sgemm)") + ", chunks of " + std::to_string(chunk) + " rows";
  }

 private:
  // dst [n, Co] = h · w2ᵀ + b2 for a w2 computed by the graph (not packable at plan
  // time): rows split between the threads, each product on its thread.
  void second_runtime(const RunBuffers& b, const float* h, int64_t n, float* dst) const {
    const float* w2 = static_cast<const float*>(b.in[kW2]);
    const float* b2 = attn::input_or_null(b, kB2);
    const int64_t F = s_.f, Co = s_.co;
    const int parts = static_cast<int>(std::min<int64_t>(s_.threads, (n + 15) / 16));
#pragma omp parallel num_threads(parts)
    {
      const int64_t p = omp_get_thread_num(), r0 = n * p / parts, r1 = n * (p + 1) / parts;
      (void)small_sgemm(false, true, r1 - r0, Co, F, 1.0f, h + r0 * F, F, w2, F, 0.0f, dst + r0 * Co, Co);
      if (b2)
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t o = 0; o < Co; ++o) dst[r * Co + o] += b2[o];
    }
  }

  FfnShape s_;
};

Result<std::unique_ptr<Kernel>> create_packed(KernelContext& ctx) {
  FfnShape s;
  s.init(ctx);
  auto k = std::make_unique<FeedForwardPacked>(s);
  k->chunk = FeedForwardPacked::chunk_rows(s.f);
  const bool b1 = ctx.constant.size() > kB1 && ctx.constant[kB1], b2 = ctx.constant.size() > kB2 && ctx.constant[kB2];
  const int64_t full = std::min(k->chunk, s.rows), tail = s.rows % k->chunk;
  for (int i = 0; i < 2; ++i) {
    const int64_t m = i == 0 ? full : (s.rows > full ? tail : 0);
    if (m == 0) continue;
    k->g1[i] = PackedGemm::create(ctx, m, s.c, s.f, ctx.constant[kW1], b1, 1, k->g1[0].get());
    if (!k->g1[i]) return KernelContext::decline("oneDNN has no packed inner product for these shapes");
    if (!ctx.constant[kW2]) continue;  // computed w2: second_runtime()
    k->g2[i] = PackedGemm::create(ctx, m, s.f, s.co, ctx.constant[kW2], b2, 1, k->g2[0].get());
    if (!k->g2[i]) return KernelContext::decline("oneDNN has no packed inner product for these shapes");
  }
  const uint64_t f = sizeof(float);
  k->hidden = ctx.scratch(f * full * s.f);
  if (ctx.present.size() > kResidual && ctx.present[kResidual]) k->staged = ctx.scratch(f * full * s.co);
  k->row_scr = ctx.scratch(f * s.threads * s.f);
  return std::unique_ptr<Kernel>(std::move(k));
}

// Reference: one row at a time, plain loops.
class FeedForwardRef : public Kernel {
 public:
  FeedForwardRef(const FfnShape& s, int hidden) : s_(s), hidden_(hidden) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[kX]);
    const float* w1 = static_cast<const float*>(b.in[kW1]);
    const float* b1 = attn::input_or_null(b, kB1);
    const float* w2 = static_cast<const float*>(b.in[kW2]);
    const float* b2 = attn::input_or_null(b, kB2);
    const float* res = attn::input_or_null(b, kResidual);
    float* y = static_cast<float*>(b.out[0]);
    float* hidden_all = static_cast<float*>(b.scratch[static_cast<size_t>(hidden_)]);  // [threads, F]
    const int64_t F = s_.f, C = s_.c, Co = s_.co;
#pragma omp parallel for num_threads(s_.threads) schedule(static)
    for (int64_t r = 0; r < s_.rows; ++r) {
      float* h = hidden_all + static_cast<int64_t>(omp_get_thread_num()) * F;
      const float* xr = x + r * C;
      for (int64_t j = 0; j < F; ++j) {
        float acc = b1 ? b1[j] : 0.0f;
        for (int64_t k = 0; k < C; ++k) acc += xr[k] * w1[j * C + k];
        h[j] = activate(acc, s_.act, s_.alpha);
      }
      for (int64_t o = 0; o < Co; ++o) {
        float acc = b2 ? b2[o] : 0.0f;
        for (int64_t j = 0; j < F; ++j) acc += h[j] * w2[o * F + j];
        y[r * Co + o] = acc + (res ? res[r * Co + o] : 0.0f);  // res may be y itself: read before write
      }
    }
    return Status::Ok();
  }
  double flops() const override { return s_.flops(); }

 private:
  FfnShape s_;
  int hidden_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  FfnShape s;
  s.init(ctx);
  return std::unique_ptr<Kernel>(new FeedForwardRef(s, ctx.scratch(sizeof(float) * s.threads * s.f)));
}

const KernelDef kFeedForwardPacked = {"feed_forward_packed", false, create_packed};
const KernelDef kFeedForwardSgemm = {"feed_forward_sgemm", false, create_sgemm};
const KernelDef kFeedForwardRef = {"feed_forward_ref", false, create_ref};

}  // namespace

const OpDef kFeedForwardOp = {"FeedForward", 1, 6, 1, 1, check, infer, {&kFeedForwardPacked, &kFeedForwardSgemm, &kFeedForwardRef},
                              /*inplace_input=*/kResidual};

}  // namespace atrous
