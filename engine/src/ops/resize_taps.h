// Source taps of Resize along one axis, shared by its kernels (ops/resize.cpp has
// the coordinate rules): per output index, the two source indices and the weight of
// the second (nearest: both indices equal, weight 0).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "atrous/atrous_generated.h"

namespace atrous {

struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> w1;
};

inline Taps make_taps(fb::ResizeMode mode, bool align_corners, int64_t in, int64_t out) {
  Taps t;
  t.i0.resize(static_cast<size_t>(out));
  t.i1.resize(static_cast<size_t>(out));
  t.w1.assign(static_cast<size_t>(out), 0.0f);
  for (int64_t d = 0; d < out; ++d) {
    const size_t k = static_cast<size_t>(d);
    if (mode == fb::ResizeMode::Nearest) {
      const float scale = static_cast<float>(in) / static_cast<float>(out);
      t.i0[k] = t.i1[k] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(d) * scale)), in - 1);
      continue;
    }
    float src;
    if (align_corners) {
      const float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
      src = scale * static_cast<float>(d);
    } else {
      const float scale = static_cast<float>(in) / static_cast<float>(out);
      // PyTorch computes (d + 0.5) in double and rounds the result to float.
      src = std::max(static_cast<float>(scale * (static_cast<double>(d) + 0.5) - 0.5), 0.0f);
    }
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    t.i0[k] = i0;
    t.i1[k] = i0 < in - 1 ? i0 + 1 : i0;
    t.w1[k] = src - static_cast<float>(i0);
  }
  return t;
}


}  // namespace atrous
