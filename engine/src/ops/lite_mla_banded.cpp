// lite_mla_banded: LiteMLA's linear form (H·W > dim) with the multi-scale branch and the
// attention products fused band by band, so that neither an aggregated map nor the
// products' operands go through memory.
//
// lite_mla_gemm (lite_mla.cpp) writes, per batch item, the depthwise map and the
// aggregated maps of all 3T channels (2 · 3T · H·W floats each scale, written and read
// back), and its v relu(k)ᵀ reads k and v, rows of H·W floats, in 256-token blocks from
// memory: 128 streams at once, which ran that product at 57 % of the FMA peak
// (docs/performance.md). Here, after the qkv 1×1 (one sgemm, as there, into a map whose
// rows are an odd number of cache lines apart, so that a head's 128 rows do not share a
// few cache sets when H·W is a power of two):
//   pass 1, per task (batch item, head, range of bands of R image rows, T = R·W tokens):
//     - the head's own group: vk += v_b relu(k_b)ᵀ and ksum += Σ relu(k_b), 64 tokens at
//       a time (relu(k_b) made token-major by register transposes, ops/transpose_panel.h,
//       then small_sgemm), from the band's rows of the qkv map; without scales, the
//       next block's rows are prefetched while a block's product runs (with scales the
//       depthwise copies have just read them);
//     - per scale: the depthwise k×k of the head's k channels over the band (from a
//       zero-padded copy of its rows and the k/2 rows around them, ops/depthwise_padded.h),
//       their grouped 1×1 (ops/narrow_gemm.h) into a [dim, T] buffer; the same for v;
//       then that scale's group's vk and ksum from the two buffers, still in L2;
//   the partial sums of a head's ranges added up;
//   pass 2, per task: the head's own group's read-out from the band's q rows, and per
//     scale the q channels' depthwise and grouped 1×1 into the buffer, then its read-out
//     (narrow_ratio: vk relu(q) / (ksum · relu(q) + eps), written past the cache);
//   the projection 1×1 (sgemm) over the groups' outputs, as lite_mla_gemm.
// The same math as lite_mla_gemm, its sums over tokens taken band by band.
// Declines H·W <= dim (the quadratic form) and CPUs without AVX-512.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "onednn/gemm.h"
#include "ops/attention_common.h"
#include "ops/depthwise_padded.h"
#include "ops/lite_mla.h"
#include "ops/narrow_gemm.h"
#include "ops/small_gemm.h"
#include "ops/transpose_panel.h"

