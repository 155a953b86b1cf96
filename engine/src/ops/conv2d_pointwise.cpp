// conv2d_pointwise: a 1×1 Conv2d that adds a residual, on NHWC maps (ResNet's bottleneck
// conv3 and the skip it ends in), as one GEMM over the pixels with the residual fused:
//   y[p, o] = act(Σ_c x[p, c] · w[o, c] + b[o] + r[p, o]),  p < N·H·W
//
// oneDNN 2.6 runs this shape with brgconv_1x1 and the sum post-op. In DeepLabv3 at
// 513×513 that read 250-280 GFLOP/s at layer1's 64 -> 256, 385-410 at layer3's
// 256 -> 1024 and 445 at layer4's 512 -> 2048 (of a 540 GFLOP/s FMA peak), where its
// 1×1s without a residual read 480-500; alone, with the caches flushed, 400 at layer3's
// shape. Here a register tile is 6 pixels × 64 output channels (24 zmm accumulators)
// over all of C: per input channel, one broadcast of x per pixel and four loads of the
// packed weights, 24 FMAs. The accumulators start from the residual (+ bias), and each
// tile prefetches the next tile's residual rows and x while it runs (without the prefetch the
// kernel read 420 GFLOP/s alone at layer3's shape, with it 490). Weights are packed once
// into panels of 64 output channels ([O/64][C][64]); a task is a block of 48 pixels ×
// one panel, taken panel by panel or block by block (kSmallInput). The residual may share
// the output's buffer (each tile reads its residual before it writes those elements, and
// nothing else). docs/performance.md has the network figures.
//
// Takes 1×1 kernels, stride 1, no padding, one group, ReLU or no activation, a residual,
// output channels in 64s, x and the residual in NHWC (as the oneDNN convolutions around
// it leave them) and an output that may be NHWC; AVX-512. Declines otherwise. Tests:
// the conv_pointwise_* cases of tests/ops (bottleneck ends, every row tail).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "onednn/onednn.h"
#include "ops/op_registry.h"

// GCC 12's avx512fintrin.h builds some intrinsics on _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports at every use (a false positive of the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace atrous {
namespace {

constexpr int kMR = 6;            // pixels per register tile
constexpr int64_t kPanel = 64;    // output channels per panel (4 vectors)
constexpr int64_t kBlockRows = 48;  // pixels per task (measured 48-384: 48 best by 1-3 %)
// x at most this large: tasks go panel by panel (each panel of weights read once, all of x
// once per panel, from L2/L3); larger, block by block (a block of x in L1, every panel
// once per block). Panel by panel measured faster on GCN's layer3 and layer4 at 512² (1 MiB
// and 0.5 MiB of x against 1 and 4 MiB of weights) and the same on DeepLabv3's (2-4 MiB);
// block by block bounds the traffic for maps larger than the L3.
constexpr double kSmallInput = 8 << 20;

struct TileArgs {
  const float* x;     // the tile's first pixel, C floats per pixel
  int64_t c;
  const float* w;     // the panel: [C][64]
  const float* bias;  // the panel's 64, or null
  const float* res;   // residual at (first pixel, panel's first channel), O floats per pixel
  float* y;           // output likewise
  int64_t o;
  const float* next;  // the next tile's residual (prefetched), or null
  const float* next_x;  // the next tile's x (prefetched), or null
  int64_t next_x_lines;
  bool relu;
};

template <int MR>
__attribute__((target("avx512f"))) void tile(const TileArgs& t) {
  __m512 acc[MR][4];
  __m512 b[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) b[j] = t.bias ? _mm512_loadu_ps(t.bias + 16 * j) : _mm512_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_add_ps(b[j], _mm512_loadu_ps(t.res + i * t.o + 16 * j));
  const int64_t C = t.c;
  for (int64_t k = 0; k < C; ++k) {
    if (t.next && k < kMR * 4)  // one cache line of the next tile's residual per step
      _mm_prefetch(reinterpret_cast<const char*>(t.next + (k >> 2) * t.o + 16 * (k & 3)), _MM_HINT_T0);
    if (k < t.next_x_lines) _mm_prefetch(reinterpret_cast<const char*>(t.next_x + 16 * k), _MM_HINT_T0);
    const float* wk = t.w + k * kPanel;
    const __m512 w0 = _mm512_load_ps(wk), w1 = _mm512_load_ps(wk + 16), w2 = _mm512_load_ps(wk + 32), w3 = _mm512_load_ps(wk + 48);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(t.x[i * C + k]);
      acc[i][0] = _mm512_fmadd_ps(a, w0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, w1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(a, w2, acc[i][2]);
      acc[i][3] = _mm512_fmadd_ps(a, w3, acc[i][3]);
    }
  }
  const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(t.y + i * t.o + 16 * j, t.relu ? _mm512_max_ps(acc[i][j], z) : acc[i][j]);
}

using TileFn = void (*)(const TileArgs&);
constexpr TileFn kTiles[kMR + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

class Conv2dPointwise : public Kernel {
 public:
  Conv2dPointwise(int64_t pixels, int64_t c, int64_t o, const float* packed, const float* bias, bool relu, int threads)
      : pixels_(pixels), c_(c), o_(o), packed_(packed), bias_(bias), relu_(relu), threads_(std::max(threads, 1)),
        panel_outer_(static_cast<double>(pixels) * c * sizeof(float) <= kSmallInput) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);
    const float* res = static_cast<const float*>(b.in[3]);
    float* y = static_cast<float*>(b.out[0]);
    const int64_t blocks = (pixels_ + kBlockRows - 1) / kBlockRows, panels = o_ / kPanel;
    auto task = [&](int64_t blk, int64_t p) {
      const int64_t p0 = blk * kBlockRows, p1 = std::min(pixels_, p0 + kBlockRows);
      TileArgs t;
      t.c = c_;
      t.o = o_;
      t.w = packed_ + p * c_ * kPanel;
      t.bias = bias_ ? bias_ + p * kPanel : nullptr;
      t.relu = relu_;
      for (int64_t i = p0; i < p1; i += kMR) {
        const int rows = static_cast<int>(std::min<int64_t>(kMR, p1 - i));
        t.x = x + i * c_;
        t.res = res + i * o_ + p * kPanel;
        t.y = y + i * o_ + p * kPanel;
        t.next = i + kMR < p1 ? t.res + kMR * o_ : nullptr;
        t.next_x = t.x + kMR * c_;
        t.next_x_lines = i + kMR < p1 ? std::min<int64_t>(kMR, p1 - i - kMR) * c_ / 16 : 0;
        kTiles[rows](t);
      }
    };
    if (panel_outer_) {
#pragma omp parallel for num_threads(threads_) schedule(static) collapse(2)
      for (int64_t p = 0; p < panels; ++p)
        for (int64_t blk = 0; blk < blocks; ++blk) task(blk, p);
    } else {
#pragma omp parallel for num_threads(threads_) schedule(static) collapse(2)
      for (int64_t blk = 0; blk < blocks; ++blk)
        for (int64_t p = 0; p < panels; ++p) task(blk, p);
    }
    return Status::Ok();
  }

