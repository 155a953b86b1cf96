// narrow_gemm's and narrow_ratio's kernels (AVX-512 with and without non-temporal stores,
// and the fallbacks, ops/narrow_gemm.h) against a direct loop in double: row counts around the
// 8-row tile (1-7 row tails), K from 1 to past 64, column counts around the 16-wide vector
// and the 48-column panel, leading dimensions wider than the rows. The elements of B and C
// past each row are NaN, so a read beyond B's N columns or a write beyond C's shows.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "ops/narrow_gemm.h"

namespace {

enum class Kernel { kAvx512, kAvx512Stream, kFallback };

struct Sizes {
  int64_t M, N, K, pad;  // pad: ldb − N and ldc − N (rounded up to 16 floats when streaming)
};

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

// 64-byte aligned, so that the streaming kernel's aligned stores are taken.
Buffer aligned(int64_t n, float fill) {
  const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
  Buffer b(static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64)));
  for (int64_t i = 0; i < n; ++i) b.get()[i] = fill;
  return b;
}

// ratio: narrow_ratio (C = A relu(B) / (a · relu(B) + eps), column by column) instead of
// narrow_gemm; B's column 0 is then all negative (denominator eps, output 0).
void check(const Sizes& s, Kernel kernel, std::mt19937& rng, bool ratio = false) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int64_t ld = s.N + s.pad;
  if (kernel == Kernel::kAvx512Stream) ld = (ld + 15) / 16 * 16;  // rows start on 64 bytes
  const int64_t lda = s.K + 3;
  std::vector<float> A(static_cast<size_t>(s.M * lda), nan);
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t k = 0; k < s.K; ++k) A[static_cast<size_t>(i * lda + k)] = u(rng);
  Buffer B = aligned(s.K * ld + 64, nan), C = aligned(s.M * ld + 64, nan);
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t j = 0; j < s.N; ++j) B.get()[k * ld + j] = ratio && j == 0 ? -std::fabs(u(rng)) : u(rng);
  std::vector<float> a(static_cast<size_t>(s.K));
  for (float& x : a) x = std::fabs(u(rng));
  const float eps = s.K % 2 ? 1e-15f : 0.25f;
  const bool stream = kernel == Kernel::kAvx512Stream;
  if (ratio && kernel == Kernel::kFallback) atrous::narrow_ratio_fallback(s.M, s.N, s.K, A.data(), lda, a.data(), eps, B.get(), ld, C.get(), ld);
  else if (ratio) atrous::narrow_ratio_avx512(s.M, s.N, s.K, A.data(), lda, a.data(), eps, B.get(), ld, C.get(), ld, stream);
  else if (kernel == Kernel::kFallback) REQUIRE(atrous::narrow_gemm_fallback(s.M, s.N, s.K, A.data(), lda, B.get(), ld, C.get(), ld).ok());
  else atrous::narrow_gemm_avx512(s.M, s.N, s.K, A.data(), lda, B.get(), ld, C.get(), ld, stream);
  double worst = 0, peak = 0;
  int64_t touched = 0;
  for (int64_t i = 0; i < s.M; ++i) {
    for (int64_t j = 0; j < s.N; ++j) {
      double ref = 0, den = 0;
      for (int64_t k = 0; k < s.K; ++k) {
        const double b = ratio ? std::max(0.0f, B.get()[k * ld + j]) : B.get()[k * ld + j];
        ref += static_cast<double>(A[static_cast<size_t>(i * lda + k)]) * b;
        den += static_cast<double>(a[static_cast<size_t>(k)]) * b;
      }
      if (ratio) ref /= den + eps;
      const double g = C.get()[i * ld + j];
      worst = std::isnan(g) ? INFINITY : std::max(worst, std::abs(g - ref));
      peak = std::max(peak, std::abs(ref));
    }
    for (int64_t j = s.N; j < ld; ++j) touched += !std::isnan(C.get()[i * ld + j]);
  }
  for (int64_t j = s.M * ld; j < s.M * ld + 64; ++j) touched += !std::isnan(C.get()[j]);
  INFO("M " << s.M << ", N " << s.N << ", K " << s.K << ", ld " << ld << ", kernel " << static_cast<int>(kernel) << (ratio ? ", ratio" : ""));
  CHECK(worst <= 1e-5 * std::max(peak, 1.0));
  CHECK(touched == 0);
}

std::vector<Sizes> sizes(std::mt19937& rng) {
  std::vector<Sizes> sizes = {{1, 1, 1, 0},    {8, 48, 64, 0},   {64, 480, 64, 16}, {7, 47, 5, 1},   {9, 49, 3, 0},
                              {16, 97, 65, 2}, {12, 200, 12, 0}, {5, 15, 100, 3},   {63, 1000, 64, 0}, {3, 16, 1, 0}};
  std::uniform_int_distribution<int64_t> md(1, 70), nd(1, 300), kd(1, 90), pd(0, 20);
  for (int i = 0; i < 30; ++i) sizes.push_back({md(rng), nd(rng), kd(rng), pd(rng)});
  return sizes;
}

void check_all(bool ratio) {
  std::mt19937 rng(23);
  const std::vector<Sizes> all = sizes(rng);
  for (Kernel kernel : {Kernel::kFallback, Kernel::kAvx512, Kernel::kAvx512Stream}) {
    if (kernel != Kernel::kFallback && !atrous::narrow_gemm_avx512_available()) {
      WARN("no AVX-512 on this CPU: the AVX-512 kernel is not tested");
      break;
    }
    for (const Sizes& s : all) check(s, kernel, rng, ratio);
  }
}

TEST_CASE("narrow_gemm: every kernel against a direct loop", "[unit][narrow_gemm]") { check_all(false); }

TEST_CASE("narrow_ratio: every kernel against a direct loop (ReLU, denominators, eps)", "[unit][narrow_gemm]") { check_all(true); }

}  // namespace
