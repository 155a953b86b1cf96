// WindowAttention: the ViT attention of SAM's image encoder (ViTDet style), with
// its projections: y = residual + proj(attention(qkv(x))), on a token grid.
// x [B, H, W, C], qkv_weight [3C, C], qkv_bias [3C]?, proj_weight [C, C], proj_bias [C]?,
// rel_pos_h [Lh, D]?, rel_pos_w [Lw, D]?, residual [B, H, W, C]? -> y [B, H, W, C].
//
// window_size S > 0: the grid is zero-padded bottom/right to a multiple of S and cut
// into S × S windows; a padded token's q, k, v are the qkv bias (its input is zero)
// and nothing is masked, as segment_anything's window_partition does. Outputs of
// padded queries are cropped away, so they are not computed. window_size 0: one
// global window over the whole grid. Logits get the decomposed relative-position
// bias (rel_pos.h) computed from the unscaled q.
//
// Kernels:
//  - window_attention_packed: as window_attention_sgemm below, with qkv and proj as
//    oneDNN inner products on weights packed at plan time (PackedGemm; the model-file
//    pages of the weights are then dropped): no call allocates, where sgemm allocates
//    its packing buffers (3.4 MiB for SAM's qkv) on every call.
//  - window_attention_sgemm: qkv and proj as sgemm on the weights as they lie in the
//    model file (no packed copy). Then per (batch, window, head), or for global
//    attention per (batch, head, group of query tiles of kTileQ) with the head's keys
//    and values gathered once, the logits of that window or tile only: QKᵀ and PV as
//    sgemm on the calling thread; the bias from one small GEMM against the tables
//    (q · [Rh; Rw]ᵀ, gathered per row), added in the same vectorised pass that finds
//    the row maximum, then the vectorised exp. At most one window's (or one tile's)
//    logits per thread.
//  - window_attention_ref: plain loops; scores one query row at a time.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "onednn/gemm.h"
#include "onednn/packed_gemm.h"
#include "ops/attention_common.h"
#include "ops/op_registry.h"
#include "ops/rel_pos.h"

namespace atrous {
namespace {

enum Input { kX = 0, kQkvW, kQkvB, kProjW, kProjB, kRelH, kRelW, kResidual };

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::WindowAttentionT>();
  if (a.num_heads < 1) return ctx.fail("num_heads must be >= 1, got " + std::to_string(a.num_heads));
  if (a.window_size < 0 || a.window_size > 4096) return ctx.fail("window_size must be in 0..4096 (0: global), got " + std::to_string(a.window_size));
  if (!std::isfinite(a.scale) || a.scale < 0) return ctx.fail("scale must be finite and >= 0 (0: 1/sqrt(head dim))");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kX, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kResidual, {DType::kF32}));
  for (int i : {kQkvW, kProjW}) ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
  for (int i : {kQkvW, kQkvB, kProjW, kProjB, kRelH, kRelW}) {
    if (!ctx.has(i)) continue;
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  }
  const Shape& wq = ctx.value(kQkvW).shape;
  const Shape& wp = ctx.value(kProjW).shape;
  if (wq.size() != 2 || wq[1] < 1 || wq[0] != 3 * wq[1]) return ctx.fail("qkv_weight must be [3C, C], got " + shape_string(wq));
  const int64_t c = wq[1];
  if (wp != Shape{c, c}) return ctx.fail("proj_weight must be [" + std::to_string(c) + ", " + std::to_string(c) + "], got " + shape_string(wp));
  if (c % a.num_heads != 0) return ctx.fail("num_heads " + std::to_string(a.num_heads) + " must divide the " + std::to_string(c) + " channels");
  if (ctx.has(kQkvB) && ctx.value(kQkvB).shape != Shape{3 * c}) return ctx.fail("qkv_bias must be [" + std::to_string(3 * c) + "], got " + shape_string(ctx.value(kQkvB).shape));
  if (ctx.has(kProjB) && ctx.value(kProjB).shape != Shape{c}) return ctx.fail("proj_bias must be [" + std::to_string(c) + "], got " + shape_string(ctx.value(kProjB).shape));
  if (ctx.has(kRelH) != ctx.has(kRelW)) return ctx.fail("rel_pos_h and rel_pos_w come together");
  for (int i : {kRelH, kRelW}) {
    if (!ctx.has(i)) continue;
    const Shape& t = ctx.value(i).shape;
    if (t.size() != 2 || t[0] < 1 || t[1] != c / a.num_heads)
      return ctx.fail(std::string(i == kRelH ? "rel_pos_h" : "rel_pos_w") + " must be [L, " + std::to_string(c / a.num_heads) + "], got " + shape_string(t));
  }
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(kX, 4));
  const Shape& x = ctx.in[kX];
  if (x[3] != ctx.in[kQkvW][1]) return ctx.fail("input " + shape_string(x) + " must have the " + std::to_string(ctx.in[kQkvW][1]) + " channels of qkv_weight last ([B, H, W, C])");
  if (ctx.has(kResidual) && ctx.in[kResidual] != x) return ctx.fail("residual " + shape_string(ctx.in[kResidual]) + " must have the input shape " + shape_string(x));
  ctx.out = {x};
  return Status::Ok();
}

