// Pool2d: max or average pooling over [N, C, H, W], PyTorch semantics.
//
// Output size: floor((H + pad_top + pad_bottom − k) / stride) + 1, or with
// ceil_mode the ceiling, minus one when the last window would start beyond the
// input and the top padding (PyTorch's rule: every window starts inside the
// input or the left/top padding). Padding is at most half the kernel, so every
// window sees at least one real element.
//
// Average divisor (PyTorch): count_include_pad divides by the window clipped to
// the padded input [−pad_top, H + pad_bottom) — so a ceil-mode window hanging
// past the bottom padding counts only the part inside it; otherwise by the
// number of real elements in the window.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kPool2dOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::Pool2dT>();
  if (a.kind < fb::PoolKind::MIN || a.kind > fb::PoolKind::MAX) return ctx.fail("unknown pool kind");
  if (a.kernel_h < 1 || a.kernel_w < 1 || a.kernel_h > 65536 || a.kernel_w > 65536)
    return ctx.fail("kernel must be in 1..65536, got " + std::to_string(a.kernel_h) + "x" + std::to_string(a.kernel_w));
  if (a.stride_h < 1 || a.stride_w < 1 || a.stride_h > 65536 || a.stride_w > 65536)
    return ctx.fail("stride must be in 1..65536, got " + std::to_string(a.stride_h) + "x" + std::to_string(a.stride_w));
  if (a.pad_top < 0 || a.pad_bottom < 0 || a.pad_left < 0 || a.pad_right < 0 || a.pad_top > a.kernel_h / 2 ||
      a.pad_bottom > a.kernel_h / 2 || a.pad_left > a.kernel_w / 2 || a.pad_right > a.kernel_w / 2)
    return ctx.fail("padding must be between 0 and half the kernel (as in PyTorch), got top/left/bottom/right " +
                    std::to_string(a.pad_top) + "/" + std::to_string(a.pad_left) + "/" + std::to_string(a.pad_bottom) +
                    "/" + std::to_string(a.pad_right) + " for a " + std::to_string(a.kernel_h) + "x" +
                    std::to_string(a.kernel_w) + " kernel");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
int64_t pool_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end, bool ceil_mode) {
  const int64_t span = in + pad_begin + pad_end - k;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad_begin) --out;
  return out;
}

Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::Pool2dT>();
  ATROUS_RETURN_IF_ERROR(ctx.expect_rank(0, 4));
  const Shape& x = ctx.in[0];
  int64_t oh = pool_out_size(x[2], a.kernel_h, a.stride_h, a.pad_top, a.pad_bottom, a.ceil_mode);
  int64_t ow = pool_out_size(x[3], a.kernel_w, a.stride_w, a.pad_left, a.pad_right, a.ceil_mode);
  if (oh < 1 || ow < 1)
    return ctx.fail("input " + shape_string(x) + " is smaller than the padded " + std::to_string(a.kernel_h) + "x" +
                    std::to_string(a.kernel_w) + " window");
  ctx.out = {{x[0], x[1], oh, ow}};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class Pool2dRef : public Kernel {
 public:
  Pool2dRef(const fb::Pool2dT& a, const Shape& x, const Shape& y) : a_(a), x_(x), y_(y) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);  // [N, C, H, W]
    float* dst = static_cast<float*>(b.out[0]);             // [N, C, OH, OW]
    const int64_t NC = x_[0] * x_[1], H = x_[2], W = x_[3], OH = y_[2], OW = y_[3];
    const bool is_max = a_.kind == fb::PoolKind::Max;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; ++nc) {
      const float* plane = src + nc * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        for (int64_t ow = 0; ow < OW; ++ow) {
          int64_t hs = oh * a_.stride_h - a_.pad_top, ws = ow * a_.stride_w - a_.pad_left;
          int64_t he = std::min<int64_t>(hs + a_.kernel_h, H + a_.pad_bottom);
          int64_t we = std::min<int64_t>(ws + a_.kernel_w, W + a_.pad_right);
          const int64_t padded_count = (he - hs) * (we - ws);
          hs = std::max<int64_t>(hs, 0);
          ws = std::max<int64_t>(ws, 0);
          he = std::min(he, H);
          we = std::min(we, W);
          float r;
          if (is_max) {
            r = -std::numeric_limits<float>::infinity();
            for (int64_t h = hs; h < he; ++h)
              for (int64_t w = ws; w < we; ++w) {
                float v = plane[h * W + w];
                if (v > r || std::isnan(v)) r = v;  // NaN propagates, as in PyTorch
              }
          } else {
            float sum = 0.0f;
            for (int64_t h = hs; h < he; ++h)
              for (int64_t w = ws; w < we; ++w) sum += plane[h * W + w];
            r = sum / static_cast<float>(a_.count_include_pad ? padded_count : (he - hs) * (we - ws));
          }
          dst[(nc * OH + oh) * OW + ow] = r;
        }
      }
    }
    return Status::Ok();
  }

 private:
  fb::Pool2dT a_;
  Shape x_, y_;  // [N, C, H, W], [N, C, OH, OW]
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new Pool2dRef(ctx.attrs<fb::Pool2dT>(), ctx.in[0].shape, ctx.out[0].shape));
}

const KernelDef kPool2dRef = {"pool2d_ref", false, create_ref};

}  // namespace

const OpDef kPool2dOp = {"Pool2d", 1, 1, 1, 1, check, infer, {&kPool2dOnednn, &kPool2dRef}};

}  // namespace atrous
