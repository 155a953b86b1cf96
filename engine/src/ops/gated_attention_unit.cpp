// GatedAttentionUnit: GAU and FLASH ("Transformer Quality in Linear Time", Hua et al.
// 2022), the layout of lucidrains/FLASH-pytorch master (classes GAU and FLASH).
//   xn = norm(x)  (LayerNorm; ScaleNorm x / max(|x|/sqrt(dim), eps) · g; or none)
//   shift_tokens: the first ceil(dim/2) channels of xn move one step later in time (0 first)
//   v, gate = SiLU(to_hidden(xn)) split in two (v first);  z = SiLU(to_qk(xn))
//   per head r of gamma/beta: z · gamma[r] + beta[r]  (GAU: q, k; FLASH: quad_q, lin_q, quad_k, lin_k)
// GAU (group_size 0): attn = act((q kᵀ + relpos) / L), causal zeroes j > i after the act.
// FLASH (group_size g): groups of g tokens (the last may be partial);
//   quad = act(quad_q quad_kᵀ / g + relpos) within a group (positions within the group);
//   lin: causal: lin_q · Σ_{earlier groups} lin_kᵀ v / g (exclusive over groups);
//        non-causal: lin_q · Σ_{all} lin_kᵀ v / L (reduce_group_non_causal) or per group / L.
//   out = quad v + lin.
// act: relu² or the Laplace function 0.5·(1 + erf((x − sqrt(1/2)) / (sqrt(1/(4π))·sqrt 2))).
// relpos: T5 buckets of i − j (bidirectional: 16 + 16 buckets, causal: 32), table
// [buckets, 1] times rel_pos_scale. y = to_out(out ⊙ gate) (+ x when add_residual).
// Rotary embeddings (FLASHTransformer passes them in) and key padding masks are not modelled.
//
// Kernels: gau_gemm and gau_ref (plain loops). gau_gemm runs the three projections with
// their weights packed at plan time (PackedGemm; sgemm when oneDNN declines) and SiLU in
// oneDNN's epilogue (else with the vector exp), the per-head scale/offset, the attention
// products as sgemm (threads over batch × query tiles or groups), and the gating by u in
// the pass that completes each tile's or group's rows.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "onednn/gemm.h"
#include "onednn/packed_gemm.h"
#include "ops/activation_rows.h"
#include "ops/attention_common.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

enum GauInput { kX = 0, kNormW, kNormB, kHiddenW, kHiddenB, kQkW, kQkB, kGamma, kBeta, kOutW, kOutB, kRelPos };

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::GatedAttentionUnitT>();
  if (a.group_size < 0) return ctx.fail("group_size must be >= 0 (0: GAU)");
  if (a.norm < fb::GauNorm::MIN || a.norm > fb::GauNorm::MAX) return ctx.fail("unknown norm");
  if (!std::isfinite(a.norm_eps) || a.norm_eps < 0 || !std::isfinite(a.rel_pos_scale)) return ctx.fail("norm_eps and rel_pos_scale must be finite");
  if (ctx.has(kRelPos) && a.rel_pos_max_distance < 2) return ctx.fail("rel_pos_max_distance must be >= 2");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kX, {DType::kF32}));
  for (int i = kNormW; i <= kRelPos; ++i) {
    if (!ctx.has(i)) continue;
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  }
  for (int i : {kHiddenW, kQkW, kGamma, kBeta, kOutW})
    if (!ctx.has(i) || ctx.value(i).shape.size() != 2) return ctx.fail("input " + std::to_string(i) + " must be a 2-D constant");
  if (a.norm == fb::GauNorm::ScaleNorm && !ctx.has(kNormW)) return ctx.fail("ScaleNorm needs its g (input 1)");
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::GatedAttentionUnitT>();
  const Shape& x = ctx.in[kX];
  if (x.size() != 3) return ctx.fail("x must be [B, L, dim], got " + shape_string(x));
  const int64_t dim = x[2];
  const Shape &wh = ctx.in[kHiddenW], &wqk = ctx.in[kQkW], &g = ctx.in[kGamma], &wo = ctx.in[kOutW];
  const int64_t heads = a.group_size > 0 ? 4 : 2;
  if (wh[1] != dim || wh[0] % 2 != 0) return ctx.fail("to_hidden weight " + shape_string(wh) + " must be [2e, " + std::to_string(dim) + "]");
  if (wqk[1] != dim) return ctx.fail("to_qk weight " + shape_string(wqk) + " must be [s, " + std::to_string(dim) + "]");
  if (g != Shape{heads, wqk[0]} || ctx.in[kBeta] != g)
    return ctx.fail("gamma and beta must be [" + std::to_string(heads) + ", " + std::to_string(wqk[0]) + "] (" +
                    (a.group_size > 0 ? "FLASH: quad_q, lin_q, quad_k, lin_k" : "GAU: q, k") + "), got " + shape_string(g) +
                    " and " + shape_string(ctx.in[kBeta]));
  if (wo != Shape{dim, wh[0] / 2}) return ctx.fail("to_out weight must be [" + std::to_string(dim) + ", " + std::to_string(wh[0] / 2) + "], got " + shape_string(wo));
  auto vec = [&](int i, int64_t n, const char* what) -> Status {
    if (ctx.has(i) && ctx.in[static_cast<size_t>(i)] != Shape{n}) return ctx.fail(std::string(what) + " must be [" + std::to_string(n) + "], got " + shape_string(ctx.in[static_cast<size_t>(i)]));
    return Status::Ok();
  };
  ATROUS_RETURN_IF_ERROR(vec(kNormW, a.norm == fb::GauNorm::ScaleNorm ? 1 : dim, "norm weight"));
  ATROUS_RETURN_IF_ERROR(vec(kNormB, dim, "norm bias"));
  ATROUS_RETURN_IF_ERROR(vec(kHiddenB, wh[0], "to_hidden bias"));
  ATROUS_RETURN_IF_ERROR(vec(kQkB, wqk[0], "to_qk bias"));
  ATROUS_RETURN_IF_ERROR(vec(kOutB, dim, "to_out bias"));
  if (ctx.has(kRelPos)) {
    const Shape& r = ctx.in[kRelPos];
    if (r.size() != 2 || r[1] != 1 || r[0] < 2 || (!a.causal && r[0] % 2 != 0))
      return ctx.fail("rel-pos table must be [buckets, 1] (an even count when bidirectional), got " + shape_string(r));
  }
  ctx.out = {x};
  return Status::Ok();
}

