// Transpose: output dim k is input dim perm[k]. Any dtype.
//
// The reference kernel first simplifies the permutation: dims of size 1 are
// dropped and runs of input dims that stay adjacent and in order are merged
// (NCHW -> NHWC becomes [C, HW] -> [HW, C] per batch). Then either the last
// dim is still innermost and whole rows are copied, or the problem is a batch
// of 2-D transposes between the output's last dim and the output dim that is
// innermost in the input, done in square tiles so both sides stay in cache.
// transpose_avx512 does that batch of 2-D transposes for 4-byte elements with
// 16×16 tiles transposed in registers (16 loads, 64 shuffles, 16 stores), the
// rows left below a multiple of 16 with 16-wide gathers, the last columns of a
// block one by one; it declines output rows shorter than 16, problems
// that are only row copies, other element sizes and CPUs without AVX-512.
// transpose_gather takes the output rows shorter than 16 (e.g. SAM's mask pixels
// reordered from [4, 64, 64, 2, 2, 2, 2] nesting to row-major, runs of 2 floats): the
// innermost output dims form a block of at least 256 elements whose input offsets are
// tabulated at plan time, and each block is one table-driven 16-lane gather loop.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

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

// The simplified problem both kernels work on.
struct Layout {
  Layout(const Shape& in, const std::vector<int>& perm) {
    Shape s;
    std::vector<int> p;
    simplify(in, perm, &s, &p);
    const size_t r = s.size();
    std::vector<int64_t> in_stride(r, 1);
    for (size_t i = r; i-- > 1;) in_stride[i - 1] = in_stride[i] * s[i];
    for (size_t k = 0; k < r; ++k) {
      od.push_back(s[static_cast<size_t>(p[k])]);
      is.push_back(in_stride[static_cast<size_t>(p[k])]);
    }
    os.assign(r, 1);
    for (size_t k = r; k-- > 1;) os[k - 1] = os[k] * od[k];
    for (int64_t d : od) total *= d;
    if (r >= 2 && p[r - 1] != static_cast<int>(r) - 1)
      q = static_cast<int>(std::find(p.begin(), p.end(), static_cast<int>(r) - 1) - p.begin());
  }
  // Offsets of 2-D problem `o` (of total / (od[q] · od[r-1])) in the input and output.
  void offsets(int64_t o, int64_t* ioff, int64_t* ooff) const {
    *ioff = *ooff = 0;
    for (size_t d = od.size() - 1; d-- > 0;) {
      if (static_cast<int>(d) == q) continue;
      const int64_t idx = o % od[d];
      o /= od[d];
      *ioff += idx * is[d];
      *ooff += idx * os[d];
    }
  }
  // The batch of 2-D transposes (q >= 0) in tiles of `tile` × `tile`, in parallel:
  // f(ioff, ooff, q0, q1, l0, l1) for output rows [q0, q1) of dim q and columns
  // [l0, l1) of the last dim of the 2-D problem at input / output offsets ioff / ooff.
  template <class F>
  void for_each_tile(int64_t tile, F&& f) const {
    const size_t r = od.size(), qd = static_cast<size_t>(q);
    const int64_t nq = od[qd], nl = od[r - 1];
    const int64_t outer = total / (nq * nl), tiles_q = (nq + tile - 1) / tile;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t tq = 0; tq < tiles_q; ++tq) {
        int64_t ioff, ooff;
        offsets(o, &ioff, &ooff);
        const int64_t q0 = tq * tile, q1 = std::min(nq, q0 + tile);
        for (int64_t l0 = 0; l0 < nl; l0 += tile) f(ioff, ooff, q0, q1, l0, std::min(nl, l0 + tile));
      }
    }
  }
  Shape od;                      // simplified output dims
  std::vector<int64_t> is, os;   // input / output stride per output dim
  int64_t total = 1;
  int q = -1;  // output dim that is innermost in the input (-1: the last one)
};

