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
// input rows; kernel rows that fall in the padding are skipped. A task is a band of up
// to 16 output rows; input channels run in chunks whose band rows stay in L2, split into
// sub-chunks whose rows for one output row stay in L1 while every output block reads
// them; partial sums go through the output. Bias, residual (which may share the
// output's buffer) and ReLU are applied in the tile.
//
// Takes stride 1, one group, no activation or ReLU, up to 48 output channels not a
// multiple of 16, kernels larger than 1x1 reaching at most 257 rows and columns, output
// rows at least 16 columns wide, AVX-512; declines otherwise (oneDNN takes those).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "ops/op_registry.h"

// GCC 12's avx512fintrin.h builds masked intrinsics on _mm512_undefined_ps(), which
// -Wmaybe-uninitialized reports at every use (a false positive of the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace atrous {
namespace {

constexpr int kMaxOb = 6;     // output channels per register tile (6×4 accumulators + 4 inputs + 1 weight ≤ 32 registers)
constexpr int kNv = 4;        // 16-column vectors per register tile
constexpr int64_t kMaxSpan = 256;  // (k − 1)·dilation: bounds the padded tile copy
constexpr int kMaxOut = 48;   // wider outputs fill oneDNN's 16-lane blocks well enough
constexpr int64_t kMaxBandRows = 16;  // output rows per task (fewer on small maps)
constexpr int64_t kChunkBytes = 768 << 10;    // input rows of one channel chunk and band (L2)
constexpr int64_t kSubChunkBytes = 24 << 10;  // input of one tile and sub-chunk (L1)
constexpr int64_t kCopyBytes = 1 << 20;        // per thread: a band's padded copy (L2)

struct Geometry {
  int64_t n, c, h, w, o, oh, ow, kh, kw, dh, dw, pt, pl;
  bool relu;
};

// One tile's inputs and outputs, set by the driver. Kernel row i of channel c starts at
// src + c·ch_stride + (i − kh0)·row_stride: the input itself when the tile's columns all lie in
// it and the kernel is one column wide, else the tile's zero-padded copy. Either way the
// inner loop's loads are unmasked (masked loads ran it at 40 % of the speed).
struct Tile {
  const float* src;
  int64_t ch_stride, row_stride;
  const float* wp;               // packed weights [c][kh][kw][OB] of this output block
  const float* bias;             // of this block, or null
  const float* res;              // residual at (o0, oh, ow0), or null
  float* dst;                    // output at (o0, oh, ow0)
  int64_t channels;              // in this sub-chunk
  int64_t kh0, kh1;              // kernel rows whose input row exists
  __mmask16 store[kNv];
  bool first, last;
};

// KW > 0: the kernel width as a constant (the common 1 and 3, unrolled); 0: g.kw.
template <int OB, int NV, int KW>
__attribute__((target("avx512f"))) void tile_kernel(const Geometry& g, const Tile& t) {
  const int64_t plane_out = g.oh * g.ow;
  __m512 acc[OB][NV];
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if (t.first) {
        acc[o][j] = t.bias ? _mm512_set1_ps(t.bias[o]) : _mm512_setzero_ps();
        if (t.res) acc[o][j] = _mm512_add_ps(acc[o][j], _mm512_maskz_loadu_ps(t.store[j], t.res + o * plane_out + 16 * j));
      } else {
        acc[o][j] = _mm512_maskz_loadu_ps(t.store[j], t.dst + o * plane_out + 16 * j);
      }
    }
  }
  const int64_t kw = KW > 0 ? KW : g.kw, dw = g.dw, wstride = g.kh * kw * OB;
  for (int64_t c = 0; c < t.channels; ++c) {
    const float* wc = t.wp + c * wstride;
    for (int64_t i = t.kh0; i < t.kh1; ++i) {
      const float* row = t.src + c * t.ch_stride + (i - t.kh0) * t.row_stride;
      const float* wk = wc + i * kw * OB;
#pragma GCC unroll 3
      for (int64_t k = 0; k < kw; ++k) {
        const float* s = row + k * dw;
        __m512 v[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) v[j] = _mm512_loadu_ps(s + 16 * j);
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) {
          const __m512 wt = _mm512_set1_ps(wk[k * OB + o]);
#pragma GCC unroll 4
          for (int j = 0; j < NV; ++j) acc[o][j] = _mm512_fmadd_ps(wt, v[j], acc[o][j]);
        }
      }
    }
  }
  const bool relu = t.last && g.relu;
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      __m512 r = relu ? _mm512_max_ps(acc[o][j], _mm512_setzero_ps()) : acc[o][j];
      _mm512_mask_storeu_ps(t.dst + o * plane_out + 16 * j, t.store[j], r);
    }
}

// Lanes l of a 16-column vector whose column `first + l` lies in [lo, hi).
__mmask16 lanes(int64_t first, int64_t lo, int64_t hi) {
  const int64_t a = std::clamp<int64_t>(lo - first, 0, 16), b = std::clamp<int64_t>(hi - first, 0, 16);
  if (b <= a) return 0;
  const uint32_t bits = ((b == 16 ? 0x10000u : (1u << b)) - (1u << a));
  return static_cast<__mmask16>(bits);
}

