// PromptEncoding: SAM's sparse prompt embedding (segment_anything PromptEncoder,
// _embed_points and _embed_boxes with PositionEmbeddingRandom), one token per point:
//   u = 2·(p + offset) / (width, height) − 1       p = (x, y) in input-frame pixels
//   pe = [sin(2π·u·G), cos(2π·u·G)]                 G [2, F]: row 0 multiplies x, row 1 y
//   label −1: not_a_point (pe dropped); 0 / 1: pe + label_embed[0 / 1] (background /
//   foreground point); 2 / 3: pe + label_embed[2 / 3] (box top-left / bottom-right corner).
// coords [B, N, 2], labels [B, N] (f32), gaussian [2, F], label_embed [4, 2F],
// not_a_point [2F] -> y [B, N, 2F].
//
// The arithmetic follows PyTorch's float32 order: ((p + offset) / size) · 2 − 1, then
// u_x·G[0, f] + u_y·G[1, f], then · float(2π). One kernel: the work is a few
// hundred sin/cos per prompt, so the plain loop is the reference and the only kernel.
#include <cmath>

#include "ops/op_registry.h"

namespace atrous {
namespace {

enum Input { kCoords = 0, kLabels, kGaussian, kLabelEmbed, kNotAPoint };

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::PromptEncodingT>();
  if (!(a.width > 0) || !(a.height > 0) || !std::isfinite(a.width) || !std::isfinite(a.height))
    return ctx.fail("width and height must be finite and > 0");
  if (!std::isfinite(a.offset)) return ctx.fail("offset must be finite");
  for (int i = 0; i < 5; ++i) ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
  for (int i : {kGaussian, kLabelEmbed, kNotAPoint}) ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
  const Shape& g = ctx.value(kGaussian).shape;
  if (g.size() != 2 || g[0] != 2 || g[1] < 1) return ctx.fail("gaussian must be [2, F], got " + shape_string(g));
  const int64_t e = 2 * g[1];
  if (ctx.value(kLabelEmbed).shape != Shape{4, e})
    return ctx.fail("label_embed must be [4, " + std::to_string(e) + "], got " + shape_string(ctx.value(kLabelEmbed).shape));
  if (ctx.value(kNotAPoint).shape != Shape{e})
    return ctx.fail("not_a_point must be [" + std::to_string(e) + "], got " + shape_string(ctx.value(kNotAPoint).shape));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const Shape& c = ctx.in[kCoords];
  const Shape& l = ctx.in[kLabels];
  if (c.size() != 3 || c[2] != 2) return ctx.fail("coords must be [B, N, 2], got " + shape_string(c));
  if (l != Shape{c[0], c[1]}) return ctx.fail("labels must be [B, N] = " + shape_string({c[0], c[1]}) + ", got " + shape_string(l));
  ctx.out = {{c[0], c[1], 2 * ctx.in[kGaussian][1]}};
  return Status::Ok();
}

// ---- kernel -----------------------------------------------------------------
class PromptEncodingRef : public Kernel {
 public:
  PromptEncodingRef(const fb::PromptEncodingT& a, int64_t points, int64_t f, std::string label)
      : a_(a), points_(points), f_(f), label_(std::move(label)) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* coords = static_cast<const float*>(b.in[kCoords]);  // [P, 2]
    const float* labels = static_cast<const float*>(b.in[kLabels]);  // [P]
    const float* g = static_cast<const float*>(b.in[kGaussian]);     // [2, F]
    const float* emb = static_cast<const float*>(b.in[kLabelEmbed]); // [4, 2F]
    const float* nap = static_cast<const float*>(b.in[kNotAPoint]);  // [2F]
    float* y = static_cast<float*>(b.out[0]);                        // [P, 2F]
    const float two_pi = static_cast<float>(2.0 * M_PI);
    for (int64_t p = 0; p < points_; ++p) {
      const float lf = labels[p];
      float* yp = y + p * 2 * f_;
      if (!(lf == -1.0f || lf == 0.0f || lf == 1.0f || lf == 2.0f || lf == 3.0f))
        return invalid_argument(label_ + ": label " + std::to_string(lf) + " at point " + std::to_string(p) +
                                " (must be -1 padding, 0 background, 1 foreground, 2 or 3 box corner)");
      if (lf == -1.0f) {
        for (int64_t i = 0; i < 2 * f_; ++i) yp[i] = nap[i];
        continue;
      }
      const float ux = (coords[2 * p] + a_.offset) / a_.width * 2.0f - 1.0f;
      const float uy = (coords[2 * p + 1] + a_.offset) / a_.height * 2.0f - 1.0f;
      const float* e = emb + static_cast<int64_t>(lf) * 2 * f_;
      for (int64_t i = 0; i < f_; ++i) {
        const float v = (ux * g[i] + uy * g[f_ + i]) * two_pi;
        yp[i] = std::sin(v) + e[i];
        yp[f_ + i] = std::cos(v) + e[f_ + i];
      }
    }
    return Status::Ok();
  }

 private:
  fb::PromptEncodingT a_;
  int64_t points_, f_;
  std::string label_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  const Shape& c = ctx.in[kCoords].shape;
  return std::unique_ptr<Kernel>(
      new PromptEncodingRef(ctx.attrs<fb::PromptEncodingT>(), c[0] * c[1], ctx.in[kGaussian].shape[1], ctx.label()));
}

const KernelDef kPromptEncodingRef = {"prompt_encoding_ref", false, create_ref};

}  // namespace

const OpDef kPromptEncodingOp = {"PromptEncoding", 5, 5, 1, 1, check, infer, {&kPromptEncodingRef}};

}  // namespace atrous