namespace atrous {
namespace {

constexpr int64_t kTargetTokens = 512;  // tokens per band (whole image rows): its [dim, T] buffers stay in L2
constexpr int64_t kBlock = 64;          // tokens per relu(k)ᵀ block and product (docs/performance.md)

class LiteMlaBanded : public Kernel {
 public:
  LiteMlaBanded(KernelContext& ctx, const LiteMlaSizes& s)
      : a_(ctx.attrs<fb::LiteMLAT>()), s_(s), threads_(std::max(1, ctx.threads)) {
    rows_ = std::clamp<int64_t>((kTargetTokens + s_.W - 1) / s_.W, 1, s_.H);
    bands_ = (s_.H + rows_ - 1) / rows_;
    // Enough tasks for every thread: a head's bands split into ranges when there are
    // fewer (batch, head) pairs than twice the threads.
    ranges_ = std::clamp<int64_t>((2 * threads_ + s_.B * s_.heads - 1) / (s_.B * s_.heads), 1, bands_);
    ldm_ = lite_mla_map_stride(s_.n);
    const uint64_t f = sizeof(float);
    qkv_scr_ = ctx.scratch(f * s_.B * s_.t3 * ldm_);
    out_scr_ = ctx.scratch(f * s_.B * s_.groups * s_.d * s_.n);
    thread_scr_ = ctx.scratch(f * threads_ * thread_floats());
    acc_scr_ = ctx.scratch(f * tasks() * task_floats());
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    auto scr = [&](int i) { return static_cast<float*>(b.scratch[static_cast<size_t>(i)]); };
    auto in = [&](int i) { return attn::input_or_null(b, i); };
    const int64_t d = s_.d, n = s_.n;
    float *qkv = scr(qkv_scr_), *out = scr(out_scr_), *thr = scr(thread_scr_), *acc = scr(acc_scr_);
    for (int64_t bi = 0; bi < s_.B; ++bi)
      ATROUS_RETURN_IF_ERROR(sgemm(false, false, s_.t3, n, s_.C, 1.0f, in(kLiteMlaQkvW), s_.C, in(kLiteMlaX) + bi * s_.C * n, n, 0.0f,
                                   qkv + bi * s_.t3 * ldm_, ldm_));
    std::atomic<bool> failed{false};
    // Pass 1: each task's partial vk and ksum of the head's 1 + S groups.
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t t = 0; t < tasks(); ++t) {
      if (!accumulate(b, t, qkv, thr + omp_get_thread_num() * thread_floats(), acc + t * task_floats()).ok()) failed = true;
    }
    if (failed) return internal_error("a GEMM failed in LiteMLA's first pass (lite_mla_banded)");
    // A head's ranges into its first range's sums.
    for (int64_t t = 0; t < tasks(); ++t) {
      if (t % ranges_ == 0) continue;
      const float* src = acc + t * task_floats();
      float* dst = acc + (t - t % ranges_) * task_floats();
      for (int64_t i = 0; i < task_floats(); ++i) dst[i] += src[i];
    }
    // Pass 2: the read-outs.
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t t = 0; t < tasks(); ++t) {
      if (!read_out(b, t, qkv, thr + omp_get_thread_num() * thread_floats(), acc + (t - t % ranges_) * task_floats(), out).ok())
        failed = true;
    }
    if (failed) return internal_error("a GEMM failed in LiteMLA's second pass (lite_mla_banded)");
    const float* bias = in(kLiteMlaProjB);
    float* y = static_cast<float*>(b.out[0]);
    for (int64_t bi = 0; bi < s_.B; ++bi) {
      float* yb = y + bi * s_.co * n;
      for (int64_t o = 0; o < s_.co; ++o) std::fill(yb + o * n, yb + (o + 1) * n, bias ? bias[o] : 0.0f);
      ATROUS_RETURN_IF_ERROR(sgemm(false, false, s_.co, n, s_.groups * d, 1.0f, in(kLiteMlaProjW), s_.groups * d,
                                   out + bi * s_.groups * d * n, n, 1.0f, yb, n));
    }
    return Status::Ok();
  }

  double flops() const override { return s_.flops(a_); }
  std::string detail() const override {
    return "linear form in bands of " + std::to_string(rows_) + " rows (" + std::to_string(rows_ * s_.W) + " tokens), " +
           std::to_string(ranges_) + " range(s) per head";
  }

 private:
  int64_t tasks() const { return s_.B * s_.heads * ranges_; }
  // Per task: vk [d, d] and ksum [d] of each of the head's 1 + S groups.
  int64_t task_floats() const { return (1 + s_.S) * (s_.d * s_.d + s_.d); }
  // Per thread: three [d, T] buffers (a depthwise map, two aggregated maps), a relu(k)ᵀ
  // block, a zero-padded band of one channel.
  int64_t thread_floats() const { return 3 * s_.d * rows_ * s_.W + kBlock * s_.d + pad_floats(); }
  int64_t pad_floats() const { return (rows_ + s_.kmax - 1) * (s_.W + s_.kmax - 1); }

  struct Band {
    int64_t y0, rows, t0, T;
  };
  // Task t's batch item, head and bands [first, last).
  void task(int64_t t, int64_t* bi, int64_t* h, int64_t* first, int64_t* last) const {
    const int64_t r = t % ranges_, bh = t / ranges_;
    *bi = bh / s_.heads;
    *h = bh % s_.heads;
    *first = r * bands_ / ranges_;
    *last = (r + 1) * bands_ / ranges_;
  }
  Band band(int64_t i) const {
    const int64_t y0 = i * rows_, rows = std::min(rows_, s_.H - y0);
    return {y0, rows, y0 * s_.W, rows * s_.W};
  }

