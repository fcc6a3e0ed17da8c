// Single-thread kernels, one table per instruction set (scalar, AVX2+FMA, AVX-512F).
// The threaded operations in ops.cc split work into pieces and call one table's
// functions on each piece. Layout contract (set up by ops.cc `prepareWeight`):
//   - weight rows start 64-byte aligned, `ld` floats apart, ld a multiple of 16, and the
//     padding between `cols` and `ld` is zero;
//   - activations (x, y) come from JavaScript and may have any 4-byte alignment.
#pragma once
#include <cstddef>
#include <cstdint>

namespace act {

struct ElementwiseKernels;  // elementwise.h

struct Kernels {
  const char* name;
  // GEMM register tile: `tileRows` weight rows × `panel` tokens (X is packed in panels).
  int tileRows;
  int panel;
  // y[i] = w[i, 0:cols] · x for i in [0, n).
  void (*gemvRows)(float* y, const float* w, size_t ld, const float* x, size_t n, size_t cols);
  // acc[0:len] += x[c] · wt[c, 0:len] for every c in idx[0:n]; acc 64-byte aligned,
  // len a multiple of 16 (wt rows are zero-padded to it).
  void (*axpyRows)(float* acc, const float* wt, size_t ld, const float* x, const int32_t* idx,
                   size_t n, size_t len);
  // Writes the indices of the non-zero x[c] (NaN counts as non-zero) and returns how many;
  // idx must have room for n + 16 entries (vector stores may write past the count).
  size_t (*nonzero)(int32_t* idx, const float* x, size_t n);
  // Y[t, r] (+)= Σ_k xp[t, k] · w[r, k] for rows [0, nrows) of `w` and k in [k0, k0 + kc):
  // xp is X packed as [ceil(T / panel)][cols][panel] (zero-padded tokens), y has `ldy`
  // floats per token, `accumulate` adds to y instead of overwriting it.
  void (*gemmRows)(float* y, size_t ldy, const float* w, size_t ldw, const float* xp,
                   size_t tokens, size_t cols, size_t nrows, size_t k0, size_t kc,
                   bool accumulate);
  // Reads n floats (n a multiple of 64, 64-byte aligned) as four streams and returns
  // their sum: the memory-bandwidth probe.
  float (*readSum)(const float* p, size_t n);
  // The per-element kernels of the same instruction set.
  const ElementwiseKernels* elementwise;
};

const Kernels& scalarKernels();
// nullptr when the compiler or architecture cannot build them.
const Kernels* avx2Kernels();
const Kernels* avx512Kernels();

}  // namespace act
