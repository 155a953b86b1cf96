// ConvTranspose2d ("deconvolution"): y = act(conv_transpose(x, weight) + bias),
// PyTorch semantics.
//
// Input pixel (ih, iw) scatters through tap (kh, kw) to output row
// ih·stride_h − pad_top + kh·dilation_h (columns alike). Without padding the
// output has (H−1)·stride + dilation·(k−1) + 1 rows; pad_top rows are dropped at
// the start, pad_bottom at the end, and output_pad rows are added at the end
// (rows no tap reaches hold the bias only). With pad_top == pad_bottom = p this
// is PyTorch's (H−1)·s − 2p + d·(k−1) + output_padding + 1.
// weight [C, O/groups, kH, kW]: PyTorch's layout, input channels first.
#include "ops/activation.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kConvTranspose2dOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::ConvTranspose2dT>();
  if (a.stride_h < 1 || a.stride_w < 1 || a.stride_h > 4096 || a.stride_w > 4096)
    return ctx.fail("stride must be in 1..4096, got " + std::to_string(a.stride_h) + "x" + std::to_string(a.stride_w));
  if (a.dilation_h < 1 || a.dilation_w < 1 || a.dilation_h > 4096 || a.dilation_w > 4096)
    return ctx.fail("dilation must be in 1..4096 (1 = dense), got " + std::to_string(a.dilation_h) + "x" +
                    std::to_string(a.dilation_w));
  for (int p : {a.pad_top, a.pad_left, a.pad_bottom, a.pad_right})
    if (p < 0 || p > 65536) return ctx.fail("padding must be in 0..65536, got " + std::to_string(p));
  // PyTorch's rule: output padding smaller than the stride or the dilation.
  if (a.output_pad_h < 0 || a.output_pad_h >= std::max(a.stride_h, a.dilation_h) || a.output_pad_w < 0 ||
      a.output_pad_w >= std::max(a.stride_w, a.dilation_w))
    return ctx.fail("output padding must be >= 0 and smaller than the stride or the dilation, got " +
                    std::to_string(a.output_pad_h) + "x" + std::to_string(a.output_pad_w));
  if (a.groups < 1) return ctx.fail("groups must be >= 1, got " + std::to_string(a.groups));
  if (!valid_activation(a.activation)) return ctx.fail("unknown activation");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_constant(1));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
  const Shape& w = ctx.value(1).shape;
  if (w.size() != 4 || w[0] < 1 || w[1] < 1 || w[2] < 1 || w[3] < 1)
    return ctx.fail("weight must be [C, O/groups, kH, kW] with every dim >= 1, got " + shape_string(w));
  if (w[0] % a.groups != 0)
    return ctx.fail("weight has " + std::to_string(w[0]) +
                    " input channels, not divisible by groups=" + std::to_string(a.groups));
  if (ctx.has(2)) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(2));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(2, {DType::kF32}));
    if (ctx.value(2).shape != Shape{w[1] * a.groups})
      return ctx.fail("bias must be [" + std::to_string(w[1] * a.groups) + "], got " +
                      shape_string(ctx.value(2).shape));
  }
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
int64_t deconv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end, int64_t dilation,
                        int64_t output_pad) {
  return (in - 1) * stride + dilation * (k - 1) + 1 - pad_begin - pad_end + output_pad;
}

Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::ConvTranspose2dT>();
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(0, 4));
  const Shape& x = ctx.in[0];
  const Shape& w = ctx.in[1];
  if (x[1] != w[0])
    return ctx.fail("input has " + std::to_string(x[1]) + " channels, the weight expects " + std::to_string(w[0]));
  int64_t oh = deconv_out_size(x[2], w[2], a.stride_h, a.pad_top, a.pad_bottom, a.dilation_h, a.output_pad_h);
  int64_t ow = deconv_out_size(x[3], w[3], a.stride_w, a.pad_left, a.pad_right, a.dilation_w, a.output_pad_w);
  if (oh < 1 || ow < 1)
    return ctx.fail("input " + shape_string(x) + " gives an empty output (" + std::to_string(oh) + "x" +
                    std::to_string(ow) + "): the padding removes more than the transposed convolution produces");
  ctx.out = {{x[0], w[1] * a.groups, oh, ow}};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Gather form: output (oh, ow) sums the taps whose source row
// (oh + pad_top − kh·dilation) / stride is a whole number inside the input.
class ConvTranspose2dRef : public Kernel {
 public:
  ConvTranspose2dRef(const fb::ConvTranspose2dT& a, const Shape& x, const Shape& y, const Shape& w, const float* weight,
                     const float* bias)
      : a_(a), x_(x), y_(y), w_(w), weight_(weight), bias_(bias) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);  // [N, C, H, W]
    float* dst = static_cast<float*>(b.out[0]);             // [N, O, OH, OW]
    const int64_t N = x_[0], C = x_[1], H = x_[2], W = x_[3];
    const int64_t O = y_[1], OH = y_[2], OW = y_[3], KH = w_[2], KW = w_[3];
    const int64_t G = a_.groups, Cg = C / G, Og = O / G;
    const int64_t sh = a_.stride_h, sw = a_.stride_w, dh = a_.dilation_h, dw = a_.dilation_w;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t o = 0; o < O; ++o) {
        const int64_t g = o / Og, og = o % Og;
        for (int64_t oh = 0; oh < OH; ++oh) {
          for (int64_t ow = 0; ow < OW; ++ow) {
            float acc = bias_ ? bias_[o] : 0.0f;
            for (int64_t kh = 0; kh < KH; ++kh) {
              int64_t th = oh + a_.pad_top - kh * dh;
              if (th < 0 || th % sh != 0 || th / sh >= H) continue;
              int64_t ih = th / sh;
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t tw = ow + a_.pad_left - kw * dw;
                if (tw < 0 || tw % sw != 0 || tw / sw >= W) continue;
                int64_t iw = tw / sw;
                for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c)
                  acc += src[((n * C + c) * H + ih) * W + iw] * weight_[((c * Og + og) * KH + kh) * KW + kw];
              }
            }
            dst[((n * O + o) * OH + oh) * OW + ow] = activate(acc, a_.activation, a_.act_alpha);
          }
        }
      }
    }
    return Status::Ok();
  }
  double flops() const override { return 2.0 * x_[0] * x_[1] * x_[2] * x_[3] * w_[1] * w_[2] * w_[3]; }

 private:
  fb::ConvTranspose2dT a_;
  Shape x_, y_, w_;      // [N, C, H, W], [N, O, OH, OW], [C, O/groups, kH, kW]
  const float* weight_;  // [C, O/groups, kH, kW]
  const float* bias_;    // [O] or null
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new ConvTranspose2dRef(
      ctx.attrs<fb::ConvTranspose2dT>(), ctx.in[0].shape, ctx.out[0].shape, ctx.in[1].shape,
      static_cast<const float*>(ctx.constant[1]),
      ctx.present.size() > 2 && ctx.present[2] ? static_cast<const float*>(ctx.constant[2]) : nullptr));
}

const KernelDef kConvTranspose2dRef = {"conv_transpose2d_ref", false, create_ref};

}  // namespace

// clang-format off
// conv_transpose2d_gemm (conv_transpose2d_gemm.cpp) first: it takes only kernel == stride, no padding.
extern const KernelDef kConvTranspose2dGemm;
const OpDef kConvTranspose2dOp = {"ConvTranspose2d", 2, 3, 1, 1, check, infer,
                                  {&kConvTranspose2dGemm, &kConvTranspose2dOnednn, &kConvTranspose2dRef}};
// clang-format on

}  // namespace atrous
