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
// Kernels: performer_chunked (packed projections; per (batch, head) task, the sequence
// in blocks of 256 rows: each block's feature GEMM (sgemm), max and vectorised exp, then
// the core on the block while it is in cache; no sequence-long feature buffer) and
// performer_ref (plain loops over the whole sequence, token-by-token recurrence).
#include <algorithm>
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
    c_ = std::pow(static_cast<float>(s_.d), -0.25f);
    ratio_ = 1.0f / std::sqrt(static_cast<float>(nf_));
    log_ratio_ = std::log(ratio_);
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
    cs.chunk = kCausalChunk;
    core_ = LinearCore(cs);
    request_scratch(ctx);
  }

  double flops() const override {
    return projection_flops(s_) + s_.batch * s_.heads * (core_.flops() + 2.0 * (s_.lq + s_.lk) * s_.d * nf_);
  }

 private:
  // Blocks of query and key rows whose features are computed at once (a multiple of the
  // causal chunk, so that the chunks are the same as over the whole sequence).
  static constexpr int64_t kRows = 256;
  static_assert(kRows % kCausalChunk == 0, "blocks must hold whole causal chunks");
  // Thread scratch: the core's state and scratch, then
  //   performer_chunked: one block of φ(Q) [kRows, F] and one of φ(K) [kRows, F], Σ v [M];
  //   performer_ref: φ(Q) [Lq, F] and φ(K) [Lk, F] of the whole sequence.
  int64_t thread_floats() const override {
    return core_thread_floats(core_) + (ref_ ? (s_.lq + s_.lk) * nf_ : kRows * 2 * nf_ + s_.m);
  }
  Status head(const RunBuffers& b, int64_t bi, int64_t h, const float* q, const float* k, const float* v, float* o,
              float* st) const override {
    const int64_t F = nf_;
    const float* w = input_or_null(b, kProjection);
    float* qf = st + core_thread_floats(core_);
    float* kf = qf + (ref_ ? s_.lq * F : kRows * F);
    const int64_t bh = bi * s_.heads + h;
    if (!ref_) return core_.shape().causal ? head_causal(b, bh, q, k, v, o, w, st, qf, kf) : head_noncausal(q, k, v, o, w, st, qf, kf);
    features_ref(q, s_.lq, w, true, qf);
    features_ref(k, s_.lk, w, false, kf);
    ref_core_head(b, core_, bh, kStateKv, kStateZ, qf, F, kf, F, v, o, st);
    return Status::Ok();
  }

  // performer_chunked, non-causal: block by block, keys into the state, then queries out
  // of it, each block's features finished while in cache. PerHead keys need the max over
  // all of them; the state instead sums ψ_j = exp(dd_j − diag_j − m) v_j with m the running
  // max, scaled by exp(m_old − m_new) whenever a block raises it, and Σ v_j apart. At the
  // end m is the head's max, and ratio · (ψ + kernel_eps) gives S = ratio · (Σ ψ_j v_j +
  // kernel_eps · Σ v_j) and z = ratio · (Σ ψ_j + kernel_eps · Lk): master's sums.
  Status head_noncausal(const float* q, const float* k, const float* v, float* o, const float* w, float* st, float* qf,
                        float* kf) const {
    const int64_t F = nf_, M = s_.m, ld = s_.inner, ldv = s_.inner_v;
    float* scratch = st + core_.state_floats();
    float* vsum = kf + kRows * F;
    std::fill(st, st + core_.state_floats(), 0.0f);
    std::fill(vsum, vsum + M, 0.0f);
    float run_max = -std::numeric_limits<float>::infinity();
    for (int64_t j0 = 0; j0 < s_.lk; j0 += kRows) {
      const int64_t nb = std::min(kRows, s_.lk - j0);
      const float* kb = k + j0 * ld;
      ATROUS_RETURN_IF_ERROR(projected(kb, nb, w, kf));
      if (per_token_) {
        for (int64_t i = 0; i < nb; ++i) finish_row(kb + i * ld, kf + i * F, row_max(kf + i * F, F), true);
      } else {
        float bm = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < nb; ++i) bm = std::max(bm, row_max(kf + i * F, F));
        if (bm > run_max) {
          if (run_max > -std::numeric_limits<float>::infinity()) {
            const float scale = std::exp(run_max - bm);
            for (int64_t t = 0; t < core_.state_floats(); ++t) st[t] *= scale;
          }
          run_max = bm;
        }
        for (int64_t i = 0; i < nb; ++i) {
          finish_row(kb + i * ld, kf + i * F, run_max, false);
          const float* vi = v + (j0 + i) * ldv;
#pragma omp simd
          for (int64_t e = 0; e < M; ++e) vsum[e] += vi[e];
        }
      }
      ATROUS_RETURN_IF_ERROR(core_.accumulate(kf, F, v + j0 * ldv, ldv, nb, st));
    }
    if (!per_token_) {
      const float ratio = ratio_, eps = kernel_eps_;
      float* z = st + F * M;
      for (int64_t f = 0; f < F; ++f) {
        float* row = st + f * M;
#pragma omp simd
        for (int64_t e = 0; e < M; ++e) row[e] = ratio * (row[e] + eps * vsum[e]);
        z[f] = ratio * (z[f] + eps * static_cast<float>(s_.lk));
      }
    }
    for (int64_t i0 = 0; i0 < s_.lq; i0 += kRows) {
      const int64_t nb = std::min(kRows, s_.lq - i0);
      ATROUS_RETURN_IF_ERROR(query_block(q + i0 * ld, nb, w, qf, F));
      ATROUS_RETURN_IF_ERROR(core_.read(qf, F, nb, o + i0 * ldv, ldv, st, scratch));
    }
    return Status::Ok();
  }

  // performer_chunked, causal: block by block, the chunked core carrying the state (from
  // the state inputs when given). PerHead keys: a first pass over the key blocks finds the
  // head's max (their dd only).
  Status head_causal(const RunBuffers& b, int64_t bh, const float* q, const float* k, const float* v, float* o, const float* w,
                     float* st, float* qf, float* kf) const {
    const int64_t F = nf_, ld = s_.inner, ldv = s_.inner_v, L = s_.lq;
    float* scratch = st + core_.state_floats();
    float head_max = -std::numeric_limits<float>::infinity();
    if (!per_token_)
      for (int64_t r0 = 0; r0 < L; r0 += kRows) {
        const int64_t nb = std::min(kRows, L - r0);
        ATROUS_RETURN_IF_ERROR(projected(k + r0 * ld, nb, w, kf));
        for (int64_t i = 0; i < nb; ++i) head_max = std::max(head_max, row_max(kf + i * F, F));
      }
    head_state_in(b, core_, bh, kStateKv, kStateZ, st);
    for (int64_t r0 = 0; r0 < L; r0 += kRows) {
      const int64_t nb = std::min(kRows, L - r0);
      const float* kb = k + r0 * ld;
      ATROUS_RETURN_IF_ERROR(query_block(q + r0 * ld, nb, w, qf, F));
      ATROUS_RETURN_IF_ERROR(projected(kb, nb, w, kf));
      for (int64_t i = 0; i < nb; ++i) finish_row(kb + i * ld, kf + i * F, per_token_ ? row_max(kf + i * F, F) : head_max, true);
      ATROUS_RETURN_IF_ERROR(core_.with_rows(nb, nb).run(qf, F, kf, F, v + r0 * ldv, ldv, o + r0 * ldv, ldv, st, scratch));
    }
    head_state_out(b, core_, bh, kStateZ, st);
    return Status::Ok();
  }

  // out [n, F] (row stride ld_out) = dd = (c·x) Wᵀ of n rows of x (row stride s_.inner).
  Status projected(const float* x, int64_t n, const float* w, float* out, int64_t ld_out = 0) const {
    return sgemm(false, true, n, nf_, s_.d, c_, x, s_.inner, w, s_.d, 0.0f, out, ld_out ? ld_out : nf_);
  }
  // φq of n query rows (row stride ld_out): each row's own max.
  Status query_block(const float* x, int64_t n, const float* w, float* out, int64_t ld_out) const {
    ATROUS_RETURN_IF_ERROR(projected(x, n, w, out, ld_out));
    for (int64_t i = 0; i < n; ++i) finish_row(x + i * s_.inner, out + i * ld_out, row_max(out + i * ld_out, nf_), true);
    return Status::Ok();
  }
  // row = exp(dd − |x|² c² / 2 − mx), then (full) ratio · (row + kernel_eps).
  void finish_row(const float* x, float* row, float mx, bool full) const {
    const int64_t D = s_.d, F = nf_;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t e = 0; e < D; ++e) sq += x[e] * x[e];
    const float shift = -(sq / 2.0f * c_ * c_) - mx;
    if (!full) return exp_add(row, row, F, shift);
    // ratio · (exp(a) + eps) as exp(a + ln ratio) + ratio · eps, in one vector pass
    exp_add(row, row, F, shift + log_ratio_, ratio_ * kernel_eps_);
  }

  // performer_ref: φ of n rows x (row stride s_.inner) into out [n, m] with plain loops,
  // as master computes it: dd, then the max (per row, or over the whole head), then
  // ratio · (exp(dd − diag − max) + kernel_eps).
  void features_ref(const float* x, int64_t n, const float* w, bool is_query, float* out) const {
    const int64_t D = s_.d, F = nf_, ld = s_.inner;
    const float c = c_, ratio = ratio_;
    const bool per_row = is_query || per_token_;
    float head_max = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t f = 0; f < F; ++f) {
        float acc = 0.0f;
        for (int64_t e = 0; e < D; ++e) acc += c * x[i * ld + e] * w[f * D + e];
        out[i * F + f] = acc;
        head_max = std::max(head_max, acc);
      }
    for (int64_t i = 0; i < n; ++i) {
      float mx = head_max;
      if (per_row) {
        mx = -std::numeric_limits<float>::infinity();
        for (int64_t f = 0; f < F; ++f) mx = std::max(mx, out[i * F + f]);
      }
      float sq = 0.0f;
      for (int64_t e = 0; e < D; ++e) sq += x[i * ld + e] * x[i * ld + e];
      const float diag = sq / 2.0f * c * c;
      for (int64_t f = 0; f < F; ++f) out[i * F + f] = ratio * (std::exp(out[i * F + f] - diag - mx) + kernel_eps_);
    }
  }

  int64_t nf_ = 1;
  float c_ = 1.0f, ratio_ = 1.0f, log_ratio_ = 0.0f;  // D^-1/4, m^-1/2, ln ratio
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
