// Slice: per listed axis keep [start, end) with step > 0, like Python's
// x[start:end:step]. Negative start/end count from the end of the dim; both
// are then clamped to [0, dim]. Unlisted axes are kept whole. Any dtype.
#include <algorithm>
#include <cstring>

#include "ops/op_registry.h"

namespace atrous {
namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::SliceT>();
  if (a.starts.size() != a.axes.size() || a.ends.size() != a.axes.size())
    return ctx.fail("axes, starts and ends must have the same length, got " + std::to_string(a.axes.size()) + ", " +
                    std::to_string(a.starts.size()) + ", " + std::to_string(a.ends.size()));
  if (!a.steps.empty() && a.steps.size() != a.axes.size())
    return ctx.fail("steps must be empty (all 1) or as long as axes, got " + std::to_string(a.steps.size()));
  for (int64_t s : a.steps)
    if (s < 1) return ctx.fail("steps must be > 0, got " + std::to_string(s));
  ctx.out_dtypes = {ctx.dtype(0)};
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
struct DimSlice {
  int64_t start = 0, step = 1, size = 0;
};

// Per input dim: where the slice starts, its step and how many elements it
// keeps; "" or what is wrong with the attributes for this input.
std::string slice_dims(const fb::SliceT& a, const Shape& in, std::vector<DimSlice>* out) {
  out->assign(in.size(), DimSlice{});
  std::vector<bool> seen(in.size(), false);
  for (size_t d = 0; d < in.size(); ++d) (*out)[d].size = in[d];
  for (size_t i = 0; i < a.axes.size(); ++i) {
    int axis;
    if (!normalize_axis(a.axes[i], in.size(), &axis))
      return "axis " + std::to_string(a.axes[i]) + " is out of range for input " + shape_string(in);
    if (seen[static_cast<size_t>(axis)]) return "axis " + std::to_string(axis) + " is listed twice";
    seen[static_cast<size_t>(axis)] = true;
    const int64_t dim = in[static_cast<size_t>(axis)];
    auto clamp = [dim](int64_t v) {
      if (v < 0) v += dim;
      return v < 0 ? 0 : (v > dim ? dim : v);
    };
    const int64_t start = clamp(a.starts[i]), end = clamp(a.ends[i]), step = a.steps.empty() ? 1 : a.steps[i];
    const int64_t size = end > start ? (end - start - 1) / step + 1 : 0;
    // With one element the step does not matter; 1 keeps stride arithmetic in range.
    (*out)[static_cast<size_t>(axis)] = DimSlice{start, size > 1 ? step : 1, size};
  }
  return "";
}

Status infer(ShapeContext& ctx) {
  std::vector<DimSlice> dims;
  std::string error = slice_dims(ctx.attrs<fb::SliceT>(), ctx.in[0], &dims);
  if (!error.empty()) return ctx.fail(error);
  Shape y;
  for (const DimSlice& d : dims) y.push_back(d.size);
  ctx.out = {y};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Each output row (all dims but the last) starts at one input offset; the row
// is then read with the last dim's step.
class SliceRef : public Kernel {
 public:
  SliceRef(const Shape& in, const std::vector<DimSlice>& dims, size_t elem) : elem_(elem) {
    const size_t r = in.size();
    int64_t stride = 1;
    stride_.assign(r, 0);
    for (size_t d = r; d-- > 0;) {
      stride_[d] = stride * dims[d].step;
      base_ += dims[d].start * stride;
      stride *= in[d];
      out_.push_back(dims[d].size);
    }
    std::reverse(out_.begin(), out_.end());
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    switch (elem_) {
      case 1:
        copy<uint8_t>(b);
        break;
      case 2:
        copy<uint16_t>(b);
        break;
      case 4:
        copy<uint32_t>(b);
        break;
      default:
        copy<uint64_t>(b);
        break;
    }
    return Status::Ok();
  }

 private:
  template <class T>
  void copy(const RunBuffers& b) const {
    const T* src = static_cast<const T*>(b.in[0]);
    T* dst = static_cast<T*>(b.out[0]);
    const size_t r = out_.size();
    const int64_t inner = out_[r - 1], step = stride_[r - 1];
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < r; ++d) rows *= out_[d];
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      int64_t off = base_, rem = row;
      for (size_t d = r - 1; d-- > 0;) {
        off += (rem % out_[d]) * stride_[d];
        rem /= out_[d];
      }
      const T* s = src + off;
      T* o = dst + row * inner;
      if (step == 1)
        std::memcpy(o, s, static_cast<size_t>(inner) * sizeof(T));
      else
        for (int64_t i = 0; i < inner; ++i) o[i] = s[i * step];
    }
  }

  size_t elem_;
  Shape out_;                    // output dims
  std::vector<int64_t> stride_;  // input elements per output step, per dim
  int64_t base_ = 0;             // input offset of output element 0
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  Shape in = ctx.in[0].shape;
  std::vector<DimSlice> dims;
  std::string error = slice_dims(ctx.attrs<fb::SliceT>(), in, &dims);
  if (!error.empty()) return invalid_argument(ctx.label() + ": " + error);
  if (in.empty()) {  // a scalar: one element, nothing to slice
    in = {1};
    dims = {DimSlice{0, 1, 1}};
  }
  return std::unique_ptr<Kernel>(new SliceRef(in, dims, dtype_size(ctx.in[0].dtype)));
}

const KernelDef kSliceRef = {"slice_ref", false, create_ref};

}  // namespace

const OpDef kSliceOp = {"Slice", 1, 1, 1, 1, check, infer, {&kSliceRef}};

}  // namespace atrous
