// The linear-attention core's vector helpers and its causal chunks over strided rows:
// - inverse_denominators and add_column_sums, the dispatched path (AVX-512 on a CPU that
//   has it: four-row blocks, 128-column register blocks) and the plain loops, against
//   double-precision loops, on row and column counts around those blocks;
// - causal_mask_rows, both paths, against a plain loop;
// - LinearCore::run, causal (q, k, v and y read and written in place at their own
//   strides, NaN between rows), against run_ref (the RNN form), with Performer's shape
//   (266 features, 64 values, chunks of 32 and 16), the fused kernels' (64 × 64), chunks that
//   do and do not fit one pass of small_sgemm_concat, and a tail chunk.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/attention_common.h"

namespace {

using atrous::attn::LinearCore;
using atrous::attn::LinearCoreShape;

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

TEST_CASE("inverse_denominators: both paths equal a double loop", "[linear_core]") {
  std::mt19937 rng(5);
  for (bool vector_path : {true, false})
    for (int64_t n : {1, 3, 4, 5, 9, 32})
      for (int64_t d : {1, 15, 16, 17, 64, 266})
        for (float eps_qsum : {0.0f, 1e-3f})
          for (bool extra : {false, true}) {
            const int64_t ldq = d + 3;
            auto q = uniform(static_cast<size_t>(n * ldq), 0.0f, 1.0f, rng), z = uniform(static_cast<size_t>(d), 0.0f, 2.0f, rng);
            auto ex = uniform(static_cast<size_t>(n), 0.0f, 3.0f, rng);
            for (int64_t i = 0; i < n; ++i)  // the padding between rows must not be read
              for (int64_t f = d; f < ldq; ++f) q[static_cast<size_t>(i * ldq + f)] = std::numeric_limits<float>::quiet_NaN();
            std::vector<float> inv(static_cast<size_t>(n), -1.0f);
            const float eps = 1e-6f;
            if (vector_path)
              atrous::attn::inverse_denominators(q.data(), ldq, n, z.data(), d, extra ? ex.data() : nullptr, eps, eps_qsum, inv.data());
            else
              atrous::attn::inverse_denominators_scalar(q.data(), ldq, n, z.data(), d, extra ? ex.data() : nullptr, eps, eps_qsum,
                                                        inv.data());
            double worst = 0;
            for (int64_t i = 0; i < n; ++i) {
              double den = eps + (extra ? ex[static_cast<size_t>(i)] : 0.0), qs = 0;
              for (int64_t f = 0; f < d; ++f) {
                den += static_cast<double>(q[static_cast<size_t>(i * ldq + f)]) * z[static_cast<size_t>(f)];
                qs += q[static_cast<size_t>(i * ldq + f)];
              }
              den += eps_qsum * qs;
              const double want = 1.0 / den, got = inv[static_cast<size_t>(i)];
              worst = std::isnan(got) ? 1e30 : std::max(worst, std::fabs(got - want) / std::fabs(want));
            }
            INFO((vector_path ? atrous::attn::vector_isa() : "scalar") << " n " << n << " d " << d << " eps_qsum " << eps_qsum
                                                                       << " extra " << extra);
            CHECK(worst <= 1e-5);
          }
}

TEST_CASE("inverse_denominators: extra may alias the output", "[linear_core]") {
  std::mt19937 rng(6);
  const int64_t n = 11, d = 70;
  auto q = uniform(static_cast<size_t>(n * d), 0.0f, 1.0f, rng), z = uniform(static_cast<size_t>(d), 0.0f, 1.0f, rng);
  auto ex = uniform(static_cast<size_t>(n), 0.0f, 1.0f, rng);
  std::vector<float> apart(static_cast<size_t>(n)), inplace = ex;
  atrous::attn::inverse_denominators(q.data(), d, n, z.data(), d, ex.data(), 0.0f, 0.0f, apart.data());
  atrous::attn::inverse_denominators(q.data(), d, n, z.data(), d, inplace.data(), 0.0f, 0.0f, inplace.data());
  CHECK(inplace == apart);
}

TEST_CASE("add_column_sums: both paths equal a double loop", "[linear_core]") {
  std::mt19937 rng(7);
  for (bool vector_path : {true, false})
    for (int64_t n : {0, 1, 7, 32, 256})
      for (int64_t d : {1, 16, 100, 128, 129, 266}) {
        const int64_t ldk = d + 5;
        auto k = uniform(static_cast<size_t>(std::max<int64_t>(n, 1) * ldk), -1.0f, 1.0f, rng);
        auto z0 = uniform(static_cast<size_t>(d + 16), -1.0f, 1.0f, rng);
        for (int64_t f = d; f < d + 16; ++f) z0[static_cast<size_t>(f)] = std::numeric_limits<float>::quiet_NaN();
        auto z = z0;
        if (vector_path) atrous::attn::add_column_sums(k.data(), ldk, n, d, z.data());
        else atrous::attn::add_column_sums_scalar(k.data(), ldk, n, d, z.data());
        double worst = 0;
        int64_t touched = 0;
        for (int64_t f = 0; f < d; ++f) {
          double want = z0[static_cast<size_t>(f)];
          for (int64_t j = 0; j < n; ++j) want += k[static_cast<size_t>(j * ldk + f)];
          const double got = z[static_cast<size_t>(f)];
          worst = std::isnan(got) ? 1e30 : std::max(worst, std::fabs(got - want));
        }
        for (int64_t f = d; f < d + 16; ++f) touched += !std::isnan(z[static_cast<size_t>(f)]);  // past d: never written
        INFO((vector_path ? atrous::attn::vector_isa() : "scalar") << " n " << n << " d " << d);
        CHECK(worst <= 1e-5 * std::max<double>(n, 1));
        CHECK(touched == 0);
      }
}

TEST_CASE("causal_mask_rows: both paths zero past the diagonal and sum the rest", "[linear_core]") {
  std::mt19937 rng(7);
  for (bool vector_path : {true, false})
    for (int64_t c : {1, 5, 16, 17, 32, 33, 64})
      for (bool sums : {true, false}) {
        const int64_t lda = c + 5;
        auto a = uniform(static_cast<size_t>(c * lda), -1.0f, 1.0f, rng);
        const auto a0 = a;
        std::vector<float> got(static_cast<size_t>(c), -7.0f);
        if (vector_path) atrous::attn::causal_mask_rows(a.data(), lda, c, sums ? got.data() : nullptr);
        else atrous::attn::causal_mask_rows_scalar(a.data(), lda, c, sums ? got.data() : nullptr);
        int64_t wrong = 0;
        double worst = 0;
        for (int64_t i = 0; i < c; ++i) {
          double want = 0;
          for (int64_t j = 0; j < lda; ++j) {
            const size_t at = static_cast<size_t>(i * lda + j);
            const float expect = j <= i || j >= c ? a0[at] : 0.0f;  // the gap past c is left alone
            wrong += a[at] != expect;
            if (j <= i) want += a0[at];
          }
          if (sums) worst = std::max(worst, std::fabs(got[static_cast<size_t>(i)] - want));
          else wrong += got[static_cast<size_t>(i)] != -7.0f;
        }
        INFO((vector_path ? atrous::attn::vector_isa() : "scalar") << " c " << c << " sums " << sums);
        CHECK(wrong == 0);
        CHECK(worst <= 1e-5 * std::max<double>(c, 1));
      }
}

TEST_CASE("LinearCore::run (causal) reads strided rows in place and equals the RNN form", "[linear_core]") {
  std::mt19937 rng(8);
  struct Shape {
    int64_t d, chunk;
  };
  // (64, 96): the chunk's scores do not join the last K block of q (one extra pass).
  for (Shape sh : {Shape{266, 32}, Shape{266, 16}, Shape{64, 32}, Shape{64, 16}, Shape{20, 32}, Shape{64, 96}, Shape{100, 16}})
    for (int64_t rows : {1, 31, 100})
      for (bool den : {true, false}) {
        LinearCoreShape s;
        s.lq = s.lk = rows;
        s.d = sh.d;
        s.m = 64;
        s.causal = true;
        s.chunk = sh.chunk;
        s.denominator = den;
        s.eps = 1e-6f;
        s.eps_qsum = den ? 1e-4f : 0.0f;
        const LinearCore core(s);
        const int64_t d = sh.d, ldq = d + 32, ldk = d + 16, ldv = 80, ldy = 72;
        const float nan = std::numeric_limits<float>::quiet_NaN();
        auto strided = [&](int64_t cols, int64_t ld, float lo, float hi) {
          auto x = uniform(static_cast<size_t>(rows * ld), lo, hi, rng);
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t f = cols; f < ld; ++f) x[static_cast<size_t>(i * ld + f)] = nan;  // gaps: never read
          return x;
        };
        const auto q = strided(d, ldq, 0.0f, 1.0f), k = strided(d, ldk, 0.0f, 1.0f), v = strided(s.m, ldv, -1.0f, 1.0f);
        auto state0 = uniform(static_cast<size_t>(core.state_floats()), 0.0f, 0.5f, rng);  // a streaming start
        std::vector<float> y(static_cast<size_t>(rows * ldy), 5.0f), y_ref(static_cast<size_t>(rows * s.m));
        std::vector<float> st = state0, st_ref = state0, scratch(static_cast<size_t>(core.scratch_floats()), nan);
        REQUIRE(core.run(q.data(), ldq, k.data(), ldk, v.data(), ldv, y.data(), ldy, st.data(), scratch.data()).ok());
        core.run_ref(q.data(), ldq, k.data(), ldk, v.data(), ldv, y_ref.data(), s.m, st_ref.data());
        double err = 0, max_ref = 0, st_err = 0, st_max = 0;
        int64_t gap_written = 0;
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t e = 0; e < s.m; ++e) {
            const double want = y_ref[static_cast<size_t>(i * s.m + e)], got = y[static_cast<size_t>(i * ldy + e)];
            max_ref = std::max(max_ref, std::fabs(want));
            err = std::isnan(got) ? 1e30 : std::max(err, std::fabs(got - want));
          }
          for (int64_t e = s.m; e < ldy; ++e) gap_written += y[static_cast<size_t>(i * ldy + e)] != 5.0f;
        }
        for (size_t i = 0; i < st_ref.size(); ++i) {
          st_max = std::max(st_max, std::fabs(static_cast<double>(st_ref[i])));
          st_err = std::isnan(st[i]) ? 1e30 : std::max(st_err, std::fabs(static_cast<double>(st[i]) - st_ref[i]));
        }
        INFO("d " << d << " chunk " << sh.chunk << " rows " << rows << " den " << den << ": err " << err << " (max |ref| "
                  << max_ref << "), state err " << st_err);
        CHECK(err <= 1e-4 * max_ref);
        CHECK(st_err <= 1e-4 * st_max);
        CHECK(gap_written == 0);
      }
}

}  // namespace