  double flops() const override { return 2.0 * pixels_ * c_ * o_; }
  std::string detail() const override {
    return "NHWC GEMM, " + std::to_string(kMR) + " pixels x 64 channels register tiles, " + std::to_string(kBlockRows) +
           "-pixel blocks, residual fused";
  }

 private:
  int64_t pixels_, c_, o_;
  const float* packed_;
  const float* bias_;
  bool relu_;
  int threads_;
  bool panel_outer_;  // x at most kSmallInput
};

dnnl::memory::desc nhwc_md(const Shape& s) {
  return dnnl::memory::desc(onednn::to_dims(s), dnnl::memory::data_type::f32, dnnl::memory::format_tag::nhwc);
}
bool is_nhwc(const TensorDesc& t) { return !t.layout.plain() && t.layout.blocked->md == nhwc_md(t.shape); }

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::Conv2dT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& w = ctx.in[1].shape;
  const Shape& y = ctx.out[0].shape;
  if (!__builtin_cpu_supports("avx512f")) return KernelContext::decline("needs AVX-512");
  if (w[2] != 1 || w[3] != 1) return KernelContext::decline("not 1x1");
  if (a.stride_h != 1 || a.stride_w != 1) return KernelContext::decline("stride is not 1");
  if (a.pad_top || a.pad_left || a.pad_bottom || a.pad_right) return KernelContext::decline("padded");
  if (a.groups != 1) return KernelContext::decline("groups > 1");
  if (a.activation != fb::ActKind::None && a.activation != fb::ActKind::Relu) return KernelContext::decline("activation other than ReLU");
  if (!(ctx.present.size() > 3 && ctx.present[3]))
    return KernelContext::decline("no residual (oneDNN's brgconv_1x1 runs these as fast)");
  if (w[0] % kPanel != 0) return KernelContext::decline(std::to_string(w[0]) + " output channels (takes multiples of 64)");
  if (ctx.in[0].dtype != DType::kF32 || !is_nhwc(ctx.in[0])) return KernelContext::decline("input not NHWC");
  if (ctx.in[3].dtype != DType::kF32 || !is_nhwc(ctx.in[3])) return KernelContext::decline("residual not NHWC");
  if (!ctx.out_may_block[0]) return KernelContext::decline("the output must be plain (NCHW)");

  const int64_t C = x[1], O = w[0];
  const auto* src = static_cast<const float*>(ctx.constant[1]);
  auto* packed = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(O * C) * sizeof(float)));
  if (!packed) return out_of_memory("conv2d_pointwise: no memory for the packed weights");
  for (int64_t p = 0; p < O / kPanel; ++p)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < kPanel; ++j) packed[(p * C + c) * kPanel + j] = src[(p * kPanel + j) * C + c];
  ctx.release_constant(src, static_cast<uint64_t>(O * C) * sizeof(float));
  const float* bias = ctx.present.size() > 2 && ctx.present[2] ? static_cast<const float*>(ctx.constant[2]) : nullptr;
  const dnnl::memory::desc out_md = nhwc_md(y);
  ctx.out[0].layout = onednn::layout_of(out_md, y, DType::kF32);
  ctx.out[0].bytes = out_md.get_size();
  return std::unique_ptr<Kernel>(new Conv2dPointwise(y[0] * y[2] * y[3], C, O, packed, bias, a.activation == fb::ActKind::Relu, ctx.threads));
}

}  // namespace

extern const KernelDef kConv2dPointwise;
const KernelDef kConv2dPointwise = {"conv2d_pointwise", true, create};

}  // namespace atrous
