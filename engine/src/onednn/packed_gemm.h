// y[M×N] = act(x[M×K] · Wᵀ (+ bias)) for custom kernels whose weight W [N×K] is a
// constant of the model. W is packed once, at plan time, into the layout oneDNN's
// inner product prefers (the path linear_onednn takes), so each call runs oneDNN's
// JIT kernel on ready weights; sgemm() re-packs both operands on every call and
// allocates its packing buffers each time.
//
// For kernels that project into their own buffers (attention, window attention).
// This header keeps oneDNN out of the ops: the primitive lives behind Impl.
#pragma once

#include <cstdint>
#include <memory>

#include "plan/kernel.h"

namespace atrous {

class PackedGemm {
 public:
  // Null, not an error, when w is not constant data (ctx.constant) or oneDNN declines
  // the shape: the caller keeps its sgemm path. M is fixed (plans are per shape).
  // slots: how many Bounds may run at the same time (each gets its own scratchpad;
  // the packed weights are shared).
  // share: a PackedGemm made from the same w_constant for another M; its packed
  // weights are reused when oneDNN wants the same layout for this M (else packed anew).
  // act: an activation applied to y in oneDNN's epilogue (an eltwise post-op), e.g. Silu;
  // null when oneDNN has no post-op for it.
  static std::unique_ptr<PackedGemm> create(KernelContext& ctx, int64_t M, int64_t K, int64_t N, const void* w_constant,
                                            bool has_bias, int slots = 1, const PackedGemm* share = nullptr,
                                            fb::ActKind act = fb::ActKind::None);
  ~PackedGemm();
  PackedGemm(const PackedGemm&) = delete;
  PackedGemm& operator=(const PackedGemm&) = delete;

  // One call's oneDNN memory objects and argument list, made once per session in the
  // kernel's bind() so that run() creates nothing.
  class Bound {
   public:
    ~Bound();
    // Runs on the session's threads; call it outside OpenMP parallel regions.
    Status run() const;
    // Runs on other rows: x and y replace the pointers given to bind() (same shapes).
    // Inside a parallel region it runs on the calling thread. One Bound serves one
    // thread at a time (the pointers live in it).
    Status run_on(const float* x, float* y) const;

   private:
    friend class PackedGemm;
    Bound();
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  // x: M contiguous rows of K floats; y: M contiguous rows of N floats; bias: N floats
  // (required when created with has_bias, ignored otherwise). Scratch comes from the
  // step's buffers (requested at create).
  // slot: which of the `slots` scratchpads this Bound uses (Bounds running concurrently
  // need different slots).
  Result<std::unique_ptr<Bound>> bind(const float* x, const float* bias, float* y, const RunBuffers& b, int slot = 0) const;

 private:
  PackedGemm();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace atrous
