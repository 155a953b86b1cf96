// One direction of Mamba's path between in_proj and out_proj, shared by the
// MambaScan and BiMambaScan ops:
//   x, z = split(xz); u = SiLU(conv1d(x) + conv_bias)   (depthwise, causal; anti-causal when reversed)
//   dt, B, C = split(u · x_projᵀ, [R, N, N]); delta = softplus(dt · dt_projᵀ + dt_bias)
//   h_t = exp(delta_t A) ⊙ h_{t-1} + delta_t B_t u_t;  y_t = (C_t · h_t + D u_t) ⊙ SiLU(z_t)
//
// Two implementations of the same math:
//  - run_mamba_path(): time-chunked (kMambaChunk steps at a time, so a chunk's u,
//    x_proj output and delta stay in L2), projections through oneDNN sgemm, conv and
//    scan through an instruction-set table (ssm_kernels.h). One parallel region; each
//    thread owns a slice of the channels for the whole sequence (its part of the state
//    stays in its cache) and threads meet once per chunk, to sum the x_proj partials.
//  - run_mamba_path_ref(): plain scalar loops, one time step at a time, in the layout of
//    mamba_ssm (state [Di, N]). The reference every other kernel is tested against.
// Weights are prepared once at plan time (A = -exp(A_log), transposed copies) into
// plan-owned memory; both runs only read them and write the caller's buffers and scratch.
#pragma once

#include <cstdint>

#include "ops/op_registry.h"
#include "ops/ssm_kernels.h"

namespace atrous {

struct MambaDims {
  int64_t batch = 0, L = 0;   // sequences and their length (H·W for a feature map)
  int64_t Di = 0, N = 0;      // inner channels, state size
  int64_t R = 0, K = 0;       // dt rank, conv taps
  int64_t Cp = 0;             // Di rounded up to 16
};

// The seven weights of one direction start at node input `first`: conv_weight [Di, 1, K]
// (or [Di, K]), conv_bias [Di] (opt), x_proj_weight [R + 2N, Di], dt_proj_weight [Di, R],
// dt_proj_bias [Di] (opt), A_log [Di, N], D [Di] (opt). All constants, f32.
constexpr int kMambaWeightInputs = 7;
Status check_mamba_weights(CheckContext& ctx, int first, MambaDims* dims);
// Checks xz ([B, L, 2·Di] or [B, H, W, 2·Di]) against the weights; fills batch and L.
Status infer_mamba_input(ShapeContext& ctx, int first, MambaDims* dims);
// Dims from a planned node (shapes already checked).
MambaDims mamba_dims(const KernelContext& ctx, int first);

struct MambaWeights {
  const float* conv_w = nullptr;   // [Di, K]
  const float* conv_wt = nullptr;  // [K, Di] (plan-owned)
  const float* conv_b = nullptr;   // [Di] or null
  const float* x_proj = nullptr;   // [R + 2N, Di]
  const float* dt_proj = nullptr;  // [Di, R]
  const float* dt_bias = nullptr;  // [Di] or null
  const float* A = nullptr;        // [Di, N] = -exp(A_log) (plan-owned)
  const float* A2_t = nullptr;     // [N, Cp] = A·log2(e), zero padding (plan-owned)
  const float* D = nullptr;        // [Di] or null
};
Result<MambaWeights> prepare_mamba_weights(KernelContext& ctx, int first, const MambaDims& d);

// What one direction reads and writes for one sequence.
struct MambaPathIO {
  const float* xz = nullptr;          // [L, 2·Di]
  const float* conv_state = nullptr;  // [Di, K]: the K inputs before this sequence, oldest first; null = zeros
  const float* ssm_state = nullptr;   // [Di, N]; null = zeros
  float* y = nullptr;                 // [L, Di]
  float* conv_state_out = nullptr;    // [Di, K] or null
  float* ssm_state_out = nullptr;     // [Di, N] or null
  bool reverse = false;               // scan from the last step to the first (states must be null)
  float out_scale = 1.0f;             // y is scaled by this
  bool accumulate = false;            // y += instead of y =
};

// Time steps per chunk. Measured on the 130M shape (d_inner 1536, L 2048, 2 threads):
// 256 beat 128 and 512 (fewer barriers; a thread's u and delta, 256 × 768 × 4 B each,
// still fit its 2 MiB L2); docs/performance.md.
constexpr int64_t kMambaChunk = 256;
// Below this many multiply-adds (L · d_inner · (N + R + 2N)) a sequence runs on one thread.
constexpr int64_t kMambaSerialWork = int64_t{1} << 20;

// Scratch of run_mamba_path, requested at plan time.
struct MambaPathScratch {
  int threads = 1;  // the plan's thread count: per-thread buffers are sized for it
  int u = -1, delta = -1, part = -1, xdbl = -1, h = -1, conv_state_t = -1;
  void request(KernelContext& ctx, const MambaDims& d);
};
Status run_mamba_path(const ssm::SsmIsa& isa, const MambaDims& d, const MambaWeights& w, const MambaPathIO& io,
                      const RunBuffers& bufs, const MambaPathScratch& s);

// Floats of work memory run_mamba_path_ref needs.
int64_t mamba_path_ref_work(const MambaDims& d);
void run_mamba_path_ref(const MambaDims& d, const MambaWeights& w, const MambaPathIO& io, float* work);

}  // namespace atrous
