// MultiHeadAttention: softmax attention with q/k/v/out projections.
// inputs 0-10 (attention_common.h): query [B, Lq, Eq], key [B, Lk, Ek]?, value [B, Lk, Ev]?,
// wq [I, Eq], bq?, wk [I, Ek], bk?, wv [Iv, Ev], bv?, wo [Eo, Iv], bo?; 11 bias? (additive,
// broadcastable to [B, heads, Lq, Lk], e.g. a mask of 0 / -inf); 12 residual? [B, Lq, Eo]
// (added to the output: a transformer's x + attn(x) in one node) -> y [B, Lq, Eo].
// Per head h: softmax(scale · q_h k_hᵀ + bias) v_h, scale 1/sqrt(D) unless given.
// I may be smaller than Eq (SAM's cross-attention: internal dim 128 of 256).
// causal: query i sees key j when j <= i + (Lk - Lq) (bottom-right aligned, so a
// query block appended to a key cache is causal too); Lk >= Lq is required.
// A row whose keys are all masked gives 0 (PyTorch gives NaN).
//
// Kernels: mha_tiled (memory-efficient: keys in tiles with an online softmax, so
// the Lq×Lk score matrix never exists; per (batch, head, query tile) task the score
// tile and the output tile are sgemm calls on the calling thread) and mha_naive
// (reference: plain loops over a materialised [Lq, Lk] score matrix per head).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "onednn/gemm.h"
#include "ops/attention_common.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using namespace attn;
constexpr int kBias = 11, kResidual = 12;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::MultiHeadAttentionT>();
  if (a.num_heads < 1) return ctx.fail("num_heads must be >= 1, got " + std::to_string(a.num_heads));
  if (!std::isfinite(a.scale) || a.scale < 0) return ctx.fail("scale must be finite and >= 0 (0: 1/sqrt(head dim))");
  ATROUS_RETURN_IF_ERROR(check_projections(ctx));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kBias, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kResidual, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::MultiHeadAttentionT>();
  ProjShapes s;
  ATROUS_RETURN_IF_ERROR(infer_projections(ctx, a.num_heads, &s));
  if (a.causal && s.lk < s.lq)
    return ctx.fail("causal attention needs at least as many keys as queries, got Lq " + std::to_string(s.lq) + ", Lk " + std::to_string(s.lk));
  if (ctx.has(kBias)) {
    const Shape& bs = ctx.in[kBias];
    const Shape full = {s.batch, s.heads, s.lq, s.lk};
    bool ok = bs.size() <= 4;
    for (size_t i = 0; ok && i < bs.size(); ++i) {
      int64_t want = full[4 - bs.size() + i];
      ok = bs[i] == want || bs[i] == 1;
    }
    if (!ok) return ctx.fail("bias " + shape_string(bs) + " does not broadcast to [B, heads, Lq, Lk] = " + shape_string(full));
  }
  if (ctx.has(kResidual) && ctx.in[kResidual] != Shape{s.batch, s.lq, s.eo})
    return ctx.fail("residual " + shape_string(ctx.in[kResidual]) + " must have the output's shape " + shape_string({s.batch, s.lq, s.eo}));
  ctx.out = {{s.batch, s.lq, s.eo}};
  return Status::Ok();
}

// ---- kernels ----------------------------------------------------------------
// What both kernels share: shapes, scale, bias strides, projection scratch.
struct MhaPlan {
  ProjShapes s;
  float scale = 1.0f;
  bool causal = false;
  int64_t offset = 0;               // query i sees keys j <= i + offset
  int64_t bias_stride[4] = {0, 0, 0, 0};  // b, h, i, j (0 = broadcast)
  bool has_bias = false;
  int threads = 1;
  int q_scr = -1, k_scr = -1, v_scr = -1, o_scr = -1, thread_scr = -1;
  std::shared_ptr<PackedProjections> packed;  // mha_tiled's weights packed for oneDNN (null: naive)

