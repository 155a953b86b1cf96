// Kernel taps that can touch real input, for dilated convolutions.
//
// With dilation d and padding p, tap k of a window reads input index
// o·stride − p + k·d. When d is large against the feature map (DeepLab's rates
// 12/24/36 on a 33×33 map), the outer taps only ever read padding and add
// zero. The valid taps form one contiguous range; a kernel may run the
// convolution with just that range and the adjusted padding, which gives the
// same output with a fraction of the work (a 3×3 at rate ≥ the map size
// becomes a 1×1).
#pragma once

#include <algorithm>
#include <cstdint>

namespace atrous {

struct TapRange {
  int64_t first = 0;      // first useful tap
  int64_t count = 0;      // useful taps (0: none, the output is bias only)
  int64_t pad_begin = 0;  // padding that keeps the output size with only these taps
  int64_t pad_end = 0;
  bool trimmed = false;   // true when fewer than k taps remain and both pads are >= 0
};

inline TapRange useful_taps(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t dilation, int64_t out) {
  TapRange r;
  int64_t first = -1, last = -1;
  for (int64_t t = 0; t < k; ++t) {
    int64_t lo = -pad_begin + t * dilation;                   // row read by output 0
    int64_t hi = (out - 1) * stride - pad_begin + t * dilation;  // row read by the last output
    if (hi >= 0 && lo <= in - 1) {
      if (first < 0) first = t;
      last = t;
    }
  }
  if (first < 0) return r;  // every tap reads padding only
  r.first = first;
  r.count = last - first + 1;
  r.pad_begin = pad_begin - first * dilation;
  r.pad_end = (out - 1) * stride + (r.count - 1) * dilation + 1 - in - r.pad_begin;
  r.trimmed = r.count < k && r.pad_begin >= 0 && r.pad_end >= 0;
  return r;
}

// (output, tap) pairs along one axis whose input index o·stride − pad_begin + t·dilation
// lies inside [0, in): the multiply-adds a convolution does along that axis once the
// products with padding are left out. A convolution's useful flops are
// 2 · N · O · (C / groups) · in_bounds_taps(height axis) · in_bounds_taps(width axis):
// the measure the kernels' flops() report, so that a dilated or large kernel on a
// small map is not credited with products of zeros (DeepLab's 3×3 at rate 36 on a
// 65×65 map has 40 % of the nominal 9 taps' products inside).
inline int64_t in_bounds_taps(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t dilation, int64_t out) {
  int64_t n = 0;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t off = t * dilation - pad_begin;  // input index of output 0
    // outputs o in [0, out) with 0 <= o·stride + off <= in − 1
    const int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    const int64_t hi_num = in - 1 - off;
    if (hi_num < 0) continue;
    const int64_t hi = std::min(out - 1, hi_num / stride);
    if (hi >= lo) n += hi - lo + 1;
  }
  return n;
}

}  // namespace atrous
