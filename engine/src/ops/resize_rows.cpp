// resize_rows: bilinear Resize of plain NCHW data, separably: each source row a task
// needs is interpolated along W once (a gather of two taps per output column) into one
// of two per-thread row buffers, and each output row is then the blend of two such rows,
// a vector pass. Consecutive output rows mostly share their source rows (upsampling), so
// the gathers run once per source row instead of once per output row as in resize_ref.
// Same taps and the same order of operations as resize_ref (resize_taps.h).
// Takes bilinear on plain input; nearest and blocked layouts go to the other kernels.
#include <omp.h>

#include <algorithm>

#include "ops/op_registry.h"
#include "ops/resize_taps.h"

namespace atrous {
namespace {

constexpr int64_t kBandRows = 64;  // output rows per task

// dst[j] = (1 − w1[j])·row[i0[j]] + w1[j]·row[i1[j]]
inline void lerp_gather(float* dst, const float* row, const int32_t* i0, const int32_t* i1, const float* w1, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] = (1.0f - w1[j]) * row[i0[j]] + w1[j] * row[i1[j]];
}
// dst[j] = wa·a[j] + wb·b[j]
inline void blend(float* dst, const float* a, const float* b, float wa, float wb, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] = wa * a[j] + wb * b[j];
}
__attribute__((target("avx512f"))) void lerp_gather_avx512(float* d, const float* r, const int32_t* i0, const int32_t* i1,
                                                           const float* w1, int64_t n) {
  lerp_gather(d, r, i0, i1, w1, n);
}
__attribute__((target("avx512f"))) void blend_avx512(float* d, const float* a, const float* b, float wa, float wb, int64_t n) {
  blend(d, a, b, wa, wb, n);
}

class ResizeRows : public Kernel {
 public:
  ResizeRows(const Shape& x, const Shape& y, const Taps& th, const Taps& tw, int threads)
      : NC_(x[0] * x[1]), H_(x[2]), W_(x[3]), OH_(y[2]), OW_(y[3]), th_(th), threads_(threads) {
    for (size_t j = 0; j < tw.i0.size(); ++j) {
      c0_.push_back(static_cast<int32_t>(tw.i0[j]));
      c1_.push_back(static_cast<int32_t>(tw.i1[j]));
    }
    w1_ = tw.w1;
  }

  uint64_t scratch_bytes() const { return static_cast<uint64_t>(threads_) * 2 * static_cast<uint64_t>(OW_) * sizeof(float); }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    float* dst = static_cast<float*>(b.out[0]);
    float* rows = static_cast<float*>(b.scratch[0]);
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    const int64_t bands = (OH_ + kBandRows - 1) / kBandRows;
#pragma omp parallel for num_threads(threads_) collapse(2) schedule(static)
    for (int64_t nc = 0; nc < NC_; ++nc) {
      for (int64_t band = 0; band < bands; ++band) {
        float* buf[2] = {rows + omp_get_thread_num() * 2 * OW_, rows + (omp_get_thread_num() * 2 + 1) * OW_};
        int64_t held[2] = {-1, -1};  // source row in each buffer
        auto fill = [&](int k, int64_t r) {
          const float* s = src + (nc * H_ + r) * W_;
          if (avx512) lerp_gather_avx512(buf[k], s, c0_.data(), c1_.data(), w1_.data(), OW_);
          else lerp_gather(buf[k], s, c0_.data(), c1_.data(), w1_.data(), OW_);
          held[k] = r;
        };
        for (int64_t oh = band * kBandRows; oh < std::min(OH_, (band + 1) * kBandRows); ++oh) {
          const size_t h = static_cast<size_t>(oh);
          const int64_t r0 = th_.i0[h], r1 = th_.i1[h];
          // Source rows r0 and r1 interpolated along W, each computed only when neither
          // buffer holds it, without evicting the other.
          int k0 = held[0] == r0 ? 0 : held[1] == r0 ? 1 : -1;
          if (k0 < 0) {
            k0 = held[0] == r1 ? 1 : 0;
            fill(k0, r0);
          }
          int k1 = held[k0] == r1 ? k0 : held[1 - k0] == r1 ? 1 - k0 : -1;
          if (k1 < 0) {
            k1 = 1 - k0;
            fill(k1, r1);
          }
          const float* a = buf[k0];
          const float* c = buf[k1];
          const float wh1 = th_.w1[h], wh0 = 1.0f - wh1;
          float* o = dst + (nc * OH_ + oh) * OW_;
          if (avx512) blend_avx512(o, a, c, wh0, wh1, OW_);
          else blend(o, a, c, wh0, wh1, OW_);
        }
      }
    }
    return Status::Ok();
  }

 private:
  int64_t NC_, H_, W_, OH_, OW_;
  Taps th_;
  std::vector<int32_t> c0_, c1_;
  std::vector<float> w1_;
  int threads_;
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const auto& a = ctx.attrs<fb::ResizeT>();
  if (a.mode != fb::ResizeMode::Bilinear) return KernelContext::decline("nearest: resize_ref copies the taps directly");
  const Shape& x = ctx.in[0].shape;
  const Shape& y = ctx.out[0].shape;
  if (x[3] > INT32_MAX) return KernelContext::decline("rows over 2^31 columns");
  auto k = std::make_unique<ResizeRows>(x, y, make_taps(a.mode, a.align_corners, x[2], y[2]),
                                        make_taps(a.mode, a.align_corners, x[3], y[3]), ctx.threads);
  ctx.scratch(k->scratch_bytes());
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kResizeRows;
const KernelDef kResizeRows = {"resize_rows", false, create};

}  // namespace atrous
