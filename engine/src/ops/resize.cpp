// Resize: nearest or bilinear resampling of [N, C, H, W], PyTorch
// F.interpolate semantics.
//
// Output size: out_h/out_w when > 0; else the last two dims of the optional
// second input ("like"); else floor(in · scale). The coordinate transform
// always uses the sizes, in/out, as PyTorch does when given a size: with a
// scale factor PyTorch would use 1/scale instead, which differs when in·scale
// is not a whole number.
//   Nearest: src = min(floor(dst · in/out), in − 1), in f32 like PyTorch.
//   Bilinear, align_corners: src = dst · (in − 1)/(out − 1) (0 when out = 1).
//   Bilinear, otherwise: src = max((dst + 0.5) · in/out − 0.5, 0) (half-pixel).
// Bilinear blends rows floor(src) and floor(src) + 1 (clamped to the input).
#include <algorithm>
#include <cmath>

#include "ops/op_registry.h"
#include "ops/resize_taps.h"

namespace atrous {

extern const KernelDef kResizeOnednn;
extern const KernelDef kResizeBlocked;
extern const KernelDef kResizeRows;  // resize_rows.cpp: bilinear on plain NCHW, separable

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::ResizeT>();
  if (a.mode < fb::ResizeMode::MIN || a.mode > fb::ResizeMode::MAX) return ctx.fail("unknown resize mode");
  if (a.out_h < 0 || a.out_w < 0 || (a.out_h > 0) != (a.out_w > 0))
    return ctx.fail("out_h and out_w must both be > 0 or both 0, got " + std::to_string(a.out_h) + "x" +
                    std::to_string(a.out_w));
  if (!(a.scale_h >= 0.0f) || !(a.scale_w >= 0.0f) || !std::isfinite(a.scale_h) || !std::isfinite(a.scale_w))
    return ctx.fail("scales must be finite and >= 0");
  if (a.out_h == 0 && !ctx.has(1) && !(a.scale_h > 0.0f && a.scale_w > 0.0f))
    return ctx.fail("no output size: set out_h/out_w, give a second input to copy the size from, or set both scales");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::ResizeT>();
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(0, 4));
  const Shape& x = ctx.in[0];
  int64_t oh, ow;
  if (a.out_h > 0) {
    oh = a.out_h;
    ow = a.out_w;
  } else if (ctx.has(1)) {
    const Shape& like = ctx.in[1];
    if (like.size() < 2) return ctx.fail("the size input must have rank >= 2, got " + shape_string(like));
    oh = like[like.size() - 2];
    ow = like[like.size() - 1];
  } else {
    oh = static_cast<int64_t>(std::floor(static_cast<double>(x[2]) * a.scale_h));
    ow = static_cast<int64_t>(std::floor(static_cast<double>(x[3]) * a.scale_w));
  }
  if (oh < 1 || ow < 1 || oh > (int64_t{1} << 31) || ow > (int64_t{1} << 31))
    return ctx.fail("output size " + std::to_string(oh) + "x" + std::to_string(ow) + " is out of range");
  ctx.out = {{x[0], x[1], oh, ow}};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class ResizeRef : public Kernel {
 public:
  ResizeRef(const fb::ResizeT& a, const Shape& x, const Shape& y)
      : nearest_(a.mode == fb::ResizeMode::Nearest),
        NC_(x[0] * x[1]),
        H_(x[2]),
        W_(x[3]),
        OH_(y[2]),
        OW_(y[3]),
        th_(make_taps(a.mode, a.align_corners, x[2], y[2])),
        tw_(make_taps(a.mode, a.align_corners, x[3], y[3])) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);  // [N, C, H, W]
    float* dst = static_cast<float*>(b.out[0]);             // [N, C, OH, OW]
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t nc = 0; nc < NC_; ++nc) {
      for (int64_t oh = 0; oh < OH_; ++oh) {
        const size_t h = static_cast<size_t>(oh);
        const float* r0 = src + (nc * H_ + th_.i0[h]) * W_;
        const float* r1 = src + (nc * H_ + th_.i1[h]) * W_;
        const float wh1 = th_.w1[h], wh0 = 1.0f - wh1;
        float* o = dst + (nc * OH_ + oh) * OW_;
        if (nearest_) {
          for (int64_t ow = 0; ow < OW_; ++ow) o[ow] = r0[tw_.i0[static_cast<size_t>(ow)]];
          continue;
        }
        for (int64_t ow = 0; ow < OW_; ++ow) {
          const size_t w = static_cast<size_t>(ow);
          const int64_t c0 = tw_.i0[w], c1 = tw_.i1[w];
          const float ww1 = tw_.w1[w], ww0 = 1.0f - ww1;
          o[ow] = wh0 * (ww0 * r0[c0] + ww1 * r0[c1]) + wh1 * (ww0 * r1[c0] + ww1 * r1[c1]);
        }
      }
    }
    return Status::Ok();
  }

 private:
  bool nearest_;
  int64_t NC_, H_, W_, OH_, OW_;  // x [N, C, H, W] -> y [N, C, OH, OW], NC = N·C
  Taps th_, tw_;                  // per output row [OH] and column [OW]
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new ResizeRef(ctx.attrs<fb::ResizeT>(), ctx.in[0].shape, ctx.out[0].shape));
}

const KernelDef kResizeRef = {"resize_ref", false, create_ref};

}  // namespace

const OpDef kResizeOp = {"Resize", 1, 2, 1, 1, check, infer, {&kResizeOnednn, &kResizeBlocked, &kResizeRows, &kResizeRef}, -1, false, /*shape_only_input=*/1};

}  // namespace atrous
