// BoundaryRefinement: y = x + conv2(relu(conv1(x) + b1)) + b2, GCN's Boundary Refinement
// block (Peng et al. 2017, fig. 2C). Both convolutions are stride 1 and dense with "same"
// padding, (k − 1)/2 rows and columns on each side of odd kernels, so y has x's shape.
//
// The fusion pass forms this node from Conv2d(ReLU) → Conv2d(residual x) when
// boundary_refinement_fused takes it: one pass over the map that keeps conv1's output in
// cache for conv2, where the two convs stream the map through memory three times more
// (boundary_refinement_fused.cpp). A model file may also hold the node itself.
#include "ops/boundary_refinement.h"
#include "ops/conv_taps.h"

#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kBoundaryRefinementFused;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  for (int i : {1, 2}) {
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    const Shape& w = ctx.value(i).shape;
    const std::string name = i == 1 ? "w1" : "w2";
    if (w.size() != 4 || w[0] < 1 || w[1] < 1)
      return ctx.fail(name + " must be [out, in, kH, kW], got " + shape_string(w));
    if (w[2] < 1 || w[3] < 1 || w[2] % 2 == 0 || w[3] % 2 == 0 || w[2] > 255 || w[3] > 255)
      return ctx.fail(name + " must have an odd kernel of at most 255 (\"same\" padding), got " + shape_string(w));
  }
  const Shape& w1 = ctx.value(1).shape;
  const Shape& w2 = ctx.value(2).shape;
  if (w2[0] != w1[1] || w2[1] != w1[0])
    return ctx.fail("w2 must be [" + std::to_string(w1[1]) + ", " + std::to_string(w1[0]) + ", kH, kW] to follow w1 " +
                    shape_string(w1) + " back to the block's channels, got " + shape_string(w2));
  for (int i : {3, 4}) {
    if (!ctx.has(i)) continue;
    ATROUS_RETURN_IF_ERROR(ctx.expect_constant(i));
    ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(i, {DType::kF32}));
    const int64_t want = i == 3 ? w1[0] : w2[0];
    if (ctx.value(i).shape != Shape{want})
      return ctx.fail(std::string(i == 3 ? "b1" : "b2") + " must be [" + std::to_string(want) + "], got " +
                      shape_string(ctx.value(i).shape));
  }
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(0, 4));
  const Shape& x = ctx.in[0];
  if (x[1] != ctx.in[1][1])
    return ctx.fail("input has " + std::to_string(x[1]) + " channels, w1 expects " + std::to_string(ctx.in[1][1]));
  ctx.out = {x};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// One "same", stride-1 convolution: dst[n, o] = bias[o] + Σ w[o, c, i, j]·src[n, c, h − pk + i, w − pl + j]
// (+ res, then ReLU when asked).
void conv_same(const float* src, const float* w, const float* bias, const float* res, bool relu, int64_t n_, int64_t c_,
               int64_t o_, int64_t h_, int64_t w_, int64_t kh, int64_t kw, float* dst) {
  const int64_t ph = (kh - 1) / 2, pw = (kw - 1) / 2;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < n_; ++n)
    for (int64_t o = 0; o < o_; ++o)
      for (int64_t y = 0; y < h_; ++y)
        for (int64_t x = 0; x < w_; ++x) {
          float acc = bias ? bias[o] : 0.0f;
          for (int64_t c = 0; c < c_; ++c)
            for (int64_t i = 0; i < kh; ++i) {
              const int64_t iy = y - ph + i;
              if (iy < 0 || iy >= h_) continue;
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ix = x - pw + j;
                if (ix < 0 || ix >= w_) continue;
                acc += src[((n * c_ + c) * h_ + iy) * w_ + ix] * w[((o * c_ + c) * kh + i) * kw + j];
              }
            }
          const int64_t at = ((n * o_ + o) * h_ + y) * w_ + x;
          if (res) acc += res[at];
          dst[at] = relu ? std::max(acc, 0.0f) : acc;
        }
}

class BoundaryRefinementRef : public Kernel {
 public:
  BoundaryRefinementRef(const Shape& x, const Shape& w1, const Shape& w2, const float* const p[4])
      : x_(x), w1s_(w1), w2s_(w2), w1_(p[0]), b1_(p[1]), w2_(p[2]), b2_(p[3]) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);
    float* t = static_cast<float*>(b.scratch[0]);
    const int64_t m = w1s_[0];
    conv_same(x, w1_, b1_, nullptr, true, x_[0], x_[1], m, x_[2], x_[3], w1s_[2], w1s_[3], t);
    conv_same(t, w2_, b2_, x, false, x_[0], m, x_[1], x_[2], x_[3], w2s_[2], w2s_[3], static_cast<float*>(b.out[0]));
    return Status::Ok();
  }
  double flops() const override {
    return boundary_refinement_flops({x_[1], w1s_[0], x_[2], x_[3], w1s_[2], w1s_[3], w2s_[2], w2s_[3]}, x_[0]);
  }

 private:
  Shape x_, w1s_, w2s_;
  const float *w1_, *b1_, *w2_, *b2_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  const float* p[4];  // w1, b1, w2, b2
  const size_t at[4] = {1, 3, 2, 4};
  for (int i = 0; i < 4; ++i)
    p[i] = at[i] < ctx.present.size() && ctx.present[at[i]] ? static_cast<const float*>(ctx.constant[at[i]]) : nullptr;
  const Shape& x = ctx.in[0].shape;
  const Shape& w1 = ctx.in[1].shape;
  ctx.scratch(static_cast<uint64_t>(x[0] * w1[0] * x[2] * x[3]) * sizeof(float));  // conv1's output
  return std::unique_ptr<Kernel>(new BoundaryRefinementRef(x, w1, ctx.in[2].shape, p));
}

const KernelDef kBoundaryRefinementRef = {"boundary_refinement_ref", false, create_ref};

}  // namespace

const OpDef kBoundaryRefinementOp = {"BoundaryRefinement", 3, 5, 1, 1, check, infer,
                                     {&kBoundaryRefinementFused, &kBoundaryRefinementRef}};

double boundary_refinement_flops(const BoundaryRefinementSizes& s, int64_t n) {
  auto taps = [](int64_t len, int64_t k) { return in_bounds_taps(len, k, 1, (k - 1) / 2, 1, len); };
  return 2.0 * n * s.c * s.m * (taps(s.h, s.k1h) * taps(s.w, s.k1w) + taps(s.h, s.k2h) * taps(s.w, s.k2w));
}

}  // namespace atrous
