// NormAttention: TransNormer (Qin et al. 2022, OpenNLPLab/fairseq-evo
// NormLinearAttention and NormLocalAttention), batch-first [B, L, E] (fairseq is
// time-major: the converter transposes around the node).
// block_size 0 (NormLinearAttention): per head, φ = act (plain ELU by default, may be
// negative), no scaling, no denominator:
//   o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ   over all j, or j <= i when causal.
// block_size > 0 (NormLocalAttention.forward_chunk): blocks of block_size tokens
// attend only within themselves, o = act(q kᵀ / sqrt(D)) v with act ReLU (no softmax);
// causal zeroes j > i after the act; the last block may be partial (the reference
// zero-pads k and v, which adds nothing).
// Then y = out_proj(norm(o)), the norm over all heads' features of a token:
//   LayerNorm (weight, bias; eps 1e-5), RMSNorm (scale · o / (rms + eps), eps 1e-8),
//   SimpleRMSNorm (o / (rms + eps)), GatedRMSNorm (RMSNorm · sigmoid(gate · o)),
//   rms = |o|₂ / sqrt(Iv), eps added to the rms, not under the root.
// inputs 0-10 (attention_common.h); 11 norm weight/scale [Iv]?; 12 norm bias or gate [Iv]?;
// 13 state_kv [B, H, D, M]? (linear form, causal). outputs: y, state_kv' (optional).
//
// Kernels: norm_attention_fused (the linear form: per group of heads and block of 256
// tokens, projections with weights packed at plan time, φ and the core while the block
// is in cache; attention_common.h), norm_attention_gemm (the linear form: the same
// schedule with sgemm projections on the weights in place; the block form: projections,
// then per-block GEMMs, threads over batch × heads) and norm_attention_ref (plain loops).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "onednn/gemm.h"
#include "ops/activation.h"
#include "ops/attention_common.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using namespace attn;
constexpr int kNormWeight = 11, kNormBias = 12, kStateKv = 13;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::NormAttentionT>();
  if (a.num_heads < 1) return ctx.fail("num_heads must be >= 1, got " + std::to_string(a.num_heads));
  if (a.block_size < 0) return ctx.fail("block_size must be >= 0");
  if (!valid_activation(a.act)) return ctx.fail("unknown act");
  if (!std::isfinite(a.norm_eps) || a.norm_eps < 0) return ctx.fail("norm_eps must be finite and >= 0");
  ATROUS_RETURN_IF_ERROR(check_projections(ctx));
  using N = fb::NormAttentionNorm;
  const bool need_w = a.norm == N::RMSNorm || a.norm == N::GatedRMSNorm, need_b = a.norm == N::GatedRMSNorm;
  if (a.norm < N::MIN || a.norm > N::MAX) return ctx.fail("unknown norm");
  if (need_w && !ctx.has(kNormWeight)) return ctx.fail(std::string(fb::EnumNameNormAttentionNorm(a.norm)) + " needs its scale (input 11)");
  if (need_b && !ctx.has(kNormBias)) return ctx.fail("GatedRMSNorm needs its gate (input 12)");
  if (a.norm == N::SimpleRMSNorm && (ctx.has(kNormWeight) || ctx.has(kNormBias))) return ctx.fail("SimpleRMSNorm has no parameters");
  for (int i : {kNormWeight, kNormBias}) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    if (ctx.has(i)) ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
  }
  if (ctx.node.outputs.size() > 1 && (!a.causal || a.block_size > 0))
    return ctx.fail("a streaming state needs causal = true and the linear form (block_size 0)");
  if (ctx.has(kStateKv) && (!a.causal || a.block_size > 0))
    return ctx.fail("a streaming state needs causal = true and the linear form (block_size 0)");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kStateKv, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::NormAttentionT>();
  ProjShapes s;
  ATROUS_RETURN_IF_ERROR(infer_projections(ctx, a.num_heads, &s));
  if ((a.causal || a.block_size > 0) && s.lq != s.lk)
    return ctx.fail("causal or block attention needs Lq == Lk, got " + std::to_string(s.lq) + " and " + std::to_string(s.lk));
  for (int i : {kNormWeight, kNormBias})
    ATROUS_RETURN_IF_ERROR(expect_state_shape(ctx, i, {s.inner_v}, i == kNormWeight ? "norm weight" : "norm bias/gate"));
  const Shape kv = {s.batch, s.heads, s.d, s.m};
  ATROUS_RETURN_IF_ERROR(expect_state_shape(ctx, kStateKv, kv, "state_kv"));
  ctx.out = {{s.batch, s.lq, s.eo}};
  if (ctx.node.outputs.size() == 2) ctx.out.push_back(kv);
  return Status::Ok();
}

