// MatMul: y = alpha · op(a) · op(b), batched over the leading dims with numpy
// broadcasting. a [..., M, K] (stored [..., K, M] when transpose_a),
// b [..., K, N] (stored [..., N, K] when transpose_b) -> y [..., M, N].
// Both operands may be activations or constants; rank >= 2 each.
#include <cmath>

#include "ops/op_registry.h"

namespace atrous {

extern const KernelDef kMatMulOnednn;

namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::MatMulT>();
  if (!std::isfinite(a.alpha)) return ctx.fail("alpha must be finite");
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(1, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
// Logical (after transposition) rows and columns of an operand.
void rows_cols(const Shape& s, bool transpose, int64_t* rows, int64_t* cols) {
  *rows = s[s.size() - (transpose ? 1 : 2)];
  *cols = s[s.size() - (transpose ? 2 : 1)];
}

Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::MatMulT>();
  const Shape &sa = ctx.in[0], &sb = ctx.in[1];
  if (sa.size() < 2 || sb.size() < 2)
    return ctx.fail("operands must have rank >= 2, got " + shape_string(sa) + " and " + shape_string(sb));
  int64_t m, ka, kb, n;
  rows_cols(sa, a.transpose_a, &m, &ka);
  rows_cols(sb, a.transpose_b, &kb, &n);
  if (ka != kb)
    return ctx.fail("inner dims differ: " + shape_string(sa) + (a.transpose_a ? "ᵀ" : "") + " x " + shape_string(sb) +
                    (a.transpose_b ? "ᵀ" : "") + " (" + std::to_string(ka) + " vs " + std::to_string(kb) + ")");
  Shape batch;
  if (!broadcast_shapes(Shape(sa.begin(), sa.end() - 2), Shape(sb.begin(), sb.end() - 2), &batch))
    return ctx.fail("batch dims of " + shape_string(sa) + " and " + shape_string(sb) + " do not broadcast");
  batch.push_back(m);
  batch.push_back(n);
  ctx.out = {batch};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Element (m, k) of a lies at a_off + m·am + k·ak (b alike); each output row is
// accumulated over k with the row of b, which is contiguous unless b is transposed.
class MatMulRef : public Kernel {
 public:
  MatMulRef(const fb::MatMulT& attrs, const Shape& sa, const Shape& sb, const Shape& y) : alpha_(attrs.alpha) {
    const size_t r = y.size();
    M_ = y[r - 2];
    N_ = y[r - 1];
    K_ = attrs.transpose_a ? sa[sa.size() - 2] : sa[sa.size() - 1];
    am_ = attrs.transpose_a ? 1 : K_;
    ak_ = attrs.transpose_a ? M_ : 1;
    bk_ = attrs.transpose_b ? 1 : N_;
    bn_ = attrs.transpose_b ? K_ : 1;
    batch_ = Shape(y.begin(), y.end() - 2);
    // Batch strides of each operand against the output's batch dims (0 where broadcast).
    auto strides = [&](const Shape& s, std::vector<int64_t>* out) {
      out->assign(batch_.size(), 0);
      int64_t stride = s[s.size() - 1] * s[s.size() - 2];
      for (size_t i = s.size() - 2, o = batch_.size(); i-- > 0;) {
        --o;
        (*out)[o] = s[i] == 1 ? 0 : stride;
        stride *= s[i];
      }
    };
    strides(sa, &sa_);
    strides(sb, &sb_);
  }

  Status run(const RunBuffers& bufs, KernelState*) const override {
    const float* A = static_cast<const float*>(bufs.in[0]);
    const float* B = static_cast<const float*>(bufs.in[1]);
    float* Y = static_cast<float*>(bufs.out[0]);  // [..., M, N]
    int64_t batches = 1;
    for (int64_t d : batch_) batches *= d;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t bi = 0; bi < batches; ++bi) {
      for (int64_t m = 0; m < M_; ++m) {
        int64_t oa = 0, ob = 0, rem = bi;
        for (size_t d = batch_.size(); d-- > 0;) {
          int64_t idx = rem % batch_[d];
          rem /= batch_[d];
          oa += idx * sa_[d];
          ob += idx * sb_[d];
        }
        float* y = Y + (bi * M_ + m) * N_;
        for (int64_t n = 0; n < N_; ++n) y[n] = 0.0f;
        for (int64_t k = 0; k < K_; ++k) {
          const float av = alpha_ * A[oa + m * am_ + k * ak_];
          const float* brow = B + ob + k * bk_;
          for (int64_t n = 0; n < N_; ++n) y[n] += av * brow[n * bn_];
        }
      }
    }
    return Status::Ok();
  }
  double flops() const override {
    double b = 1;
    for (int64_t d : batch_) b *= static_cast<double>(d);
    return 2.0 * b * M_ * N_ * K_;
  }

 private:
  float alpha_;
  int64_t M_, N_, K_, am_, ak_, bk_, bn_;  // sizes; strides of a (m, k) and b (k, n) within a matrix
  Shape batch_;                            // the output's batch dims
  std::vector<int64_t> sa_, sb_;           // per batch dim: matrix stride of a and b (0: broadcast)
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(
      new MatMulRef(ctx.attrs<fb::MatMulT>(), ctx.in[0].shape, ctx.in[1].shape, ctx.out[0].shape));
}

const KernelDef kMatMulRef = {"matmul_ref", false, create_ref};

}  // namespace

const OpDef kMatMulOp = {"MatMul", 2, 2, 1, 1, check, infer, {&kMatMulOnednn, &kMatMulRef}};

}  // namespace atrous