// ---- kernels ----------------------------------------------------------------
// What both kernels share: geometry, scale and the relative-position tables at the
// lengths this geometry needs (resized into plan memory when stored otherwise).
struct WinPlan {
  int64_t batch = 1, h = 1, w = 1, c = 1, heads = 1, d = 1;
  int64_t sh = 1, sw = 1;    // attention area: the window, or the whole grid
  int64_t nwh = 1, nww = 1;  // windows per column / row (1 × 1 when global)
  bool global = true;
  float scale = 1.0f;
  const float* rel_h = nullptr;  // [2·sh − 1, d] or null
  const float* rel_w = nullptr;  // [2·sw − 1, d]
  int threads = 1;
  int qkv_scr = -1, o_scr = -1, thread_scr = -1;

  int64_t tokens() const { return batch * h * w; }
  int64_t area() const { return sh * sw; }

  Status init(KernelContext& ctx) {
    const auto& a = ctx.attrs<fb::WindowAttentionT>();
    const Shape& x = ctx.in[kX].shape;
    batch = x[0], h = x[1], w = x[2], c = x[3];
    heads = a.num_heads;
    d = c / heads;
    global = a.window_size == 0;
    sh = global ? h : a.window_size;
    sw = global ? w : a.window_size;
    nwh = (h + sh - 1) / sh;
    nww = (w + sw - 1) / sw;
    scale = a.scale > 0 ? a.scale : 1.0f / std::sqrt(static_cast<float>(d));
    threads = std::max(1, ctx.threads);
    if (attn::present(ctx, kRelH)) {
      ATROUS_ASSIGN_OR_RETURN(rel_h, table(ctx, kRelH, 2 * sh - 1));
      ATROUS_ASSIGN_OR_RETURN(rel_w, table(ctx, kRelW, 2 * sw - 1));
    }
    const uint64_t f = sizeof(float);
    qkv_scr = ctx.scratch(f * tokens() * 3 * c);
    o_scr = ctx.scratch(f * tokens() * c);
    return Status::Ok();
  }

  Result<const float*> table(KernelContext& ctx, int i, int64_t want) const {
    const auto* t = static_cast<const float*>(ctx.constant[static_cast<size_t>(i)]);
    const int64_t len = ctx.in[static_cast<size_t>(i)].shape[0];
    if (len == want) return t;
    auto* out = static_cast<float*>(ctx.persistent(sizeof(float) * want * d));
    if (!out) return out_of_memory(ctx.label() + ": cannot allocate the resized relative-position table");
    relpos::resize_table(t, len, d, want, out);
    return static_cast<const float*>(out);
  }

