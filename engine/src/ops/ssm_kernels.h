// Vectorised inner loops of the state-space ops (MambaScan, BiMambaScan, S4D).
//
// Each instruction set gets one table of function pointers, compiled from the
// same template bodies (ssm_kernels.inc) under a function-level target
// (`#pragma GCC target`, i.e. __attribute__((target))): AVX-512 and AVX2+FMA.
// The engine itself is built for baseline x86-64; ssm_isa() asks the CPU at run
// time (__builtin_cpu_supports) and returns null for a set it lacks, so a kernel
// that needs it declines at plan time. The functions are plain loops over the
// memory they are given: no allocation, no threads (callers split the work).
//
// Layout conventions: "rows" are time steps, channels are contiguous within a
// row, so one vector holds W neighbouring channels of one step. Row strides may
// be negative, which is how a scan runs backward in time without copying.
#pragma once

#include <cstdint>

namespace atrous::ssm {

// u[t] = SiLU(bias + Σ_k w[k] · x[t - (K-1) + k]) for rows t in [t0, t1) (causal), or
// x[t + (K-1) - k] when reverse (anti-causal: the causal conv of the time-reversed
// sequence, read back in original order). Positions before 0 come from `state`
// (forward only; zeros when null), positions past L - 1 are zero.
struct ConvArgs {
  int64_t L = 0, C = 0, K = 0;     // length, channels, taps
  int64_t ld_w = 0;                // row stride of w_t and state_t (>= C: a thread's channel slice)
  const float* x = nullptr;        // row p at x + p·ld_x, channels [0, C)
  int64_t ld_x = 0;
  const float* w_t = nullptr;      // [K, C] taps, transposed from PyTorch's [C, 1, K]
  const float* bias = nullptr;     // [C] or null
  const float* state_t = nullptr;  // [K, C]: the K inputs before position 0, oldest first, or null
  bool reverse = false;
  float* u = nullptr;              // row t at u + (t - t0)·ld_u
  int64_t ld_u = 0;
};

// Mamba's selective scan for channels [c0, c1) over T steps (step s reads row s of
// each operand; strides may be negative):
//   dt = softplus(delta + dt_bias); h[n] = exp(dt·A[n]) h[n] + dt·B[n]·u;
//   y = out_scale · (Σ_n C[n] h[n] + D u) · SiLU(z)   (gate only when z is given)
//   dst = y, or dst += y when accumulate.
// A2_t (A·log2 e, so that exp(dt·A) = 2^(dt·A2)) and h are [N, Cp] with Cp = C rounded
// up to 16 (padding lanes of A2_t are 0).
struct ScanArgs {
  int64_t T = 0, C = 0, Cp = 0, N = 0;
  const float* delta = nullptr;  int64_t ld_delta = 0;  // dt_proj output, before bias
  const float* dt_bias = nullptr;                       // [C] or null
  const float* u = nullptr;      int64_t ld_u = 0;
  const float* B = nullptr;      const float* Cm = nullptr;  int64_t ld_bc = 0;  // N values per row
  const float* z = nullptr;      int64_t ld_z = 0;      // gate, or null
  const float* D = nullptr;                             // [C] or null
  const float* A2_t = nullptr;                          // [N, Cp], -exp(A_log)·log2(e)
  float* h = nullptr;                                   // [N, Cp] state, updated in place
  float* y = nullptr;            int64_t ld_y = 0;
  float out_scale = 1.0f;
  bool accumulate = false;
};

// Split-complex in-place FFT of length n (a power of two, >= 2): re/im hold the
// input and receive the output; tmp_re/tmp_im are n-float scratch; tw_re/tw_im hold
// exp(-2πik/n) for k < n/2. inverse: conjugate twiddles, no 1/n scaling.
struct FftArgs {
  int64_t n = 0;
  float *re = nullptr, *im = nullptr, *tmp_re = nullptr, *tmp_im = nullptr;
  const float *tw_re = nullptr, *tw_im = nullptr;
  bool inverse = false;
};

struct SsmIsa {
  const char* name;  // "avx512", "avx2"
  int width;         // floats per vector
  void (*conv_silu)(const ConvArgs& a, int64_t t0, int64_t t1);
  int scan_unit;     // channels the scan interleaves (G blocks of width): split work in these
  void (*scan)(const ScanArgs& a, int64_t c0, int64_t c1);  // c0 a multiple of width
  // y[l] = Σ_{j<=l} k[j] u[l-j], l < L. u_pad holds u at [P, P + L) with zeros in [0, P),
  // P = causal_conv_pad(); k holds L + P taps (zeros past L); y has room for L + P floats.
  void (*causal_conv)(const float* k, const float* u_pad, float* y, int64_t L);
  void (*fft)(const FftArgs& a);
  // x = GELU(x) (exact, erf) for n floats.
  void (*gelu)(float* x, int64_t n);
};

// Zero padding (floats) causal_conv needs in front of u and behind k and y.
constexpr int64_t causal_conv_pad() { return 64; }

// The table for the set, or null when this CPU (or OS) lacks it.
const SsmIsa* ssm_isa_avx512();
const SsmIsa* ssm_isa_avx2();
// The best set this CPU has, or null.
const SsmIsa* ssm_isa_best();

}  // namespace atrous::ssm
