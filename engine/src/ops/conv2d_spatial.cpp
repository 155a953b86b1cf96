// conv2d_spatial: Conv2d with few output channels (the 21 classes of a GCN head),
// vectorised over output columns instead of output channels.
//
// oneDNN vectorises a convolution over output channels in blocks of 16, so 21
// outputs fill 21 of 32 lanes, and its brgconv runs GCN's k×1 / 1×k and BR's 3×3
// convolutions at 35-50 % of the FMA peak (docs/performance.md). Here a register
// tile is OB ≤ 6 output channels × NV ≤ 4 vectors of 16 consecutive output columns
// of one output row, in plain NCHW:
//   acc[o][j] += w[o, c, kh, kw] · x[c, oh − pt + kh·dh, ow0 + 16j + kw·dw − pl + lane]
// one broadcast weight per FMA and one input vector per NV FMAs of a channel tap.
// The inner loop's loads are never masked: a tile reads the input in place when one
// kernel column reads only columns of the map, else a zero-padded copy of its band's
// input rows (for kernels wider than one column, whole rows copied once per channel
// chunk; else the tile's own columns); kernel rows that fall in the padding are skipped.
// The tile kernel and the copy are in conv_spatial_tile.h. A task is a band of up
// to 16 output rows; input channels run in chunks whose band rows stay in L2, split into
// sub-chunks whose rows for one output row stay in L1 while every output block reads
// them; partial sums go through the output. Bias, residual (which may share the
// output's buffer) and ReLU are applied in the tile.
//
// Takes stride 1, one group, no activation or ReLU, up to 48 output channels not a
// multiple of 16, kernels larger than 1x1 reaching at most 257 rows and columns, output
// rows at least 16 columns wide, AVX-512; declines otherwise (oneDNN takes those).
#include <omp.h>

#include <algorithm>

#include "ops/conv_spatial_tile.h"
#include "ops/conv_taps.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using namespace spatial;  // NOLINT: the tile kernel and its helpers

constexpr int64_t kMaxSpan = 256;  // (k − 1)·dilation: bounds the padded tile copy
constexpr int kMaxOut = 48;   // wider outputs fill oneDNN's 16-lane blocks well enough
constexpr int64_t kMaxBandRows = 16;  // output rows per task (fewer on small maps)
constexpr int64_t kChunkBytes = 768 << 10;    // input rows of one channel chunk and band (L2)
constexpr int64_t kSubChunkBytes = 24 << 10;  // input of one tile and sub-chunk (L1)
constexpr int64_t kCopyBytes = 1 << 20;        // per thread: a band's padded copy (L2)

class Conv2dSpatial : public Kernel {
 public:
  Conv2dSpatial(const Geometry& g, const float* packed, const float* bias, int threads)
      : g_(g), packed_(packed), bias_(bias), threads_(threads), blocks_(output_blocks(g.o)) {
    // Bands of up to 16 output rows share their input rows through L2; at least four
    // tasks per thread, eight for one-row kernels (their bands share no input rows, so
    // shorter ones cost nothing and even out the threads: GCN's 1×k 1.5-2 % faster).
    band_ = std::clamp<int64_t>(g.oh * g.n / ((g.kh == 1 ? 8 : 4) * std::max(threads, 1)), 1, kMaxBandRows);
    span_ = band_ + (g.kh - 1) * g.dh;  // input rows a band reads
    const int64_t f = sizeof(float);
    // What one tile reads of an input row: 64 + (kw − 1)·dw columns.
    const int64_t tile_width = padded_width(16 * kNv, (g.kw - 1) * g.dw);
    // A kernel wider than one column reads a padded copy for every tile: copy the band's
    // rows once per channel chunk, all columns (from −pl), while one channel's band stays
    // under kCopyBytes. Otherwise (and for kw = 1's edge tiles) a tile copies its own
    // columns, per sub-chunk.
    const int64_t tiles = (g.ow + 16 * kNv - 1) / (16 * kNv);
    const int64_t row_width = padded_width(tiles * 16 * kNv, (g.kw - 1) * g.dw);
    row_copy_ = g.kw > 1 && span_ * row_width * f <= kCopyBytes;
    if (row_copy_) {
      width_ = row_width;
      chunk_ = std::clamp<int64_t>(kCopyBytes / (span_ * width_ * f), 1, g.c);
    } else {
      width_ = tile_width;
      chunk_ = std::clamp<int64_t>(kChunkBytes / (span_ * g.w * f), 1, g.c);
      chunk_ = std::max<int64_t>(chunk_, std::min<int64_t>(g.c, 16));
    }
    // Sub-chunks of channels whose rows for one output row and tile stay in L1 while every
    // output block reads them; a tile's own copy stays under kCopyBytes.
    sub_ = std::clamp<int64_t>(kSubChunkBytes / (g.kh * tile_width * f), 1, chunk_);
    if (!row_copy_) sub_ = std::max<int64_t>(1, std::min(sub_, kCopyBytes / (span_ * width_ * f)));
    copy_floats_ = (row_copy_ ? chunk_ : sub_) * span_ * width_;
  }

