// Reshape: same elements, new shape (0 copies the input dim, -1 is inferred).
// A view: on plain arena data the planner makes the output share the input's
// buffer and no step runs; the copy kernel serves constants and blocked inputs.
#include <cstring>

#include "ops/op_registry.h"

namespace atrous {
namespace {

Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::ReshapeT>();
  int infer_count = 0;
  for (int64_t d : a.shape) {
    if (d < -1) return ctx.fail("shape entries must be >= -1, got " + std::to_string(d));
    infer_count += d == -1;
  }
  if (infer_count > 1) return ctx.fail("at most one -1 in the target shape");
  if (a.shape.size() > 8) return ctx.fail("rank above 8");
  ctx.out_dtypes = {ctx.dtype(0)};
  return Status::Ok();
}

Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::ReshapeT>();
  const Shape& in = ctx.in[0];
  int64_t total = checked_numel(in).value();
  Shape out;
  int64_t known = 1;
  int free = -1;
  for (size_t i = 0; i < a.shape.size(); ++i) {
    int64_t d = a.shape[i];
    if (d == 0) {
      if (i >= in.size()) return ctx.fail("target dim " + std::to_string(i) + " is 0 (copy) but the input has rank " + std::to_string(in.size()));
      d = in[i];
    }
    if (d < -1) return ctx.fail("target dim " + std::to_string(i) + " is " + std::to_string(d) + " (dims are >= 0, or -1 once)");
    if (d == -1) {
      if (free >= 0) return ctx.fail("more than one target dim is -1");
      free = static_cast<int>(i);
    } else if (__builtin_mul_overflow(known, d, &known)) {
      return ctx.fail("the target shape " + shape_string(Shape(a.shape.begin(), a.shape.end())) + " overflows 64 bits");
    }
    out.push_back(d);
  }
  if (free >= 0) {
    if (known == 0 || total % known != 0)
      return ctx.fail("cannot reshape " + shape_string(in) + " to " + shape_string(Shape(a.shape.begin(), a.shape.end())));
    out[static_cast<size_t>(free)] = total / known;
  } else if (known != total) {
    return ctx.fail("cannot reshape " + shape_string(in) + " (" + std::to_string(total) + " elements) to " + shape_string(out));
  }
  ctx.out = {out};
  return Status::Ok();
}

class CopyRef : public Kernel {
 public:
  explicit CopyRef(uint64_t bytes) : bytes_(bytes) {}
  Status run(const RunBuffers& b, KernelState*) const override {
    if (b.out[0] != b.in[0]) std::memcpy(b.out[0], b.in[0], bytes_);
    return Status::Ok();
  }

 private:
  uint64_t bytes_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(new CopyRef(ctx.out[0].bytes));
}

const KernelDef kReshapeRef = {"reshape_ref", false, create_ref};

}  // namespace

const OpDef kReshapeOp = {"Reshape", 1, 1, 1, 1, check, infer, {&kReshapeRef}, /*inplace_input=*/-1, /*view=*/true};

}  // namespace atrous
