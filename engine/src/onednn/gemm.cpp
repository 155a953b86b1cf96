#include "onednn/gemm.h"

#include <dnnl.h>

namespace atrous {

Status sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (s != dnnl_success) return internal_error("dnnl_sgemm failed with status " + std::to_string(static_cast<int>(s)));
  return Status::Ok();
}

}  // namespace atrous
