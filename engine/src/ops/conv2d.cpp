// Conv2d: y = act(conv(x, weight) + bias + residual), PyTorch semantics.
//
// Dilation counts like PyTorch (1 = dense); tap (kh, kw) of output (oh, ow)
// reads input row oh·stride_h − pad_top + kh·dilation_h. Rates larger than the
// feature map are fine: taps that only ever land in the padding contribute
// zero and kernels may skip them (see conv_taps.h).
#include "ops/activation.h"
#include "ops/conv_taps.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kConv2dOnednn;
extern const KernelDef kConv2dSpatial;  // conv2d_spatial.cpp: few output channels, vectorised over columns
extern const KernelDef kConv2dPointwise;  // conv2d_pointwise.cpp: 1x1 + residual on NHWC, a GEMM over pixels

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::Conv2dT>();
  if (a.stride_h < 1 || a.stride_w < 1 || a.stride_h > 4096 || a.stride_w > 4096)
    return ctx.fail("stride must be in 1..4096, got " + std::to_string(a.stride_h) + "x" + std::to_string(a.stride_w));
  if (a.dilation_h < 1 || a.dilation_w < 1 || a.dilation_h > 4096 || a.dilation_w > 4096)
    return ctx.fail("dilation must be in 1..4096 (1 = dense), got " + std::to_string(a.dilation_h) + "x" + std::to_string(a.dilation_w));
  for (int p : {a.pad_top, a.pad_left, a.pad_bottom, a.pad_right})
    if (p < 0 || p > 65536) return ctx.fail("padding must be in 0..65536, got " + std::to_string(p));
  if (a.groups < 1) return ctx.fail("groups must be >= 1, got " + std::to_string(a.groups));
  if (!valid_activation(a.activation)) return ctx.fail("unknown activation");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_constant(1));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
  const Shape& w = ctx.value(1).shape;
  if (w.size() != 4) return ctx.fail("weight must be [O, C/groups, kH, kW], got " + shape_string(w));
  if (w[0] % a.groups != 0)
    return ctx.fail("weight has " + std::to_string(w[0]) + " output channels, not divisible by groups=" + std::to_string(a.groups));
  if (ctx.has(2)) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(2));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(2, {DType::kF32}));
    if (ctx.value(2).shape != Shape{w[0]}) return ctx.fail("bias must be [" + std::to_string(w[0]) + "], got " + shape_string(ctx.value(2).shape));
  }
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(3, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::Conv2dT>();
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(0, 4));
  const Shape& x = ctx.in[0];
  const Shape& w = ctx.in[1];
  if (x[1] != w[1] * a.groups)
    return ctx.fail("input has " + std::to_string(x[1]) + " channels, the weight expects " + std::to_string(w[1] * a.groups) +
                    " (" + std::to_string(w[1]) + " per group x " + std::to_string(a.groups) + " groups)");
  int64_t oh = conv_out_size(x[2], w[2], a.stride_h, a.pad_top, a.pad_bottom, a.dilation_h);
  int64_t ow = conv_out_size(x[3], w[3], a.stride_w, a.pad_left, a.pad_right, a.dilation_w);
  if (oh < 1 || ow < 1)
    return ctx.fail("input " + shape_string(x) + " is smaller than the dilated kernel " + std::to_string(w[2]) + "x" +
                    std::to_string(w[3]) + " (dilation " + std::to_string(a.dilation_h) + "x" + std::to_string(a.dilation_w) + ")");
  Shape y{x[0], w[0], oh, ow};
  if (ctx.has(3) && ctx.in[3] != y)
    return ctx.fail("residual input has shape " + shape_string(ctx.in[3]) + ", expected the output shape " + shape_string(y));
  ctx.out = {y};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class Conv2dRef : public Kernel {
 public:
  Conv2dRef(const fb::Conv2dT& a, const Shape& x, const Shape& y, const Shape& w, const float* weight, const float* bias)
      : a_(a), x_(x), y_(y), w_(w), weight_(weight), bias_(bias) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    const float* res = b.in.size() > 3 ? static_cast<const float*>(b.in[3]) : nullptr;
    float* dst = static_cast<float*>(b.out[0]);
    const int64_t N = x_[0], C = x_[1], H = x_[2], W = x_[3];
    const int64_t O = y_[1], OH = y_[2], OW = y_[3], KH = w_[2], KW = w_[3];
    const int64_t G = a_.groups, Cg = C / G, Og = O / G;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t o = 0; o < O; ++o) {
        const int64_t g = o / Og;
        const float* wo = weight_ + o * Cg * KH * KW;
        for (int64_t oh = 0; oh < OH; ++oh) {
          for (int64_t ow = 0; ow < OW; ++ow) {
            float acc = bias_ ? bias_[o] : 0.0f;
            for (int64_t c = 0; c < Cg; ++c) {
              const float* xc = src + ((n * C) + g * Cg + c) * H * W;
              for (int64_t kh = 0; kh < KH; ++kh) {
                int64_t ih = oh * a_.stride_h - a_.pad_top + kh * a_.dilation_h;
                if (ih < 0 || ih >= H) continue;
                for (int64_t kw = 0; kw < KW; ++kw) {
                  int64_t iw = ow * a_.stride_w - a_.pad_left + kw * a_.dilation_w;
                  if (iw < 0 || iw >= W) continue;
                  acc += xc[ih * W + iw] * wo[(c * KH + kh) * KW + kw];
                }
              }
            }
            int64_t idx = ((n * O + o) * OH + oh) * OW + ow;
            if (res) acc += res[idx];
            dst[idx] = activate(acc, a_.activation, a_.act_alpha);
          }
        }
      }
    }
    return Status::Ok();
  }
  double flops() const override {
    return 2.0 * y_[0] * y_[1] * w_[1] * in_bounds_taps(x_[2], w_[2], a_.stride_h, a_.pad_top, a_.dilation_h, y_[2]) *
           in_bounds_taps(x_[3], w_[3], a_.stride_w, a_.pad_left, a_.dilation_w, y_[3]);
  }

 private:
  fb::Conv2dT a_;
  Shape x_, y_, w_;
  const float* weight_;
  const float* bias_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new Conv2dRef(ctx.attrs<fb::Conv2dT>(), ctx.in[0].shape, ctx.out[0].shape, ctx.in[1].shape,
                                               static_cast<const float*>(ctx.constant[1]),
                                               ctx.present.size() > 2 && ctx.present[2] ? static_cast<const float*>(ctx.constant[2]) : nullptr));
}

const KernelDef kConv2dRef = {"conv2d_ref", false, create_ref};

}  // namespace

const OpDef kConv2dOp = {"Conv2d", 2, 4, 1, 1, check, infer, {&kConv2dSpatial, &kConv2dPointwise, &kConv2dOnednn, &kConv2dRef}, /*inplace_input=*/3};

}  // namespace atrous