class TransposeRef : public Kernel {
 public:
  TransposeRef(const Shape& in, const std::vector<int>& perm, size_t elem) : elem_(elem), l_(in, perm) {}

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
    const size_t r = l_.od.size();
    if (r <= 1) {  // nothing moves
      std::memcpy(dst, src, static_cast<size_t>(l_.total) * sizeof(T));
      return;
    }
    if (l_.q < 0) {  // last dim still innermost: copy rows
      const int64_t inner = l_.od[r - 1], rows = l_.total / inner;
#pragma omp parallel for schedule(static)
      for (int64_t row = 0; row < rows; ++row) {
        int64_t off = 0, rem = row;
        for (size_t d = r - 1; d-- > 0;) {
          off += (rem % l_.od[d]) * l_.is[d];
          rem /= l_.od[d];
        }
        std::memcpy(dst + row * inner, src + off, static_cast<size_t>(inner) * sizeof(T));
      }
      return;
    }
    // Batch of 2-D transposes between output dims q (input-contiguous) and r-1.
    const int64_t osq = l_.os[static_cast<size_t>(l_.q)], isl = l_.is[r - 1];
    l_.for_each_tile(kTile, [&](int64_t ioff, int64_t ooff, int64_t q0, int64_t q1, int64_t l0, int64_t l1) {
      for (int64_t iq = q0; iq < q1; ++iq)
        for (int64_t il = l0; il < l1; ++il) dst[ooff + iq * osq + il] = src[ioff + iq + il * isl];
    });
  }

  size_t elem_;
  Layout l_;
};

// ---- AVX-512 kernel ------------------------------------------------------------
// dst[i * lds + j] = src[j * ldi + i] for a 16 × 16 block of floats. (GCC 12 warns
// about the _mm512_undefined_ps() inside its own shuffle intrinsics: silenced here.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) void block16(const float* src, int64_t ldi, float* dst, int64_t lds) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ldi);
  // 32-bit interleave of row pairs, 64-bit interleave of pairs of pairs, then the
  // 128-bit lanes: after the three stages row k holds column k.
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);          // 64-bit halves 0 of both
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);      // 64-bit halves 1 of both
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  // r[4a + b] holds, in 128-bit lane L, elements b of rows 4L'..: combine lanes across groups.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);       // lanes 0, 2 of r[i], then of r[4+i]
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);   // lanes 1, 3
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);        // output column i      (lane 0 of each quarter)
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);    // output column 8 + i
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * lds, r[i]);
}
#pragma GCC diagnostic pop

// dst[j] = src[j * ld] for j in [j0, j1): 16 at a time with a gather (the rows
// left over below a multiple of 16, e.g. all four rows of a [pixels, 4] -> [4, pixels]
// transpose). Needs 15 · ld to fit an int32 index.
__attribute__((target("avx512f"))) void gather_row(const float* src, int64_t ld, float* dst, int64_t j0, int64_t j1) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(static_cast<int>(ld)));
  int64_t j = j0;
  for (; j + 16 <= j1; j += 16)
    _mm512_storeu_ps(dst + j, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, idx, src + j * ld, 4));
  if (j < j1) {
    const __mmask16 m = static_cast<__mmask16>((1u << (j1 - j)) - 1u);
    _mm512_mask_storeu_ps(dst + j, m, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src + j * ld, 4));
  }
}

class TransposeAvx512 : public Kernel {
 public:
  explicit TransposeAvx512(Layout l) : l_(std::move(l)) {
    gather_ok_ = 15 * l_.is[l_.od.size() - 1] <= std::numeric_limits<int32_t>::max();
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    float* dst = static_cast<float*>(b.out[0]);
    const int64_t osq = l_.os[static_cast<size_t>(l_.q)], isl = l_.is[l_.od.size() - 1];
    l_.for_each_tile(kTile, [&](int64_t ioff, int64_t ooff, int64_t q0, int64_t q1, int64_t l0, int64_t l1) {
      const float* s = src + ioff;
      float* d = dst + ooff;
      int64_t iq = q0;
      for (; iq + 16 <= q1; iq += 16) {
        int64_t il = l0;
        for (; il + 16 <= l1; il += 16) block16(s + iq + il * isl, isl, d + iq * osq + il, osq);
        for (int64_t k = iq; k < iq + 16; ++k)
          for (int64_t j = il; j < l1; ++j) d[k * osq + j] = s[k + j * isl];
      }
      for (; iq < q1; ++iq) {
        if (gather_ok_) gather_row(s + iq, isl, d + iq * osq, l0, l1);
        else
          for (int64_t j = l0; j < l1; ++j) d[iq * osq + j] = s[iq + j * isl];
      }
    });
    return Status::Ok();
  }

 private:
  static constexpr int64_t kTile = 64;  // 16 blocks of 16 × 16 per tile pair
  Layout l_;
  bool gather_ok_ = false;
};

