// LD_PRELOAD shim for the PyTorch reference runs: Debian's python3-torch links the
// reference BLAS (netlib, ~2 GFLOP/s here), which makes a ViT-B encode take several
// minutes. This library defines the Fortran sgemm_ that PyTorch's CPU matmul calls
// and forwards it to oneDNN's sgemm, as a PyTorch built with MKL or OpenBLAS would
// compute it. Only the GEMM implementation changes; the PyTorch graph is the same.
// Used by make_sam_cases.py's fixtures and by bench_sam.py ("PyTorch + sgemm" column).
#include <dnnl.h>

extern "C" void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                       const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                       const int* ldc) {
  // Column-major C = op(A) op(B) is row-major Cᵀ = op(B)ᵀ op(A)ᵀ.
  dnnl_sgemm(*tb, *ta, *n, *m, *k, *alpha, b, *ldb, a, *lda, *beta, c, *ldc);
}