// ---- kernels ----------------------------------------------------------------
class NormAttentionKernel : public ProjectedHeadsKernel {
 public:
  enum class Mode { kFused, kGemm, kRef };
  NormAttentionKernel(KernelContext& ctx, Mode mode)
      : ProjectedHeadsKernel(ctx, ctx.attrs<fb::NormAttentionT>().num_heads, mode == Mode::kRef, "TransNormer attention",
                             mode == Mode::kFused || (mode == Mode::kGemm && ctx.attrs<fb::NormAttentionT>().block_size == 0)),
        a_(ctx.attrs<fb::NormAttentionT>()) {
    LinearCoreShape cs;
    cs.lq = s_.lq;
    cs.lk = s_.lk;
    cs.d = s_.d;
    cs.m = s_.m;
    cs.causal = a_.causal;
    cs.denominator = false;
    cs.chunk = kCausalChunk;
    core_ = LinearCore(cs);
    if (mode == Mode::kFused)
      fused_status_ = a_.block_size > 0 ? KernelContext::decline("block_size > 0 (the local form has no running state)")
                                         : enable_fused(ctx, core_, kStateKv, -1);
    else if (mode == Mode::kGemm && a_.block_size == 0)
      fused_status_ = enable_fused(ctx, core_, kStateKv, -1, /*packed=*/false);
    request_scratch(ctx);
  }

  double flops() const override {
    if (a_.block_size == 0) return projection_flops(s_) + s_.batch * s_.heads * core_.flops();
    return projection_flops(s_) + 2.0 * s_.batch * s_.heads * s_.lq * a_.block_size * (s_.d + s_.m);
  }

