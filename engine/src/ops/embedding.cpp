// Embedding: rows of a table by index, PyTorch nn.Embedding semantics.
// ids [...] (i64 or i32), weight [V, D] -> [..., D]. Ids are data, not weights: one
// outside [0, V) is a run-time error (invalid argument) naming the node, the input,
// the position and the value; nothing is written in that case.
#include <cstring>

#include "ops/op_registry.h"

namespace atrous {
namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kI64, DType::kI32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_constant(1));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
  const Shape& w = ctx.value(1).shape;
  if (w.size() != 2 || w[0] < 1 || w[1] < 1) return ctx.fail("weight must be [V, D] with V, D >= 1, got " + shape_string(w));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  Shape y = ctx.in[0];
  y.push_back(ctx.in[1][1]);
  ctx.out = {y};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
class EmbeddingRef : public Kernel {
 public:
  EmbeddingRef(std::string label, std::string ids_name, bool i64, int64_t n, int64_t v, int64_t d, const float* weight)
      : label_(std::move(label)), ids_name_(std::move(ids_name)), i64_(i64), n_(n), v_(v), d_(d), weight_(weight) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    auto id_at = [&](int64_t i) -> int64_t {
      return i64_ ? static_cast<const int64_t*>(b.in[0])[i] : static_cast<const int32_t*>(b.in[0])[i];
    };
    for (int64_t i = 0; i < n_; ++i) {
      const int64_t id = id_at(i);
      if (id < 0 || id >= v_)
        return invalid_argument(label_ + ": input '" + ids_name_ + "' holds " + std::to_string(id) + " at position " +
                                std::to_string(i) + ", outside the table's [0, " + std::to_string(v_) + ")");
    }
    auto* dst = static_cast<float*>(b.out[0]);
#pragma omp parallel for schedule(static) if (n_ * d_ > 65536)
    for (int64_t i = 0; i < n_; ++i)
      std::memcpy(dst + i * d_, weight_ + id_at(i) * d_, static_cast<size_t>(d_) * sizeof(float));
    return Status::Ok();
  }

 private:
  std::string label_, ids_name_;
  bool i64_;
  int64_t n_, v_, d_;
  const float* weight_;
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  const Shape& w = ctx.in[1].shape;
  const std::string ids_name = ctx.graph.values[static_cast<size_t>(ctx.node.inputs[0])].name;
  return std::unique_ptr<Kernel>(new EmbeddingRef(ctx.label(), ids_name, ctx.in[0].dtype == DType::kI64,
                                                  checked_numel(ctx.in[0].shape).value(), w[0], w[1],
                                                  static_cast<const float*>(ctx.constant[1])));
}

const KernelDef kEmbeddingRef = {"embedding_ref", false, create_ref};

}  // namespace

const OpDef kEmbeddingOp = {"Embedding", 2, 2, 1, 1, check, infer, {&kEmbeddingRef}};

}  // namespace atrous
