// Concat: joins 1..64 tensors of one dtype along `axis` (negative counts from
// the end); every other dim must agree.
//
// Seen as [outer, dim, inner] (axis_split.h), input i contributes one
// contiguous chunk of dim_i·inner elements to each of the `outer` rows of the
// output, so the reference kernel is a memcpy per (row, input).
#include <cstring>

#include "ops/axis_split.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kConcatOnednn;

namespace {

constexpr int kMaxInputs = 64;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has(i)) return ctx.fail("input " + std::to_string(i) + " is missing");
    if (ctx.dtype(i) != ctx.dtype(0))
      return ctx.fail("input " + std::to_string(i) + " has dtype " + dtype_name(ctx.dtype(i)) + ", input 0 has " +
                      dtype_name(ctx.dtype(0)));
  }
  ctx.outputs_are(ctx.dtype(0));
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::ConcatT>();
  Shape out = ctx.in[0];
  int axis;
  if (!normalize_axis(a.axis, out.size(), &axis))
    return ctx.fail("axis " + std::to_string(a.axis) + " is out of range for input " + shape_string(out));
  for (size_t i = 1; i < ctx.in.size(); ++i) {
    const Shape& s = ctx.in[i];
    bool ok = s.size() == out.size();
    for (size_t d = 0; ok && d < s.size(); ++d) ok = static_cast<int>(d) == axis || s[d] == out[d];
    if (!ok)
      return ctx.fail("input " + std::to_string(i) + " has shape " + shape_string(s) +
                      ", which does not match input 0 " + shape_string(ctx.in[0]) + " outside axis " +
                      std::to_string(axis));
    out[static_cast<size_t>(axis)] += s[static_cast<size_t>(axis)];
  }
  ctx.out = {out};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class ConcatRef : public Kernel {
 public:
  ConcatRef(int64_t outer, std::vector<uint64_t> chunk_bytes) : outer_(outer), chunk_(std::move(chunk_bytes)) {
    for (uint64_t c : chunk_) {
      offset_.push_back(row_);
      row_ += c;
    }
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    auto* dst = static_cast<uint8_t*>(b.out[0]);
    const int64_t n = static_cast<int64_t>(chunk_.size());
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < outer_; ++o) {
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t chunk = chunk_[static_cast<size_t>(i)];
        const auto* src = static_cast<const uint8_t*>(b.in[static_cast<size_t>(i)]);
        std::memcpy(dst + o * row_ + offset_[static_cast<size_t>(i)], src + o * chunk, chunk);
      }
    }
    return Status::Ok();
  }

 private:
  int64_t outer_;
  std::vector<uint64_t> chunk_;   // bytes per input and outer row
  std::vector<uint64_t> offset_;  // of each input's chunk within an output row
  uint64_t row_ = 0;              // bytes per output row
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  int axis;
  normalize_axis(ctx.attrs<fb::ConcatT>().axis, ctx.out[0].shape.size(), &axis);
  std::vector<uint64_t> chunks;
  for (const TensorDesc& in : ctx.in) {
    AxisSplit s = split_at_axis(in.shape, axis);
    chunks.push_back(static_cast<uint64_t>(s.dim * s.inner) * dtype_size(in.dtype));
  }
  return std::unique_ptr<Kernel>(new ConcatRef(split_at_axis(ctx.out[0].shape, axis).outer, std::move(chunks)));
}

const KernelDef kConcatRef = {"concat_ref", false, create_ref};

}  // namespace

const OpDef kConcatOp = {"Concat", 1, kMaxInputs, 1, 1, check, infer, {&kConcatOnednn, &kConcatRef}};

}  // namespace atrous
