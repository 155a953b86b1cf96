// What LiteMLA's kernels share (lite_mla.cpp: lite_mla_gemm and lite_mla_ref;
// lite_mla_banded.cpp): the input layout, the sizes read off a node, its flop count.
// Internal to engine/src/ops.
#pragma once

#include <cstdint>

#include "ops/op_registry.h"

namespace atrous {

// inputs: 0 x [B, C, H, W]; 1 qkv weight [3T, C, 1, 1]; 2 proj weight [Co, T(1+S), 1, 1];
// 3 proj bias [Co]?; per scale s: 4 + 2s dw weight [3T, 1, k, k], 5 + 2s pw weight [3T, dim, 1, 1].
enum LiteMlaInput { kLiteMlaX = 0, kLiteMlaQkvW, kLiteMlaProjW, kLiteMlaProjB, kLiteMlaFirstScale };

struct LiteMlaSizes {
  int64_t B = 1, C = 1, H = 1, W = 1, n = 1, d = 1;  // n = H·W tokens, d = dim
  int64_t t3 = 3;      // qkv channels: heads · 3 · dim, head h's q at h·3d, k at h·3d + d, v at h·3d + 2d
  int64_t heads = 1;   // t3 / (3 · dim)
  int64_t S = 0;       // scales
  int64_t groups = 1;  // attention groups: heads · (1 + S); group s·heads + h (s = 0: qkv itself)
  int64_t co = 1;      // output channels
  int64_t kmax = 1;    // the largest depthwise kernel (1 without scales)

  static LiteMlaSizes of(const KernelContext& ctx);
  // The node's flops (the same for every kernel): the 1×1s, the depthwise and grouped 1×1
  // of every scale, and per group the linear form's two products (with the denominators'
  // row of ones) or the quadratic form's.
  double flops(const fb::LiteMLAT& a) const;
};

// The row stride (floats) of lite_mla_banded's qkv map of n tokens: n rounded up to whole
// cache lines, an odd number of them. A head's 128 rows n floats apart, n a power of two
// (a 128 × 128 map), would fall into the same few cache sets.
int64_t lite_mla_map_stride(int64_t n);

}  // namespace atrous
