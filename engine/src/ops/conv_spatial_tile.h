// The register-tile kernel of conv2d_spatial and boundary_refinement_fused: a stride-1
// convolution with few output channels, vectorised over 64 output columns of one output
// row in plain NCHW (conv2d_spatial.cpp explains the design and its measurements).
//
// A driver sets a Tile (where the tile's input rows, weights, bias, residual and output
// are) and calls pick(...)(g, t); the input rows must be readable 64 + (kw − 1)·dw
// columns from src (a zero-padded copy when they would leave the map: copy_band).
// Internal to engine/src/ops.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

// GCC 12's avx512fintrin.h builds masked intrinsics on _mm512_undefined_ps(), which
// -Wmaybe-uninitialized reports at every use (a false positive of the header).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace atrous {
namespace spatial {

constexpr int kMaxOb = 6;     // output channels per register tile (6×4 accumulators + 4 inputs + 1 weight ≤ 32 registers)
constexpr int kNv = 4;        // 16-column vectors per register tile

// Floats of a padded copy row for `cols` output columns read through a kernel reaching
// `span` = (kw − 1)·dw columns further, in whole 16-float vectors.
inline int64_t padded_width(int64_t cols, int64_t span) { return (cols + span + 15) / 16 * 16; }

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
  int64_t plane;                 // floats between output channels
  int64_t res_plane;             // floats between residual channels
  int64_t channels;              // in this sub-chunk
  int64_t kh0, kh1;              // kernel rows whose input row exists
  __mmask16 store[kNv];
  bool first, last;
};

// KW > 0: the kernel width as a constant (the common 1 and 3, unrolled); 0: g.kw.
template <int OB, int NV, int KW>
__attribute__((target("avx512f"))) void tile_kernel(const Geometry& g, const Tile& t) {
  const int64_t plane_out = t.plane;
  __m512 acc[OB][NV];
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if (t.first) {
        acc[o][j] = t.bias ? _mm512_set1_ps(t.bias[o]) : _mm512_setzero_ps();
        if (t.res) acc[o][j] = _mm512_add_ps(acc[o][j], _mm512_maskz_loadu_ps(t.store[j], t.res + o * t.res_plane + 16 * j));
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
inline __mmask16 lanes(int64_t first, int64_t lo, int64_t hi) {
  const int64_t a = std::clamp<int64_t>(lo - first, 0, 16), b = std::clamp<int64_t>(hi - first, 0, 16);
  if (b <= a) return 0;
  const uint32_t bits = ((b == 16 ? 0x10000u : (1u << b)) - (1u << a));
  return static_cast<__mmask16>(bits);
}

// buf[(c·rows + r)·width + col] = x[c, top + r, left + col] (0 outside the g.h × g.w map) for
// r < rows, col < cols (≤ width, a multiple of 16): the input of one band of output rows
// and one tile, padded.
inline __attribute__((target("avx512f"))) void copy_band(const Geometry& g, const float* x, int64_t channels, int64_t top,
                                                  int64_t rows, int64_t left, int64_t cols, int64_t width, float* buf) {
  // The next channel's rows (a whole plane away: the hardware prefetchers stop at each
  // such jump) are prefetched while this channel's are copied.
  const int64_t lo = std::max<int64_t>(left, 0), hi = std::min<int64_t>(left + cols, g.w);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t ir = top + r;
      if (c + 1 < channels && ir >= 0 && ir < g.h && hi > lo) {
        const float* next = x + ((c + 1) * g.h + ir) * g.w;
        for (int64_t col = lo & ~int64_t{15}; col < hi; col += 16) _mm_prefetch(reinterpret_cast<const char*>(next + col), _MM_HINT_T0);
      }
      float* d = buf + (c * rows + r) * width;
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
inline std::vector<Block> output_blocks(int64_t o) {
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
inline TileFn pick(int ob, int nv, int64_t kw) {
  return kw == 1 ? pick_ob<1>(ob, nv) : kw == 3 ? pick_ob<3>(ob, nv) : pick_ob<0>(ob, nv);
}

// Packs weights [O, C, kh, kw] as output blocks of [C][kh][kw][block size], the order the
// tile kernel reads them in.
inline void pack_weights(const float* src, int64_t o, int64_t c, int64_t taps, float* packed) {
  for (const Block& b : output_blocks(o)) {
    float* dst = packed + b.o0 * c * taps;
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t k = 0; k < b.size; ++k) dst[(ci * taps + t) * b.size + k] = src[((b.o0 + k) * c + ci) * taps + t];
  }
}

}  // namespace spatial
}  // namespace atrous
