// Portable per-element kernels: reference.ts line by line, in double like JavaScript
// numbers, rounding to float32 exactly where the reference stores into a Float32Array.
#include <cmath>

#include "elementwise.h"

namespace act {
namespace {

// Math.max: NaN when either argument is NaN (std::max would return the first).
inline double jsMax(double a, double b) { return a != a || b != b ? a + b : (a < b ? b : a); }

void layerNormRow(float* out, const float* x, const float* w, const float* b, size_t n,
                  double eps) {
  double mean = 0;
  for (size_t i = 0; i < n; i++) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = x[i] - mean;
    var += d * d;
  }
  const double inv = 1 / std::sqrt(var / static_cast<double>(n) + eps);
  for (size_t i = 0; i < n; i++) {
    out[i] = static_cast<float>((x[i] - mean) * inv * w[i] + b[i]);
  }
}

void mixRow(float* out, const float* x, const float* prev, const float* mix, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const double m = mix[i];
    out[i] = static_cast<float>(x[i] * m + prev[i] * (1 - m));
  }
}

void sigmoidValues(float* out, const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = static_cast<float>(1 / (1 + std::exp(-double{x[i]})));
}

void reluSquareValues(float* out, const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const double a = x[i];
    const double v = (a + std::fabs(a)) * 0.5;
    out[i] = static_cast<float>(v * v);
  }
}

void wkv4Channels(float* out, const float* k, const float* v, const float* r,
                  const float* w, const float* u, float* aa, float* bb, float* pp, size_t T,
                  size_t d, size_t i0, size_t i1) {
  for (size_t i = i0; i < i1; i++) {
    double a = aa[i], bsum = bb[i], p = pp[i];
    const double wi = w[i], ui = u[i];
    for (size_t t = 0; t < T; t++) {
      const size_t j = t * d + i;
      const double kt = k[j], vt = v[j];
      // wkv = (e1·aa + e2·v) / (e1·bb + e2) with the shared exponent q
      double ww = ui + kt;
      double q = jsMax(p, ww);
      double e1 = std::exp(p - q), e2 = std::exp(ww - q);
      out[j] = static_cast<float>(r[j] * (e1 * a + e2 * vt) / (e1 * bsum + e2));
      // aa ← e1·aa + e2·v; bb ← e1·bb + e2; pp ← q, kept in float32
      ww = p + wi;
      q = jsMax(ww, kt);
      e1 = std::exp(ww - q);
      e2 = std::exp(kt - q);
      a = static_cast<float>(e1 * a + e2 * vt);
      bsum = static_cast<float>(e1 * bsum + e2);
      p = static_cast<float>(q);
    }
    aa[i] = static_cast<float>(a);
    bb[i] = static_cast<float>(bsum);
    pp[i] = static_cast<float>(p);
  }
}

void thresholdValues(float* x, size_t n, float lambda, bool strict) {
  // !(a > λ) rather than a ≤ λ: NaN fails the test and is zeroed, as in the reference.
  if (strict) {
    for (size_t i = 0; i < n; i++) {
      if (!(std::fabs(x[i]) > lambda)) x[i] = 0;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      if (!(std::fabs(x[i]) >= lambda)) x[i] = 0;
    }
  }
}

size_t countZeroValues(const float* x, size_t n) {
  size_t z = 0;
  for (size_t i = 0; i < n; i++) z += x[i] == 0.0f;  // true for −0 too
  return z;
}

}  // namespace

const ElementwiseKernels kElementwiseScalar = {
    layerNormRow, mixRow, sigmoidValues, reluSquareValues, wkv4Channels, thresholdValues,
    countZeroValues};

}  // namespace act