  // Adds the relative-position bias to a row of logits of the query at (qy, qx);
  // scratch: sh + sw floats.
  void add_rel(float* row, const float* q, int64_t qy, int64_t qx, float* scratch) const {
    if (!rel_h) return;
    float* rh = scratch;
    float* rw = scratch + sh;
    relpos::dots_descending(q, rel_h, qy + sh - 1, sh, d, rh);
    relpos::dots_descending(q, rel_w, qx + sw - 1, sw, d, rw);
    for (int64_t ky = 0; ky < sh; ++ky) {
      float* r = row + ky * sw;
      const float bh = rh[ky];
      for (int64_t kx = 0; kx < sw; ++kx) r[kx] += bh + rw[kx];
    }
  }

  // Window (wy, wx): the valid (unpadded) part is vy × vx tokens from grid row y0, column x0.
  void window(int64_t wy, int64_t wx, int64_t* y0, int64_t* x0, int64_t* vy, int64_t* vx) const {
    *y0 = wy * sh;
    *x0 = wx * sw;
    *vy = std::min(sh, h - *y0);
    *vx = std::min(sw, w - *x0);
  }

  double flops() const {
    const double n = static_cast<double>(tokens());
    double f = 2.0 * n * c * 4 * c;  // qkv + proj
    const double keys = global ? static_cast<double>(h * w) : static_cast<double>(area());
    f += 2.0 * n * keys * 2 * c;     // QKᵀ and PV over all heads, valid queries only
    if (rel_h) f += 2.0 * n * (sh + sw) * c;
    return f;
  }
};

// y = residual + bias (per row), ahead of y += o · wᵀ.
void prefill_output(float* y, const float* res, const float* bias, int64_t rows, int64_t c, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < c; ++i) y[r * c + i] = (res ? res[r * c + i] : 0.0f) + (bias ? bias[i] : 0.0f);
}

class WindowAttentionSgemm : public Kernel {
 public:
  static constexpr int64_t kTileQ = 64;
  explicit WindowAttentionSgemm(const WinPlan& p) : p_(p) {}

  // window_attention_packed: both projections packed (else both through sgemm).
  std::unique_ptr<PackedGemm> qkv_g, proj_g;
  struct Packed : KernelState {
    std::unique_ptr<PackedGemm::Bound> qkv, proj;
  };
  // The projection's product goes to the qkv scratch (free by then), then y = it +
  // residual: the residual may share y's buffer.
  Result<std::unique_ptr<KernelState>> bind(const RunBuffers& b) const override {
    if (!qkv_g) return std::unique_ptr<KernelState>();
    auto st = std::make_unique<Packed>();
    float* qkv = static_cast<float*>(b.scratch[static_cast<size_t>(p_.qkv_scr)]);
    ATROUS_ASSIGN_OR_RETURN(st->qkv, qkv_g->bind(static_cast<const float*>(b.in[kX]), attn::input_or_null(b, kQkvB), qkv, b));
    ATROUS_ASSIGN_OR_RETURN(st->proj, proj_g->bind(static_cast<const float*>(b.scratch[static_cast<size_t>(p_.o_scr)]),
                                                   attn::input_or_null(b, kProjB), qkv, b));
    return std::unique_ptr<KernelState>(std::move(st));
  }

  int64_t rel_cols() const { return p_.rel_h ? (2 * p_.sh - 1) + (2 * p_.sw - 1) : 0; }
  // Global attention: query tiles of one (batch, head) are split into this many tasks
  // (each gathers the head's keys and values once), so that both threads have work.
  int64_t groups() const {
    const int64_t tiles = (p_.h * p_.w + kTileQ - 1) / kTileQ;
    const int64_t want = (4 * p_.threads + p_.batch * p_.heads - 1) / (p_.batch * p_.heads);
    return std::max<int64_t>(1, std::min(tiles, want));
  }
  // Per-thread floats. Window: q, k, v, o [T, d], logits [T, T], U [T, rel_cols], rel, inv [T].
  // Global: K, V [H·W, d], logits [kTileQ, H·W], U [kTileQ, rel_cols], rel, inv [kTileQ].
  int64_t thread_floats() const {
    const int64_t rel = p_.sh + p_.sw;
    if (p_.global) return 2 * p_.h * p_.w * p_.d + kTileQ * (p_.h * p_.w + rel_cols() + 1) + rel;
    const int64_t t = p_.area();
    return 4 * t * p_.d + t * (t + rel_cols() + 1) + rel;
  }