  // The padded copies: one per thread.
  uint64_t scratch_bytes() const { return static_cast<uint64_t>(threads_ * copy_floats_) * sizeof(float); }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);
    const float* res = b.in.size() > 3 ? static_cast<const float*>(b.in[3]) : nullptr;
    float* y = static_cast<float*>(b.out[0]);
    float* copies = static_cast<float*>(b.scratch[0]);
    const Geometry& g = g_;
    const int64_t bands = (g.oh + band_ - 1) / band_;
    const int64_t tiles = (g.ow + 16 * kNv - 1) / (16 * kNv);
    const int64_t plane_out = g.oh * g.ow;
#pragma omp parallel for num_threads(threads_) schedule(dynamic) collapse(2)
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t band = 0; band < bands; ++band) {
        float* buf = copies + omp_get_thread_num() * copy_floats_;
        const float* image = x + n * g.c * g.h * g.w;
        const int64_t oh0 = band * band_, oh1 = std::min(g.oh, oh0 + band_);
        const int64_t rows = oh1 - oh0 + (g.kh - 1) * g.dh;  // input rows of the band from row oh0 − pt
        for (int64_t c0 = 0; c0 < g.c; c0 += chunk_) {
          const int64_t c_end = std::min(g.c, c0 + chunk_);
          // Buffer column j holds input column j − pl.
          if (row_copy_) copy_band(g, image + c0 * g.h * g.w, c_end - c0, oh0 - g.pt, rows, -g.pl, width_, width_, buf);
          for (int64_t tile = 0; tile < tiles; ++tile) {
            Tile t{};
            const int64_t ow0 = tile * 16 * kNv;
            const int nv = static_cast<int>(std::min<int64_t>(kNv, (g.ow - ow0 + 15) / 16));
            for (int j = 0; j < kNv; ++j) t.store[j] = lanes(ow0 + 16 * j, 0, g.ow);
            // In place when one kernel column reads only columns of the map.
            const int64_t left = ow0 - g.pl;
            const bool tile_copy = !row_copy_ && (g.kw > 1 || left < 0 || left + 16 * nv > g.w);
            for (int64_t c1 = c0; c1 < c_end; c1 += sub_) {
              t.channels = std::min(sub_, c_end - c1);
              t.first = c1 == 0;
              t.last = c1 + t.channels == g.c;
              if (tile_copy) {
                const int64_t cols = padded_width(16 * nv, (g.kw - 1) * g.dw);  // what the tile reads
                copy_band(g, image + c1 * g.h * g.w, t.channels, oh0 - g.pt, rows, left, cols, width_, buf);
              }
              for (int64_t oh = oh0; oh < oh1; ++oh) {
                // Kernel rows i with 0 <= oh − pt + i·dh < h.
                const int64_t top = oh - g.pt;
                t.kh0 = top >= 0 ? 0 : (-top + g.dh - 1) / g.dh;
                t.kh1 = top >= g.h ? 0 : std::min(g.kh, (g.h - 1 - top) / g.dh + 1);
                t.kh1 = std::max(t.kh1, t.kh0);
                if (t.kh0 == t.kh1) {
                  t.src = image;  // no row reads the map: bias (and residual) only
                } else if (row_copy_ || tile_copy) {
                  t.src = buf + (oh - oh0 + t.kh0 * g.dh) * width_;
                  if (row_copy_) t.src += (c1 - c0) * rows * width_ + ow0;
                  t.ch_stride = rows * width_;
                  t.row_stride = g.dh * width_;
                } else {
                  t.src = image + c1 * g.h * g.w + (top + t.kh0 * g.dh) * g.w + left;
                  t.ch_stride = g.h * g.w;
                  t.row_stride = g.dh * g.w;
                }
                // Read in place: the input row the next output row reads and this one does
                // not (its last kernel row), prefetched into L1 while this row's tiles run
                // (k×1 kernels 3-4 % faster; the copies, in L2, gained nothing from it).
                const int64_t next = top + 1 + (g.kh - 1) * g.dh;
                if (!row_copy_ && !tile_copy && oh + 1 < oh1 && next >= 0 && next < g.h) {
                  const float* p = image + c1 * g.h * g.w + next * g.w + left;
                  for (int64_t c = 0; c < t.channels; ++c)
                    for (int j = 0; j < nv; ++j) _mm_prefetch(reinterpret_cast<const char*>(p + c * g.h * g.w + 16 * j), _MM_HINT_T0);
                }
                for (const Block& blk : blocks_) {
                  t.wp = packed_ + blk.o0 * g.c * g.kh * g.kw + c1 * g.kh * g.kw * blk.size;
                  t.bias = bias_ ? bias_ + blk.o0 : nullptr;
                  const int64_t at = (n * g.o + blk.o0) * plane_out + oh * g.ow + ow0;
                  t.res = res ? res + at : nullptr;
                  t.dst = y + at;
                  t.plane = t.res_plane = plane_out;
                  pick(static_cast<int>(blk.size), nv, g.kw)(g, t);
                }
              }
            }
          }
        }
      }
    }
    return Status::Ok();
  }

  // Useful flops (conv_taps.h): the products with the padded copy's zeros are done but not counted.
  double flops() const override {
    return 2.0 * g_.n * g_.o * g_.c * in_bounds_taps(g_.h, g_.kh, 1, g_.pt, g_.dh, g_.oh) *
           in_bounds_taps(g_.w, g_.kw, 1, g_.pl, g_.dw, g_.ow);
  }
  std::string detail() const override {
    return std::to_string(blocks_.size()) + " output blocks of ≤ " + std::to_string(blocks_.front().size) +
           " channels, 64-column tiles, " + std::to_string(band_) + "-row bands, " + std::to_string(chunk_) +
           "-channel chunks of " + std::to_string(sub_) + (row_copy_ ? ", band rows copied per chunk" : "");
  }

 private:
  Geometry g_;
  const float* packed_;
  const float* bias_;
  int threads_;
  std::vector<Block> blocks_;
  int64_t band_ = 1, chunk_ = 1, sub_ = 1, span_ = 1;
  int64_t width_ = 0;        // floats per row of a padded copy
  bool row_copy_ = false;    // whole band rows copied per chunk (else per tile)
  int64_t copy_floats_ = 0;  // one thread's copy
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::Conv2dT>();
  const Shape& x = ctx.in[0].shape;
  const Shape& w = ctx.in[1].shape;
  const Shape& y = ctx.out[0].shape;
  if (!__builtin_cpu_supports("avx512f")) return KernelContext::decline("needs AVX-512");
  if (a.groups != 1) return KernelContext::decline("groups > 1");
  // A 1x1 conv is a GEMM that oneDNN runs on its blocked input without a reorder; here it
  // measured 2-3x slower plus the reorder (DeepLab's 256 -> 21 classifier, 65x65).
  if (w[2] * w[3] == 1) return KernelContext::decline("1x1 (oneDNN's GEMM reads the blocked input in place)");
  if (a.stride_h != 1 || a.stride_w != 1) return KernelContext::decline("stride is not 1");
  if (a.activation != fb::ActKind::None && a.activation != fb::ActKind::Relu) return KernelContext::decline("activation other than ReLU");
  if (w[0] > kMaxOut || w[0] % 16 == 0)
    return KernelContext::decline(std::to_string(w[0]) + " output channels (takes up to " + std::to_string(kMaxOut) +
                                  ", not a multiple of 16)");
  if ((w[3] - 1) * a.dilation_w > kMaxSpan || (w[2] - 1) * a.dilation_h > kMaxSpan)
    return KernelContext::decline("dilated kernel wider than " + std::to_string(kMaxSpan + 1));
  if (y[3] < 16) return KernelContext::decline("output rows narrower than 16 columns");

  Geometry g{x[0], x[1], x[2], x[3], w[0], y[2], y[3], w[2], w[3], a.dilation_h, a.dilation_w, a.pad_top, a.pad_left,
             a.activation == fb::ActKind::Relu};
  const float* src = static_cast<const float*>(ctx.constant[1]);
  const int64_t taps = g.kh * g.kw;
  float* packed = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(g.o * g.c * taps) * sizeof(float)));
  if (!packed) return out_of_memory("conv2d_spatial: no memory for the packed weights");
  pack_weights(src, g.o, g.c, taps, packed);
  ctx.release_constant(src, static_cast<uint64_t>(g.o * g.c * taps) * sizeof(float));
  const float* bias = ctx.present.size() > 2 && ctx.present[2] ? static_cast<const float*>(ctx.constant[2]) : nullptr;
  auto k = std::make_unique<Conv2dSpatial>(g, packed, bias, ctx.threads);
  ctx.scratch(k->scratch_bytes());
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kConv2dSpatial;
const KernelDef kConv2dSpatial = {"conv2d_spatial", false, create};

}  // namespace atrous