// ---- kernels ----------------------------------------------------------------
// T5RelativePositionBias._relative_position_bucket for n = i - j, in float32 as PyTorch.
int64_t t5_bucket(int64_t n, bool causal, int64_t buckets, int64_t max_distance) {
  int64_t ret = 0;
  if (!causal) {
    buckets /= 2;
    if (n < 0) ret += buckets;
    n = n < 0 ? -n : n;
  } else {
    n = std::max<int64_t>(n, 0);
  }
  const int64_t max_exact = buckets / 2;
  if (n < max_exact) return ret + n;  // the log below would see n = 0
  const float ratio = std::log(static_cast<float>(n) / static_cast<float>(max_exact)) /
                      static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  int64_t large = max_exact + static_cast<int64_t>(ratio * static_cast<float>(buckets - max_exact));
  return ret + std::min(large, buckets - 1);
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// gau_gemm's packed projections, bound to one session's buffers.
struct GauBound : KernelState {
  std::unique_ptr<PackedGemm::Bound> hidden, qk, out;
};

class GauKernel : public Kernel {
 public:
  static constexpr int64_t kTileQ = 64;

  GauKernel(KernelContext& ctx, bool ref) : ref_(ref), a_(ctx.attrs<fb::GatedAttentionUnitT>()) {
    const Shape& x = ctx.in[kX].shape;
    B_ = x[0];
    L_ = x[1];
    dim_ = x[2];
    e_ = ctx.in[kHiddenW].shape[0] / 2;
    s_ = ctx.in[kQkW].shape[0];
    heads_ = ctx.in[kGamma].shape[0];
    g_ = a_.group_size;
    threads_ = std::max(1, ctx.threads);
    // Bias by i - j, for |i - j| < window: the whole sequence (GAU) or a group (FLASH).
    window_ = g_ > 0 ? std::min<int64_t>(g_, L_) : L_;
    has_relpos_ = attn::present(ctx, kRelPos);
    if (has_relpos_) {
      const float* table = static_cast<const float*>(ctx.constant[kRelPos]);
      const int64_t buckets = ctx.in[kRelPos].shape[0];
      relpos_ = static_cast<float*>(ctx.persistent(sizeof(float) * (2 * window_ - 1)));
      for (int64_t n = -(window_ - 1); relpos_ && n < window_; ++n)
        relpos_[n + window_ - 1] = table[t5_bucket(n, a_.causal, buckets, a_.rel_pos_max_distance)] * a_.rel_pos_scale;
    }
    const uint64_t f = sizeof(float);
    const int64_t rows = B_ * L_;
    xn_scr_ = ctx.scratch(f * rows * dim_);
    hid_scr_ = ctx.scratch(f * rows * 2 * e_);
    z_scr_ = ctx.scratch(f * rows * s_ * (1 + heads_));
    att_scr_ = ctx.scratch(f * rows * e_);
    if (g_ > 0) kv_scr_ = ctx.scratch(f * kv_floats());
    t_scr_ = ctx.scratch(f * threads_ * thread_floats());
    if (!ref_) {
      auto pack = [&](int64_t k, int64_t n, int w, int bias, fb::ActKind act) {
        return PackedGemm::create(ctx, rows, k, n, ctx.constant[static_cast<size_t>(w)], attn::present(ctx, bias), 1, nullptr, act);
      };
      hidden_ = pack(dim_, 2 * e_, kHiddenW, kHiddenB, fb::ActKind::Silu);  // SiLU in oneDNN's epilogue
      qk_ = pack(dim_, s_, kQkW, kQkB, fb::ActKind::Silu);
      out_ = pack(e_, dim_, kOutW, kOutB, fb::ActKind::None);
      if (!hidden_ || !qk_) row_scr_ = ctx.scratch(f * threads_ * std::max(2 * e_, s_));  // SiLU's exp rows
    }
  }

  Result<std::unique_ptr<KernelState>> bind(const RunBuffers& b) const override {
    if (ref_) return std::unique_ptr<KernelState>();
    auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
    auto in = [&](int i) { return attn::input_or_null(b, i); };
    auto st = std::make_unique<GauBound>();
    if (hidden_) {
      ATROUS_ASSIGN_OR_RETURN(st->hidden, hidden_->bind(scr(xn_scr_), in(kHiddenB), scr(hid_scr_), b));
    }
    if (qk_) {
      ATROUS_ASSIGN_OR_RETURN(st->qk, qk_->bind(scr(xn_scr_), in(kQkB), scr(z_scr_), b));
    }
    if (out_) {
      ATROUS_ASSIGN_OR_RETURN(st->out, out_->bind(scr(att_scr_), in(kOutB), static_cast<float*>(b.out[0]), b));
    }
    return std::unique_ptr<KernelState>(std::move(st));
  }

  Status run(const RunBuffers& b, KernelState* state) const override {
    auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
    auto in = [&](int i) { return attn::input_or_null(b, i); };
    const auto* bound = static_cast<const GauBound*>(state);
    const float* x = in(kX);
    float *xn = scr(xn_scr_), *hid = scr(hid_scr_), *z = scr(z_scr_), *att = scr(att_scr_);
    const int64_t rows = B_ * L_;
    normalize(x, in(kNormW), in(kNormB), xn);
    if (a_.shift_tokens) shift(xn);
    ATROUS_RETURN_IF_ERROR(linear(xn, rows, dim_, in(kHiddenW), in(kHiddenB), 2 * e_, hid, bound ? bound->hidden.get() : nullptr));
    ATROUS_RETURN_IF_ERROR(linear(xn, rows, dim_, in(kQkW), in(kQkB), s_, z, bound ? bound->qk.get() : nullptr));
    const float *gamma = in(kGamma), *beta = in(kBeta);
    float* rows_e = row_scr_ >= 0 ? scr(row_scr_) : nullptr;
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      float* hr = hid + r * 2 * e_;
      float* zr = z + r * s_;
      if (ref_) {
        for (int64_t c = 0; c < 2 * e_; ++c) hr[c] = silu(hr[c]);
        for (int64_t c = 0; c < s_; ++c) zr[c] = silu(zr[c]);
      } else if (rows_e) {  // SiLU here only where the packed projection did not apply it
        float* e = rows_e + static_cast<int64_t>(omp_get_thread_num()) * std::max(2 * e_, s_);
        if (!hidden_) bias_activate_row(hr, 2 * e_, nullptr, 0.0f, fb::ActKind::Silu, 0.0f, e);
        if (!qk_) bias_activate_row(zr, s_, nullptr, 0.0f, fb::ActKind::Silu, 0.0f, e);
      }
      for (int64_t h = 0; h < heads_; ++h) {
        float* zh = head(z, h) + r * s_;
        const float *gh = gamma + h * s_, *bh = beta + h * s_;
#pragma omp simd
        for (int64_t c = 0; c < s_; ++c) zh[c] = zr[c] * gh[c] + bh[c];
      }
    }
    ATROUS_RETURN_IF_ERROR(g_ > 0 ? flash(z, hid, scr(kv_scr_), att, scr(t_scr_)) : gau(z, hid, att, scr(t_scr_)));
    float* y = static_cast<float*>(b.out[0]);
    ATROUS_RETURN_IF_ERROR(linear(att, rows, e_, in(kOutW), in(kOutB), dim_, y, bound ? bound->out.get() : nullptr));
    if (a_.add_residual)
      for (int64_t i = 0; i < rows * dim_; ++i) y[i] += x[i];
    return Status::Ok();
  }

  double flops() const override {
    const double rows = static_cast<double>(B_ * L_);
    double f = 2.0 * rows * dim_ * (2 * e_ + s_) + 2.0 * rows * e_ * dim_;
    if (g_ == 0) return f + 2.0 * B_ * L_ * (a_.causal ? (L_ + 1) / 2.0 : L_) * (s_ + e_);
    return f + 2.0 * rows * window_ * (s_ + e_) + 4.0 * rows * s_ * e_;
  }
  bool ready() const { return relpos_ || !has_relpos_; }
  std::string detail() const override { return g_ > 0 ? "FLASH, group " + std::to_string(g_) : "GAU"; }

 private:
  int64_t groups() const { return g_ > 0 ? (L_ + g_ - 1) / g_ : 1; }
  int64_t thread_floats() const { return g_ > 0 ? window_ * window_ : kTileQ * L_; }
  float* head(float* z, int64_t h) const { return z + (h + 1) * B_ * L_ * s_; }
  const float* head(const float* z, int64_t h) const { return z + (h + 1) * B_ * L_ * s_; }

  // C[M, N] (ldc) = alpha · op(A) op(B) + beta · C, sgemm or plain loops.
  Status mm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
            int64_t ldb, float beta, float* C, int64_t ldc) const {
    if (!ref_) return sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
        C[i * ldc + j] = alpha * acc + (beta != 0.0f ? beta * C[i * ldc + j] : 0.0f);
      }
    return Status::Ok();
  }
  // dst = src · wᵀ + bias: the packed call bound in bind() when there is one.
  Status linear(const float* src, int64_t rows, int64_t k, const float* w, const float* bias, int64_t n, float* dst,
                const PackedGemm::Bound* packed) const {
    if (ref_) {
      attn::project_ref(src, rows, k, k, w, bias, n, dst, n);
      return Status::Ok();
    }
    if (packed) return packed->run();
    return attn::project(src, rows, k, k, w, bias, n, dst, n);
  }
  // att rows [row0, row0 + n) are complete: gate them by u (the second half of hid).
  void gate(float* att, const float* hid, int64_t row0, int64_t n) const {
    for (int64_t r = row0; r < row0 + n; ++r) {
      float* a = att + r * e_;
      const float* u = hid + r * 2 * e_ + e_;
#pragma omp simd
      for (int64_t c = 0; c < e_; ++c) a[c] *= u[c];
    }
  }

  void normalize(const float* x, const float* w, const float* bias, float* xn) const {
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t r = 0; r < B_ * L_; ++r) {
      const float* xr = x + r * dim_;
      float* yr = xn + r * dim_;
      if (a_.norm == fb::GauNorm::None) {
        std::memcpy(yr, xr, static_cast<size_t>(dim_) * sizeof(float));
      } else if (a_.norm == fb::GauNorm::ScaleNorm) {
        float sq = 0.0f;
        for (int64_t c = 0; c < dim_; ++c) sq += xr[c] * xr[c];
        const float nrm = std::max(std::sqrt(sq) * (1.0f / std::sqrt(static_cast<float>(dim_))), a_.norm_eps);
        for (int64_t c = 0; c < dim_; ++c) yr[c] = xr[c] / nrm * w[0];
      } else {
        float mean = 0.0f, var = 0.0f;
#pragma omp simd reduction(+ : mean)
        for (int64_t c = 0; c < dim_; ++c) mean += xr[c];
        mean /= static_cast<float>(dim_);
#pragma omp simd reduction(+ : var)
        for (int64_t c = 0; c < dim_; ++c) var += (xr[c] - mean) * (xr[c] - mean);
        const float inv = 1.0f / std::sqrt(var / static_cast<float>(dim_) + a_.norm_eps);
        if (w && bias) {
#pragma omp simd
          for (int64_t c = 0; c < dim_; ++c) yr[c] = (xr[c] - mean) * inv * w[c] + bias[c];
        } else {
          for (int64_t c = 0; c < dim_; ++c) yr[c] = (xr[c] - mean) * inv * (w ? w[c] : 1.0f) + (bias ? bias[c] : 0.0f);
        }
      }
    }
  }
  void shift(float* xn) const {
    const int64_t half = (dim_ + 1) / 2;
    for (int64_t bi = 0; bi < B_; ++bi) {
      float* base = xn + bi * L_ * dim_;
      for (int64_t t = L_ - 1; t > 0; --t) std::memcpy(base + t * dim_, base + (t - 1) * dim_, static_cast<size_t>(half) * sizeof(float));
      std::fill(base, base + half, 0.0f);
    }
  }
  float act(float v) const {
    if (a_.laplace_attn) {
      const float mu = std::sqrt(0.5f), sd = std::sqrt(1.0f / (4.0f * 3.14159265358979f));
      return 0.5f * (1.0f + std::erf((v - mu) / (sd * std::sqrt(2.0f))));
    }
    const float r = v > 0.0f ? v : 0.0f;
    return r * r;
  }
  float bias(int64_t i, int64_t j) const { return relpos_ ? relpos_[i - j + window_ - 1] : 0.0f; }

  // GAU: per (batch, query tile), scores against every visible key.
  Status gau(const float* z, const float* hid, float* att, float* tall) const {
    const int64_t tiles = (L_ + kTileQ - 1) / kTileQ;
    const float inv_l = 1.0f / static_cast<float>(L_);
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t t = 0; t < B_ * tiles; ++t) {
      const int64_t bi = t / tiles, i0 = (t % tiles) * kTileQ, nq = std::min(kTileQ, L_ - i0);
      const int64_t nk = a_.causal ? i0 + nq : L_;
      float* S = tall + static_cast<int64_t>(omp_get_thread_num()) * thread_floats();  // [nq, nk], ld L
      const float* q = head(z, 0) + (bi * L_ + i0) * s_;
      const float* k = head(z, 1) + bi * L_ * s_;
      if (!mm(false, true, nq, nk, s_, 1.0f, q, s_, k, s_, 0.0f, S, L_).ok()) { failed = true; continue; }
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < nk; ++j) {
          float& v = S[i * L_ + j];
          v = (a_.causal && j > i0 + i) ? 0.0f : act((v + bias(i0 + i, j)) * inv_l);
        }
      if (!mm(false, false, nq, e_, nk, 1.0f, S, L_, hid + bi * L_ * 2 * e_, 2 * e_, 0.0f, att + (bi * L_ + i0) * e_, e_).ok())
        failed = true;
      gate(att, hid, bi * L_ + i0, nq);
    }
    return failed ? internal_error("sgemm failed in GAU") : Status::Ok();
  }

  // FLASH: per (batch, group) the quadratic part and the group's lin_kᵀ v. The linear
  // part then reads the sum over earlier groups (causal: an exclusive prefix over the
  // groups' sums, kept in kvs [B, G, s·e]), over all groups (reduce_group_non_causal: each
  // thread adds its groups into its own [B, s·e] in kvs, then one sum of those) or the
  // group's own (read at once from the thread's [s·e]). Every pass over kvs walks s·e
  // contiguously: at 16k tokens the causal kvs is 32 MiB, more than this machine's L3.
  Status flash(const float* z, const float* hid, float* kvs, float* att, float* tall) const {
    const int64_t G = groups(), se = s_ * e_;
    const float inv_g = 1.0f / static_cast<float>(g_);
    const float lin_scale = a_.causal ? inv_g : 1.0f / static_cast<float>(L_);
    const bool own = !a_.causal && !a_.reduce_group_non_causal;
    if (!a_.causal && !own) std::fill(kvs, kvs + kv_floats(), 0.0f);
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t t = 0; t < B_ * G; ++t) {
      const int64_t bi = t / G, r0 = (t % G) * g_, c = std::min(g_, L_ - r0);
      const int64_t tid = omp_get_thread_num();
      float* S = tall + tid * thread_floats();  // [c, c], ld window
      const int64_t row0 = bi * L_ + r0;
      const float* v = hid + row0 * 2 * e_;
      bool ok = mm(false, true, c, c, s_, inv_g, head(z, 0) + row0 * s_, s_, head(z, 2) + row0 * s_, s_, 0.0f, S, window_).ok();
      for (int64_t i = 0; ok && i < c; ++i)
        for (int64_t j = 0; j < c; ++j) {
          float& w = S[i * window_ + j];
          w = (a_.causal && j > i) ? 0.0f : act(w + bias(i, j));
        }
      ok = ok && mm(false, false, c, e_, c, 1.0f, S, window_, v, 2 * e_, 0.0f, att + row0 * e_, e_).ok();
      // this group's sum (causal), the thread's running sum of batch bi, or the group's own
      float* kv = a_.causal ? kvs + t * se : own ? kvs + tid * se : kvs + (tid * B_ + bi) * se;
      ok = ok && mm(true, false, s_, e_, c, lin_scale, head(z, 3) + row0 * s_, s_, v, 2 * e_, a_.causal || own ? 0.0f : 1.0f,
                    kv, e_).ok();
      if (own) {
        ok = ok && mm(false, false, c, e_, s_, 1.0f, head(z, 1) + row0 * s_, s_, kv, e_, 1.0f, att + row0 * e_, e_).ok();
        gate(att, hid, row0, c);
      }
      if (!ok) failed = true;
    }
    if (failed) return internal_error("sgemm failed in FLASH");
    if (own) return Status::Ok();
    // What each group reads, in place: kvs[b, g] (causal) or the threads' sums into kvs[0, b].
    constexpr int64_t kSpan = 1024;  // floats of s·e per task
    const int64_t spans = (se + kSpan - 1) / kSpan;
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t task = 0; task < B_ * spans; ++task) {
      const int64_t bi = task / spans, i0 = (task % spans) * kSpan, n = std::min(kSpan, se - i0);
      if (a_.causal) {
        float run[kSpan] = {};
        for (int64_t gi = 0; gi < G; ++gi) {
          float* p = kvs + (bi * G + gi) * se + i0;
          for (int64_t i = 0; i < n; ++i) {
            const float mine = p[i];
            p[i] = run[i];
            run[i] += mine;
          }
        }
      } else {
        float* total = kvs + bi * se + i0;
        for (int64_t th = 1; th < threads_; ++th) {
          const float* p = kvs + (th * B_ + bi) * se + i0;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) total[i] += p[i];
        }
      }
    }
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t t = 0; t < B_ * G; ++t) {
      const int64_t bi = t / G, r0 = (t % G) * g_, c = std::min(g_, L_ - r0), row0 = bi * L_ + r0;
      const float* kv = a_.causal ? kvs + t * se : kvs + bi * se;
      if (!mm(false, false, c, e_, s_, 1.0f, head(z, 1) + row0 * s_, s_, kv, e_, 1.0f, att + row0 * e_, e_).ok()) failed = true;
      gate(att, hid, row0, c);
    }
    return failed ? internal_error("sgemm failed in FLASH") : Status::Ok();
  }
  // Floats of kvs (see flash()).
  int64_t kv_floats() const {
    const int64_t se = s_ * e_;
    if (a_.causal) return B_ * groups() * se;
    return a_.reduce_group_non_causal ? threads_ * B_ * se : threads_ * se;
  }

  bool ref_;
  fb::GatedAttentionUnitT a_;
  int64_t B_ = 1, L_ = 1, dim_ = 1, e_ = 1, s_ = 1, heads_ = 2, g_ = 0, window_ = 1;
  int threads_ = 1;
  bool has_relpos_ = false;
  float* relpos_ = nullptr;  // plan-owned, [2·window − 1], index i − j + window − 1
  int xn_scr_ = -1, hid_scr_ = -1, z_scr_ = -1, att_scr_ = -1, kv_scr_ = -1, t_scr_ = -1, row_scr_ = -1;
  std::unique_ptr<PackedGemm> hidden_, qk_, out_;  // gau_gemm; null: sgemm on each call
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx, bool ref) {
  auto k = std::make_unique<GauKernel>(ctx, ref);
  if (!k->ready()) return out_of_memory(ctx.label() + ": no memory for the relative-position bias");
  return std::unique_ptr<Kernel>(std::move(k));
}
Result<std::unique_ptr<Kernel>> create_gemm(KernelContext& ctx) { return create(ctx, false); }
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return create(ctx, true); }

const KernelDef kGemm = {"gau_gemm", false, create_gemm};
const KernelDef kRef = {"gau_ref", false, create_ref};

}  // namespace

const OpDef kGatedAttentionUnitOp = {"GatedAttentionUnit", 1, 12, 1, 1, check, infer, {&kGemm, &kRef}};

}  // namespace atrous
