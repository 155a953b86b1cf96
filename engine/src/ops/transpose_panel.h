// dst[c · ldd + r] = f(src[r · lds + c]) for r < rows, c < cols: a row-major panel
// transposed, f = identity or ReLU. For GEMMs that want a panel the other way round:
// small_sgemm's op(B) = Bᵀ panels, LiteMLA's relu(k) blocks as token-major rows.
// The AVX-512 kernel moves 16 × 16 blocks through registers (pairs of rows interleaved
// by 32 bits, then by 64 bits, then 128-bit lanes regrouped); the edges of a panel that
// is not a multiple of 16 either way, and CPUs without AVX-512, go element by element.
// On the calling thread, no allocation.
#pragma once

#include <cstdint>

namespace atrous {

void transpose_panel(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, bool relu);

// The kernels behind it, for tests: AVX-512 (requires transpose_panel_avx512_available())
// and element by element.
bool transpose_panel_avx512_available();
void transpose_panel_avx512(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, bool relu);
void transpose_panel_scalar(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, bool relu);

}  // namespace atrous
