// Transpose: output dim k is input dim perm[k]. Any dtype.
//
// The reference kernel first simplifies the permutation: dims of size 1 are
// dropped and runs of input dims that stay adjacent and in order are merged
// (NCHW -> NHWC becomes [C, HW] -> [HW, C] per batch). Then either the last
// dim is still innermost and whole rows are copied, or the problem is a batch
// of 2-D transposes between the output's last dim and the output dim that is
// innermost in the input, done in square tiles so both sides stay in cache.
#include <algorithm>
#include <cstring>

#include "ops/op_registry.h"

namespace atrous {
namespace {

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  const auto& a = ctx.attrs<fb::TransposeT>();
  if (a.perm.size() > 16) return ctx.fail("rank above 16");
  std::vector<bool> seen(a.perm.size(), false);
  for (int p : a.perm) {
    if (p < 0 || p >= static_cast<int>(a.perm.size()) || seen[static_cast<size_t>(p)])
      return ctx.fail("perm must be a permutation of 0.." + std::to_string(static_cast<int>(a.perm.size()) - 1));
    seen[static_cast<size_t>(p)] = true;
  }
  ctx.out_dtypes = {ctx.dtype(0)};
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  const auto& a = ctx.attrs<fb::TransposeT>();
  const Shape& x = ctx.in[0];
  if (a.perm.size() != x.size())
    return ctx.fail("perm has " + std::to_string(a.perm.size()) + " entries, the input " + shape_string(x) +
                    " has rank " + std::to_string(x.size()));
  Shape y;
  for (int p : a.perm) y.push_back(x[static_cast<size_t>(p)]);
  ctx.out = {y};
  return Status::Ok();
}

// ---- reference kernel -------------------------------------------------------
// Drops size-1 dims and merges adjacent in-order runs; returns the simplified
// input shape and permutation.
void simplify(const Shape& in, const std::vector<int>& perm, Shape* s_in, std::vector<int>* s_perm) {
  std::vector<int> keep;  // input dims of size > 1, in output order
  for (int p : perm)
    if (in[static_cast<size_t>(p)] > 1) keep.push_back(p);
  // Groups of output-consecutive dims whose input dims are consecutive too.
  std::vector<std::pair<int, int64_t>> groups;  // (first input dim, merged size)
  for (size_t k = 0; k < keep.size(); ++k) {
    if (k > 0 && keep[k] == keep[k - 1] + 1)
      groups.back().second *= in[static_cast<size_t>(keep[k])];
    else
      groups.push_back({keep[k], in[static_cast<size_t>(keep[k])]});
  }
  // Input order of the groups gives the simplified input dims.
  std::vector<int> order(groups.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return groups[static_cast<size_t>(a)].first < groups[static_cast<size_t>(b)].first; });
  s_in->assign(groups.size(), 1);
  s_perm->assign(groups.size(), 0);
  for (size_t r = 0; r < order.size(); ++r) {
    (*s_in)[r] = groups[static_cast<size_t>(order[r])].second;
    (*s_perm)[static_cast<size_t>(order[r])] = static_cast<int>(r);
  }
}

class TransposeRef : public Kernel {
 public:
  TransposeRef(const Shape& in, const std::vector<int>& perm, size_t elem) : elem_(elem) {
    Shape s;
    std::vector<int> p;
    simplify(in, perm, &s, &p);
    const size_t r = s.size();
    std::vector<int64_t> in_stride(r, 1);
    for (size_t i = r; i-- > 1;) in_stride[i - 1] = in_stride[i] * s[i];
    for (size_t k = 0; k < r; ++k) {
      od_.push_back(s[static_cast<size_t>(p[k])]);
      is_.push_back(in_stride[static_cast<size_t>(p[k])]);
    }
    os_.assign(r, 1);
    for (size_t k = r; k-- > 1;) os_[k - 1] = os_[k] * od_[k];
    total_ = 1;
    for (int64_t d : od_) total_ *= d;
    if (r >= 2 && p[r - 1] != static_cast<int>(r) - 1)
      q_ = static_cast<int>(std::find(p.begin(), p.end(), static_cast<int>(r) - 1) - p.begin());
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
  static constexpr int64_t kTile = 32;

  template <class T>
  void copy(const RunBuffers& b) const {
    const T* src = static_cast<const T*>(b.in[0]);
    T* dst = static_cast<T*>(b.out[0]);
    const size_t r = od_.size();
    if (r <= 1) {  // nothing moves
      std::memcpy(dst, src, static_cast<size_t>(total_) * sizeof(T));
      return;
    }
    if (q_ < 0) {  // last dim still innermost: copy rows
      const int64_t inner = od_[r - 1], rows = total_ / inner;
#pragma omp parallel for schedule(static)
      for (int64_t row = 0; row < rows; ++row) {
        int64_t off = 0, rem = row;
        for (size_t d = r - 1; d-- > 0;) {
          off += (rem % od_[d]) * is_[d];
          rem /= od_[d];
        }
        std::memcpy(dst + row * inner, src + off, static_cast<size_t>(inner) * sizeof(T));
      }
      return;
    }
    // Batch of 2-D transposes between output dims q (input-contiguous) and r-1.
    const size_t q = static_cast<size_t>(q_);
    const int64_t nq = od_[q], nl = od_[r - 1], osq = os_[q], isl = is_[r - 1];
    const int64_t outer = total_ / (nq * nl), tiles_q = (nq + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t tq = 0; tq < tiles_q; ++tq) {
        int64_t ioff = 0, ooff = 0, rem = o;
        for (size_t d = r - 1; d-- > 0;) {
          if (d == q) continue;
          int64_t idx = rem % od_[d];
          rem /= od_[d];
          ioff += idx * is_[d];
          ooff += idx * os_[d];
        }
        const int64_t q0 = tq * kTile, q1 = std::min(nq, q0 + kTile);
        for (int64_t l0 = 0; l0 < nl; l0 += kTile) {
          const int64_t l1 = std::min(nl, l0 + kTile);
          for (int64_t iq = q0; iq < q1; ++iq)
            for (int64_t il = l0; il < l1; ++il) dst[ooff + iq * osq + il] = src[ioff + iq + il * isl];
        }
      }
    }
  }

  size_t elem_;
  Shape od_;                      // simplified output dims
  std::vector<int64_t> is_, os_;  // input / output stride per output dim
  int64_t total_ = 1;
  int q_ = -1;  // output dim that is innermost in the input (-1: the last one)
};

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(
      new TransposeRef(ctx.in[0].shape, ctx.attrs<fb::TransposeT>().perm, dtype_size(ctx.in[0].dtype)));
}

const KernelDef kTransposeRef = {"transpose_ref", false, create_ref};

}  // namespace

const OpDef kTransposeOp = {"Transpose", 1, 1, 1, 1, check, infer, {&kTransposeRef}};

}  // namespace atrous