 private:
  int64_t thread_floats() const override {
    if (a_.block_size > 0) return static_cast<int64_t>(a_.block_size) * a_.block_size;
    return core_thread_floats(core_);
  }
  // The kernel φ over all of Q and K (the reference kernel's linear form; the block form
  // applies it to scores).
  void before_heads(float* q, float* k) const override {
    if (a_.block_size != 0) return;
    act(q, s_.batch * s_.lq * s_.inner);
    act(k, s_.batch * s_.lk * s_.inner);
  }
  Status head(const RunBuffers& b, int64_t bi, int64_t h, const float* q, const float* k, const float* v, float* o,
              float* st) const override {
    if (a_.block_size > 0) return blocks(q, k, v, o, st);
    // The linear form runs here only in the reference kernel (the others fuse it).
    ref_core_head(b, core_, bi * s_.heads + h, kStateKv, -1, q, s_.inner, k, s_.inner, v, o, st);
    return Status::Ok();
  }
  // φ of a block, on the calling thread (inside the fused kernel's parallel region).
  void feature(float* x, int64_t n) const override {
    if (a_.act == fb::ActKind::Elu) return elu_add_serial(x, n, 0.0f);
    for (int64_t i = 0; i < n; ++i) x[i] = activate(x[i], a_.act);
  }
  void after_heads(const RunBuffers& b, float* o) const override {
    normalize(o, input_or_null(b, kNormWeight), input_or_null(b, kNormBias));
  }
  void act(float* x, int64_t n) const {
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t i = 0; i < n; ++i) x[i] = activate(x[i], a_.act);
  }

  // Block-diagonal local attention of one head; A [bs, bs] scratch.
  Status blocks(const float* q, const float* k, const float* v, float* o, float* A) const {
    const int64_t bs = a_.block_size, D = s_.d, M = s_.m, L = s_.lq;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    for (int64_t r0 = 0; r0 < L; r0 += bs) {
      const int64_t c = std::min(bs, L - r0);
      const float* qc = q + r0 * s_.inner;
      const float* kc = k + r0 * s_.inner;
      const float* vc = v + r0 * s_.inner_v;
      float* oc = o + r0 * s_.inner_v;
      if (ref_) {
        for (int64_t i = 0; i < c; ++i)
          for (int64_t j = 0; j < c; ++j) {
            float acc = 0.0f;
            for (int64_t e = 0; e < D; ++e) acc += (qc[i * s_.inner + e] * scale) * kc[j * s_.inner + e];
            A[i * bs + j] = activate(acc, a_.act);
          }
      } else {
        ATROUS_RETURN_IF_ERROR(sgemm(false, true, c, c, D, scale, qc, s_.inner, kc, s_.inner, 0.0f, A, bs));
        for (int64_t i = 0; i < c; ++i)
          for (int64_t j = 0; j < c; ++j) A[i * bs + j] = activate(A[i * bs + j], a_.act);
      }
      if (a_.causal)
        for (int64_t i = 0; i < c; ++i) std::fill(A + i * bs + i + 1, A + i * bs + c, 0.0f);
      if (ref_) {
        for (int64_t i = 0; i < c; ++i)
          for (int64_t e = 0; e < M; ++e) {
            float acc = 0.0f;
            for (int64_t j = 0; j < c; ++j) acc += A[i * bs + j] * vc[j * s_.inner_v + e];
            oc[i * s_.inner_v + e] = acc;
          }
      } else {
        ATROUS_RETURN_IF_ERROR(sgemm(false, false, c, M, c, 1.0f, A, bs, vc, s_.inner_v, 0.0f, oc, s_.inner_v));
      }
    }
    return Status::Ok();
  }

  void normalize(float* o, const float* w, const float* b) const {
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t r = 0; r < s_.batch * s_.lq; ++r) normalize_row(o + r * s_.inner_v, w, b);
  }
  void after_rows(const RunBuffers& b, float* o, int64_t rows) const override {
    const float* w = input_or_null(b, kNormWeight);
    const float* bias = input_or_null(b, kNormBias);
    for (int64_t r = 0; r < rows; ++r) normalize_row(o + r * s_.inner_v, w, bias);
  }
  void normalize_row(float* x, const float* w, const float* b) const {
    using N = fb::NormAttentionNorm;
    const int64_t n = s_.inner_v;
    const float eps = a_.norm_eps;
    if (a_.norm == N::LayerNorm) {
      float mean = 0.0f, var = 0.0f;
      for (int64_t i = 0; i < n; ++i) mean += x[i];
      mean /= static_cast<float>(n);
      for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
      const float inv = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
      for (int64_t i = 0; i < n; ++i) x[i] = (x[i] - mean) * inv * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
      return;
    }
    float sq = 0.0f;
    for (int64_t i = 0; i < n; ++i) sq += x[i] * x[i];
    const float inv = 1.0f / (std::sqrt(sq) / std::sqrt(static_cast<float>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) {
      float y = x[i] * inv * (w ? w[i] : 1.0f);
      if (a_.norm == N::GatedRMSNorm) y *= 1.0f / (1.0f + std::exp(-b[i] * x[i]));
      x[i] = y;
    }
  }

  fb::NormAttentionT a_;
  LinearCore core_{LinearCoreShape{}};
};

using Mode = NormAttentionKernel::Mode;
Result<std::unique_ptr<Kernel>> create_fused(KernelContext& ctx) { return create_fused_kernel<NormAttentionKernel>(ctx, Mode::kFused); }
Result<std::unique_ptr<Kernel>> create_gemm(KernelContext& ctx) { return std::unique_ptr<Kernel>(new NormAttentionKernel(ctx, Mode::kGemm)); }
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return std::unique_ptr<Kernel>(new NormAttentionKernel(ctx, Mode::kRef)); }

const KernelDef kFused = {"norm_attention_fused", false, create_fused};
const KernelDef kGemm = {"norm_attention_gemm", false, create_gemm};
const KernelDef kRef = {"norm_attention_ref", false, create_ref};

}  // namespace

const OpDef kNormAttentionOp = {"NormAttention", 1, 14, 1, 2, check, infer, {&kFused, &kGemm, &kRef}};

}  // namespace atrous