  void init(KernelContext& ctx) {
    const auto& a = ctx.attrs<fb::MultiHeadAttentionT>();
    s = proj_shapes(ctx, a.num_heads);
    scale = a.scale > 0 ? a.scale : 1.0f / std::sqrt(static_cast<float>(s.d));
    causal = a.causal;
    offset = s.lk - s.lq;
    threads = std::max(1, ctx.threads);
    if (present(ctx, kBias)) {
      has_bias = true;
      const Shape& bs = ctx.in[kBias].shape;
      int64_t stride = 1;
      for (size_t i = bs.size(); i-- > 0;) {
        bias_stride[4 - bs.size() + i] = bs[i] == 1 ? 0 : stride;
        stride *= bs[i];
      }
    }
    const uint64_t f = sizeof(float);
    q_scr = ctx.scratch(f * s.batch * s.lq * s.inner);
    k_scr = ctx.scratch(f * s.batch * s.lk * s.inner);
    v_scr = ctx.scratch(f * s.batch * s.lk * s.inner_v);
    o_scr = ctx.scratch(f * s.batch * s.lq * s.inner_v);
  }
  const float* bias_row(const float* bias, int64_t b, int64_t h, int64_t i) const {
    return bias + b * bias_stride[0] + h * bias_stride[1] + i * bias_stride[2];
  }
  // Keys visible to query i (all when not causal).
  int64_t visible(int64_t i) const { return causal ? std::min(s.lk, i + offset + 1) : s.lk; }
  double attention_flops() const {
    double keys = 0;
    for (int64_t i = 0; i < s.lq; ++i) keys += static_cast<double>(visible(i));
    return 2.0 * s.batch * s.heads * keys * static_cast<double>(s.d + s.m);
  }
};

// Reference: plain loops, the whole score matrix of one head at a time.
class MhaNaive : public Kernel {
 public:
  explicit MhaNaive(const MhaPlan& p) : p_(p) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const ProjShapes& s = p_.s;
    float* q = static_cast<float*>(b.scratch[static_cast<size_t>(p_.q_scr)]);
    float* k = static_cast<float*>(b.scratch[static_cast<size_t>(p_.k_scr)]);
    float* v = static_cast<float*>(b.scratch[static_cast<size_t>(p_.v_scr)]);
    float* o = static_cast<float*>(b.scratch[static_cast<size_t>(p_.o_scr)]);
    float* scores_all = static_cast<float*>(b.scratch[static_cast<size_t>(p_.thread_scr)]);
    const float* bias = input_or_null(b, kBias);
    ATROUS_RETURN_IF_ERROR(project_qkv(s, b, q, k, v, /*ref=*/true));
#pragma omp parallel for num_threads(p_.threads) schedule(dynamic)
    for (int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
      const int64_t bi = bh / s.heads, h = bh % s.heads;
      float* sc = scores_all + static_cast<int64_t>(omp_get_thread_num()) * s.lq * s.lk;  // [Lq, Lk]
      for (int64_t i = 0; i < s.lq; ++i) {
        const float* qi = q + (bi * s.lq + i) * s.inner + h * s.d;
        const float* brow = bias ? p_.bias_row(bias, bi, h, i) : nullptr;
        for (int64_t j = 0; j < s.lk; ++j) {
          const float* kj = k + (bi * s.lk + j) * s.inner + h * s.d;
          float acc = 0.0f;
          for (int64_t c = 0; c < s.d; ++c) acc += qi[c] * kj[c];
          acc *= p_.scale;
          if (brow) acc += brow[j * p_.bias_stride[3]];
          sc[i * s.lk + j] = j < p_.visible(i) ? acc : -std::numeric_limits<float>::infinity();
        }
      }
      for (int64_t i = 0; i < s.lq; ++i) {
        float* row = sc + i * s.lk;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < s.lk; ++j) mx = std::max(mx, row[j]);
        float sum = 0.0f;
        for (int64_t j = 0; j < s.lk; ++j) {
          row[j] = mx == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(row[j] - mx);
          sum += row[j];
        }
        float* oi = o + (bi * s.lq + i) * s.inner_v + h * s.m;
        for (int64_t c = 0; c < s.m; ++c) oi[c] = 0.0f;
        for (int64_t j = 0; j < s.lk; ++j) {
          const float pj = sum > 0 ? row[j] / sum : 0.0f;
          const float* vj = v + (bi * s.lk + j) * s.inner_v + h * s.m;
          for (int64_t c = 0; c < s.m; ++c) oi[c] += pj * vj[c];
        }
      }
    }
    ATROUS_RETURN_IF_ERROR(project_out(s, b, o, static_cast<float*>(b.out[0]), /*ref=*/true));
    add_residual(input_or_null(b, kResidual), static_cast<float*>(b.out[0]), s.batch * s.lq * s.eo, p_.threads);
    return Status::Ok();
  }
  double flops() const override { return projection_flops(p_.s) + p_.attention_flops(); }

 private:
  MhaPlan p_;
};

