// One channel's depthwise k×k convolution (stride 1, "same" size) from a zero-padded
// copy, for LiteMLA's multi-scale aggregation (lite_mla.cpp):
//   dst[y, x] = Σ_{i,j < k} w[i·k + j] · pad[(y + i)·ldp + x + j],  y < H, x < W
// where pad holds the channel with k/2 zeros around it: H + k − 1 rows of ldp ≥ W + k − 1
// floats. Two kernels, on the calling thread: a scalar one (any CPU) and an AVX-512 one
// (requires depthwise_padded_avx512_available()). The AVX-512 kernel computes two output
// rows of 64 columns at a time in 8 accumulators: each input row it loads feeds both
// output rows (tap row i of the first, i − 1 of the second), so it does k + 1 row loads
// per two output rows instead of 2k, and 8 independent FMA chains cover the FMA latency.
// No load reaches past column W + k − 2 of a padded row. No allocation.
#pragma once

#include <cstdint>

namespace atrous {

void depthwise_padded(const float* pad, int64_t ldp, const float* w, int64_t k, int64_t H, int64_t W, float* dst);
bool depthwise_padded_avx512_available();
void depthwise_padded_avx512(const float* pad, int64_t ldp, const float* w, int64_t k, int64_t H, int64_t W, float* dst);

}  // namespace atrous