Result<std::unique_ptr<Kernel>> create_avx512(KernelContext& ctx) {
  if (dtype_size(ctx.in[0].dtype) != 4) return KernelContext::decline("elements are not 4 bytes");
  if (!__builtin_cpu_supports("avx512f")) return KernelContext::decline("this CPU lacks AVX-512");
  Layout l(ctx.in[0].shape, ctx.attrs<fb::TransposeT>().perm);
  if (l.q < 0) return KernelContext::decline("the innermost dim stays innermost (a row copy)");
  if (l.od.back() < 16) return KernelContext::decline("output rows shorter than 16 elements");
  return std::unique_ptr<Kernel>(new TransposeAvx512(std::move(l)));
}

// dst[j] = src[table[j]] for j < n, 16 lanes at a time. (The gather intrinsic starts
// from _mm512_undefined_ps(), which GCC 12 warns about: silenced as above.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void gather_block(const float* src, const int32_t* table, float* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm512_storeu_ps(dst + j, _mm512_i32gather_ps(_mm512_loadu_si512(table + j), src, 4));
  if (j < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - j)) - 1u);
    _mm512_mask_storeu_ps(dst + j, m, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_maskz_loadu_epi32(m, table + j), src, 4));
  }
}
#pragma GCC diagnostic pop

class TransposeGather : public Kernel {
 public:
  static constexpr int64_t kMinBlock = 256, kMaxBlock = 1 << 16;
  // The block: the innermost output dims from `first` on (output-contiguous).
  TransposeGather(Layout l, size_t first) : l_(std::move(l)), first_(first) {
    block_ = 1;
    for (size_t d = first_; d < l_.od.size(); ++d) block_ *= l_.od[d];
    table_.resize(static_cast<size_t>(block_));
    for (int64_t j = 0; j < block_; ++j) {
      int64_t rest = j, off = 0;
      for (size_t d = l_.od.size(); d-- > first_;) {
        off += rest % l_.od[d] * l_.is[d];
        rest /= l_.od[d];
      }
      table_[static_cast<size_t>(j)] = static_cast<int32_t>(off);
    }
  }

  Status run(const RunBuffers& b, KernelState*) const override {
    const float* src = static_cast<const float*>(b.in[0]);
    float* dst = static_cast<float*>(b.out[0]);
    const int64_t outer = l_.total / block_;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      int64_t rest = o, ioff = 0;
      for (size_t d = first_; d-- > 0;) {
        ioff += rest % l_.od[d] * l_.is[d];
        rest /= l_.od[d];
      }
      gather_block(src + ioff, table_.data(), dst + o * block_, block_);
    }
    return Status::Ok();
  }
  std::string detail() const override { return "blocks of " + std::to_string(block_) + " elements through a gather table"; }

 private:
  Layout l_;
  size_t first_ = 0;
  int64_t block_ = 1;
  std::vector<int32_t> table_;
};

Result<std::unique_ptr<Kernel>> create_gather(KernelContext& ctx) {
  if (dtype_size(ctx.in[0].dtype) != 4) return KernelContext::decline("elements are not 4 bytes");
  if (!__builtin_cpu_supports("avx512f")) return KernelContext::decline("this CPU lacks AVX-512");
  Layout l(ctx.in[0].shape, ctx.attrs<fb::TransposeT>().perm);
  if (l.od.size() < 2) return KernelContext::decline("nothing to transpose");
  if (l.od.back() >= 16) return KernelContext::decline("output rows of 16 or more elements (row copies or 2-D tiles serve them)");
  if (l.total > std::numeric_limits<int32_t>::max()) return KernelContext::decline("input too large for 32-bit gather offsets");
  size_t first = l.od.size();
  int64_t block = 1;
  while (first > 0 && block < TransposeGather::kMinBlock) block *= l.od[--first];
  if (block < TransposeGather::kMinBlock) return KernelContext::decline("fewer than 256 elements");
  if (block > TransposeGather::kMaxBlock) return KernelContext::decline("no block of 256-65536 innermost output elements");
  return std::unique_ptr<Kernel>(new TransposeGather(std::move(l), first));
}

Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) {
  return std::unique_ptr<Kernel>(
      new TransposeRef(ctx.in[0].shape, ctx.attrs<fb::TransposeT>().perm, dtype_size(ctx.in[0].dtype)));
}

const KernelDef kTransposeAvx512 = {"transpose_avx512", false, create_avx512};
const KernelDef kTransposeGather = {"transpose_gather", false, create_gather};
const KernelDef kTransposeRef = {"transpose_ref", false, create_ref};

}  // namespace

const OpDef kTransposeOp = {"Transpose", 1, 1, 1, 1, check, infer, {&kTransposeAvx512, &kTransposeGather, &kTransposeRef}};

}  // namespace atrous
