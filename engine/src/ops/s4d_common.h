// Shared pieces of the S4D op's kernels (s4d.cpp: recurrent reference;
// s4d_conv.cpp: FFT and direct convolution).
//
// Discretisation (state-spaces/s4 models/s4/s4d.py, zero-order hold, B = 1):
//   dt = exp(log_dt), A = -exp(log_A_real) + i·A_imag, dA = exp(dt·A), dB = (dA - 1)/A
//   state:  x_t = dA ⊙ x_{t-1} + dB·u_t        y_t = factor·Re(C · x_t) + D·u_t
//   kernel: K[l] = factor·Re Σ_n C_n dB_n dA_n^l
// factor is 2 for complex modes (only one of each conjugate pair is kept) and 1 in
// real mode (C real [H, N], A real). Everything is computed once at plan time in
// double precision and kept in plan-owned memory.
//
// The output stage of the block: GELU (exact) -> Conv1d(H, 2H, 1) + bias -> GLU over
// channels (first half · sigmoid(second half)); without output weights the node
// outputs y itself.
#pragma once

#include <complex>
#include <cstdint>

#include "ops/op_registry.h"
#include "ops/ssm_kernels.h"

namespace atrous {

// Node inputs.
enum S4DInput { kS4DU = 0, kS4DLogDt, kS4DC, kS4DLogAReal, kS4DAImag, kS4DD, kS4DOutWeight, kS4DOutBias, kS4DState };

struct S4DDims {
  int64_t batch = 0, H = 0, L = 0;
  int64_t M = 0;            // modes: N/2 complex ones, or N real ones
  bool complex = true;
  bool transposed = true;   // u is [B, H, L] (else [B, L, H])
  bool has_output = false;  // GELU -> Conv1d -> GLU
};
S4DDims s4d_dims(const KernelContext& ctx);

// Per channel h and mode m (index h·M + m), plan-owned.
struct S4DModes {
  const std::complex<double>* dA = nullptr;
  const std::complex<double>* dB = nullptr;
  const std::complex<double>* CdB = nullptr;  // C·dB
  const std::complex<double>* C = nullptr;
  double factor = 2.0;
};
Result<S4DModes> s4d_modes(KernelContext& ctx, const S4DDims& d);

// K[h, l] for l < d.L into k + h·ld (threads over h).
void s4d_conv_kernel(const S4DDims& d, const S4DModes& m, float* k, int64_t ld);

// Channel h of sequence b of u, as a contiguous [L] row: either in place or gathered into tmp.
const float* s4d_channel(const S4DDims& d, const float* u, int64_t b, int64_t h, float* tmp);

// The output stage for sequence b. y: [H, L], the SSM output including D·u (overwritten);
// z: [2H, L] work (only with output weights); out: the node's output tensor.
void s4d_finish_ref(const S4DDims& d, const float* W, const float* bias, float* y, float* z, float* out, int64_t b);
Status s4d_finish_fast(const ssm::SsmIsa& isa, const S4DDims& d, const float* W, const float* bias, float* y, float* z,
                       float* out, int64_t b);

}  // namespace atrous
