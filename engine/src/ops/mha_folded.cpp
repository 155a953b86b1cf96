// mha_folded: a MultiHeadAttention kernel for attention between a short and a long
// sequence (SAM's mask decoder: ~7 prompt tokens against 4096 image tokens), where
// projecting the long side costs more than the attention itself.
//
// The projections of the long side are folded through the short side, exactly
// (up to rounding):
//  - short keys (Lk < min(D, M)): per head, logits = Xq · (scale · Wq_hᵀ K_hᵀ) + scale · bq_h K_hᵀ
//    and y = Σ_h P_h (V_h Wo_hᵀ) + bo, so the long queries meet [Eq, heads·Lk] and
//    [heads·Lk, Eo] matrices instead of the Eq → I and Iv → Eo projections;
//  - short queries (Lq < min(D, M)): logits = (scale · Q_h Wk_h) · Xkᵀ (the q_h · bk_h term
//    is constant along a softmax row and drops out) and out_h = (P_h Xv) Wv_hᵀ + bv_h
//    (rows of P sum to 1), so the long keys and values are never projected.
// Cost per long token: 2·heads·(short length)·E instead of 2·E·I per projection.
// Memory: short keys: logits of kTileQ query rows per thread (transposed, so each head's
// softmax runs along rows of queries); short queries: key tiles
// of kTileK with an online softmax, so at most heads·Lq × kTileK logits exist.
// A residual input is added as the output rows are made (short keys: with the bias).
// Declines causal attention, an additive bias, and two long sequences.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "onednn/gemm.h"
#include "ops/attention_common.h"
#include "ops/gemm_threads.h"
#include "ops/op_registry.h"

namespace atrous {

namespace {

using namespace attn;
constexpr int kBias = 11, kResidual = 12;

struct FoldPlan {
  ProjShapes s;
  float scale = 1.0f;
  bool short_keys = true;
  int threads = 1;
  int pre_scr = -1, thread_scr = -1;
  static constexpr int64_t kTileQ = 256, kTileK = 4096;

  int64_t short_len() const { return short_keys ? s.lk : s.lq; }
  int64_t cols() const { return s.heads * short_len(); }  // logits per long-side row
  // Per-batch precomputation (floats). Short keys: K [Lk, I], V [Lk, Iv], Mq [Eq, cols],
  // cq [cols], U [cols, Eo]. Short queries: Q [Lq, I], Q̃ [cols, Ek], Z [cols, Ev],
  // m, l [cols], O [Lq, Iv], logits [cols, kTileK].
  int64_t pre_floats() const {
    if (short_keys) return s.lk * (s.inner + s.inner_v) + s.eq * cols() + cols() + cols() * s.eo;
    return s.lq * s.inner + cols() * (s.ek + s.ev + 2) + s.lq * s.inner_v + cols() * std::min(kTileK, s.lk);
  }
  double flops() const {
    const double b = static_cast<double>(s.batch), c = static_cast<double>(cols());
    if (short_keys)
      return 2.0 * b * (s.lk * (s.ek * s.inner + s.ev * s.inner_v) + c * s.d * s.eq + c * s.m * s.eo + s.lq * c * (s.eq + s.eo));
    return 2.0 * b * (s.lq * s.eq * s.inner + c * s.d * s.ek + c * s.lk * (s.ek + s.ev) + c * s.ev * s.m + s.lq * s.inner_v * s.eo);
  }
};

// rows × wᵀ + b on the calling thread when small (attn::project is always threaded).
Status project_sized(int threads, const float* src, int64_t rows, int64_t k, const float* w, const float* b, int64_t n, float* dst) {
  if (b)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * n, b, static_cast<size_t>(n) * sizeof(float));
  return sgemm_sized(threads, false, true, rows, n, k, 1.0f, src, k, w, k, b ? 1.0f : 0.0f, dst, n);
}

class MhaFolded : public Kernel {
 public:
  explicit MhaFolded(const FoldPlan& p) : p_(p) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const ProjShapes& s = p_.s;
    const float* xq = input_or_null(b, kQuery);
    const float* xk = input_or_null(b, kKey) ? input_or_null(b, kKey) : xq;
    const float* xv = input_or_null(b, kValue) ? input_or_null(b, kValue) : xk;
    float* pre = static_cast<float*>(b.scratch[static_cast<size_t>(p_.pre_scr)]);
    float* y = static_cast<float*>(b.out[0]);
    const float* res = input_or_null(b, kResidual);
    for (int64_t bi = 0; bi < s.batch; ++bi) {
      const float* q = xq + bi * s.lq * s.eq;
      const float* k = xk + bi * s.lk * s.ek;
      const float* v = xv + bi * s.lk * s.ev;
      float* yb = y + bi * s.lq * s.eo;
      const float* rb = res ? res + bi * s.lq * s.eo : nullptr;
      ATROUS_RETURN_IF_ERROR(p_.short_keys ? short_keys(b, q, k, v, rb, pre, yb) : short_queries(b, q, k, v, rb, pre, yb));
    }
    return Status::Ok();
  }
  double flops() const override { return p_.flops(); }
  std::string detail() const override {
    return std::string(p_.short_keys ? "short keys (" : "short queries (") + std::to_string(p_.short_len()) + "), " + vector_isa();
  }

