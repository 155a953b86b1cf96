// small_sgemm's kernels (the AVX-512 register-tiled one and the oneDNN fallback)
// against a plain double-precision loop: every transpose combination, row counts
// around the 6-row tile, column counts around the 16-lane vectors and the 64-column
// tile, K around the 128 block, padded leading dimensions, alpha and beta.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "onednn/gemm.h"
#include "ops/small_gemm.h"

namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
};

// Reference: C = alpha op(A) op(B) + beta C in double.
std::vector<float> reference(const Case& c, const std::vector<float>& A, int64_t lda, const std::vector<float>& B, int64_t ldb,
                             const std::vector<float>& C0, int64_t ldc) {
  std::vector<float> C = C0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0;
      for (int64_t p = 0; p < c.K; ++p) {
        const double a = c.ta ? A[static_cast<size_t>(p * lda + i)] : A[static_cast<size_t>(i * lda + p)];
        const double b = c.tb ? B[static_cast<size_t>(j * ldb + p)] : B[static_cast<size_t>(p * ldb + j)];
        s += a * b;
      }
      const double prev = c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(C0[static_cast<size_t>(i * ldc + j)]);
      C[static_cast<size_t>(i * ldc + j)] = static_cast<float>(c.alpha * s + prev);
    }
  return C;
}

using Kernel = void (*)(const Case&, const float*, int64_t, const float*, int64_t, float*, int64_t);

void check(const char* name, Kernel run, const Case& c, std::mt19937& rng, bool spread = false) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Padded leading dimensions, so a kernel that assumes ld == width fails; spread:
  // rows far apart, as head slices are (the AVX-512 kernel then packs its panels).
  const int64_t wa = c.ta ? c.M : c.K, wb = c.tb ? c.K : c.N;
  const int64_t lda = spread ? 4 * wa + 7 : wa + 3, ldb = spread ? 4 * wb + 9 : wb + 5, ldc = c.N + 7;
  std::vector<float> A(static_cast<size_t>((c.ta ? c.K : c.M) * lda)), B(static_cast<size_t>((c.tb ? c.N : c.K) * ldb));
  std::vector<float> C(static_cast<size_t>(c.M * ldc));
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  for (auto& x : C) x = u(rng);
  // beta = 0: C must be written, never read (NaN there must not leak into the result).
  if (c.beta == 0.0f)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C[static_cast<size_t>(i * ldc + j)] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> want = reference(c, A, lda, B, ldb, C, ldc);
  std::vector<float> got = C;
  run(c, A.data(), lda, B.data(), ldb, got.data(), ldc);
  double max_ref = 0, max_err = 0;
  bool padding_kept = true;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t at = static_cast<size_t>(i * ldc + j);
      if (j >= c.N) {  // the padding between rows of C is never written
        if (!(got[at] == C[at])) padding_kept = false;
        continue;
      }
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[at])));
      const double e = std::fabs(static_cast<double>(got[at]) - want[at]);
      max_err = std::isnan(got[at]) ? std::numeric_limits<double>::infinity() : std::max(max_err, e);
    }
  INFO(name << " ta " << c.ta << " tb " << c.tb << " M " << c.M << " N " << c.N << " K " << c.K << " alpha " << c.alpha
            << " beta " << c.beta << ": max err " << max_err << ", max |ref| " << max_ref);
  CHECK(max_err <= 1e-4 * std::max(max_ref, 1e-3));
  CHECK(padding_kept);
}

void avx512(const Case& c, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  atrous::small_sgemm_avx512(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);
}
// With prefetch regions (the caller's next operands; here A and B themselves, and one of
// no rows): the product must not change.
void avx512_prefetching(const Case& c, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  const atrous::PrefetchRows next[3] = {{A, lda, 0, 8}, {A, lda, c.ta ? c.K : c.M, lda}, {B, ldb, c.tb ? c.N : c.K, ldb}};
  atrous::small_sgemm_avx512(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc, nullptr, next, 3);
}
void onednn(const Case& c, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  REQUIRE(atrous::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc).ok());
}
void dispatched(const Case& c, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  REQUIRE(atrous::small_sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc).ok());
}

