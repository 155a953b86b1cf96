// PerformerAttention: FAVOR+ with positive random features, the layout and the
// stabilisers of lucidrains/performer-pytorch master (softmax_kernel, linear_attention,
// causal_linear_attention). Per head, with W = projection_matrix [m, D] (a constant
// from the checkpoint, never redrawn), c = D^-1/4, ratio = m^-1/2:
//   dd = (c·x) Wᵀ,  diag = |x|² c² / 2
//   φq = ratio · (exp(dd − diag − max_f dd) + kernel_eps)             (max per query row)
//   φk = ratio · (exp(dd − diag − max dd) + kernel_eps)               (key_max PerHead: the max
//        over all positions and features of the (batch, head), as master; PerToken: per key row)
//   non-causal: y_i = φq_i (Σ_j φk_j v_jᵀ) / (φq_i · Σ_j φk_j)          (no eps)
//   causal:     y_i = φq_i (Σ_{j<=i} φk_j v_jᵀ) / (φq_i · (Σ_{j<=i} φk_j + causal_eps))
// (causal_eps is added to every feature of the key cumsum, so the denominator gains
// causal_eps · Σ_f φq_f.) The PerHead key max depends on the whole sequence, so a
// causal output streamed token by token can only match with key_max PerToken: state
// inputs/outputs need it. Generalised (ReLU) kernels and local heads are not modelled.
// inputs 0-10 (attention_common.h); 11 projection_matrix [m, D]; 12 state_kv [B, H, m, M]?;
// 13 state_z [B, H, m]?. outputs: y [B, Lq, Eo], state_kv', state_z' (optional).
//
// Kernels: performer_chunked (sgemm projections and feature GEMMs, vectorised exp,
// the chunked core; threads over batch × heads) and performer_ref (plain loops,
// token-by-token recurrence).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "onednn/gemm.h"
#include "ops/attention_common.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using namespace attn;
constexpr int kProjection = 11, kStateKv = 12, kStateZ = 13;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::PerformerAttentionT>();
  if (a.num_heads < 1) return ctx.fail("num_heads must be >= 1, got " + std::to_string(a.num_heads));
  if (!std::isfinite(a.kernel_eps) || a.kernel_eps < 0 || !std::isfinite(a.causal_eps) || a.causal_eps < 0)
    return ctx.fail("kernel_eps and causal_eps must be finite and >= 0");
  if (a.key_max != fb::PerformerKeyMax::PerHead && a.key_max != fb::PerformerKeyMax::PerToken) return ctx.fail("unknown key_max");
  ATROUS_RETURN_IF_ERROR(check_projections(ctx));
  ATROUS_RETURN_IF_ERROR(ctx.expect_constant(kProjection));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kProjection, {DType::kF32}));
  if (ctx.value(kProjection).shape.size() != 2) return ctx.fail("projection_matrix must be [m, D], got " + shape_string(ctx.value(kProjection).shape));
  if (ctx.has(kStateKv) != ctx.has(kStateZ)) return ctx.fail("state_kv and state_z come together");
  if (ctx.node.outputs.size() != 1 && ctx.node.outputs.size() != 3) return ctx.fail("outputs are y, or y, state_kv', state_z'");
  const bool streaming = ctx.has(kStateKv) || ctx.node.outputs.size() == 3;
  if (streaming && !a.causal) return ctx.fail("a streaming state needs causal = true");
  if (streaming && a.key_max != fb::PerformerKeyMax::PerToken)
    return ctx.fail("a streaming state needs key_max = PerToken (the PerHead key max depends on future keys)");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kStateKv, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kStateZ, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::PerformerAttentionT>();
  ProjShapes s;
  ATROUS_RETURN_IF_ERROR(infer_projections(ctx, a.num_heads, &s));
  if (a.causal && s.lq != s.lk) return ctx.fail("causal attention needs Lq == Lk, got " + std::to_string(s.lq) + " and " + std::to_string(s.lk));
  const Shape& w = ctx.in[kProjection];
  if (w[1] != s.d) return ctx.fail("projection_matrix " + shape_string(w) + " must have head dim " + std::to_string(s.d) + " columns");
  const Shape kv = {s.batch, s.heads, w[0], s.m}, z = {s.batch, s.heads, w[0]};
  ATROUS_RETURN_IF_ERROR(expect_state_shape(ctx, kStateKv, kv, "state_kv"));
  ATROUS_RETURN_IF_ERROR(expect_state_shape(ctx, kStateZ, z, "state_z"));
  ctx.out = {{s.batch, s.lq, s.eo}};
  if (ctx.node.outputs.size() == 3) {
    ctx.out.push_back(kv);
    ctx.out.push_back(z);
  }
  return Status::Ok();
}

// ---- kernels ----------------------------------------------------------------
class PerformerKernel : public ProjectedHeadsKernel {
 public:
  PerformerKernel(KernelContext& ctx, bool ref)
      : ProjectedHeadsKernel(ctx, ctx.attrs<fb::PerformerAttentionT>().num_heads, ref, "FAVOR+ kernel") {
    const auto& a = ctx.attrs<fb::PerformerAttentionT>();
    nf_ = ctx.in[kProjection].shape[0];
    kernel_eps_ = a.kernel_eps;
    per_token_ = a.key_max == fb::PerformerKeyMax::PerToken;
    LinearCoreShape cs;
    cs.lq = s_.lq;
    cs.lk = s_.lk;
    cs.d = nf_;
    cs.m = s_.m;
    cs.causal = a.causal;
    cs.denominator = true;
    cs.eps_qsum = a.causal ? a.causal_eps : 0.0f;
    cs.chunk = 128;
    core_ = LinearCore(cs);
    request_scratch(ctx);
  }