 private:
  // res: the batch item's residual rows, or null.
  Status short_keys(const RunBuffers& b, const float* xq, const float* xk, const float* xv, const float* res, float* pre,
                    float* y) const {
    const ProjShapes& s = p_.s;
    const int64_t L = s.lk, cols = p_.cols();
    float* K = pre;                   // [L, I]
    float* V = K + L * s.inner;       // [L, Iv]
    float* Mq = V + L * s.inner_v;    // [Eq, cols]
    float* cq = Mq + s.eq * cols;     // [cols]
    float* U = cq + cols;             // [cols, Eo]
    const float* wq = input_or_null(b, kWq);
    const float* bq = input_or_null(b, kBq);
    const float* wo = input_or_null(b, kWo);
    const float* bo = input_or_null(b, kBo);
    ATROUS_RETURN_IF_ERROR(project_sized(p_.threads, xk, L, s.ek, input_or_null(b, kWk), input_or_null(b, kBk), s.inner, K));
    ATROUS_RETURN_IF_ERROR(project_sized(p_.threads, xv, L, s.ev, input_or_null(b, kWv), input_or_null(b, kBv), s.inner_v, V));
    for (int64_t h = 0; h < s.heads; ++h) {
      // Mq[:, h·L + j] = scale · Wq_hᵀ K_h[j]; U[h·L + j] = V_h[j] Wo_hᵀ.
      ATROUS_RETURN_IF_ERROR(sgemm_sized(p_.threads, true, true, s.eq, L, s.d, p_.scale, wq + h * s.d * s.eq, s.eq, K + h * s.d, s.inner, 0.0f, Mq + h * L, cols));
      ATROUS_RETURN_IF_ERROR(sgemm_sized(p_.threads, false, true, L, s.eo, s.m, 1.0f, V + h * s.m, s.inner_v, wo + h * s.m, s.inner_v, 0.0f, U + h * L * s.eo, s.eo));
      for (int64_t j = 0; j < L; ++j) {
        float acc = 0.0f;
        if (bq)
          for (int64_t d = 0; d < s.d; ++d) acc += bq[h * s.d + d] * K[j * s.inner + h * s.d + d];
        cq[h * L + j] = p_.scale * acc;
      }
    }
    const int64_t tiles = (s.lq + FoldPlan::kTileQ - 1) / FoldPlan::kTileQ;
    float* thread_all = static_cast<float*>(b.scratch[static_cast<size_t>(p_.thread_scr)]);
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(p_.threads) schedule(dynamic) if (tiles > 1)
    for (int64_t t = 0; t < tiles; ++t) {
      if (failed.load(std::memory_order_relaxed)) continue;
      // Logits transposed, St [cols, n]: each (head, key) is a row over the tile's
      // queries, so the per-head softmax runs along contiguous rows of n.
      float* St = thread_all + static_cast<int64_t>(omp_get_thread_num()) * FoldPlan::kTileQ * (cols + 2);
      float* mx = St + cols * FoldPlan::kTileQ;  // [n]
      float* sum = mx + FoldPlan::kTileQ;        // [n]
      const int64_t r0 = t * FoldPlan::kTileQ, n = std::min(FoldPlan::kTileQ, s.lq - r0);
      if (!sgemm_sized(p_.threads, true, true, cols, n, s.eq, 1.0f, Mq, cols, xq + r0 * s.eq, s.eq, 0.0f, St, n).ok()) {
        failed = true;
        continue;
      }
      for (int64_t h = 0; h < s.heads; ++h) {
        float* blk = St + h * L * n;  // [L, n]
        for (int64_t j = 0; j < L; ++j) {
          float* r = blk + j * n;
          const float c = cq[h * L + j];
          for (int64_t i = 0; i < n; ++i) r[i] += c;
        }
        std::copy(blk, blk + n, mx);
        for (int64_t j = 1; j < L; ++j)
          for (int64_t i = 0; i < n; ++i) mx[i] = std::max(mx[i], blk[j * n + i]);
        for (int64_t j = 0; j < L; ++j)
          for (int64_t i = 0; i < n; ++i) blk[j * n + i] -= mx[i];
        exp_add(blk, blk, L * n, 0.0f);
        std::copy(blk, blk + n, sum);
        for (int64_t j = 1; j < L; ++j)
          for (int64_t i = 0; i < n; ++i) sum[i] += blk[j * n + i];
        for (int64_t i = 0; i < n; ++i) sum[i] = 1.0f / sum[i];
        for (int64_t j = 0; j < L; ++j)
          for (int64_t i = 0; i < n; ++i) blk[j * n + i] *= sum[i];
      }
      // y = residual + bo + P U: the residual comes in with the bias, for free.
      float* yt = y + r0 * s.eo;
      const float* rt = res ? res + r0 * s.eo : nullptr;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t e = 0; e < s.eo; ++e) yt[i * s.eo + e] = (bo ? bo[e] : 0.0f) + (rt ? rt[i * s.eo + e] : 0.0f);
      if (!sgemm_sized(p_.threads, true, false, n, s.eo, cols, 1.0f, St, n, U, s.eo, 1.0f, yt, s.eo).ok()) failed = true;
    }
    if (failed) return internal_error("sgemm failed in the folded attention");
    return Status::Ok();
  }

  Status short_queries(const RunBuffers& b, const float* xq, const float* xk, const float* xv, const float* res, float* pre,
                       float* y) const {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    const ProjShapes& s = p_.s;
    const int64_t L = s.lq, rows = p_.cols(), tile = std::min(FoldPlan::kTileK, s.lk);
    float* Q = pre;                       // [L, I]
    float* Qt = Q + L * s.inner;          // [rows, Ek], row h·L + i
    float* Z = Qt + rows * s.ek;          // [rows, Ev]
    float* m = Z + rows * s.ev;           // [rows]
    float* l = m + rows;                  // [rows]
    float* O = l + rows;                  // [L, Iv]
    float* S = O + L * s.inner_v;         // [rows, tile]
    const float* wk = input_or_null(b, kWk);
    const float* wv = input_or_null(b, kWv);
    const float* bv = input_or_null(b, kBv);
    ATROUS_RETURN_IF_ERROR(project_sized(p_.threads, xq, L, s.eq, input_or_null(b, kWq), input_or_null(b, kBq), s.inner, Q));
    for (int64_t h = 0; h < s.heads; ++h)
      ATROUS_RETURN_IF_ERROR(sgemm_sized(p_.threads, false, false, L, s.ek, s.d, p_.scale, Q + h * s.d, s.inner, wk + h * s.d * s.ek, s.ek, 0.0f, Qt + h * L * s.ek, s.ek));
    std::fill(Z, Z + rows * s.ev, 0.0f);
    std::fill(m, m + rows, kNegInf);
    std::fill(l, l + rows, 0.0f);
    for (int64_t j0 = 0; j0 < s.lk; j0 += tile) {
      const int64_t nk = std::min(tile, s.lk - j0);
      ATROUS_RETURN_IF_ERROR(sgemm_sized(p_.threads, false, true, rows, nk, s.ek, 1.0f, Qt, s.ek, xk + j0 * s.ek, s.ek, 0.0f, S, tile));
#pragma omp parallel for num_threads(p_.threads) schedule(static) if (rows * nk >= 16384)
      for (int64_t r = 0; r < rows; ++r) {
        float* row = S + r * tile;
        const float mnew = std::max(m[r], row_max(row, nk));
        const float corr = m[r] == kNegInf ? 0.0f : std::exp(m[r] - mnew);
        l[r] = l[r] * corr + exp_shift_sum(row, nk, mnew);
        m[r] = mnew;
        if (corr != 1.0f)
          for (int64_t e = 0; e < s.ev; ++e) Z[r * s.ev + e] *= corr;
      }
      ATROUS_RETURN_IF_ERROR(sgemm_sized(p_.threads, false, false, rows, s.ev, nk, 1.0f, S, tile, xv + j0 * s.ev, s.ev, 1.0f, Z, s.ev));
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.0f / l[r];
      for (int64_t e = 0; e < s.ev; ++e) Z[r * s.ev + e] *= inv;
    }
    for (int64_t h = 0; h < s.heads; ++h) {
      float* Oh = O + h * s.m;
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < s.m; ++c) Oh[i * s.inner_v + c] = bv ? bv[h * s.m + c] : 0.0f;
      ATROUS_RETURN_IF_ERROR(sgemm_sized(p_.threads, false, true, L, s.m, s.ev, 1.0f, Z + h * L * s.ev, s.ev, wv + h * s.m * s.ev, s.ev, 1.0f, Oh, s.inner_v));
    }
    ATROUS_RETURN_IF_ERROR(project_sized(p_.threads, O, L, s.inner_v, input_or_null(b, kWo), input_or_null(b, kBo), s.eo, y));
    add_residual(res, y, L * s.eo, 1);
    return Status::Ok();
  }

  FoldPlan p_;
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::MultiHeadAttentionT>();
  if (a.causal) return KernelContext::decline("causal attention is not folded");
  if (present(ctx, kBias)) return KernelContext::decline("an additive bias is not folded");
  FoldPlan p;
  p.s = proj_shapes(ctx, a.num_heads);
  const int64_t lim = std::min(p.s.d, p.s.m);
  if (p.s.lk >= lim && p.s.lq >= lim)
    return KernelContext::decline("both sequences are long (Lq " + std::to_string(p.s.lq) + ", Lk " + std::to_string(p.s.lk) +
                                  " >= head dim " + std::to_string(lim) + "): folding would not save work");
  p.short_keys = p.s.lk < lim && p.s.lk <= p.s.lq;
  p.scale = a.scale > 0 ? a.scale : 1.0f / std::sqrt(static_cast<float>(p.s.d));
  p.threads = std::max(1, ctx.threads);
  p.pre_scr = ctx.scratch(sizeof(float) * static_cast<uint64_t>(p.pre_floats()));
  p.thread_scr = ctx.scratch(p.short_keys ? sizeof(float) * static_cast<uint64_t>(p.threads) * FoldPlan::kTileQ * (p.cols() + 2) : sizeof(float));
  return std::unique_ptr<Kernel>(new MhaFolded(p));
}

}  // namespace

extern const KernelDef kMhaFolded;
const KernelDef kMhaFolded = {"mha_folded", false, create};

}  // namespace atrous
