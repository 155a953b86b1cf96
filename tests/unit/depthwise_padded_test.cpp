// depthwise_padded's kernels (scalar and AVX-512, ops/depthwise_padded.h) against a
// direct loop with bounds checks in double: kernels 1-9, maps from 1×1 to tails of the
// 64-column tile and odd row counts (the AVX-512 kernel's one-row remainder), padded
// rows wider than needed; the buffer past the padded copy is NaN, so a read beyond it
// shows.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/depthwise_padded.h"

namespace {

struct Sizes {
  int64_t k, H, W, extra;  // extra: ldp − (W + k − 1)
};

void check(const Sizes& s, bool avx512, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t p = s.k / 2, ldp = s.W + s.k - 1 + s.extra, rows = s.H + s.k - 1;
  std::vector<float> x(static_cast<size_t>(s.H * s.W)), w(static_cast<size_t>(s.k * s.k));
  for (float& v : x) v = u(rng);
  for (float& v : w) v = u(rng);
  // the padded copy: zeros around the map, NaN in the columns past W + k − 1 and after the last row
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> pad(static_cast<size_t>(rows * ldp + 64), nan);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < s.W + s.k - 1; ++c) {
      const int64_t y = r - p, xx = c - p;
      pad[static_cast<size_t>(r * ldp + c)] = y >= 0 && y < s.H && xx >= 0 && xx < s.W ? x[static_cast<size_t>(y * s.W + xx)] : 0.0f;
    }
  std::vector<float> got(static_cast<size_t>(s.H * s.W), nan);
  if (avx512) atrous::depthwise_padded_avx512(pad.data(), ldp, w.data(), s.k, s.H, s.W, got.data());
  else atrous::depthwise_padded(pad.data(), ldp, w.data(), s.k, s.H, s.W, got.data());
  double worst = 0, peak = 0;
  for (int64_t y = 0; y < s.H; ++y)
    for (int64_t xx = 0; xx < s.W; ++xx) {
      double ref = 0;
      for (int64_t i = 0; i < s.k; ++i)
        for (int64_t j = 0; j < s.k; ++j) {
          const int64_t iy = y + i - p, ix = xx + j - p;
          if (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W)
            ref += static_cast<double>(w[static_cast<size_t>(i * s.k + j)]) * x[static_cast<size_t>(iy * s.W + ix)];
        }
      const double g = got[static_cast<size_t>(y * s.W + xx)];
      worst = std::isnan(g) ? INFINITY : std::max(worst, std::abs(g - ref));
      peak = std::max(peak, std::abs(ref));
      if (std::isnan(g)) break;
    }
  INFO("k " << s.k << ", " << s.H << " x " << s.W << ", ldp + " << s.extra << (avx512 ? ", avx512" : ", scalar"));
  CHECK(worst <= 1e-5 * std::max(peak, 1.0));
}

TEST_CASE("depthwise_padded: both kernels against a direct loop", "[unit][depthwise]") {
  std::mt19937 rng(17);
  std::vector<Sizes> sizes = {{5, 1, 1, 0}, {1, 3, 5, 0},   {3, 2, 16, 1}, {5, 7, 64, 0},  {5, 8, 65, 3}, {7, 9, 130, 0},
                              {9, 4, 47, 2}, {3, 33, 127, 0}, {5, 128, 128, 0}, {7, 1, 200, 5}, {9, 10, 9, 0}};
  std::uniform_int_distribution<int64_t> kd(0, 4), hd(1, 40), wd(1, 200), ed(0, 5);
  for (int i = 0; i < 40; ++i) sizes.push_back({2 * kd(rng) + 1, hd(rng), wd(rng), ed(rng)});
  for (bool avx512 : {false, true}) {
    if (avx512 && !atrous::depthwise_padded_avx512_available()) {
      WARN("no AVX-512 on this CPU: the AVX-512 kernel is not tested");
      continue;
    }
    for (const Sizes& s : sizes) check(s, avx512, rng);
  }
}

}  // namespace