Result<std::unique_ptr<Kernel>> create_naive(KernelContext& ctx) {
  MhaPlan p;
  p.init(ctx);
  p.thread_scr = ctx.scratch(sizeof(float) * static_cast<uint64_t>(p.threads) * p.s.lq * p.s.lk);
  return std::unique_ptr<Kernel>(new MhaNaive(p));
}

// Memory-efficient: per (batch, head, query tile), keys in tiles of kTileK with
// the running max m, running sum l and unnormalised output O of each query row:
// on a new tile with row max m', O and l are scaled by exp(m - m') before the
// tile's exp(s - m') weights are added (Milakov & Gimelshein's online softmax).
class MhaTiled : public Kernel {
 public:
  static constexpr int64_t kTileQ = 64, kTileK = 512;
  explicit MhaTiled(const MhaPlan& p) : p_(p) {}

  Result<std::unique_ptr<KernelState>> bind(const RunBuffers& b) const override {
    if (!p_.packed) return std::unique_ptr<KernelState>();
    auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
    ATROUS_ASSIGN_OR_RETURN(auto bound, p_.packed->bind(b, scr(p_.q_scr), scr(p_.k_scr), scr(p_.v_scr),
                                                        scr(p_.o_scr), static_cast<float*>(b.out[0])));
    return std::unique_ptr<KernelState>(std::move(bound));
  }

