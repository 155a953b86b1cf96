// Activations over rows of floats, vectorised, for kernels that apply them after
// an sgemm (FeedForward, the GEMM form of ConvTranspose2d). GELU (erf form), SiLU
// and ReLU have AVX-512 / AVX2 / scalar paths; the other activations use the scalar
// definitions of activation.h.
#pragma once

#include <cstdint>

#include "atrous/atrous_generated.h"

namespace atrous {

// x[i] = act(x[i] + bias[i] + shift) for i < n (bias may be null). `scratch`: n floats.
// SiLU is x / (1 + e^{−x}) with the vector exp of attention_common.h (three passes).
// GELU's erf is Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) times a polynomial e^{-z²};
// one pass with AVX-512, three (x², vector exp, rest) otherwise.
void bias_activate_row(float* x, int64_t n, const float* bias, float shift, fb::ActKind act, float alpha, float* scratch);

}  // namespace atrous
