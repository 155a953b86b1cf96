// boundary_refinement_fused: y = x + conv2(relu(conv1(x))) in one pass over the map, on
// conv2d_spatial's register tiles (ops/conv_spatial_tile.h).
//
// As two Conv2d steps, GCN's Boundary Refinement at 512×512 streams its 21-channel maps
// through memory seven times (x copied, t = conv1(x) written with its read-for-ownership,
// t copied, x read again for the residual, y written and its read-for-ownership): about
// 150 MB per block, and its two convs ran at 55-64 % of the FMA peak (docs/performance.md).
// Here a task is a strip of output rows, walked in bands of up to 16 rows. For a band, the
// input rows conv1 needs are copied once (zero-padded, all columns), conv1's rows for the
// band are computed into a per-thread buffer with conv2's zero padding around them, and
// conv2 reads that buffer while it is still in L2; its residual rows of x were copied for
// conv1 a band earlier at most. conv1's last rows of a band are the first rows the next
// band needs: they are moved, not recomputed, so only a strip's first band recomputes
// conv1's (k2h − 1)/2 rows above it.
#include <omp.h>

#include <cstring>
#include <type_traits>

#include "ops/boundary_refinement.h"
#include "ops/conv_spatial_tile.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using namespace spatial;  // NOLINT: the tile kernel and its helpers

constexpr int64_t kMaxChannels = 48;         // as conv2d_spatial: wider fill oneDNN's 16-lane blocks
constexpr int64_t kMaxKernel = 15;
constexpr int64_t kMaxBandRows = 16;
constexpr int64_t kBufferBytes = 1 << 20;     // per thread: a band's x copy and conv1 rows (L2)
constexpr int64_t kMaxBufferBytes = 4 << 20;  // declines beyond (very wide maps)
constexpr int64_t kSubChunkBytes = 24 << 10;  // input of one tile and sub-chunk (L1)
constexpr int64_t kStripRows = 32;            // rows per task at least, where the map has them

// One of the two convolutions.
struct Conv {
  Geometry g;
  const float* packed = nullptr;  // output blocks of [C][kh][kw][block size]
  const float* bias = nullptr;
  std::vector<Block> blocks;
  int64_t sub = 1;    // input channels per L1 sub-chunk
  int64_t width = 0;  // floats per row of the buffer it reads
};

// Buffer sizes (floats) for `rows`-row bands.
struct Buffers {
  int64_t x, t;
};
Buffers buffer_floats(const BoundaryRefinementSizes& s, int64_t rows) {
  const int64_t p1h = (s.k1h - 1) / 2, p2h = (s.k2h - 1) / 2, tiles = (s.w + 63) / 64;
  return {s.c * (rows + 2 * p2h + 2 * p1h) * padded_width(tiles * 64, s.k1w - 1),
          s.m * (rows + 2 * p2h) * padded_width(tiles * 64, s.k2w - 1)};
}

class BoundaryRefinementFused : public Kernel {
 public:
  BoundaryRefinementFused(const BoundaryRefinementSizes& s, int64_t n, Conv c1, Conv c2, int threads)
      : s_(s), n_(n), c1_(std::move(c1)), c2_(std::move(c2)), threads_(std::max(threads, 1)) {
    band_ = kMaxBandRows;
    while (band_ > 1) {
      const Buffers b = buffer_floats(s, band_);
      if ((b.x + b.t) * static_cast<int64_t>(sizeof(float)) <= kBufferBytes) break;
      --band_;
    }
    const Buffers b = buffer_floats(s, band_);
    xfloats_ = b.x;
    tfloats_ = b.t;
    // Strips: up to four tasks per thread, each at least kStripRows tall where the map has
    // them (a strip's first band recomputes conv1's rows above it), a task per thread at least.
    const int64_t per_thread = (threads_ + n - 1) / n;
    const int64_t per_image = std::clamp<int64_t>(
        std::min<int64_t>((4 * threads_ + n - 1) / n, std::max<int64_t>(per_thread, s.h / kStripRows)), 1, s.h);
    strip_ = (s.h + per_image - 1) / per_image;
    band_ = std::min(band_, strip_);
  }

  uint64_t scratch_bytes() const { return static_cast<uint64_t>(threads_ * (xfloats_ + tfloats_)) * sizeof(float); }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);
    float* y = static_cast<float*>(b.out[0]);
    float* scratch = static_cast<float*>(b.scratch[0]);
    const int64_t strips = (s_.h + strip_ - 1) / strip_;
