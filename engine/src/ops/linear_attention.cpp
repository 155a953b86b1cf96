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
// Kernels: linear_attention_chunked (sgemm projections, vectorised φ, the chunked
// GEMM core of attention_common.h, threads over batch × heads) and
// linear_attention_ref (plain loops, token-by-token recurrence).
#include <omp.h>

#include <atomic>
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
class LinearAttentionKernel : public Kernel {
 public:
  LinearAttentionKernel(KernelContext& ctx, bool ref) : ref_(ref) {
    const auto& a = ctx.attrs<fb::LinearAttentionT>();
    s_ = proj_shapes(ctx, a.num_heads);
    if (!ref) packed_ = PackedProjections::create(ctx, s_);
    LinearCoreShape cs;
    cs.lq = s_.lq;
    cs.lk = s_.lk;
    cs.d = s_.d;
    cs.m = s_.m;
    cs.causal = a.causal;
    cs.denominator = true;
    cs.eps = a.eps;
    cs.chunk = 128;
    core_ = LinearCore(cs);
    threads_ = std::max(1, ctx.threads);
    const uint64_t f = sizeof(float);
    q_scr_ = ctx.scratch(f * s_.batch * s_.lq * s_.inner);
    k_scr_ = ctx.scratch(f * s_.batch * s_.lk * s_.inner);
    v_scr_ = ctx.scratch(f * s_.batch * s_.lk * s_.inner_v);
    o_scr_ = ctx.scratch(f * s_.batch * s_.lq * s_.inner_v);
    t_scr_ = ctx.scratch(f * threads_ * thread_floats());
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
    float *q = scr(q_scr_), *k = scr(k_scr_), *v = scr(v_scr_), *o = scr(o_scr_), *tall = scr(t_scr_);
    ATROUS_RETURN_IF_ERROR(project_qkv(s_, b, q, k, v, ref_, packed_.get()));
    feature_map(q, s_.batch * s_.lq * s_.inner);
    feature_map(k, s_.batch * s_.lk * s_.inner);
    const float* kv_in = input_or_null(b, kStateKv);
    const float* z_in = input_or_null(b, kStateZ);
    float* kv_out = output_or_null(b, 1);
    float* z_out = output_or_null(b, 2);
    const int64_t D = s_.d, M = s_.m;
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t bh = 0; bh < s_.batch * s_.heads; ++bh) {
      const int64_t bi = bh / s_.heads, h = bh % s_.heads;
      float* st = tall + static_cast<int64_t>(omp_get_thread_num()) * thread_floats();
      state_in(kv_in ? kv_in + bh * D * M : nullptr, z_in ? z_in + bh * D : nullptr, D, M, true, st);
      const float* qh = q + bi * s_.lq * s_.inner + h * D;
      const float* kh = k + bi * s_.lk * s_.inner + h * D;
      const float* vh = v + bi * s_.lk * s_.inner_v + h * M;
      float* oh = o + bi * s_.lq * s_.inner_v + h * M;
      if (ref_) core_.run_ref(qh, s_.inner, kh, s_.inner, vh, s_.inner_v, oh, s_.inner_v, st);
      else if (!core_.run(qh, s_.inner, kh, s_.inner, vh, s_.inner_v, oh, s_.inner_v, st, st + core_.state_floats()).ok())
        failed = true;
      if (kv_out) state_out(st, D, M, true, kv_out + bh * D * M, z_out + bh * D);
    }
    if (failed) return internal_error("sgemm failed in the linear attention core");
    return project_out(s_, b, o, static_cast<float*>(b.out[0]), ref_, packed_.get());
  }
  double flops() const override { return projection_flops(s_) + s_.batch * s_.heads * core_.flops(); }

 private:
  int64_t thread_floats() const { return core_.state_floats() + (ref_ ? 0 : core_.scratch_floats()); }
  void feature_map(float* x, int64_t n) const {
    if (!ref_) return elu_add_inplace(x, n, 1.0f);
    for (int64_t i = 0; i < n; ++i) x[i] = (x[i] > 0.0f ? x[i] : std::expm1(x[i])) + 1.0f;
  }

  bool ref_;
  ProjShapes s_;
  std::unique_ptr<PackedProjections> packed_;  // null for the reference kernel
  LinearCore core_{LinearCoreShape{}};
  int threads_ = 1;
  int q_scr_, k_scr_, v_scr_, o_scr_, t_scr_;
};

Result<std::unique_ptr<Kernel>> create_chunked(KernelContext& ctx) { return std::unique_ptr<Kernel>(new LinearAttentionKernel(ctx, false)); }
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return std::unique_ptr<Kernel>(new LinearAttentionKernel(ctx, true)); }

const KernelDef kChunked = {"linear_attention_chunked", false, create_chunked};
const KernelDef kRef = {"linear_attention_ref", false, create_ref};

}  // namespace

const OpDef kLinearAttentionOp = {"LinearAttention", 1, 13, 1, 3, check, infer, {&kChunked, &kRef}};

}  // namespace atrous
