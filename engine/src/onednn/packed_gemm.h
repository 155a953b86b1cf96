// y[M×N] = x[M×K] · Wᵀ (+ bias) for custom kernels whose weight W [N×K] is a
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
  static std::unique_ptr<PackedGemm> create(KernelContext& ctx, int64_t M, int64_t K, int64_t N, const void* w_constant,
                                            bool has_bias);
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

   private:
    friend class PackedGemm;
    Bound();
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  // x: M contiguous rows of K floats; y: M contiguous rows of N floats; bias: N floats
  // (required when created with has_bias, ignored otherwise). Scratch comes from the
  // step's buffers (requested at create).
  Result<std::unique_ptr<Bound>> bind(const float* x, const float* bias, float* y, const RunBuffers& b) const;
  std::string detail() const;

 private:
  PackedGemm();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace atrous