// buf[(c·rows + r)·width + col] = x[c, top + r, left + col] (0 outside the map) for
// r < rows, col < cols (≤ width, a multiple of 16): the input of one band of output rows
// and one tile, padded.
__attribute__((target("avx512f"))) void copy_band(const Geometry& g, const float* x, int64_t channels, int64_t top,
                                                  int64_t rows, int64_t left, int64_t cols, int64_t width, float* buf) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < rows; ++r) {
      float* d = buf + (c * rows + r) * width;
      const int64_t ir = top + r;
      if (ir < 0 || ir >= g.h) {
        std::fill(d, d + cols, 0.0f);
        continue;
      }
      const float* row = x + (c * g.h + ir) * g.w;  // a real row
      for (int64_t col = 0; col < cols; col += 16) {
        const int64_t first = left + col;  // input column of lane 0
        if (first >= 0 && first + 16 <= g.w) {
          _mm512_storeu_ps(d + col, _mm512_loadu_ps(row + first));
          continue;
        }
        // Lanes [s, s + n) hold columns [lo, lo + n) of the row: an expanding load reads
        // exactly those n floats (no address outside the row is formed).
        const int64_t lo = std::max<int64_t>(first, 0), s = lo - first;
        const int64_t n = std::min<int64_t>(g.w - lo, 16 - s);
        __m512 v = _mm512_setzero_ps();
        if (n > 0 && s < 16) v = _mm512_maskz_expandloadu_ps(lanes(0, s, s + n), row + lo);
        _mm512_storeu_ps(d + col, v);
      }
    }
}

struct Block {
  int64_t o0, size;  // first output channel, channels
};

// Output channels in blocks of at most kMaxOb, sizes differing by at most one (21: 6, 5, 5, 5).
std::vector<Block> output_blocks(int64_t o) {
  const int64_t n = (o + kMaxOb - 1) / kMaxOb;
  std::vector<Block> blocks;
  for (int64_t b = 0, o0 = 0; b < n; ++b) {
    const int64_t size = o / n + (b < o % n ? 1 : 0);
    blocks.push_back({o0, size});
    o0 += size;
  }
  return blocks;
}

using TileFn = void (*)(const Geometry&, const Tile&);

template <int OB, int KW>
constexpr TileFn pick_nv(int nv) {
  return nv == 1 ? tile_kernel<OB, 1, KW> : nv == 2 ? tile_kernel<OB, 2, KW> : nv == 3 ? tile_kernel<OB, 3, KW> : tile_kernel<OB, 4, KW>;
}

template <int KW>
TileFn pick_ob(int ob, int nv) {
  switch (ob) {
    case 1: return pick_nv<1, KW>(nv);
    case 2: return pick_nv<2, KW>(nv);
    case 3: return pick_nv<3, KW>(nv);
    case 4: return pick_nv<4, KW>(nv);
    case 5: return pick_nv<5, KW>(nv);
    default: return pick_nv<6, KW>(nv);
  }
}

// The tile kernel for `ob` output channels, `nv` vectors and kernel width `kw`.
TileFn pick(int ob, int nv, int64_t kw) {
  return kw == 1 ? pick_ob<1>(ob, nv) : kw == 3 ? pick_ob<3>(ob, nv) : pick_ob<0>(ob, nv);
}

class Conv2dSpatial : public Kernel {
 public:
  Conv2dSpatial(const Geometry& g, const float* packed, const float* bias, int threads)
      : g_(g), packed_(packed), bias_(bias), threads_(threads), blocks_(output_blocks(g.o)) {
    // Bands of up to 16 output rows share their input rows through L2; at least four
    // tasks per thread.
    band_ = std::clamp<int64_t>(g.oh * g.n / (4 * std::max(threads, 1)), 1, kMaxBandRows);
    span_ = band_ + (g.kh - 1) * g.dh;  // input rows a band reads
    const int64_t f = sizeof(float);
    // What one tile reads of an input row: 64 + (kw − 1)·dw columns.
    const int64_t tile_width = (16 * kNv + (g.kw - 1) * g.dw + 15) / 16 * 16;
    // A kernel wider than one column reads a padded copy for every tile: copy the band's
    // rows once per channel chunk, all columns (from −pl), while one channel's band stays
    // under kCopyBytes. Otherwise (and for kw = 1's edge tiles) a tile copies its own
    // columns, per sub-chunk.
    const int64_t tiles = (g.ow + 16 * kNv - 1) / (16 * kNv);
    const int64_t row_width = (tiles * 16 * kNv + (g.kw - 1) * g.dw + 15) / 16 * 16;
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
                const int64_t cols = (16 * nv + (g.kw - 1) * g.dw + 15) / 16 * 16;  // what the tile reads
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
                for (const Block& blk : blocks_) {
                  t.wp = packed_ + blk.o0 * g.c * g.kh * g.kw + c1 * g.kh * g.kw * blk.size;
                  t.bias = bias_ ? bias_ + blk.o0 : nullptr;
                  const int64_t at = (n * g.o + blk.o0) * plane_out + oh * g.ow + ow0;
                  t.res = res ? res + at : nullptr;
                  t.dst = y + at;
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

  double flops() const override { return 2.0 * g_.n * g_.o * g_.oh * g_.ow * g_.c * g_.kh * g_.kw; }
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
  // Pack [O, C, kh, kw] as output blocks of [C][kh][kw][block size].
  const float* src = static_cast<const float*>(ctx.constant[1]);
  const int64_t taps = g.kh * g.kw;
  float* packed = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(g.o * g.c * taps) * sizeof(float)));
  if (!packed) return out_of_memory("conv2d_spatial: no memory for the packed weights");
  for (const Block& b : output_blocks(g.o)) {
    float* dst = packed + b.o0 * g.c * taps;
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t o = 0; o < b.size; ++o) dst[(c * taps + t) * b.size + o] = src[((b.o0 + o) * g.c + c) * taps + t];
  }
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
