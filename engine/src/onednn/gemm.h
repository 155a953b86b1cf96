// Row-major single-precision GEMM for custom kernels (attention, scans, ...):
//   C[M×N] = alpha · op(A) · op(B) + beta · C
// backed by oneDNN's sgemm (JIT, AVX-512 where available). Called from outside
// an OpenMP parallel region it uses the session's threads; called inside one
// (e.g. one GEMM per head in a parallel loop) it runs on the calling thread.
// No allocation by Atrous; oneDNN may use its own small packing buffers.
#pragma once

#include <cstdint>

#include "atrous/status.h"

namespace atrous {

Status sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace atrous