std::vector<Case> cases() {
  std::vector<Case> out;
  const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.37f, -0.5f}};
  int i = 0;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t M : {1, 5, 6, 7, 13, 16, 32, 64})
        for (int64_t N : {1, 15, 16, 17, 64, 65, 100, 130})
          for (int64_t K : {1, 7, 32, 33, 128, 129, 300}) {
            const auto& s = ab[i++ % 3];
            out.push_back({ta, tb, M, N, K, s[0], s[1]});
          }
  return out;
}

}  // namespace

TEST_CASE("small_sgemm: the AVX-512 tile kernel equals a double-precision loop", "[small_gemm]") {
  if (!atrous::small_sgemm_avx512_available()) {
    WARN("no AVX-512 on this CPU: the tile kernel is not run (small_sgemm falls back to oneDNN, tested below)");
    return;
  }
  std::mt19937 rng(11);
  for (const Case& c : cases()) check("avx512", avx512, c, rng);
  for (const Case& c : cases()) check("avx512 (spread rows: packed panels)", avx512, c, rng, true);
  const auto all = cases();
  for (size_t i = 0; i < all.size(); i += 4) check("avx512 (prefetching)", avx512_prefetching, all[i], rng, i % 8 == 0);
  // Long K (a whole sequence, as in φ(K)ᵀV) and a long M (φ(Q)·S).
  check("avx512", avx512, {true, false, 64, 64, 4097, 1.0f, 1.0f}, rng);
  check("avx512", avx512, {false, false, 4097, 65, 64, 1.0f, 0.0f}, rng);
}

TEST_CASE("small_sgemm: the fallback (oneDNN sgemm) and the dispatcher equal a double-precision loop", "[small_gemm]") {
  std::mt19937 rng(12);
  const auto all = cases();
  for (size_t i = 0; i < all.size(); i += 3) check("onednn", onednn, all[i], rng);
  for (size_t i = 1; i < all.size(); i += 3) check("small_sgemm", dispatched, all[i], rng);
}

TEST_CASE("small_sgemm: K = 0 scales C by beta, M or N = 0 touches nothing", "[small_gemm]") {
  std::vector<float> C{1.0f, 2.0f, 3.0f, 4.0f};
  REQUIRE(atrous::small_sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, C.data(), 2).ok());
  CHECK(C == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
  REQUIRE(atrous::small_sgemm(false, false, 0, 2, 3, 1.0f, nullptr, 3, nullptr, 2, 0.0f, C.data(), 2).ok());
  CHECK(C == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
}

TEST_CASE("small_sgemm: row_scale multiplies each row of the product (both kernels); with beta != 0 it is refused", "[small_gemm]") {
  const int64_t M = 13, N = 70, K = 33;
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)), scale(static_cast<size_t>(M));
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  for (auto& x : scale) x = 0.5f + u(rng);
  std::vector<float> want(static_cast<size_t>(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < K; ++p) acc += static_cast<double>(A[static_cast<size_t>(i * K + p)]) * B[static_cast<size_t>(p * N + j)];
      want[static_cast<size_t>(i * N + j)] = static_cast<float>(0.75 * scale[static_cast<size_t>(i)] * acc);
    }
  double max_ref = 0;
  for (float w : want) max_ref = std::max(max_ref, std::fabs(static_cast<double>(w)));
  auto max_err = [&](const std::vector<float>& got) {
    double e = 0;
    for (size_t i = 0; i < got.size(); ++i) e = std::max(e, std::fabs(static_cast<double>(got[i]) - want[i]));
    return e;
  };
  std::vector<float> C(static_cast<size_t>(M * N), std::numeric_limits<float>::quiet_NaN());
  REQUIRE(atrous::small_sgemm_fallback(false, false, M, N, K, 0.75f, A.data(), K, B.data(), N, 0.0f, C.data(), N, scale.data()).ok());
  CHECK(max_err(C) <= 1e-4 * max_ref);
  if (atrous::small_sgemm_avx512_available()) {
    std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
    atrous::small_sgemm_avx512(false, false, M, N, K, 0.75f, A.data(), K, B.data(), N, 0.0f, C.data(), N, scale.data());
    CHECK(max_err(C) <= 1e-4 * max_ref);
  }
  CHECK(atrous::small_sgemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 1.0f, C.data(), N, scale.data()).code() ==
        atrous::StatusCode::kInvalidArgument);
}