#pragma omp parallel for num_threads(threads_) schedule(dynamic) collapse(2)
    for (int64_t n = 0; n < n_; ++n)
      for (int64_t strip = 0; strip < strips; ++strip) {
        float* xb = scratch + omp_get_thread_num() * (xfloats_ + tfloats_);
        const int64_t plane = s_.h * s_.w;
        run_strip(x + n * s_.c * plane, y + n * s_.c * plane, strip * strip_, std::min(s_.h, (strip + 1) * strip_), xb,
                  xb + xfloats_);
      }
    return Status::Ok();
  }

  double flops() const override { return boundary_refinement_flops(s_, n_); }
  std::string detail() const override {
    return std::to_string(c1_.blocks.size()) + " + " + std::to_string(c2_.blocks.size()) +
           " output blocks, 64-column tiles, " + std::to_string(strip_) + "-row strips in " + std::to_string(band_) +
           "-row bands";
  }

 private:
  // Output rows [s0, s1) of one image. tb holds conv1's output rows r0 − p2h + i (row i) of
  // the band [r0, r1), zero where they leave the map or its columns.
  void run_strip(const float* x, float* y, int64_t s0, int64_t s1, float* xb, float* tb) const {
    const int64_t p1h = (s_.k1h - 1) / 2, p1w = (s_.k1w - 1) / 2, p2h = (s_.k2h - 1) / 2, p2w = (s_.k2w - 1) / 2;
    const int64_t trows = band_ + 2 * p2h, tplane = trows * c2_.width, plane = s_.h * s_.w;
    std::memset(tb, 0, static_cast<size_t>(s_.m * tplane) * sizeof(float));
    for (int64_t r0 = s0; r0 < s1; r0 += band_) {
      const int64_t r1 = std::min(s1, r0 + band_), rows_t = r1 - r0 + 2 * p2h;
      const int64_t carried = r0 == s0 ? 0 : 2 * p2h;  // rows moved from the band before
      // conv1's new rows, those in the map: [ta, te) (buffer row = row − r0 + p2h).
      const int64_t ta = std::max<int64_t>(r0 - p2h + carried, 0), te = std::min(r1 + p2h, s_.h);
      for (int64_t i = carried; i < rows_t; ++i) {
        const int64_t row = r0 - p2h + i;
        if (row >= 0 && row < s_.h) continue;
        for (int64_t ch = 0; ch < s_.m; ++ch)
          std::memset(tb + ch * tplane + i * c2_.width, 0, static_cast<size_t>(c2_.width) * sizeof(float));
      }
      const int64_t xtop = ta - p1h, xrows = te - ta + 2 * p1h;  // x rows copied for them
      if (ta < te) {
        copy_band(c1_.g, x, s_.c, xtop, xrows, -p1w, c1_.width, c1_.width, xb);
        // Kernel row i of output row r reads input row r − p1h + i: buffer row r − ta + i.
        convolve(c1_, xb, xrows * c1_.width, ta, te, [&](int64_t row) { return (row - ta) * c1_.width; }, nullptr, 0,
                 [&](int64_t row, int64_t o0) { return tb + o0 * tplane + (row - r0 + p2h) * c2_.width + p2w; }, tplane);
      }
      // The residual: from the band's copy of x when it holds rows [r0, r1) (conv2's
      // kernel no taller than conv1's, as in GCN), else from x.
      const bool res_copied = ta < te && xtop <= r0 && r1 <= xtop + xrows;
      convolve(
          c2_, tb, tplane, r0, r1, [&](int64_t row) { return (row - r0) * c2_.width; },
          [&](int64_t row, int64_t o0) {
            return res_copied ? xb + o0 * xrows * c1_.width + (row - xtop) * c1_.width + p1w : x + o0 * plane + row * s_.w;
          },
          res_copied ? xrows * c1_.width : plane, [&](int64_t row, int64_t o0) { return y + o0 * plane + row * s_.w; }, plane);
      if (r1 < s1 && p2h > 0)
        for (int64_t ch = 0; ch < s_.m; ++ch)
          std::memmove(tb + ch * tplane, tb + ch * tplane + (r1 - r0) * c2_.width,
                       static_cast<size_t>(2 * p2h * c2_.width) * sizeof(float));
    }
  }

  // Output rows [r0, r1) of one convolution, reading src (channel c at c·ch_stride, output
  // row r's first kernel row at src_row(r), column j ↔ output column j) and writing
  // out(row, o0) (column 0 of that row of output channel o0; channels `plane` apart), with
  // the residual at res(row, o0) (channels `res_plane` apart) when given.
  template <class SrcRow, class Res, class Out>
  void convolve(const Conv& cv, const float* src, int64_t ch_stride, int64_t r0, int64_t r1, SrcRow src_row, Res res,
                int64_t res_plane, Out out, int64_t plane) const {
    const Geometry& g = cv.g;
    const int64_t tiles = (s_.w + 63) / 64;
    for (int64_t tile = 0; tile < tiles; ++tile) {
      Tile t{};
      const int64_t ow0 = tile * 64;
      const int nv = static_cast<int>(std::min<int64_t>(kNv, (s_.w - ow0 + 15) / 16));
      for (int j = 0; j < kNv; ++j) t.store[j] = lanes(ow0 + 16 * j, 0, s_.w);
      t.ch_stride = ch_stride;
      t.row_stride = cv.width;
      t.kh0 = 0;
      t.kh1 = g.kh;  // rows outside the map read the buffers' zero rows
      t.plane = plane;
      t.res_plane = res_plane;
      for (int64_t c1 = 0; c1 < g.c; c1 += cv.sub) {
        t.channels = std::min(cv.sub, g.c - c1);
        t.first = c1 == 0;
        t.last = c1 + t.channels == g.c;
        for (int64_t row = r0; row < r1; ++row) {
          t.src = src + c1 * ch_stride + src_row(row) + ow0;
          for (const Block& blk : cv.blocks) {
            t.wp = cv.packed + blk.o0 * g.c * g.kh * g.kw + c1 * g.kh * g.kw * blk.size;
            t.bias = cv.bias ? cv.bias + blk.o0 : nullptr;
            if constexpr (std::is_same_v<Res, std::nullptr_t>) {
              t.res = nullptr;
            } else {
              t.res = res(row, blk.o0) + ow0;
            }
            t.dst = out(row, blk.o0) + ow0;
            pick(static_cast<int>(blk.size), nv, g.kw)(g, t);
          }
        }
      }
    }
  }

  BoundaryRefinementSizes s_;
  int64_t n_;
  Conv c1_, c2_;
  int threads_;
  int64_t band_ = 1, strip_ = 1, xfloats_ = 0, tfloats_ = 0;
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const Shape& x = ctx.in[0].shape;
  const Shape& w1 = ctx.in[1].shape;
  const Shape& w2 = ctx.in[2].shape;
  const BoundaryRefinementSizes s{x[1], w1[0], x[2], x[3], w1[2], w1[3], w2[2], w2[3]};
  const std::string why = boundary_refinement_fused_declines(s);
  if (!why.empty()) return KernelContext::decline(why);
  const int64_t p1h = (s.k1h - 1) / 2, p1w = (s.k1w - 1) / 2, p2h = (s.k2h - 1) / 2, p2w = (s.k2w - 1) / 2;
  const int64_t tiles = (s.w + 63) / 64;
  Conv c1, c2;
  c1.g = {x[0], s.c, s.h, s.w, s.m, s.h, s.w, s.k1h, s.k1w, 1, 1, p1h, p1w, true};
  c2.g = {x[0], s.m, s.h, s.w, s.c, s.h, s.w, s.k2h, s.k2w, 1, 1, p2h, p2w, false};
  const int weight_in[2] = {1, 2}, bias_in[2] = {3, 4};
  Conv* convs[2] = {&c1, &c2};
  for (int i = 0; i < 2; ++i) {
    Conv& cv = *convs[i];
    const Geometry& g = cv.g;
    cv.blocks = output_blocks(g.o);
    cv.width = padded_width(tiles * 64, g.kw - 1);
    cv.sub = std::clamp<int64_t>(kSubChunkBytes / (g.kh * padded_width(64, g.kw - 1) * static_cast<int64_t>(sizeof(float))), 1, g.c);
    const int64_t count = g.o * g.c * g.kh * g.kw;
    auto* packed = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(count) * sizeof(float)));
    if (!packed) return out_of_memory("boundary_refinement_fused: no memory for the packed weights");
    const auto* src = static_cast<const float*>(ctx.constant[static_cast<size_t>(weight_in[i])]);
    pack_weights(src, g.o, g.c, g.kh * g.kw, packed);
    ctx.release_constant(src, static_cast<uint64_t>(count) * sizeof(float));
    cv.packed = packed;
    const auto b = static_cast<size_t>(bias_in[i]);
    cv.bias = b < ctx.present.size() && ctx.present[b] ? static_cast<const float*>(ctx.constant[b]) : nullptr;
  }
  auto k = std::make_unique<BoundaryRefinementFused>(s, x[0], std::move(c1), std::move(c2), ctx.threads);
  ctx.scratch(k->scratch_bytes());
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

std::string boundary_refinement_fused_declines(const BoundaryRefinementSizes& s) {
  if (!__builtin_cpu_supports("avx512f")) return "needs AVX-512";
  for (int64_t ch : {s.c, s.m})
    if (ch > kMaxChannels || ch % 16 == 0)
      return std::to_string(ch) + " channels (takes up to " + std::to_string(kMaxChannels) + ", not a multiple of 16)";
  for (int64_t k : {s.k1h, s.k1w, s.k2h, s.k2w})
    if (k > kMaxKernel || k % 2 == 0) return "kernel " + std::to_string(k) + " (takes odd kernels up to " + std::to_string(kMaxKernel) + ")";
  if (s.w < 16) return "rows narrower than 16 columns";
  const Buffers b = buffer_floats(s, 1);
  if ((b.x + b.t) * static_cast<int64_t>(sizeof(float)) > kMaxBufferBytes) return "rows too wide for its per-thread buffers";
  return {};
}

extern const KernelDef kBoundaryRefinementFused;
const KernelDef kBoundaryRefinementFused = {"boundary_refinement_fused", false, create};

}  // namespace atrous
