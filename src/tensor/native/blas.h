// OpenBLAS, when the build found it (ACTSPARSE_OPENBLAS), loaded at run time with
// dlopen rather than linked: the addon then still loads, with its own kernels, if the
// library is removed later, and OPENBLAS_CORETYPE can be chosen before OpenBLAS's
// constructor picks its kernels (0.3.21 takes AMD Zen 4/5 for Haswell, AVX2 only).
#pragma once

namespace act::blas {

// Loads the library once; false when absent (see unavailableReason()).
bool load();
// "OpenBLAS 0.3.21 (SkylakeX kernels)", or nullptr before a successful load().
const char* description();
const char* unavailableReason();

void setThreads(int n);
// C[m, n] = A[m, k] · B[n, k]ᵀ, row-major with leading dimensions.
void gemmNT(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
            int ldc);
// y[rows] = A[rows, cols] · x, row-major.
void gemv(int rows, int cols, const float* a, int lda, const float* x, float* y);

}  // namespace act::blas