// small_sgemm_concat: [A1 | A2] [B1 ; B2] with each block at its own stride and NaN in
// every gap between rows (read in place: a gap read shows as NaN), against a double loop.
// K1 + K2 around the one-pass limit (the last K block of A1 joined by A2 when the two fit
// 128 rows of B) and past it, K1 or K2 zero, columns past a multiple of 16.
TEST_CASE("small_sgemm_concat: both kernels equal a double loop over the concatenation", "[small_gemm]") {
  std::mt19937 rng(14);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Shape {
    int64_t M, N, K1, K2;
  };
  const Shape shapes[] = {{32, 64, 64, 32}, {31, 64, 266, 32}, {1, 20, 20, 1},  {7, 65, 64, 64}, {32, 64, 64, 96},
                          {6, 130, 100, 28}, {13, 16, 0, 40}, {5, 33, 70, 0},   {32, 64, 128, 32}, {2, 1, 1, 1}};
  for (const Shape& sh : shapes)
    for (bool scaled : {false, true})
      for (int path = 0; path < 2; ++path) {
        if (path == 0 && !atrous::small_sgemm_avx512_available()) continue;
        const int64_t lda1 = sh.K1 + 5, lda2 = sh.K2 + 3, ldb1 = sh.N + 4, ldb2 = 4 * sh.N + 1, ldc = sh.N + 6;
        auto fill = [&](int64_t rows, int64_t cols, int64_t ld) {
          std::vector<float> x(static_cast<size_t>(std::max<int64_t>(rows * ld, 1)), nan);
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < cols; ++j) x[static_cast<size_t>(i * ld + j)] = u(rng);
          return x;
        };
        const auto A1 = fill(sh.M, sh.K1, lda1), A2 = fill(sh.M, sh.K2, lda2);
        const auto B1 = fill(sh.K1, sh.N, ldb1), B2 = fill(sh.K2, sh.N, ldb2);
        std::vector<float> scale(static_cast<size_t>(sh.M));
        for (auto& x : scale) x = 0.5f + u(rng);
        std::vector<float> C(static_cast<size_t>(sh.M * ldc), nan);  // written, never read
        for (int64_t i = 0; i < sh.M; ++i)
          for (int64_t j = sh.N; j < ldc; ++j) C[static_cast<size_t>(i * ldc + j)] = 7.0f;  // the gaps: kept
        const float* rs = scaled ? scale.data() : nullptr;
        if (path == 0)
          atrous::small_sgemm_concat_avx512(sh.M, sh.N, sh.K1, A1.data(), lda1, B1.data(), ldb1, sh.K2, A2.data(), lda2, B2.data(),
                                            ldb2, C.data(), ldc, rs);
        else
          REQUIRE(atrous::small_sgemm_concat_fallback(sh.M, sh.N, sh.K1, A1.data(), lda1, B1.data(), ldb1, sh.K2, A2.data(), lda2,
                                                      B2.data(), ldb2, C.data(), ldc, rs)
                      .ok());
        double max_ref = 0, max_err = 0;
        bool gaps_kept = true;
        for (int64_t i = 0; i < sh.M; ++i) {
          for (int64_t j = 0; j < sh.N; ++j) {
            double want = 0;
            for (int64_t p = 0; p < sh.K1; ++p)
              want += static_cast<double>(A1[static_cast<size_t>(i * lda1 + p)]) * B1[static_cast<size_t>(p * ldb1 + j)];
            for (int64_t p = 0; p < sh.K2; ++p)
              want += static_cast<double>(A2[static_cast<size_t>(i * lda2 + p)]) * B2[static_cast<size_t>(p * ldb2 + j)];
            if (scaled) want *= scale[static_cast<size_t>(i)];
            const double got = C[static_cast<size_t>(i * ldc + j)];
            max_ref = std::max(max_ref, std::fabs(want));
            max_err = std::isnan(got) ? std::numeric_limits<double>::infinity() : std::max(max_err, std::fabs(got - want));
          }
          for (int64_t j = sh.N; j < ldc; ++j) gaps_kept = gaps_kept && C[static_cast<size_t>(i * ldc + j)] == 7.0f;
        }
        INFO((path == 0 ? "avx512" : "fallback") << " M " << sh.M << " N " << sh.N << " K1 " << sh.K1 << " K2 " << sh.K2
                                                 << " scaled " << scaled << ": max err " << max_err << ", max |ref| " << max_ref);
        CHECK(max_err <= 1e-4 * std::max(max_ref, 1e-3));
        CHECK(gaps_kept);
      }
}