  Status run(const RunBuffers& b, KernelState* state) const override {
    const int64_t n = p_.tokens(), C = p_.c;
    float* qkv = static_cast<float*>(b.scratch[static_cast<size_t>(p_.qkv_scr)]);  // [n, 3C]
    float* o = static_cast<float*>(b.scratch[static_cast<size_t>(p_.o_scr)]);      // [n, C]
    float* thread_all = static_cast<float*>(b.scratch[static_cast<size_t>(p_.thread_scr)]);
    const float* qkv_b = attn::input_or_null(b, kQkvB);
    const auto* packed = static_cast<const Packed*>(state);
    if (packed)
      ATROUS_RETURN_IF_ERROR(packed->qkv->run());
    else
      ATROUS_RETURN_IF_ERROR(attn::project(static_cast<const float*>(b.in[kX]), n, C, C, static_cast<const float*>(b.in[kQkvW]),
                                           qkv_b, 3 * C, qkv, 3 * C));
    const int64_t tasks = p_.global ? p_.batch * p_.heads * groups() : p_.batch * p_.nwh * p_.nww * p_.heads;
    const int64_t per_thread = thread_floats();
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(p_.threads) schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      if (failed.load(std::memory_order_relaxed)) continue;
      float* scr = thread_all + static_cast<int64_t>(omp_get_thread_num()) * per_thread;
      Status st = p_.global ? global_task(qkv, o, t, scr) : window_task(qkv, qkv_b, o, t, scr);
      if (!st.ok()) failed = true;
    }
    if (failed) return internal_error("sgemm failed in the attention windows");
    float* y = static_cast<float*>(b.out[0]);
    const float* res = attn::input_or_null(b, kResidual);
    if (packed) {
      ATROUS_RETURN_IF_ERROR(packed->proj->run());  // qkv[r·C + i] = o · wᵀ + bias
#pragma omp parallel for num_threads(p_.threads) schedule(static)
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < C; ++i) y[r * C + i] = qkv[r * C + i] + (res ? res[r * C + i] : 0.0f);
      return Status::Ok();
    }
    prefill_output(y, res, attn::input_or_null(b, kProjB), n, C, p_.threads);
    return sgemm(false, true, n, C, C, 1.0f, o, C, static_cast<const float*>(b.in[kProjW]), C, 1.0f, y, C);
  }
  double flops() const override { return p_.flops(); }
  std::string detail() const override {
    return (p_.global ? "global, query tiles of " + std::to_string(kTileQ) : "windows " + std::to_string(p_.sh) + "x" + std::to_string(p_.sw)) +
           (qkv_g ? ", packed projections" : "") + ", " + attn::vector_isa();
  }
  const WinPlan& plan() const { return p_; }

 private:
  // Logit rows [nq, keys] (stride ld) of queries q (row stride ldq) at grid positions
  // pos(i) -> (qy, qx) become exp(logit + bias − max); inv[i] = 1 / row sum. The bias
  // tables are met through one GEMM per tile: U = q · [Rh; Rw]ᵀ, then gathered per row.
  template <class Pos>
  Status softmax_rows(float* s, int64_t ld, int64_t keys, int64_t nq, const float* q, int64_t ldq, Pos pos, float* U,
                      float* rel, float* inv) const {
    const int64_t lh = 2 * p_.sh - 1, lw = 2 * p_.sw - 1, lu = rel_cols();
    if (p_.rel_h) {
      ATROUS_RETURN_IF_ERROR(sgemm(false, true, nq, lh, p_.d, 1.0f, q, ldq, p_.rel_h, p_.d, 0.0f, U, lu));
      ATROUS_RETURN_IF_ERROR(sgemm(false, true, nq, lw, p_.d, 1.0f, q, ldq, p_.rel_w, p_.d, 0.0f, U + lh, lu));
    }
    for (int64_t i = 0; i < nq; ++i) {
      float* row = s + i * ld;
      float mx;
      if (p_.rel_h) {
        int64_t qy, qx;
        pos(i, &qy, &qx);
        const float* uh = U + i * lu + qy + p_.sh - 1;  // uh[−ky] = q · Rh[qy − ky + sh − 1]
        const float* uw = U + i * lu + lh + qx + p_.sw - 1;
        float* rh = rel;
        float* rw = rel + p_.sh;
        for (int64_t k = 0; k < p_.sh; ++k) rh[k] = uh[-k];
        for (int64_t k = 0; k < p_.sw; ++k) rw[k] = uw[-k];
        mx = relpos::add_bias_max(row, rh, rw, p_.sh, p_.sw);
      } else {
        mx = attn::row_max(row, keys);
      }
      inv[i] = 1.0f / attn::exp_shift_sum(row, keys, mx);
    }
    return Status::Ok();
  }

  // Task t = ((b · nwh + wy) · nww + wx) · heads + head.
  Status window_task(const float* qkv, const float* qkv_b, float* o, int64_t t, float* scr) const {
    const int64_t C = p_.c, D = p_.d, T = p_.area(), head = t % p_.heads, win = t / p_.heads;
    const int64_t wx = win % p_.nww, wy = (win / p_.nww) % p_.nwh, bi = win / (p_.nww * p_.nwh);
    int64_t y0, x0, vy, vx;
    p_.window(wy, wx, &y0, &x0, &vy, &vx);
    float* q = scr;                   // [vy·vx, D] valid queries, row-major over the window
    float* k = q + T * D;             // [T, D]
    float* v = k + T * D;             // [T, D]
    float* ow = v + T * D;            // [vy·vx, D]
    float* s = ow + T * D;            // [vy·vx, T]
    float* U = s + T * T;             // [vy·vx, rel_cols]
    float* inv = U + T * rel_cols();  // [vy·vx]
    float* rel = inv + T;             // [sh + sw]
    const size_t row_bytes = static_cast<size_t>(D) * sizeof(float);
    for (int64_t ty = 0; ty < p_.sh; ++ty)
      for (int64_t tx = 0; tx < p_.sw; ++tx) {
        const int64_t i = ty * p_.sw + tx;
        const bool valid = ty < vy && tx < vx;
        const float* row = valid ? qkv + ((bi * p_.h + y0 + ty) * p_.w + x0 + tx) * 3 * C : qkv_b;
        if (row) {
          std::memcpy(k + i * D, row + C + head * D, row_bytes);
          std::memcpy(v + i * D, row + 2 * C + head * D, row_bytes);
        } else {
          std::memset(k + i * D, 0, row_bytes);
          std::memset(v + i * D, 0, row_bytes);
        }
        if (valid) std::memcpy(q + (ty * vx + tx) * D, row + head * D, row_bytes);
      }
    const int64_t nq = vy * vx;
    ATROUS_RETURN_IF_ERROR(sgemm(false, true, nq, T, D, p_.scale, q, D, k, D, 0.0f, s, T));
    ATROUS_RETURN_IF_ERROR(softmax_rows(s, T, T, nq, q, D, [vx](int64_t i, int64_t* qy, int64_t* qx) { *qy = i / vx, *qx = i % vx; },
                                        U, rel, inv));
    ATROUS_RETURN_IF_ERROR(sgemm(false, false, nq, D, T, 1.0f, s, T, v, D, 0.0f, ow, D));
    for (int64_t i = 0; i < nq; ++i) {
      float* dst = o + ((bi * p_.h + y0 + i / vx) * p_.w + x0 + i % vx) * C + head * D;
      for (int64_t c = 0; c < D; ++c) dst[c] = ow[i * D + c] * inv[i];
    }
    return Status::Ok();
  }

  // Task t = (b · heads + head) · groups + group: the head's keys and values are
  // gathered into contiguous [H·W, d] blocks (sgemm packs them faster than the
  // strided qkv rows), then the group's query tiles run one after another.
  Status global_task(const float* qkv, float* o, int64_t t, float* scr) const {
    const int64_t C = p_.c, D = p_.d, HW = p_.h * p_.w, tiles = (HW + kTileQ - 1) / kTileQ, G = groups();
    const int64_t group = t % G, head = (t / G) % p_.heads, bi = t / (G * p_.heads);
    float* K = scr;                              // [HW, D]
    float* V = K + HW * D;                       // [HW, D]
    float* s = V + HW * D;                       // [kTileQ, HW]
    float* U = s + kTileQ * HW;                  // [kTileQ, rel_cols]
    float* inv = U + kTileQ * rel_cols();        // [kTileQ]
    float* rel = inv + kTileQ;                   // [sh + sw]
    const float* base = qkv + bi * HW * 3 * C;
    const size_t row_bytes = static_cast<size_t>(D) * sizeof(float);
    for (int64_t j = 0; j < HW; ++j) {
      std::memcpy(K + j * D, base + j * 3 * C + C + head * D, row_bytes);
      std::memcpy(V + j * D, base + j * 3 * C + 2 * C + head * D, row_bytes);
    }
    const int64_t t0 = group * tiles / G, t1 = (group + 1) * tiles / G;
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t i0 = tile * kTileQ, nq = std::min(kTileQ, HW - i0);
      const float* q = base + i0 * 3 * C + head * D;
      ATROUS_RETURN_IF_ERROR(sgemm(false, true, nq, HW, D, p_.scale, q, 3 * C, K, D, 0.0f, s, HW));
      const int64_t w = p_.w;
      ATROUS_RETURN_IF_ERROR(softmax_rows(s, HW, HW, nq, q, 3 * C,
                                          [i0, w](int64_t i, int64_t* qy, int64_t* qx) { *qy = (i0 + i) / w, *qx = (i0 + i) % w; },
                                          U, rel, inv));
      float* dst = o + (bi * HW + i0) * C + head * D;
      ATROUS_RETURN_IF_ERROR(sgemm(false, false, nq, D, HW, 1.0f, s, HW, V, D, 0.0f, dst, C));
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t c = 0; c < D; ++c) dst[i * C + c] *= inv[i];
    }
    return Status::Ok();
  }

  WinPlan p_;
};

