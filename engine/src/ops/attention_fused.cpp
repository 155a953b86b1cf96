// The fused mode of ProjectedHeadsKernel (attention_common.h): per group of adjacent
// heads, block by block, the q/k/v projections of those heads, φ and the linear core,
// with the block still in cache. Used by LinearAttention and NormAttention's linear
// form: their *_fused kernels with the projection weights packed at plan time (oneDNN
// inner products), linear_attention_chunked and norm_attention_gemm with sgemm on the
// weights in place (for shapes oneDNN has no packed form for).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <array>
#include <map>
#include <vector>

#include "ops/attention_common.h"

namespace atrous::attn {

struct ProjectedHeadsKernel::Fused {
  static constexpr int64_t kRows = 256;  // tokens per block (a multiple of the causal chunk)
  static_assert(kRows % kCausalChunk == 0, "blocks must hold whole causal chunks");
  LinearCore core{LinearCoreShape{}};
  int kv_input = -1, z_input = -1;
  bool packed = true;  // false: the projections are sgemm calls on the weights in place
  // Query blocks per output-projection interval (one barrier each). 1, 4 and 16 measured
  // alike (docs/performance.md): the barrier is not what costs.
  static constexpr int64_t kOutBlocks = 1;
  int64_t q_rows = 1, k_rows = 1;  // block rows (min(kRows, length))
  int64_t out_rows = 1;            // interval rows (min(kOutBlocks · q_rows, lq))
  struct Group {
    int64_t h0 = 0, h1 = 0;  // heads [h0, h1)
    // Packed: [0] a whole block, [1] the last, shorter block of each batch (null if none)
    std::unique_ptr<PackedGemm> q[2], k[2], v[2];
    int scratch = -1;
  };
  std::vector<Group> groups;
  // The output projection, block by block: rows of a block split into `parts` (one per
  // planned thread); one PackedGemm per distinct row count.
  int64_t parts = 1;
  std::map<int64_t, std::unique_ptr<PackedGemm>> out;
  int ob_scratch = -1;  // two O intervals [out_rows, inner_v] (double-buffered)
  static std::pair<int64_t, int64_t> part(int64_t rows, int64_t p, int64_t parts) {
    return {rows * p / parts, rows * (p + 1) / parts};
  }
  int64_t group_floats(const Group& g, const ProjShapes& s) const {
    const int64_t hg = g.h1 - g.h0;
    const int64_t core_scratch = std::max(core.scratch_floats(), core.read_scratch_floats());
    return q_rows * hg * s.d + k_rows * hg * (s.d + s.m) + hg * core.state_floats() + core_scratch;
  }
};

struct ProjectedHeadsKernel::FusedBound : KernelState {
  struct Group {
    std::unique_ptr<PackedGemm::Bound> q[2], k[2], v[2];
  };
  std::vector<Group> groups;
  // Per part: [0] its rows of a whole block, [1] of the last, shorter block (null where empty).
  std::vector<std::array<std::unique_ptr<PackedGemm::Bound>, 2>> out;
};

Status ProjectedHeadsKernel::enable_fused(KernelContext& ctx, const LinearCore& core, int kv_input, int z_input,
                                          bool packed) {
  auto f = std::make_shared<Fused>();
  f->core = core;
  f->kv_input = kv_input;
  f->z_input = z_input;
  f->packed = packed;
  f->q_rows = std::min(Fused::kRows, s_.lq);
  f->out_rows = std::min(Fused::kOutBlocks * f->q_rows, s_.lq);
  f->k_rows = std::min(Fused::kRows, s_.lk);
  const int64_t groups = std::min<int64_t>(threads_, s_.heads);
  auto weights = [&](int w, int64_t row) -> const void* {
    if (w >= static_cast<int>(ctx.constant.size()) || !ctx.constant[static_cast<size_t>(w)]) return nullptr;
    return static_cast<const float*>(ctx.constant[static_cast<size_t>(w)]) + row;
  };
  for (int64_t g = 0; g < groups; ++g) {
    Fused::Group gr;
    gr.h0 = g * s_.heads / groups;
    gr.h1 = (g + 1) * s_.heads / groups;
    const int64_t nq = (gr.h1 - gr.h0) * s_.d, nv = (gr.h1 - gr.h0) * s_.m;
    const int64_t q_tail = s_.lq % f->q_rows, k_tail = s_.lk % f->k_rows;
    for (int t = 0; t < 2 && packed; ++t) {
      const int64_t qm = t == 0 ? f->q_rows : q_tail, km = t == 0 ? f->k_rows : k_tail;
      // The tail block's projections reuse the full block's packed weights.
      if (qm > 0) {
        gr.q[t] = PackedGemm::create(ctx, qm, s_.eq, nq, weights(kWq, gr.h0 * s_.d * s_.eq), present(ctx, kBq), 1,
                                     gr.q[0].get());
        if (!gr.q[t]) return KernelContext::decline("oneDNN declined a head group's query projection");
      }
      if (km > 0) {
        gr.k[t] = PackedGemm::create(ctx, km, s_.ek, nq, weights(kWk, gr.h0 * s_.d * s_.ek), present(ctx, kBk), 1,
                                     gr.k[0].get());
        gr.v[t] = PackedGemm::create(ctx, km, s_.ev, nv, weights(kWv, gr.h0 * s_.m * s_.ev), present(ctx, kBv), 1,
                                     gr.v[0].get());
        if (!gr.k[t] || !gr.v[t]) return KernelContext::decline("oneDNN declined a head group's key or value projection");
      }
    }
    f->groups.push_back(std::move(gr));
  }
  f->parts = threads_;
  const void* wo = weights(kWo, 0);
  for (int64_t rows : {f->out_rows, s_.lq % f->out_rows}) {
    if (rows == 0 || !packed) continue;
    for (int64_t p = 0; p < f->parts; ++p) {
      const auto [r0, r1] = Fused::part(rows, p, f->parts);
      if (r1 == r0 || f->out.count(r1 - r0)) continue;
      const PackedGemm* share = f->out.empty() ? nullptr : f->out.begin()->second.get();
      f->out[r1 - r0] = PackedGemm::create(ctx, r1 - r0, s_.inner_v, s_.eo, wo, present(ctx, kBo), static_cast<int>(f->parts), share);
      if (!f->out[r1 - r0]) return KernelContext::decline("oneDNN declined the output projection of a block");
    }
  }
  fused_ = std::move(f);
  return Status::Ok();
}

void ProjectedHeadsKernel::request_fused_scratch(KernelContext& ctx) {
  const uint64_t f = sizeof(float);
  fused_->ob_scratch = ctx.scratch(f * 2 * fused_->out_rows * s_.inner_v);
  for (auto& g : fused_->groups) g.scratch = ctx.scratch(f * static_cast<uint64_t>(fused_->group_floats(g, s_)));
}

Result<std::unique_ptr<KernelState>> ProjectedHeadsKernel::bind_fused(const RunBuffers& b) const {
  auto fb = std::make_unique<FusedBound>();
  auto in = [&](int i) { return input_or_null(b, i); };
  const float* xq = in(kQuery);
  const float* xk = in(kKey) ? in(kKey) : xq;
  const float* xv = in(kValue) ? in(kValue) : xk;
  for (const auto& g : fused_->groups) {
    float* qb = static_cast<float*>(b.scratch[static_cast<size_t>(g.scratch)]);
    float* kb = qb + fused_->q_rows * (g.h1 - g.h0) * s_.d;
    float* vb = kb + fused_->k_rows * (g.h1 - g.h0) * s_.d;
    auto bias = [&](int i, int64_t off) { return in(i) ? in(i) + off : nullptr; };
    FusedBound::Group bg;
    for (int t = 0; t < 2; ++t) {
      if (g.q[t]) {
        ATROUS_ASSIGN_OR_RETURN(bg.q[t], g.q[t]->bind(xq, bias(kBq, g.h0 * s_.d), qb, b));
      }
      if (g.k[t]) {
        ATROUS_ASSIGN_OR_RETURN(bg.k[t], g.k[t]->bind(xk, bias(kBk, g.h0 * s_.d), kb, b));
      }
      if (g.v[t]) {
        ATROUS_ASSIGN_OR_RETURN(bg.v[t], g.v[t]->bind(xv, bias(kBv, g.h0 * s_.m), vb, b));
      }
    }
    fb->groups.push_back(std::move(bg));
  }
  const float* ob = static_cast<const float*>(b.scratch[static_cast<size_t>(fused_->ob_scratch)]);
  fb->out.resize(static_cast<size_t>(fused_->parts));
  const int64_t block_rows[2] = {fused_->out_rows, s_.lq % fused_->out_rows};
  for (int64_t p = 0; p < fused_->parts; ++p)
    for (int t = 0; t < 2; ++t) {
      const auto [r0, r1] = Fused::part(block_rows[t], p, fused_->parts);
      if (r1 == r0 || !fused_->packed) continue;
      ATROUS_ASSIGN_OR_RETURN(fb->out[static_cast<size_t>(p)][static_cast<size_t>(t)],
                              fused_->out.at(r1 - r0)->bind(ob, in(kBo), static_cast<float*>(b.out[0]), b, static_cast<int>(p)));
    }
  return std::unique_ptr<KernelState>(std::move(fb));
}

// One thread's share of the fused run: the head groups g ≡ tid (mod nthr) and, after
// each block's barrier, the parts p ≡ tid (mod nthr) of that block's output projection.
// Every thread passes the same barriers; a failure is recorded and the loops go on.
Status ProjectedHeadsKernel::run_fused(const RunBuffers& b, const KernelState* state) const {
  const auto& fb = *static_cast<const FusedBound*>(state);
  const Fused& f = *fused_;
  const int64_t G = static_cast<int64_t>(f.groups.size()), D = s_.d, M = s_.m;
  const LinearCore& core = f.core;
  const int64_t sf = core.state_floats();
  auto in = [&](int i) { return input_or_null(b, i); };
  const float* xq = in(kQuery);
  const float* xk = in(kKey) ? in(kKey) : xq;
  const float* xv = in(kValue) ? in(kValue) : xk;
  const bool with_z = f.z_input >= 0;
  const float* kv_in = f.kv_input >= 0 ? in(f.kv_input) : nullptr;
  const float* z_in = with_z ? in(f.z_input) : nullptr;
  float* kv_out = output_or_null(b, 1);
  float* z_out = with_z ? output_or_null(b, 2) : nullptr;
  float* y = static_cast<float*>(b.out[0]);
  float* obuf = static_cast<float*>(b.scratch[static_cast<size_t>(f.ob_scratch)]);
  std::atomic<bool> failed{false};
  auto check = [&](const Status& st) {
    if (!st.ok()) failed = true;
  };
#pragma omp parallel num_threads(threads_)
  {
    const int64_t tid = omp_get_thread_num(), nthr = omp_get_num_threads();
    // Group g's buffers: q, k, v blocks, its heads' states, the core's scratch.
    struct View {
      const Fused::Group* g;
      const FusedBound::Group* bg;
      int64_t hg, nq, nv;
      float *qb, *kb, *vb, *st, *cs;
    };
    auto view = [&](int64_t gi) {
      const Fused::Group& g = f.groups[static_cast<size_t>(gi)];
      View v;
      v.g = &g;
      v.bg = &fb.groups[static_cast<size_t>(gi)];
      v.hg = g.h1 - g.h0;
      v.nq = v.hg * D;
      v.nv = v.hg * M;
      v.qb = static_cast<float*>(b.scratch[static_cast<size_t>(g.scratch)]);
      v.kb = v.qb + f.q_rows * v.nq;
      v.vb = v.kb + f.k_rows * v.nq;
      v.st = v.vb + f.k_rows * v.nv;
      v.cs = v.st + v.hg * sf;
      return v;
    };
    auto each_group = [&](auto&& fn) {  // this thread's groups
      for (int64_t gi = tid; gi < G; gi += nthr) fn(view(gi));
    };
    // dst [rows, n] = x [rows, e] · W[row0 : row0 + n]ᵀ + bias[row0 : row0 + n]: the packed
    // product when there is one, else sgemm on this thread.
    auto project_block = [&](const std::unique_ptr<PackedGemm::Bound>& packed, const float* x, int64_t rows, int64_t e,
                             int w, int bias, int64_t row0, int64_t n, float* dst) {
      if (packed) return check(packed->run_on(x, dst));
      const float* bv = in(bias);
      check(project(x, rows, e, e, in(w) + row0 * e, bv ? bv + row0 : nullptr, n, dst, n));
    };
    auto keys = [&](const View& v, int64_t bi, int64_t r0, int64_t rows) {
      const int t = rows == f.k_rows ? 0 : 1;
      project_block(v.bg->k[t], xk + (bi * s_.lk + r0) * s_.ek, rows, s_.ek, kWk, kBk, v.g->h0 * D, v.nq, v.kb);
      project_block(v.bg->v[t], xv + (bi * s_.lk + r0) * s_.ev, rows, s_.ev, kWv, kBv, v.g->h0 * M, v.nv, v.vb);
      feature(v.kb, rows * v.nq);
    };
    auto queries = [&](const View& v, int64_t bi, int64_t r0, int64_t rows) {
      project_block(v.bg->q[rows == f.q_rows ? 0 : 1], xq + (bi * s_.lq + r0) * s_.eq, rows, s_.eq, kWq, kBq, v.g->h0 * D,
                    v.nq, v.qb);
      feature(v.qb, rows * v.nq);
    };
    int64_t blk = 0;  // intervals so far, over all batch items: picks the O buffer
    for (int64_t bi = 0; bi < s_.batch; ++bi) {
      each_group([&](const View& v) {
        for (int64_t j = 0; j < v.hg; ++j) {
          const int64_t bh = bi * s_.heads + v.g->h0 + j;
          state_in(kv_in ? kv_in + bh * D * M : nullptr, z_in ? z_in + bh * D : nullptr, D, M, with_z, v.st + j * sf);
        }
      });
      if (!core.shape().causal)  // every key into the states first
        each_group([&](const View& v) {
          for (int64_t r0 = 0; r0 < s_.lk; r0 += f.k_rows) {
            const int64_t rows = std::min(f.k_rows, s_.lk - r0);
            keys(v, bi, r0, rows);
            for (int64_t j = 0; j < v.hg; ++j) check(core.accumulate(v.kb + j * D, v.nq, v.vb + j * M, v.nv, rows, v.st + j * sf));
          }
        });
      for (int64_t o0 = 0; o0 < s_.lq; o0 += f.out_rows, ++blk) {
        const int64_t orows = std::min(f.out_rows, s_.lq - o0);
        float* ob = obuf + (blk % 2) * f.out_rows * s_.inner_v;  // [orows, inner_v]
        each_group([&](const View& v) {
          for (int64_t r0 = o0; r0 < o0 + orows; r0 += f.q_rows) {
            const int64_t rows = std::min(f.q_rows, s_.lq - r0);
            if (core.shape().causal) keys(v, bi, r0, rows);
            queries(v, bi, r0, rows);
            const LinearCore block = core.with_rows(rows, rows);
            for (int64_t j = 0; j < v.hg; ++j) {
              float* o = ob + (r0 - o0) * s_.inner_v + (v.g->h0 + j) * M;
              if (core.shape().causal)
                check(block.run(v.qb + j * D, v.nq, v.kb + j * D, v.nq, v.vb + j * M, v.nv, o, s_.inner_v, v.st + j * sf, v.cs));
              else
                check(core.read(v.qb + j * D, v.nq, rows, o, s_.inner_v, v.st + j * sf, v.cs));
            }
          }
        });
        // Every head of the interval is in ob; the other buffer may still be read by a
        // thread projecting the previous interval, but no one writes it before the next barrier.
#pragma omp barrier
        for (int64_t p = tid; p < f.parts; p += nthr) {
          const auto [p0, p1] = Fused::part(orows, p, f.parts);
          if (p1 == p0) continue;
          after_rows(b, ob + p0 * s_.inner_v, p1 - p0);
          float* yp = y + (bi * s_.lq + o0 + p0) * s_.eo;
          if (f.packed) check(fb.out[static_cast<size_t>(p)][orows == f.out_rows ? 0 : 1]->run_on(ob + p0 * s_.inner_v, yp));
          else check(project(ob + p0 * s_.inner_v, p1 - p0, s_.inner_v, s_.inner_v, in(kWo), in(kBo), s_.eo, yp, s_.eo));
        }
      }
      if (kv_out)
        each_group([&](const View& v) {
          for (int64_t j = 0; j < v.hg; ++j) {
            const int64_t bh = bi * s_.heads + v.g->h0 + j;
            state_out(v.st + j * sf, D, M, with_z, kv_out + bh * D * M, z_out ? z_out + bh * D : nullptr);
          }
        });
    }
  }
  if (failed) return internal_error(std::string("a projection or GEMM failed in the fused ") + what_);
  return Status::Ok();
}

std::string ProjectedHeadsKernel::detail() const {
  if (!fused_) return {};
  return std::to_string(fused_->groups.size()) + " head groups, blocks of " + std::to_string(fused_->q_rows) +
         " tokens, output projection every " + std::to_string(fused_->out_rows) +
         (fused_->packed ? ", packed projections" : ", sgemm projections");
}

}  // namespace atrous::attn
