// LiteMLA: EfficientViT's multi-scale ReLU linear attention on NCHW maps
// (mit-han-lab/efficientvit, efficientvit/models/nn/ops.py, class LiteMLA).
//   qkv = conv1x1(x) [B, 3T, H, W], T = heads · dim (no bias, no norm by default)
//   per scale k: agg = grouped 1×1 (groups 3·heads, dim → dim) of depthwise k×k (pad k/2) of qkv
//   multi = cat(qkv, agg...) read as G = heads·(1 + scales) groups of [q | k | v], dim channels each
//   per group, q = relu(q), k = relu(k), n = H·W tokens:
//     n > dim:  out = (v kᵀ) q / ((Σ_j k_j) · q + eps)           (v padded with a row of ones)
//     n <= dim: A = kᵀ q [n, n]; A /= (Σ_j A_j,i + eps); out = v A  (the quadratic form)
//   y = proj conv1x1(cat of the groups' outputs) + bias (proj's BatchNorm is a separate node).
// eps = 1e-15: a token whose relu(q) is all zero gives 0 / 1e-15 = 0, as the reference.
// inputs: 0 x [B, C, H, W]; 1 qkv weight [3T, C, 1, 1]; 2 proj weight [Co, T(1+S), 1, 1];
// 3 proj bias [Co]?; per scale s: 4 + 2s dw weight [3T, 1, k, k], 5 + 2s pw weight [3T, dim, 1, 1].
//
// Kernels: lite_mla_gemm (sgemm for the 1×1 convs and the attention products; threads
// over batch × groups; the depthwise k×k per channel from a zero-padded copy,
// ops/depthwise_padded.h, and the grouped 1×1 on ops/narrow_gemm.h, both AVX-512 where
// the CPU has it) and lite_mla_ref
// (plain loops).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "onednn/gemm.h"
#include "ops/attention_common.h"
#include "ops/depthwise_padded.h"
#include "ops/lite_mla.h"
#include "ops/narrow_gemm.h"
#include "ops/transpose_panel.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

constexpr int kX = kLiteMlaX, kQkvW = kLiteMlaQkvW, kProjW = kLiteMlaProjW, kProjB = kLiteMlaProjB, kFirstScale = kLiteMlaFirstScale;
constexpr int kMaxScales = 4;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::LiteMLAT>();
  if (a.dim < 1) return ctx.fail("dim must be >= 1");
  if (!std::isfinite(a.eps) || a.eps < 0) return ctx.fail("eps must be finite and >= 0");
  if (a.scales.size() > static_cast<size_t>(kMaxScales)) return ctx.fail("at most " + std::to_string(kMaxScales) + " scales");
  for (int k : a.scales)
    if (k < 1 || k % 2 == 0) return ctx.fail("scales must be odd kernel sizes, got " + std::to_string(k));
  const int want = kFirstScale + 2 * static_cast<int>(a.scales.size());
  if (ctx.num_inputs() != want && !(a.scales.empty() && ctx.num_inputs() == kProjB))
    return ctx.fail("expects " + std::to_string(kFirstScale + 2 * a.scales.size()) + " inputs (x, qkv, proj weight, proj bias, 2 per scale), got " +
                    std::to_string(ctx.num_inputs()));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kX, {DType::kF32}));
  for (int i = kQkvW; i < ctx.num_inputs(); ++i) {
    if (i == kProjB && !ctx.has(i)) continue;
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  }
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::LiteMLAT>();
  const Shape& x = ctx.in[kX];
  if (x.size() != 4) return ctx.fail("x must be [B, C, H, W], got " + shape_string(x));
  const Shape& wq = ctx.in[kQkvW];
  if (wq.size() != 4 || wq[1] != x[1] || wq[2] != 1 || wq[3] != 1 || wq[0] % (3 * a.dim) != 0)
    return ctx.fail("qkv weight must be [3·heads·dim, " + std::to_string(x[1]) + ", 1, 1] with dim " + std::to_string(a.dim) + ", got " + shape_string(wq));
  const int64_t t3 = wq[0], total = t3 / 3, S = static_cast<int64_t>(a.scales.size());
  for (int64_t s = 0; s < S; ++s) {
    const int64_t k = a.scales[static_cast<size_t>(s)];
    if (ctx.in[static_cast<size_t>(kFirstScale + 2 * s)] != Shape{t3, 1, k, k} || ctx.in[static_cast<size_t>(kFirstScale + 2 * s + 1)] != Shape{t3, a.dim, 1, 1})
      return ctx.fail("scale " + std::to_string(k) + ": weights must be [" + std::to_string(t3) + ", 1, k, k] and [" + std::to_string(t3) + ", dim, 1, 1], got " +
                      shape_string(ctx.in[static_cast<size_t>(kFirstScale + 2 * s)]) + " and " + shape_string(ctx.in[static_cast<size_t>(kFirstScale + 2 * s + 1)]));
  }
  const Shape& wp = ctx.in[kProjW];
  if (wp.size() != 4 || wp[1] != total * (1 + S) || wp[2] != 1 || wp[3] != 1)
    return ctx.fail("proj weight must be [Co, " + std::to_string(total * (1 + S)) + ", 1, 1], got " + shape_string(wp));
  if (ctx.has(kProjB) && ctx.in[kProjB] != Shape{wp[0]}) return ctx.fail("proj bias must be [" + std::to_string(wp[0]) + "]");
  ctx.out = {{x[0], wp[0], x[2], x[3]}};
  return Status::Ok();
}

}  // namespace