Result<std::unique_ptr<Kernel>> create_sgemm(KernelContext& ctx) {
  WinPlan p;
  ATROUS_RETURN_IF_ERROR(p.init(ctx));
  WindowAttentionSgemm probe(p);
  p.thread_scr = ctx.scratch(sizeof(float) * static_cast<uint64_t>(p.threads) * probe.thread_floats());
  return std::unique_ptr<Kernel>(new WindowAttentionSgemm(p));
}

Result<std::unique_ptr<Kernel>> create_packed(KernelContext& ctx) {
  ATROUS_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> k, create_sgemm(ctx));
  auto* w = static_cast<WindowAttentionSgemm*>(k.get());
  const WinPlan& p = w->plan();
  w->qkv_g = PackedGemm::create(ctx, p.tokens(), p.c, 3 * p.c, ctx.constant[kQkvW], attn::present(ctx, kQkvB));
  w->proj_g = PackedGemm::create(ctx, p.tokens(), p.c, p.c, ctx.constant[kProjW], attn::present(ctx, kProjB));
  if (!w->qkv_g || !w->proj_g) return KernelContext::decline("oneDNN has no packed inner product for these projections");
  return k;
}

// Reference: plain loops; per (batch, window, head) each valid query's logits over
// the window's keys (padded ones from the bias) one row at a time.
class WindowAttentionRef : public Kernel {
 public:
  explicit WindowAttentionRef(const WinPlan& p) : p_(p) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const int64_t n = p_.tokens(), C = p_.c, D = p_.d, T = p_.area();
    float* qkv = static_cast<float*>(b.scratch[static_cast<size_t>(p_.qkv_scr)]);
    float* o = static_cast<float*>(b.scratch[static_cast<size_t>(p_.o_scr)]);
    float* thread_all = static_cast<float*>(b.scratch[static_cast<size_t>(p_.thread_scr)]);
    const float* qkv_b = attn::input_or_null(b, kQkvB);
    attn::project_ref(static_cast<const float*>(b.in[kX]), n, C, C, static_cast<const float*>(b.in[kQkvW]), qkv_b, 3 * C, qkv, 3 * C);
    const int64_t per_thread = T + p_.sh + p_.sw;
    const int64_t tasks = p_.batch * p_.nwh * p_.nww * p_.heads;
#pragma omp parallel for num_threads(p_.threads) schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      float* row = thread_all + static_cast<int64_t>(omp_get_thread_num()) * per_thread;  // [T]
      float* rel = row + T;
      const int64_t head = t % p_.heads, win = t / p_.heads;
      const int64_t wx = win % p_.nww, wy = (win / p_.nww) % p_.nwh, bi = win / (p_.nww * p_.nwh);
      int64_t y0, x0, vy, vx;
      p_.window(wy, wx, &y0, &x0, &vy, &vx);
      auto token = [&](int64_t ty, int64_t tx) -> const float* {  // qkv row of a window position; null: zeros
        return ty < vy && tx < vx ? qkv + ((bi * p_.h + y0 + ty) * p_.w + x0 + tx) * 3 * C : qkv_b;
      };
      for (int64_t qy = 0; qy < vy; ++qy)
        for (int64_t qx = 0; qx < vx; ++qx) {
          const float* q = token(qy, qx) + head * D;
          for (int64_t j = 0; j < T; ++j) {
            const float* kr = token(j / p_.sw, j % p_.sw);
            float acc = 0.0f;
            if (kr)
              for (int64_t c = 0; c < D; ++c) acc += q[c] * kr[C + head * D + c];
            row[j] = acc * p_.scale;
          }
          p_.add_rel(row, q, qy, qx, rel);
          float mx = row[0];
          for (int64_t j = 1; j < T; ++j) mx = std::max(mx, row[j]);
          float sum = 0.0f;
          for (int64_t j = 0; j < T; ++j) sum += (row[j] = std::exp(row[j] - mx));
          float* dst = o + ((bi * p_.h + y0 + qy) * p_.w + x0 + qx) * C + head * D;
          for (int64_t c = 0; c < D; ++c) dst[c] = 0.0f;
          for (int64_t j = 0; j < T; ++j) {
            const float* vr = token(j / p_.sw, j % p_.sw);
            if (!vr) continue;
            const float pj = row[j] / sum;
            for (int64_t c = 0; c < D; ++c) dst[c] += pj * vr[2 * C + head * D + c];
          }
        }
    }
    float* y = static_cast<float*>(b.out[0]);
    const float* res = attn::input_or_null(b, kResidual);
    const float* wp = static_cast<const float*>(b.in[kProjW]);
    const float* bp = attn::input_or_null(b, kProjB);
