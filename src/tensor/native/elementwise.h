// Per-element kernels of the RWKV models, the same functions as reference.ts (layerNorm,
// timeShiftMix, sigmoid, reluSquare, wkv4, and the sites' threshold and countZeros): one
// table per instruction set, chosen with the matrix kernels (Kernels::elementwise), and
// entry points, threaded over the pool where the work pays for it.
//
// Precision: layerNorm, timeShiftMix and wkv4 compute in double as JavaScript does (wkv4
// with a vector exp accurate to ~1 ulp of double, and its state rounded to float32 after
// every token as the reference's Math.fround), so the float32 results equal the
// reference's except for rare last-bit rounding ties. sigmoid uses a float32 exp (error
// ~2e-7); reluSquare is exact, and so are threshold and countZeros (comparisons only).
#pragma once
#include <cstddef>

namespace act {

struct ElementwiseKernels {
  // out[0:n] = (x − mean) / sqrt(var + eps) · w + b over one row of n values.
  void (*layerNormRow)(float* out, const float* x, const float* w, const float* b, size_t n,
                       double eps);
  // out[0:n] = x·mix + prev·(1 − mix) for one token.
  void (*mixRow)(float* out, const float* x, const float* prev, const float* mix, size_t n);
  // out[0:n] = 1 / (1 + e^−x)
  void (*sigmoid)(float* out, const float* x, size_t n);
  // out[0:n] = ((x + |x|) / 2)²
  void (*reluSquare)(float* out, const float* x, size_t n);
  // The WKV recurrence (reference.ts wkv4) for channels [i0, i1) of d over T tokens:
  // out, k, v, r are [T, d]; w, u, aa, bb, pp are [d]; aa, bb, pp are updated in place.
  void (*wkv4)(float* out, const float* k, const float* v, const float* r, const float* w,
               const float* u, float* aa, float* bb, float* pp, size_t T, size_t d, size_t i0,
               size_t i1);
  // x[i] = 0 unless |x[i]| > lambda (strict) or |x[i]| ≥ lambda; NaN passes neither.
  // Writes +0 to the zeroed values only. lambda > 0, a float32 (see `threshold` below).
  void (*threshold)(float* x, size_t n, float lambda, bool strict);
  // The number of x[i] == 0 (+0 and −0, not NaN) in x[0:n], n < 2³¹.
  size_t (*countZeros)(const float* x, size_t n);
};

// The tables the Kernels tables point to (elementwise_{scalar,avx2,avx512}.cc); the
// vector ones exist only where kernels_avx*.cc are built (x86-64 with GCC or Clang).
extern const ElementwiseKernels kElementwiseScalar;
extern const ElementwiseKernels kElementwiseAvx2;
extern const ElementwiseKernels kElementwiseAvx512;

// Threaded entry points (elementwise.cc); the caller (addon.cc) has checked every size.
void layerNorm(float* out, const float* x, const float* w, const float* b, size_t rows, size_t n,
               double eps);
void timeShiftMix(float* out, const float* x, const float* prev, const float* mix, size_t tokens,
                  size_t n);
void sigmoid(float* out, const float* x, size_t n);
void reluSquare(float* out, const float* x, size_t n);
void wkv4(float* out, const float* k, const float* v, const float* r, const float* w,
          const float* u, float* aa, float* bb, float* pp, size_t T, size_t d);
// reference.ts threshold: keeps |x| > lambda (strict) or ≥ lambda over x[0:n], in place;
// lambda ≤ 0 is the identity, lambda must not be NaN. Compares as JavaScript does (a float32
// |x| against the double lambda) by turning lambda into an equivalent float32 bound.
void threshold(float* x, size_t n, double lambda, bool strict);
size_t countZeros(const float* x, size_t n);

}  // namespace act