  // vk [d, d] += v relu(k)ᵀ, ksum += Σ_j relu(k_j) over T tokens of k, v ([d, T] rows, strides ldk, ldv).
  // Tokens [T, prefetch_to) follow in the same rows: each block's product prefetches the
  // next block's k and v up to there (0: no prefetching).
  Status add_products(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t prefetch_to, float* vk,
                      float* ksum, float* blk) const {
    const int64_t d = s_.d;
    for (int64_t j0 = 0; j0 < T; j0 += kBlock) {
      const int64_t nb = std::min(kBlock, T - j0), j1 = j0 + kBlock;
      transpose_panel(k + j0, ldk, d, nb, blk, d, true);  // blk [nb, d] = relu(k)ᵀ
      attn::add_column_sums(blk, d, nb, d, ksum);
      const int64_t ahead = std::clamp<int64_t>(prefetch_to - j1, 0, kBlock);
      const PrefetchRows next[2] = {{k + j1, ldk, d, ahead}, {v + j1, ldv, d, ahead}};
      ATROUS_RETURN_IF_ERROR(
          small_sgemm(false, false, d, d, nb, 1.0f, v + j0, ldv, blk, d, 1.0f, vk, d, nullptr, next, ahead > 0 ? 2 : 0));
    }
    return Status::Ok();
  }

  // dst [d, T] = the depthwise k×k (padding k/2) of the d channels at `src` (rows of the
  // [H, W] map, ldm_ floats apart) over the band's rows, channel by channel through pad.
  void depthwise_band(const float* src, const float* w, int64_t k, const Band& bd, float* pad, float* dst) const {
    const int64_t p = k / 2, ldp = s_.W + k - 1, prow = bd.rows + k - 1;
    const bool avx512 = depthwise_padded_avx512_available();
    std::fill(pad, pad + prow * ldp, 0.0f);  // borders; rows outside the map stay zero
    for (int64_t c = 0; c < s_.d; ++c) {
      const float* plane = src + c * ldm_;
      for (int64_t i = 0; i < prow; ++i) {
        const int64_t y = bd.y0 - p + i;
        if (y >= 0 && y < s_.H) std::memcpy(pad + i * ldp + p, plane + y * s_.W, static_cast<size_t>(s_.W) * sizeof(float));
      }
      if (avx512) depthwise_padded_avx512(pad, ldp, w + c * k * k, k, bd.rows, s_.W, dst + c * bd.T);
      else depthwise_padded(pad, ldp, w + c * k * k, k, bd.rows, s_.W, dst + c * bd.T);
    }
  }

  // agg [d, T] = scale s's aggregation of the head's d channels starting at qkv row `row`
  // (row / d is also the aggregation group) over the band; dw: scratch [d, T].
  Status aggregate_band(const RunBuffers& b, int64_t s, const float* qkv_b, int64_t row, const Band& bd, float* pad, float* dw,
                        float* agg) const {
    const int64_t k = a_.scales[static_cast<size_t>(s)], d = s_.d;
    const float* dww = attn::input_or_null(b, kLiteMlaFirstScale + 2 * static_cast<int>(s));
    const float* pw = attn::input_or_null(b, kLiteMlaFirstScale + 2 * static_cast<int>(s) + 1);
    depthwise_band(qkv_b + row * ldm_, dww + row * k * k, k, bd, pad, dw);
    return narrow_gemm(d, bd.T, d, pw + row * d, d, dw, bd.T, agg, bd.T, false);
  }