LiteMlaSizes LiteMlaSizes::of(const KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::LiteMLAT>();
  const Shape& x = ctx.in[kX].shape;
  LiteMlaSizes s;
  s.B = x[0];
  s.C = x[1];
  s.H = x[2];
  s.W = x[3];
  s.n = s.H * s.W;
  s.d = a.dim;
  s.t3 = ctx.in[kQkvW].shape[0];
  s.heads = s.t3 / (3 * s.d);
  s.S = static_cast<int64_t>(a.scales.size());
  s.groups = s.heads * (1 + s.S);
  s.co = ctx.in[kProjW].shape[0];
  for (int k : a.scales) s.kmax = std::max<int64_t>(s.kmax, k);
  return s;
}

double LiteMlaSizes::flops(const fb::LiteMLAT& a) const {
  double f = 2.0 * B * t3 * C * n + 2.0 * B * co * groups * d * n;
  for (int k : a.scales) f += 2.0 * B * t3 * n * (k * k + d);
  const double per_group = n > d ? 2.0 * n * d * (d + 1) * 2 : 2.0 * n * n * d * 2;
  return f + B * groups * per_group;
}

namespace {

// ---- kernels ----------------------------------------------------------------
class LiteMlaKernel : public Kernel {
 public:
  LiteMlaKernel(KernelContext& ctx, bool ref) : ref_(ref), a_(ctx.attrs<fb::LiteMLAT>()), s_(LiteMlaSizes::of(ctx)) {
    threads_ = std::max(1, ctx.threads);
    const uint64_t f = sizeof(float);
    multi_scr_ = ctx.scratch(f * s_.B * s_.t3 * (1 + s_.S) * s_.n);
    dw_scr_ = ctx.scratch(f * s_.t3 * s_.n);
    out_scr_ = ctx.scratch(f * s_.B * s_.groups * s_.d * s_.n);
    t_scr_ = ctx.scratch(f * threads_ * thread_floats());
    if (!ref_ && s_.S > 0) pad_scr_ = ctx.scratch(f * threads_ * (s_.H + s_.kmax - 1) * (s_.W + s_.kmax - 1));
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
    auto in = [&](int i) { return attn::input_or_null(b, i); };
    float *multi = scr(multi_scr_), *dw = scr(dw_scr_), *out = scr(out_scr_), *tall = scr(t_scr_);
    const int64_t per_batch = s_.t3 * (1 + s_.S) * s_.n;
    for (int64_t bi = 0; bi < s_.B; ++bi) {
      float* mb = multi + bi * per_batch;
      ATROUS_RETURN_IF_ERROR(mm(false, false, s_.t3, s_.n, s_.C, in(kQkvW), s_.C, in(kX) + bi * s_.C * s_.n, s_.n, 0.0f, mb, s_.n));
      for (int64_t s = 0; s < s_.S; ++s) {
        const int64_t k = a_.scales[static_cast<size_t>(s)];
        if (ref_) depthwise(mb, in(kFirstScale + 2 * static_cast<int>(s)), k, dw);
        else depthwise_fast(mb, in(kFirstScale + 2 * static_cast<int>(s)), k, dw, scr(pad_scr_));
        const float* pw = in(kFirstScale + 2 * static_cast<int>(s) + 1);  // [3T, dim]: group r maps dw rows r·dim.. to the same rows
        float* agg = mb + (s + 1) * s_.t3 * s_.n;
        ATROUS_RETURN_IF_ERROR(aggregate(pw, dw, agg));
      }
    }
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t t = 0; t < s_.B * s_.groups; ++t) {
      const int64_t bi = t / s_.groups, g = t % s_.groups;
      float* grp = multi + bi * per_batch + g * 3 * s_.d * s_.n;  // [q | k | v], each [dim, n]
      float* scratch = tall + static_cast<int64_t>(omp_get_thread_num()) * thread_floats();
      if (!attend(grp, out + (bi * s_.groups + g) * s_.d * s_.n, scratch).ok()) failed = true;
    }
    if (failed) return internal_error("sgemm failed in LiteMLA");
    const float* bias = in(kProjB);
    float* y = static_cast<float*>(b.out[0]);
    for (int64_t bi = 0; bi < s_.B; ++bi) {
      float* yb = y + bi * s_.co * s_.n;
      for (int64_t o = 0; o < s_.co; ++o) std::fill(yb + o * s_.n, yb + (o + 1) * s_.n, bias ? bias[o] : 0.0f);
      ATROUS_RETURN_IF_ERROR(mm(false, false, s_.co, s_.n, s_.groups * s_.d, in(kProjW), s_.groups * s_.d, out + bi * s_.groups * s_.d * s_.n, s_.n, 1.0f, yb, s_.n));
    }
    return Status::Ok();
  }