  Status run(const RunBuffers& b, KernelState* state) const override {
    const auto* bound = static_cast<const BoundProjections*>(state);
    const ProjShapes& s = p_.s;
    float* q = static_cast<float*>(b.scratch[static_cast<size_t>(p_.q_scr)]);
    float* k = static_cast<float*>(b.scratch[static_cast<size_t>(p_.k_scr)]);
    float* v = static_cast<float*>(b.scratch[static_cast<size_t>(p_.v_scr)]);
    float* o = static_cast<float*>(b.scratch[static_cast<size_t>(p_.o_scr)]);
    float* thread_all = static_cast<float*>(b.scratch[static_cast<size_t>(p_.thread_scr)]);
    const float* bias = input_or_null(b, kBias);
    ATROUS_RETURN_IF_ERROR(project_qkv(s, b, q, k, v, /*ref=*/false, bound));
    const int64_t qtiles = (s.lq + kTileQ - 1) / kTileQ;
    const int64_t tasks = s.batch * s.heads * qtiles;
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(p_.threads) schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      if (failed.load(std::memory_order_relaxed)) continue;
      // Causal tiles near the end have the most keys: start with them.
      const int64_t tt = tasks - 1 - t;
      const int64_t qt = tt % qtiles, bh = tt / qtiles, bi = bh / s.heads, h = bh % s.heads;
      float* scr = thread_all + static_cast<int64_t>(omp_get_thread_num()) * thread_floats();
      if (!tile(q, k, v, o, bias, bi, h, qt * kTileQ, std::min(kTileQ, s.lq - qt * kTileQ), scr).ok()) failed = true;
    }
    if (failed) return internal_error("sgemm failed in the attention tiles");
    ATROUS_RETURN_IF_ERROR(project_out(s, b, o, static_cast<float*>(b.out[0]), /*ref=*/false, bound));
    add_residual(input_or_null(b, kResidual), static_cast<float*>(b.out[0]), s.batch * s.lq * s.eo, p_.threads);
    return Status::Ok();
  }
  double flops() const override { return projection_flops(p_.s) + p_.attention_flops(); }
  std::string detail() const override { return std::string("tiles ") + std::to_string(kTileQ) + "x" + std::to_string(kTileK) + ", " + vector_isa(); }
  static int64_t thread_floats() { return kTileQ * kTileK + 2 * kTileQ; }

 private:
  Status tile(const float* q, const float* k, const float* v, float* o, const float* bias, int64_t bi, int64_t h, int64_t i0,
              int64_t nq, float* scr) const {
    const ProjShapes& s = p_.s;
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    float* S = scr;                      // [nq, kTileK] scores, then weights
    float* mrow = S + kTileQ * kTileK;   // [nq] running max
    float* lrow = mrow + kTileQ;         // [nq] running sum
    const float* qp = q + (bi * s.lq + i0) * s.inner + h * s.d;
    float* op = o + (bi * s.lq + i0) * s.inner_v + h * s.m;
    for (int64_t i = 0; i < nq; ++i) {
      std::fill(op + i * s.inner_v, op + i * s.inner_v + s.m, 0.0f);
      mrow[i] = kNegInf;
      lrow[i] = 0.0f;
    }
    const int64_t kend = p_.visible(i0 + nq - 1);
    for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
      const int64_t nk = std::min(kTileK, kend - j0);
      ATROUS_RETURN_IF_ERROR(sgemm(false, true, nq, nk, s.d, p_.scale, qp, s.inner, k + (bi * s.lk + j0) * s.inner + h * s.d,
                                   s.inner, 0.0f, S, kTileK));
      for (int64_t i = 0; i < nq; ++i) {
        float* row = S + i * kTileK;
        const int64_t lim = std::max<int64_t>(0, std::min(nk, p_.visible(i0 + i) - j0));
        if (bias) {
          const float* brow = p_.bias_row(bias, bi, h, i0 + i) + j0 * p_.bias_stride[3];
          const int64_t bs = p_.bias_stride[3];
          for (int64_t j = 0; j < lim; ++j) row[j] += brow[j * bs];
        }
        const float mnew = std::max(mrow[i], lim > 0 ? row_max(row, lim) : kNegInf);
        if (mnew == kNegInf) {  // nothing visible yet
          std::fill(row, row + nk, 0.0f);
          continue;
        }
        const float corr = mrow[i] == kNegInf ? 0.0f : std::exp(mrow[i] - mnew);
        const float sum = exp_shift_sum(row, lim, mnew);
        std::fill(row + lim, row + nk, 0.0f);
        lrow[i] = lrow[i] * corr + sum;
        if (corr != 1.0f) {
          float* oi = op + i * s.inner_v;
          for (int64_t c = 0; c < s.m; ++c) oi[c] *= corr;
        }
        mrow[i] = mnew;
      }
      ATROUS_RETURN_IF_ERROR(sgemm(false, false, nq, s.m, nk, 1.0f, S, kTileK, v + (bi * s.lk + j0) * s.inner_v + h * s.m,
                                   s.inner_v, 1.0f, op, s.inner_v));
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float inv = lrow[i] > 0 ? 1.0f / lrow[i] : 0.0f;
      float* oi = op + i * s.inner_v;
      for (int64_t c = 0; c < s.m; ++c) oi[c] *= inv;
    }
    return Status::Ok();
  }

  MhaPlan p_;
};

Result<std::unique_ptr<Kernel>> create_tiled(KernelContext& ctx) {
  MhaPlan p;
  p.init(ctx);
  p.thread_scr = ctx.scratch(sizeof(float) * static_cast<uint64_t>(p.threads) * MhaTiled::thread_floats());
  p.packed = PackedProjections::create(ctx, p.s);
  return std::unique_ptr<Kernel>(new MhaTiled(p));
}

const KernelDef kMhaTiled = {"mha_tiled", false, create_tiled};
const KernelDef kMhaNaive = {"mha_naive", false, create_naive};

}  // namespace

// mha_folded (mha_folded.cpp, SAM's decoder) first: it declines unless one sequence is short.
extern const KernelDef kMhaFolded;
const OpDef kMultiHeadAttentionOp = {"MultiHeadAttention", 1, 13, 1, 1, check, infer, {&kMhaFolded, &kMhaTiled, &kMhaNaive}};

}  // namespace atrous
