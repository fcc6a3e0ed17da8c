// Portable kernels for CPUs without AVX2 (and non-x86 machines): plain loops that the
// compiler may vectorize with the baseline instruction set. Correct first, not fast.
#include "kernels.h"

#include "elementwise.h"

namespace act {
namespace {

void gemvRows(float* y, const float* w, size_t ld, const float* x, size_t n, size_t cols) {
  for (size_t i = 0; i < n; i++) {
    const float* wr = w + i * ld;
    // Four partial sums, as in reference.ts.
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      s0 += wr[c] * x[c];
      s1 += wr[c + 1] * x[c + 1];
      s2 += wr[c + 2] * x[c + 2];
      s3 += wr[c + 3] * x[c + 3];
    }
    for (; c < cols; c++) s0 += wr[c] * x[c];
    y[i] = s0 + s1 + s2 + s3;
  }
}

void axpyRows(float* acc, const float* wt, size_t ld, const float* x, const int32_t* idx,
              size_t n, size_t len) {
  for (size_t j = 0; j < n; j++) {
    const float v = x[idx[j]];
    const float* row = wt + static_cast<size_t>(idx[j]) * ld;
    for (size_t r = 0; r < len; r++) acc[r] += v * row[r];
  }
}

size_t nonzero(int32_t* idx, const float* x, size_t n) {
  size_t count = 0;
  // NaN != 0 holds: NaN counts as non-zero, −0 as zero, as in the reference.
  for (size_t c = 0; c < n; c++) {
    if (x[c] != 0.0f) idx[count++] = static_cast<int32_t>(c);
  }
  return count;
}

constexpr int kPanel = 4;

void gemmRows(float* y, size_t ldy, const float* w, size_t ldw, const float* xp, size_t tokens,
              size_t cols, size_t nrows, size_t k0, size_t kc, bool accumulate) {
  // One weight row against one panel of 4 packed tokens: xp[p][k][4].
  for (size_t t0 = 0; t0 < tokens; t0 += kPanel) {
    const float* xpp = xp + (t0 / kPanel) * cols * kPanel + k0 * kPanel;
    const size_t tv = tokens - t0 < kPanel ? tokens - t0 : kPanel;
    for (size_t r = 0; r < nrows; r++) {
      const float* wr = w + r * ldw + k0;
      float a[kPanel] = {0, 0, 0, 0};
      for (size_t k = 0; k < kc; k++) {
        for (int t = 0; t < kPanel; t++) a[t] += wr[k] * xpp[k * kPanel + t];
      }
      for (size_t t = 0; t < tv; t++) {
        float& out = y[(t0 + t) * ldy + r];
        out = accumulate ? out + a[t] : a[t];
      }
    }
  }
}

float readSum(const float* p, size_t n) {
  // Four streams (quarters) with two partial sums each, as in the vector versions.
  const size_t q = n / 4;
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < q; i += 2) {
    for (int j = 0; j < 4; j++) {
      s[2 * j] += p[j * q + i];
      s[2 * j + 1] += p[j * q + i + 1];
    }
  }
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

const Kernels kScalar = {"scalar", 1, kPanel, gemvRows, axpyRows, nonzero,
                         gemmRows, readSum, &kElementwiseScalar};

}  // namespace

const Kernels& scalarKernels() { return kScalar; }

}  // namespace act