#pragma omp parallel for num_threads(p_.threads) schedule(static)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < C; ++i) {
        float acc = bp ? bp[i] : 0.0f;
        for (int64_t c = 0; c < C; ++c) acc += o[r * C + c] * wp[i * C + c];
        y[r * C + i] = acc + (res ? res[r * C + i] : 0.0f);  // res may be y itself: read before write
      }
    return Status::Ok();
  }
  double flops() const override { return p_.flops(); }

 private:
  WinPlan p_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  WinPlan p;
  ATROUS_RETURN_IF_ERROR(p.init(ctx));
  p.thread_scr = ctx.scratch(sizeof(float) * static_cast<uint64_t>(p.threads) * (p.area() + p.sh + p.sw));
  return std::unique_ptr<Kernel>(new WindowAttentionRef(p));
}

const KernelDef kWindowAttentionPacked = {"window_attention_packed", false, create_packed};
const KernelDef kWindowAttentionSgemm = {"window_attention_sgemm", false, create_sgemm};
const KernelDef kWindowAttentionRef = {"window_attention_ref", false, create_ref};

}  // namespace

const OpDef kWindowAttentionOp = {"WindowAttention", 1, 8, 1, 1, check, infer, {&kWindowAttentionPacked, &kWindowAttentionSgemm, &kWindowAttentionRef},
                                  /*inplace_input=*/kResidual};

}  // namespace atrous
