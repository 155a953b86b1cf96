// sgemm that stays on the calling thread when the product is small: a parallel
// region costs more than a few hundred thousand multiply-adds, and on a busy
// machine one descheduled worker stalls the whole region. Only valid outside
// parallel regions (inside one, sgemm already runs on the calling thread).
// `threads` is the session's thread count, restored afterwards.
#pragma once

#include <omp.h>

#include "onednn/gemm.h"

namespace atrous {

inline Status sgemm_sized(int threads, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  constexpr double kSmall = 4.0 * (1 << 20);  // multiply-adds
  if (threads <= 1 || static_cast<double>(M) * N * K >= kSmall)
    return sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  omp_set_num_threads(1);
  Status s = sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  omp_set_num_threads(threads);
  return s;
}

}  // namespace atrous