  Status accumulate(const RunBuffers& b, int64_t t, const float* qkv, float* thr, float* acc) const {
    int64_t bi, h, first, last;
    task(t, &bi, &h, &first, &last);
    const int64_t d = s_.d, ld = ldm_, T_max = rows_ * s_.W;
    float *dw = thr, *ak = dw + d * T_max, *av = ak + d * T_max, *blk = av + d * T_max, *pad = blk + kBlock * d;
    std::fill(acc, acc + task_floats(), 0.0f);
    const float* qkv_b = qkv + bi * s_.t3 * ld;
    const int64_t kr = h * 3 * d + d, vr = kr + d;  // the head's k and v rows
    for (int64_t i = first; i < last; ++i) {
      const Band bd = band(i);
      // The scales first: their depthwise copies read the band's k and v rows channel by
      // channel (long runs the prefetchers follow), so the head's own product then finds
      // them in L2.
      for (int64_t s = 0; s < s_.S; ++s) {
        float* vk = acc + (1 + s) * (d * d + d);
        ATROUS_RETURN_IF_ERROR(aggregate_band(b, s, qkv_b, kr, bd, pad, dw, ak));
        ATROUS_RETURN_IF_ERROR(aggregate_band(b, s, qkv_b, vr, bd, pad, dw, av));
        ATROUS_RETURN_IF_ERROR(add_products(ak, bd.T, av, bd.T, bd.T, 0, vk, vk + d * d, blk));
      }
      // Without scales nothing has read this band's k and v rows yet: prefetch ahead,
      // into the task's next band.
      const int64_t prefetch_to = s_.S > 0 ? 0 : bd.T + (i + 1 < last ? band(i + 1).T : 0);
      ATROUS_RETURN_IF_ERROR(
          add_products(qkv_b + kr * ld + bd.t0, ld, qkv_b + vr * ld + bd.t0, ld, bd.T, prefetch_to, acc, acc + d * d, blk));
    }
    return Status::Ok();
  }

  Status read_out(const RunBuffers& b, int64_t t, const float* qkv, float* thr, const float* acc, float* out) const {
    int64_t bi, h, first, last;
    task(t, &bi, &h, &first, &last);
    const int64_t d = s_.d, n = s_.n, T_max = rows_ * s_.W;
    float *dw = thr, *aq = dw + d * T_max, *pad = thr + 3 * d * T_max + kBlock * d;
    const float* qkv_b = qkv + bi * s_.t3 * ldm_;
    float* out_b = out + bi * s_.groups * d * n;
    const int64_t qr = h * 3 * d;
    for (int64_t i = first; i < last; ++i) {
      const Band bd = band(i);
      narrow_ratio(d, bd.T, d, acc, d, acc + d * d, a_.eps, qkv_b + qr * ldm_ + bd.t0, ldm_, out_b + h * d * n + bd.t0, n, true);
      for (int64_t s = 0; s < s_.S; ++s) {
        const float* vk = acc + (1 + s) * (d * d + d);
        ATROUS_RETURN_IF_ERROR(aggregate_band(b, s, qkv_b, qr, bd, pad, dw, aq));
        narrow_ratio(d, bd.T, d, vk, d, vk + d * d, a_.eps, aq, bd.T, out_b + ((1 + s) * s_.heads + h) * d * n + bd.t0, n, true);
      }
    }
    return Status::Ok();
  }

  fb::LiteMLAT a_;
  LiteMlaSizes s_;
  int threads_;
  int64_t rows_ = 1, bands_ = 1, ranges_ = 1;
  int64_t ldm_ = 1;  // the qkv map's row stride (lite_mla_map_stride)
  int qkv_scr_ = -1, out_scr_ = -1, thread_scr_ = -1, acc_scr_ = -1;
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const LiteMlaSizes s = LiteMlaSizes::of(ctx);
  if (s.n <= s.d) return KernelContext::decline("H·W <= dim: the quadratic form (lite_mla_gemm)");
  if (!narrow_gemm_avx512_available()) return KernelContext::decline("needs AVX-512 (narrow_gemm)");
  return std::unique_ptr<Kernel>(new LiteMlaBanded(ctx, s));
}

}  // namespace

int64_t lite_mla_map_stride(int64_t n) {
  const int64_t lines = (n + 15) / 16;
  return 16 * (lines % 2 == 0 ? lines + 1 : lines);
}

extern const KernelDef kLiteMlaBanded;
const KernelDef kLiteMlaBanded = {"lite_mla_banded", false, create};

}  // namespace atrous
