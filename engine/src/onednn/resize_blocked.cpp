// Resize on oneDNN's channels-last and channel-blocked layouts (nhwc, nChw8c,
// nChw16c), for what oneDNN's resampling does not do: bilinear with
// align_corners=true (GCN's upsampling, F.upsample_bilinear) and nearest with a
// non-integer factor. Without it the planner would reorder the map to NCHW
// before Resize and the next conv would reorder it back.
//
// All three layouts are [N, CB, H, W, X] with X channels per block (nhwc: one
// block of all C channels; nChwXc: C padded to CB·X, the padding zero as oneDNN
// keeps it), so one loop serves them: each output pixel blends four source
// pixels' X contiguous channels. The output keeps the input's layout (or is
// written NCHW when it must be plain). Same taps and the same float expression
// as resize_ref, so the results are identical.
#include "onednn/onednn.h"
#include "ops/resize_taps.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;

class ResizeBlocked : public Kernel {
 public:
  ResizeBlocked(const fb::ResizeT& a, const Shape& x, const Shape& y, int64_t block, bool out_plain)
      : N_(x[0]), C_(x[1]), H_(x[2]), W_(x[3]), OH_(y[2]), OW_(y[3]), X_(block), CB_((x[1] + block - 1) / block),
        out_plain_(out_plain), th_(make_taps(a.mode, a.align_corners, x[2], y[2])),
        tw_(make_taps(a.mode, a.align_corners, x[3], y[3])) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);  // [N, CB, H, W, X]
    float* dst = static_cast<float*>(b.out[0]);             // [N, CB, OH, OW, X], or [N, C, OH, OW] when plain
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t n = 0; n < N_; ++n)
      for (int64_t cb = 0; cb < CB_; ++cb)
        for (int64_t oh = 0; oh < OH_; ++oh) {
          const size_t h = static_cast<size_t>(oh);
          const float* r0 = src + ((n * CB_ + cb) * H_ + th_.i0[h]) * W_ * X_;
          const float* r1 = src + ((n * CB_ + cb) * H_ + th_.i1[h]) * W_ * X_;
          const float wh1 = th_.w1[h], wh0 = 1.0f - wh1;
          const int64_t lanes = out_plain_ ? std::min(X_, C_ - cb * X_) : X_;
          for (int64_t ow = 0; ow < OW_; ++ow) {
            const size_t w = static_cast<size_t>(ow);
            const float* a0 = r0 + tw_.i0[w] * X_;
            const float* a1 = r0 + tw_.i1[w] * X_;
            const float* b0 = r1 + tw_.i0[w] * X_;
            const float* b1 = r1 + tw_.i1[w] * X_;
            const float ww1 = tw_.w1[w], ww0 = 1.0f - ww1;
            if (!out_plain_) {
              float* o = dst + (((n * CB_ + cb) * OH_ + oh) * OW_ + ow) * X_;
#pragma omp simd
              for (int64_t i = 0; i < X_; ++i) o[i] = wh0 * (ww0 * a0[i] + ww1 * a1[i]) + wh1 * (ww0 * b0[i] + ww1 * b1[i]);
            } else {
              for (int64_t i = 0; i < lanes; ++i)
                dst[((n * C_ + cb * X_ + i) * OH_ + oh) * OW_ + ow] =
                    wh0 * (ww0 * a0[i] + ww1 * a1[i]) + wh1 * (ww0 * b0[i] + ww1 * b1[i]);
            }
          }
        }
    return Status::Ok();
  }

 private:
  int64_t N_, C_, H_, W_, OH_, OW_;  // x [N, C, H, W] -> y [N, C, OH, OW]
  int64_t X_, CB_;                   // channels per block, blocks
  bool out_plain_;
  Taps th_, tw_;                     // per output row [OH] and column [OW]
};

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  const Shape& x = ctx.in[0].shape;
  const Shape& y = ctx.out[0].shape;
  if (ctx.in[0].layout.plain()) return KernelContext::decline("plain NCHW input: resize_rows reads it directly");
  const memory::desc have = desc_of(ctx.in[0]);
  struct Candidate { memory::format_tag tag; int64_t block; };
  const Candidate candidates[] = {{memory::format_tag::nhwc, x[1]}, {memory::format_tag::nChw16c, 16}, {memory::format_tag::nChw8c, 8}};
  const Candidate* found = nullptr;
  try {
    for (const Candidate& c : candidates)
      if (!found && have == memory::desc(to_dims(x), memory::data_type::f32, c.tag)) found = &c;
  } catch (const dnnl::error& e) {
    return KernelContext::decline(std::string("oneDNN: ") + e.what());
  }
  if (!found)
    return KernelContext::decline("input layout " + layout_name(ctx.in[0].layout, x.size()) + " is not nhwc, nChw8c or nChw16c");
  const bool out_plain = !ctx.out_may_block[0];
  if (!out_plain) {
    memory::desc out_md(to_dims(y), memory::data_type::f32, found->tag);
    ctx.out[0].layout = layout_of(out_md, y, DType::kF32);
    ctx.out[0].bytes = out_md.get_size();
  }
  return std::unique_ptr<Kernel>(new ResizeBlocked(ctx.attrs<fb::ResizeT>(), x, y, found->block, out_plain));
}

}  // namespace

extern const KernelDef kResizeBlocked;
const KernelDef kResizeBlocked = {"resize_blocked", true, create};

}  // namespace atrous
