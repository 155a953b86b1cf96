// Decomposed relative-position bias (MViTv2 / ViTDet / SAM image encoder), shared
// by WindowAttention's kernels.
//
// For a query at grid row qy (column qx) of an Sh × Sw attention area and a key at
// (ky, kx), the logit gains q · Rh[qy − ky + Sh − 1] + q · Rw[qx − kx + Sw − 1],
// with the tables Rh [2Sh − 1, D], Rw [2Sw − 1, D] and the unscaled q.
// A stored table of another length is resized first, as segment_anything's
// get_rel_pos does with F.interpolate(mode="linear", align_corners=False).
#pragma once

#include <cstdint>
#include <vector>

namespace atrous::relpos {

// Linear resize along the length: table [len, dim] -> out [out_len, dim], PyTorch's
// upsample_linear1d arithmetic (float source index, clamped at 0).
void resize_table(const float* table, int64_t len, int64_t dim, int64_t out_len, float* out);

// out[k] = q · table[base − k] for k in [0, count); rows of `table` are `dim` floats.
// Vectorised (AVX-512 / AVX2 / scalar, chosen once).
void dots_descending(const float* q, const float* table, int64_t base, int64_t count, int64_t dim, float* out);

// row[ky·sw + kx] += rh[ky] + rw[kx] over an sh × sw row of logits; returns the row's
// maximum afterwards (for the softmax). Vectorised like dots_descending.
float add_bias_max(float* row, const float* rh, const float* rw, int64_t sh, int64_t sw);

}  // namespace atrous::relpos
