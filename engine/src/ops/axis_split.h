// A shape seen as [outer, dim, inner] around one axis, for the ops that work
// along a single axis (Softmax, LayerNorm, Argmax, Concat). Element
// (o, d, i) of a dense row-major tensor lies at (o·dim + d)·inner + i.
#pragma once

#include <cstdint>

#include "atrous/tensor.h"

namespace atrous {

struct AxisSplit {
  int64_t outer = 1;  // product of the dims before the axis
  int64_t dim = 1;    // the axis itself
  int64_t inner = 1;  // product of the dims after the axis
};

// axis must already be normalised (0 <= axis < rank).
inline AxisSplit split_at_axis(const Shape& s, int axis) {
  AxisSplit r;
  for (int i = 0; i < static_cast<int>(s.size()); ++i) {
    if (i < axis)
      r.outer *= s[static_cast<size_t>(i)];
    else if (i == axis)
      r.dim = s[static_cast<size_t>(i)];
    else
      r.inner *= s[static_cast<size_t>(i)];
  }
  return r;
}

// Reference kernels that reduce along a strided axis walk `inner` in blocks of
// this many positions, keeping per-position statistics in stack arrays, so the
// reads stay contiguous without any allocation.
constexpr int64_t kInnerBlock = 256;

}  // namespace atrous
