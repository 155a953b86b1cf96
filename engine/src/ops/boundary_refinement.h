// What boundary_refinement_fused takes, asked by the kernel itself and by the fusion pass
// (plan/fusion.cpp), which forms a BoundaryRefinement node only when the fused kernel will
// run it: otherwise the two Conv2d nodes stay, on their own fast kernels.
#pragma once

#include <cstdint>
#include <string>

namespace atrous {

struct BoundaryRefinementSizes {
  int64_t c, m;            // block channels (x, y and conv2's output), conv1's outputs
  int64_t h, w;            // map
  int64_t k1h, k1w, k2h, k2w;  // odd kernels
};

// Empty when boundary_refinement_fused takes these sizes on this CPU, else why not.
std::string boundary_refinement_fused_declines(const BoundaryRefinementSizes& s);

// Useful flops of the block's two convolutions for n images (conv_taps.h: products with
// the "same" padding are not counted), as both kernels report them.
double boundary_refinement_flops(const BoundaryRefinementSizes& s, int64_t n);

}  // namespace atrous
