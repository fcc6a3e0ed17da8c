// General single-precision GEMM for the trainer (src/train/matmul.ts): the three
// products of a linear layer's forward and backward need A·Bᵀ, A·B and Aᵀ·B.
#pragma once
#include <napi.h>

#include <cstddef>
#include <string>

namespace act::train {

// C[m, n] = op(A)·op(B), row-major, no leading-dimension padding: op(A) is [m, k]
// (A stored [k, m] when transA), op(B) is [k, n] (B stored [n, k] when transB).
// OpenBLAS's sgemm when it loaded and `own` is false; otherwise the operands are
// rearranged into the addon's Y = X·Wᵀ form (ops.h `gemm`). Returns an error or "".
// Thread-safe: OpenBLAS calls from two threads run side by side (each with OpenBLAS's
// thread count; set it to 1 for that), own-path calls one after the other.
std::string sgemm(bool transA, bool transB, size_t m, size_t n, size_t k, const float* a,
                  const float* b, float* c, bool own);

// Adds `sgemm(transA, transB, m, n, k, a, b, c, own)` to the addon's exports.
void addExports(Napi::Env env, Napi::Object exports);

}  // namespace act::train
