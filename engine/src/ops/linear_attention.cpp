// LinearAttention: "Transformers are RNNs" (Katharopoulos et al. 2020), the layout
// of idiap/fast-transformers' AttentionLayer + LinearAttention / CausalLinearAttention /
// RecurrentLinearAttention. Per head, with φ(x) = elu(x) + 1 and no 1/sqrt(D):
//   y_i = φ(q_i)ᵀ S / (φ(q_i) · z + eps),  S = Σ_j φ(k_j) v_jᵀ,  z = Σ_j φ(k_j)
// over all j, or j <= i when causal (inclusive, as the recurrent form, which adds
// key i to the state before reading it). eps = 1e-6 is added to the dot product.
// inputs 0-10 (attention_common.h); 11 state_kv [B, H, D, M]?; 12 state_z [B, H, D]?
// outputs: y [B, Lq, Eo], state_kv' [B, H, D, M], state_z' [B, H, D] (the last two
// optional; state needs causal). Key padding (fast-transformers' key_lengths) is not
// modelled: give only real tokens.
//
// Kernels: linear_attention_fused (per group of heads and block of 256 tokens: the
// group's projections with weights packed at plan time, φ and the chunked core of
// attention_common.h while the block is in cache), linear_attention_chunked (the same
// schedule with sgemm projections on the weights in place: for shapes oneDNN has no
// packed form for) and linear_attention_ref (plain loops, token-by-token recurrence).
#include <cmath>

#include "ops/attention_common.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using namespace attn;
constexpr int kStateKv = 11, kStateZ = 12;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::LinearAttentionT>();
  if (a.num_heads < 1) return ctx.fail("num_heads must be >= 1, got " + std::to_string(a.num_heads));
  if (!std::isfinite(a.eps) || a.eps < 0) return ctx.fail("eps must be finite and >= 0");
  ATROUS_RETURN_IF_ERROR(check_projections(ctx));
  if (ctx.has(kStateKv) != ctx.has(kStateZ)) return ctx.fail("state_kv and state_z come together");
  if (ctx.node.outputs.size() != 1 && ctx.node.outputs.size() != 3) return ctx.fail("outputs are y, or y, state_kv', state_z'");
  if ((ctx.has(kStateKv) || ctx.node.outputs.size() == 3) && !a.causal) return ctx.fail("a streaming state needs causal = true");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kStateKv, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kStateZ, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::LinearAttentionT>();
  ProjShapes s;
  ATROUS_RETURN_IF_ERROR(infer_projections(ctx, a.num_heads, &s));
  if (a.causal && s.lq != s.lk) return ctx.fail("causal linear attention needs Lq == Lk, got " + std::to_string(s.lq) + " and " + std::to_string(s.lk));
  const Shape kv = {s.batch, s.heads, s.d, s.m}, z = {s.batch, s.heads, s.d};
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
class LinearAttentionKernel : public ProjectedHeadsKernel {
 public:
  enum class Mode { kFused, kChunked, kRef };
  LinearAttentionKernel(KernelContext& ctx, Mode mode)
      : ProjectedHeadsKernel(ctx, ctx.attrs<fb::LinearAttentionT>().num_heads, mode == Mode::kRef, "linear attention core",
                             mode != Mode::kRef) {
    const auto& a = ctx.attrs<fb::LinearAttentionT>();
    LinearCoreShape cs;
    cs.lq = s_.lq;
    cs.lk = s_.lk;
    cs.d = s_.d;
    cs.m = s_.m;
    cs.causal = a.causal;
    cs.denominator = true;
    cs.eps = a.eps;
    cs.chunk = kCausalChunk;
    core_ = LinearCore(cs);
    if (mode != Mode::kRef) fused_status_ = enable_fused(ctx, core_, kStateKv, kStateZ, mode == Mode::kFused);
    request_scratch(ctx);
  }
  double flops() const override { return projection_flops(s_) + s_.batch * s_.heads * core_.flops(); }

 private:
  // The reference kernel's per-head run (the others run the fused mode).
  int64_t thread_floats() const override { return core_thread_floats(core_); }
  // φ = elu + 1 over all of Q and K.
  void before_heads(float* q, float* k) const override {
    feature_map(q, s_.batch * s_.lq * s_.inner);
    feature_map(k, s_.batch * s_.lk * s_.inner);
  }
  Status head(const RunBuffers& b, int64_t bi, int64_t h, const float* q, const float* k, const float* v, float* o,
              float* st) const override {
    ref_core_head(b, core_, bi * s_.heads + h, kStateKv, kStateZ, q, s_.inner, k, s_.inner, v, o, st);
    return Status::Ok();
  }
  void feature(float* x, int64_t n) const override { elu_add_serial(x, n, 1.0f); }
  static void feature_map(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = (x[i] > 0.0f ? x[i] : std::expm1(x[i])) + 1.0f;
  }

  LinearCore core_{LinearCoreShape{}};
};

using Mode = LinearAttentionKernel::Mode;
Result<std::unique_ptr<Kernel>> create_fused(KernelContext& ctx) { return create_fused_kernel<LinearAttentionKernel>(ctx, Mode::kFused); }
Result<std::unique_ptr<Kernel>> create_chunked(KernelContext& ctx) { return std::unique_ptr<Kernel>(new LinearAttentionKernel(ctx, Mode::kChunked)); }
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return std::unique_ptr<Kernel>(new LinearAttentionKernel(ctx, Mode::kRef)); }

const KernelDef kFused = {"linear_attention_fused", false, create_fused};
const KernelDef kChunked = {"linear_attention_chunked", false, create_chunked};
const KernelDef kRef = {"linear_attention_ref", false, create_ref};

}  // namespace

const OpDef kLinearAttentionOp = {"LinearAttention", 1, 13, 1, 3, check, infer, {&kFused, &kChunked, &kRef}};

}  // namespace atrous
