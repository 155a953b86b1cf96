// transpose_panel's kernels (AVX-512 16 × 16 register blocks, element by element) against
// the definition dst[c · ldd + r] = f(src[r · lds + c]), f = identity or ReLU: panels
// around multiples of 16 both ways (blocks, edge rows, edge columns, both), padded
// leading dimensions. Everything of dst outside the panel is NaN before and must stay so.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/transpose_panel.h"

namespace {

void check(int64_t rows, int64_t cols, int64_t pad, bool relu, bool avx512, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t lds = cols + pad, ldd = rows + pad + 1;
  std::vector<float> src(static_cast<size_t>(rows * lds), nan), dst(static_cast<size_t>(cols * ldd + 16), nan);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) src[static_cast<size_t>(r * lds + c)] = u(rng);
  if (avx512) atrous::transpose_panel_avx512(src.data(), lds, rows, cols, dst.data(), ldd, relu);
  else atrous::transpose_panel_scalar(src.data(), lds, rows, cols, dst.data(), ldd, relu);
  int64_t wrong = 0, touched = 0;
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < ldd; ++r) {
      const float got = dst[static_cast<size_t>(c * ldd + r)];
      if (r >= rows) {
        touched += !std::isnan(got);
        continue;
      }
      const float x = src[static_cast<size_t>(r * lds + c)];
      wrong += got != (relu ? std::max(x, 0.0f) : x);
    }
  for (size_t i = static_cast<size_t>(cols * ldd); i < dst.size(); ++i) touched += !std::isnan(dst[i]);
  INFO(rows << " x " << cols << ", pad " << pad << (relu ? ", relu" : "") << (avx512 ? ", avx512" : ", scalar"));
  CHECK(wrong == 0);
  CHECK(touched == 0);
}

}  // namespace

TEST_CASE("transpose_panel: both kernels, with and without ReLU, against the definition", "[unit][transpose]") {
  std::mt19937 rng(5);
  for (bool avx512 : {false, true}) {
    if (avx512 && !atrous::transpose_panel_avx512_available()) {
      WARN("no AVX-512 on this CPU: the AVX-512 kernel is not tested");
      continue;
    }
    for (int64_t rows : {1, 15, 16, 17, 33, 64})
      for (int64_t cols : {1, 7, 16, 31, 48, 256})
        for (bool relu : {false, true}) check(rows, cols, (rows + cols) % 5, relu, avx512, rng);
  }
}
