// conv_transpose2d_gemm: ConvTranspose2d when the kernel equals the stride (no
// padding, no dilation, one group), e.g. SAM's 2×2 stride-2 output upscaling.
// The taps of different input pixels never overlap, so the layer is one GEMM
// followed by a pixel shuffle:
//   Y[(o, a, b), p] = Σ_c W[c, (o, a, b)] · X[c, p]     (W is PyTorch's [C, O, kH, kW])
//   y[o, i·kH + a, j·kW + b] = act(Y[(o, a, b), i·W + j] + bias[o])
// Each task takes whole input rows (about kPixels pixels): an sgemm on the calling
// thread into a per-thread [O·kH·kW, pixels] tile, then bias and the vectorised
// activation per tile row, then the shuffle into NCHW (for kW = 2 an interleave of
// two rows). Weights are used as stored.
#include <omp.h>

#include <algorithm>
#include <atomic>

#include "ops/gemm_threads.h"
#include "ops/activation_rows.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

struct Geometry {
  int64_t n = 1, c = 1, h = 1, w = 1, o = 1, kh = 1, kw = 1;
  fb::ActKind act = fb::ActKind::None;
  float alpha = 1.0f;
  int threads = 1;
  int64_t rows() const { return o * kh * kw; }
};

// dst[j·2 + b] = src_b[j]: two rows interleaved (kW = 2, SAM's case), vectorised.
inline void interleave2(float* dst, const float* s0, const float* s1, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    dst[2 * j] = s0[j];
    dst[2 * j + 1] = s1[j];
  }
}
__attribute__((target("avx512f"))) void interleave2_avx512(float* d, const float* s0, const float* s1, int64_t n) { interleave2(d, s0, s1, n); }

class ConvTranspose2dGemm : public Kernel {
 public:
  static constexpr int64_t kPixels = 512;  // pixels per task, rounded to whole input rows
  ConvTranspose2dGemm(const Geometry& g, int tile_scr) : g_(g), tile_scr_(tile_scr) {}
  static int64_t rows_per_task(const Geometry& g) { return std::max<int64_t>(1, kPixels / g.w); }
  static int64_t thread_floats(const Geometry& g) {
    const int64_t np = rows_per_task(g) * g.w;
    return g.rows() * np + np;
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);       // [N, C, H, W]
    const float* wt = static_cast<const float*>(b.in[1]);      // [C, O, kH, kW]
    const float* bias = b.in.size() > 2 ? static_cast<const float*>(b.in[2]) : nullptr;  // [O]
    float* y = static_cast<float*>(b.out[0]);                  // [N, O, H·kH, W·kW]
    float* tiles = static_cast<float*>(b.scratch[static_cast<size_t>(tile_scr_)]);
    const int64_t P = g_.h * g_.w, R = g_.rows(), rows = rows_per_task(g_), ld = rows * g_.w;
    const int64_t blocks = (g_.h + rows - 1) / rows, tasks = g_.n * blocks;
    const int64_t OH = g_.h * g_.kh, OW = g_.w * g_.kw;
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(g_.threads) schedule(dynamic) if (tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
      if (failed.load(std::memory_order_relaxed)) continue;
      const int64_t ni = t / blocks, i0 = (t % blocks) * rows, nr = std::min(rows, g_.h - i0), np = nr * g_.w;
      float* Y = tiles + static_cast<int64_t>(omp_get_thread_num()) * thread_floats(g_);  // [R, np] (stride ld)
      float* e = Y + R * ld;
      if (!sgemm_sized(g_.threads, true, false, R, np, g_.c, 1.0f, wt, R, x + ni * g_.c * P + i0 * g_.w, P, 0.0f, Y, ld).ok()) {
        failed = true;
        continue;
      }
      for (int64_t r = 0; r < R; ++r)
        bias_activate_row(Y + r * ld, np, nullptr, bias ? bias[r / (g_.kh * g_.kw)] : 0.0f, g_.act, g_.alpha, e);
      // Pixel shuffle: output row i·kH + a of channel o interleaves Y rows (o, a, 0..kW−1).
      float* yn = y + ni * g_.o * OH * OW;
      for (int64_t o = 0; o < g_.o; ++o)
        for (int64_t a = 0; a < g_.kh; ++a)
          for (int64_t i = 0; i < nr; ++i) {
            float* dst = yn + (o * OH + (i0 + i) * g_.kh + a) * OW;
            const float* src = Y + ((o * g_.kh + a) * g_.kw) * ld + i * g_.w;
            if (g_.kw == 2 && avx512) {
              interleave2_avx512(dst, src, src + ld, g_.w);
            } else if (g_.kw == 2) {
              interleave2(dst, src, src + ld, g_.w);
            } else {
              for (int64_t j = 0; j < g_.w; ++j)
                for (int64_t bb = 0; bb < g_.kw; ++bb) dst[j * g_.kw + bb] = src[bb * ld + j];
            }
          }
    }
    if (failed) return internal_error("sgemm failed in the transposed convolution");
    return Status::Ok();
  }
  double flops() const override { return 2.0 * g_.n * g_.h * g_.w * g_.c * g_.rows(); }
  std::string detail() const override { return "GEMM + pixel shuffle, " + std::to_string(rows_per_task(g_)) + " input rows per task"; }

 private:
  Geometry g_;
  int tile_scr_;
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::ConvTranspose2dT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& w = ctx.in[1].shape;
  if (a.groups != 1) return KernelContext::decline("groups > 1");
  if (a.dilation_h != 1 || a.dilation_w != 1) return KernelContext::decline("dilated");
  if (a.stride_h != w[2] || a.stride_w != w[3]) return KernelContext::decline("kernel differs from the stride (taps overlap or leave gaps)");
  if (a.pad_top || a.pad_left || a.pad_bottom || a.pad_right || a.output_pad_h || a.output_pad_w)
    return KernelContext::decline("padding or output padding");
  Geometry g;
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.o = w[1], g.kh = w[2], g.kw = w[3];
  g.act = a.activation;
  g.alpha = a.act_alpha;
  g.threads = std::max(1, ctx.threads);
  const int tile = ctx.scratch(sizeof(float) * static_cast<uint64_t>(g.threads) * ConvTranspose2dGemm::thread_floats(g));
  return std::unique_ptr<Kernel>(new ConvTranspose2dGemm(g, tile));
}

}  // namespace

extern const KernelDef kConvTranspose2dGemm;
const KernelDef kConvTranspose2dGemm = {"conv_transpose2d_gemm", false, create};

}  // namespace atrous