  double flops() const override { return s_.flops(a_); }
  std::string detail() const override { return s_.n > s_.d ? "linear form" : "quadratic form (H·W <= dim)"; }

 private:
  // lite_mla_gemm's linear form walks the tokens in blocks of kBlock (see attend()).
  static constexpr int64_t kBlock = 256;
  int64_t thread_floats() const {
    if (s_.n <= s_.d) return s_.n * s_.n + s_.n;
    return ref_ ? s_.d * s_.d + s_.d + s_.n : s_.d * s_.d + s_.d + s_.d * kBlock;
  }

  // C[M, N] = A[M, K] B[K, N] (+ beta C), sgemm or plain loops.
  Status mm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bm, int64_t ldb, float beta,
            float* Cm, int64_t ldc) const {
    if (!ref_) return sgemm(ta, tb, M, N, K, 1.0f, A, lda, Bm, ldb, beta, Cm, ldc);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? Bm[j * ldb + k] : Bm[k * ldb + j]);
        Cm[i * ldc + j] = acc + (beta != 0.0f ? beta * Cm[i * ldc + j] : 0.0f);
      }
    return Status::Ok();
  }

  // agg = the grouped 1×1 (groups t3 / dim, [dim × dim] each) of dw, both [t3, n].
  // lite_mla_gemm: narrow_gemm (ops/narrow_gemm.h) on tasks of (group, column range), in
  // one parallel region (a region per small GEMM costs a barrier each, which dominates on
  // a busy machine). Its output is written past the cache (non-temporal stores): at 4k
  // tokens and more it is larger than the L3 anyway, and at 1k it measured the same.
  Status aggregate(const float* pw, const float* dw, float* agg) const {
    const int64_t G = s_.t3 / s_.d;
    if (ref_) {
      for (int64_t r = 0; r < G; ++r) ATROUS_RETURN_IF_ERROR(mm(false, false, s_.d, s_.n, s_.d, pw + r * s_.d * s_.d, s_.d, dw + r * s_.d * s_.n, s_.n, 0.0f, agg + r * s_.d * s_.n, s_.n));
      return Status::Ok();
    }
    // Enough tasks for every thread (ranges of whole 48-column panels).
    const int64_t parts = std::max<int64_t>(1, (2 * threads_ + G - 1) / G);
    const int64_t cols = (s_.n + parts - 1) / parts, step = (cols + 47) / 48 * 48;
    const int64_t tasks_per_group = (s_.n + step - 1) / step;
    std::atomic<bool> bad{false};
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t t = 0; t < G * tasks_per_group; ++t) {
      const int64_t r = t / tasks_per_group, j0 = (t % tasks_per_group) * step, nc = std::min(step, s_.n - j0);
      const int64_t off = r * s_.d * s_.n + j0;
      if (!narrow_gemm(s_.d, nc, s_.d, pw + r * s_.d * s_.d, s_.d, dw + off, s_.n, agg + off, s_.n, true).ok()) bad = true;
    }
    if (bad) return internal_error("the grouped 1×1 (narrow_gemm) failed in LiteMLA's aggregation");
    return Status::Ok();
  }

  // dst[c] = depthwise k×k of src[c], zero padding k/2, stride 1: tap by tap over the
  // rows and columns it reaches, so the inner loop is contiguous (both kernels).
  void depthwise(const float* src, const float* w, int64_t k, float* dst) const {
    const int64_t p = k / 2;
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int64_t c = 0; c < s_.t3; ++c) {
      const float* sc = src + c * s_.n;
      const float* wc = w + c * k * k;
      float* dc = dst + c * s_.n;
      std::fill(dc, dc + s_.n, 0.0f);
      for (int64_t i = 0; i < k; ++i) {
        const int64_t y0 = std::max<int64_t>(0, p - i), y1 = std::min<int64_t>(s_.H, s_.H + p - i);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t x0 = std::max<int64_t>(0, p - j), x1 = std::min<int64_t>(s_.W, s_.W + p - j);
          const float wt = wc[i * k + j];
          for (int64_t y = y0; y < y1; ++y) {
            const float* srow = sc + (y + i - p) * s_.W + (j - p);
            float* drow = dc + y * s_.W;
            for (int64_t x = x0; x < x1; ++x) drow[x] += wt * srow[x];
          }
        }
      }
    }
  }

  // depthwise() for lite_mla_gemm: each channel copied into a zero-padded per-thread
  // buffer, then depthwise_padded (AVX-512 when available).
  void depthwise_fast(const float* src, const float* w, int64_t k, float* dst, float* pads) const {
    const int64_t p = k / 2, ldp = s_.W + k - 1, rows = s_.H + k - 1;
    const int64_t per_thread = (s_.H + s_.kmax - 1) * (s_.W + s_.kmax - 1);
    const bool avx512 = depthwise_padded_avx512_available();
#pragma omp parallel num_threads(threads_)
    {
      float* pad = pads + static_cast<int64_t>(omp_get_thread_num()) * per_thread;
      std::fill(pad, pad + rows * ldp, 0.0f);  // the borders stay zero; the interior is rewritten per channel
#pragma omp for schedule(static)
      for (int64_t c = 0; c < s_.t3; ++c) {
        for (int64_t y = 0; y < s_.H; ++y) std::memcpy(pad + (y + p) * ldp + p, src + c * s_.n + y * s_.W, static_cast<size_t>(s_.W) * sizeof(float));
        if (avx512) depthwise_padded_avx512(pad, ldp, w + c * k * k, k, s_.H, s_.W, dst + c * s_.n);
        else depthwise_padded(pad, ldp, w + c * k * k, k, s_.H, s_.W, dst + c * s_.n);
      }
    }
  }

  // One group: grp = [q | k | v] rows of n tokens (relu'd in place); out [dim, n].
  Status attend(float* grp, float* out, float* scratch) const {
    const int64_t d = s_.d, n = s_.n;
    float* q = grp;
    float* k = grp + d * n;
    const float* v = grp + 2 * d * n;
    if (n > d && !ref_) return attend_blocked(q, k, v, out, scratch);
    for (int64_t i = 0; i < 2 * d * n; ++i) grp[i] = grp[i] > 0.0f ? grp[i] : 0.0f;
    if (n > d) {
      float* vk = scratch;       // [d, d] = v kᵀ
      float* ksum = vk + d * d;  // [d]  (the ones row of v times kᵀ)
      float* den = ksum + d;     // [n]
      ATROUS_RETURN_IF_ERROR(mm(false, true, d, d, n, v, n, k, n, 0.0f, vk, d));
      for (int64_t f = 0; f < d; ++f) {
        float s = 0.0f;
        for (int64_t j = 0; j < n; ++j) s += k[f * n + j];
        ksum[f] = s;
      }
      ATROUS_RETURN_IF_ERROR(mm(false, false, d, n, d, vk, d, q, n, 0.0f, out, n));
      std::fill(den, den + n, 0.0f);
      for (int64_t f = 0; f < d; ++f)
        for (int64_t i = 0; i < n; ++i) den[i] += ksum[f] * q[f * n + i];
      for (int64_t c = 0; c < d; ++c)
        for (int64_t i = 0; i < n; ++i) out[c * n + i] = out[c * n + i] / (den[i] + a_.eps);
      return Status::Ok();
    }
    float* A = scratch;     // [n (keys j), n (queries i)] = kᵀ q
    float* col = A + n * n;  // [n] Σ_j A[j, i]
    ATROUS_RETURN_IF_ERROR(mm(true, false, n, n, d, k, n, q, n, 0.0f, A, n));
    std::fill(col, col + n, 0.0f);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) col[i] += A[j * n + i];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) A[j * n + i] /= col[i] + a_.eps;
    return mm(false, false, d, n, n, v, n, A, n, 0.0f, out, n);
  }

  // The linear form in two passes (q, k, v read once from memory, out written once):
  //   1. over blocks of kBlock tokens, each block's relu'd k copied token-major into thread
  //      scratch (ops/transpose_panel.h): vk += v_b relu(k_b)ᵀ, ksum += Σ_j relu(k_b);
  //   2. out = vk relu(q) / (ksum · relu(q) + eps) per token, in one narrow_ratio
  //      (ops/narrow_gemm.h: the ReLU on the loads, the division as out is stored).
  Status attend_blocked(const float* q, const float* k, const float* v, float* out, float* scratch) const {
    const int64_t d = s_.d, n = s_.n;
    float* vk = scratch;        // [d, d]
    float* ksum = vk + d * d;   // [d]
    float* blk = ksum + d;      // [kBlock, d]
    std::fill(ksum, ksum + d, 0.0f);
    for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
      const int64_t nb = std::min(kBlock, n - j0);
      transpose_panel(k + j0, n, d, nb, blk, d, true);  // blk [nb, d] = relu(k_b)ᵀ
      for (int64_t j = 0; j < nb; ++j) {
        const float* bj = blk + j * d;
#pragma omp simd
        for (int64_t f = 0; f < d; ++f) ksum[f] += bj[f];
      }
      ATROUS_RETURN_IF_ERROR(mm(false, false, d, d, nb, v + j0, n, blk, d, j0 > 0 ? 1.0f : 0.0f, vk, d));
    }
    narrow_ratio(d, n, d, vk, d, ksum, a_.eps, q, n, out, n, true);
    return Status::Ok();
  }

  bool ref_;
  fb::LiteMLAT a_;
  LiteMlaSizes s_;
  int threads_ = 1;
  int multi_scr_ = -1, dw_scr_ = -1, out_scr_ = -1, t_scr_ = -1, pad_scr_ = -1;
};

Result<std::unique_ptr<Kernel>> create_gemm(KernelContext& ctx) { return std::unique_ptr<Kernel>(new LiteMlaKernel(ctx, false)); }
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return std::unique_ptr<Kernel>(new LiteMlaKernel(ctx, true)); }

const KernelDef kGemm = {"lite_mla_gemm", false, create_gemm};
const KernelDef kRef = {"lite_mla_ref", false, create_ref};

}  // namespace

extern const KernelDef kLiteMlaBanded;  // lite_mla_banded.cpp: the linear form, band by band in cache

const OpDef kLiteMLAOp = {"LiteMLA", 3, kFirstScale + 2 * kMaxScales, 1, 1, check, infer, {&kLiteMlaBanded, &kGemm, &kRef}};

}  // namespace atrous