  double flops() const override {
    return projection_flops(s_) + s_.batch * s_.heads * (core_.flops() + 2.0 * (s_.lq + s_.lk) * s_.d * nf_);
  }

 private:
  // Thread scratch: the core's state and scratch, then φ(Q) [Lq, F] and φ(K) [Lk, F].
  int64_t thread_floats() const override { return core_thread_floats(core_) + (s_.lq + s_.lk) * nf_; }
  Status head(const RunBuffers& b, int64_t bi, int64_t h, const float* q, const float* k, const float* v, float* o,
              float* st) const override {
    const int64_t F = nf_;
    const float* w = input_or_null(b, kProjection);
    float* qf = st + core_thread_floats(core_);
    float* kf = qf + s_.lq * F;
    ATROUS_RETURN_IF_ERROR(features(q, s_.lq, w, true, qf));
    ATROUS_RETURN_IF_ERROR(features(k, s_.lk, w, false, kf));
    return core_head(b, core_, bi * s_.heads + h, kStateKv, kStateZ, qf, F, kf, F, v, o, st);
  }

  // φ of n rows x (row stride s_.inner) into out [n, m], in blocks of kFeatureRows rows:
  // each block's dd = (c·x) Wᵀ is still in cache when its rows are finished (queries and
  // PerToken keys: max, exp, ratio and eps at once) or scanned for the max (PerHead keys:
  // one more pass finishes them after the last block).
  static constexpr int64_t kFeatureRows = 256;
  Status features(const float* x, int64_t n, const float* w, bool is_query, float* out) const {
    const int64_t D = s_.d, F = nf_, ld = s_.inner;
    const float c = std::pow(static_cast<float>(D), -0.25f);
    const bool per_row = is_query || per_token_;
    float head_max = -std::numeric_limits<float>::infinity();
    for (int64_t i0 = 0; i0 < n; i0 += kFeatureRows) {
      const int64_t nb = std::min(kFeatureRows, n - i0);
      float* blk = out + i0 * F;
      if (ref_) {
        for (int64_t i = i0; i < i0 + nb; ++i)
          for (int64_t f = 0; f < F; ++f) {
            float acc = 0.0f;
            for (int64_t e = 0; e < D; ++e) acc += c * x[i * ld + e] * w[f * D + e];
            out[i * F + f] = acc;
          }
      } else {
        ATROUS_RETURN_IF_ERROR(sgemm(false, true, nb, F, D, c, x + i0 * ld, ld, w, D, 0.0f, blk, F));
      }
      for (int64_t i = i0; i < i0 + nb; ++i) {
        const float mx = ref_ ? plain_max(out + i * F, F) : row_max(out + i * F, F);
        if (per_row) finish_row(x + i * ld, out + i * F, mx, c);
        else head_max = std::max(head_max, mx);
      }
    }
    if (!per_row)
      for (int64_t i = 0; i < n; ++i) finish_row(x + i * ld, out + i * F, head_max, c);
    return Status::Ok();
  }
  // row = ratio · (exp(dd − |x|² c² / 2 − mx) + kernel_eps).
  void finish_row(const float* x, float* row, float mx, float c) const {
    const int64_t D = s_.d, F = nf_;
    const float ratio = 1.0f / std::sqrt(static_cast<float>(F));
    float sq = 0.0f;
    if (ref_) {
      for (int64_t e = 0; e < D; ++e) sq += x[e] * x[e];
    } else {
#pragma omp simd reduction(+ : sq)
      for (int64_t e = 0; e < D; ++e) sq += x[e] * x[e];
    }
    const float diag = sq / 2.0f * c * c;
    if (ref_) {
      for (int64_t f = 0; f < F; ++f) row[f] = ratio * (std::exp(row[f] - diag - mx) + kernel_eps_);
      return;
    }
    exp_add(row, row, F, -diag - mx);
    const float eps = kernel_eps_;
#pragma omp simd
    for (int64_t f = 0; f < F; ++f) row[f] = ratio * (row[f] + eps);
  }
  static float plain_max(const float* x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
    return m;
  }

  int64_t nf_ = 1;
  float kernel_eps_ = 1e-4f;
  bool per_token_ = false;
  LinearCore core_{LinearCoreShape{}};
};

Result<std::unique_ptr<Kernel>> create_chunked(KernelContext& ctx) { return std::unique_ptr<Kernel>(new PerformerKernel(ctx, false)); }
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return std::unique_ptr<Kernel>(new PerformerKernel(ctx, true)); }

const KernelDef kChunked = {"performer_chunked", false, create_chunked};
const KernelDef kRef = {"performer_ref", false, create_ref};

}  // namespace

const OpDef kPerformerAttentionOp = {"PerformerAttention", 1, 14, 1, 3, check, infer, {&kChunked, &kRef}};

}  // namespace atrous
