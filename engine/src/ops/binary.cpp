// Binary: element-wise add/sub/mul/div/max/min with numpy broadcasting, then an
// optional activation.
#include "ops/activation.h"
#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kBinaryOnednn;

namespace {

Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::BinaryT>();
  if (a.kind < fb::BinaryKind::MIN || a.kind > fb::BinaryKind::MAX) return ctx.fail("unknown binary kind");
  if (!valid_activation(a.activation)) return ctx.fail("unknown activation");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

Status infer(ShapeContext& ctx) {
  Shape out;
  if (!broadcast_shapes(ctx.in[0], ctx.in[1], &out))
    return ctx.fail("shapes " + shape_string(ctx.in[0]) + " and " + shape_string(ctx.in[1]) + " do not broadcast");
  ctx.out = {out};
  return Status::Ok();
}

inline float apply(fb::BinaryKind k, float x, float y) {
  switch (k) {
    case fb::BinaryKind::Add: return x + y;
    case fb::BinaryKind::Sub: return x - y;
    case fb::BinaryKind::Mul: return x * y;
    case fb::BinaryKind::Div: return x / y;
    case fb::BinaryKind::Max: return x > y ? x : y;
    case fb::BinaryKind::Min: return x < y ? x : y;
  }
  return 0.f;
}

// Broadcast strides of `in` against `out` (0 where the input dim is 1).
std::vector<int64_t> bstrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = in.size(); i-- > 0;) {
    size_t o = i + out.size() - in.size();
    s[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return s;
}

class BinaryRef : public Kernel {
 public:
  BinaryRef(const fb::BinaryT& a, const Shape& sa, const Shape& sb, const Shape& out)
      : a_(a), out_(out), sa_(bstrides(sa, out)), sb_(bstrides(sb, out)) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* x = static_cast<const float*>(b.in[0]);
    const float* y = static_cast<const float*>(b.in[1]);
    float* dst = static_cast<float*>(b.out[0]);
    const size_t r = out_.size();
    const int64_t inner = out_[r - 1];
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < r; ++i) rows *= out_[i];
    const int64_t ia = sa_[r - 1], ib = sb_[r - 1];
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      int64_t oa = 0, ob = 0, rem = row;
      for (size_t d = r - 1; d-- > 0;) {
        int64_t idx = rem % out_[d];
        rem /= out_[d];
        oa += idx * sa_[d];
        ob += idx * sb_[d];
      }
      float* o = dst + row * inner;
      for (int64_t i = 0; i < inner; ++i) o[i] = activate(apply(a_.kind, x[oa + i * ia], y[ob + i * ib]), a_.activation);
    }
    return Status::Ok();
  }

 private:
  fb::BinaryT a_;
  Shape out_;
  std::vector<int64_t> sa_, sb_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  Shape out = ctx.out[0].shape;
  if (out.empty()) out = {1};
  Shape sa = ctx.in[0].shape, sb = ctx.in[1].shape;
  if (sa.empty()) sa = {1};
  if (sb.empty()) sb = {1};
  return std::unique_ptr<Kernel>(new BinaryRef(ctx.attrs<fb::BinaryT>(), sa, sb, out));
}

const KernelDef kBinaryRef = {"binary_ref", false, create_ref};

}  // namespace

const OpDef kBinaryOp = {"Binary", 2, 2, 1, 1, check, infer, {&kBinaryOnednn, &kBinaryRef}, /*inplace_input=*/0};

}  // namespace atrous
