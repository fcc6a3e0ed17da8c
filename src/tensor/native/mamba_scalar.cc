// Portable Mamba kernels: the reference (families/conv1d.ts, selective-scan.ts, ssd.ts)
// line by line, in double like JavaScript numbers, rounding to float32 exactly where the
// reference stores into a Float32Array (outputs, and the scan states after every token).
#include <algorithm>
#include <cmath>

#include "mamba.h"

namespace act {
namespace {

// torch's F.softplus: log(1 + eˣ), x itself above 20.
inline double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

void conv1dScalar(const Conv1dCall& a, size_t seq, size_t c0, size_t c1, float*) {
  const size_t C = a.C, K = a.K, S = K - 1;
  const size_t r0 = static_cast<size_t>(a.offsets[seq]);
  const size_t T = static_cast<size_t>(a.offsets[seq + 1]) - r0;
  const float* x = a.x + r0 * C;
  float* out = a.out + r0 * C;
  float* state = a.state + seq * S * C;
  // out[t, c] = bias[c] + Σ_k w[c, k]·[state; x][t + k, c]
  for (size_t t = 0; t < T; t++) {
    for (size_t c = c0; c < c1; c++) {
      double acc = a.bias ? a.bias[c] : 0;
      for (size_t k = 0; k < K; k++) {
        const size_t j = t + k;
        acc += double{a.weight[c * K + k]} * (j < S ? state[j * C + c] : x[(j - S) * C + c]);
      }
      out[t * C + c] = static_cast<float>(acc);
    }
  }
  // The state becomes the last S rows of [state; x] (for these channels).
  for (size_t j = 0; j < S; j++) {
    const size_t src = T + j;  // row of [state; x]
    for (size_t c = c0; c < c1; c++)
      state[j * C + c] = src < S ? state[src * C + c] : x[(src - S) * C + c];
  }
}

void selectiveScanScalar(const SelectiveScanCall& a, size_t seq, size_t e0, size_t e1, float*) {
  const size_t E = a.E, N = a.N;
  const size_t r0 = static_cast<size_t>(a.offsets[seq]);
  const size_t T = static_cast<size_t>(a.offsets[seq + 1]) - r0;
  float* h = a.state + seq * E * N;
  for (size_t t = 0; t < T; t++) {
    const size_t row = r0 + t;
    const float* B = a.B + row * N;
    const float* C = a.C + row * N;
    for (size_t e = e0; e < e1; e++) {
      const size_t i = row * E + e;
      const double dt = softplus(double{a.delta[i]} + a.deltaBias[e]);
      const double x = a.u[i];
      double acc = 0;
      for (size_t n = 0; n < N; n++) {
        const size_t k = e * N + n;
        // h = exp(Δ·A)·h + (Δ·B)·u; y += h·C
        const float v = static_cast<float>(std::exp(dt * a.A[k]) * h[k] + dt * B[n] * x);
        h[k] = v;
        acc += double{v} * C[n];
      }
      a.y[i] = static_cast<float>(acc + double{a.D[e]} * x);
    }
  }
}

void ssdScalar(const SsdCall& a, size_t seq, size_t h0, size_t h1, float*) {
  const size_t H = a.H, P = a.P, G = a.G, N = a.N, perGroup = H / G;
  const size_t r0 = static_cast<size_t>(a.offsets[seq]);
  const size_t T = static_cast<size_t>(a.offsets[seq + 1]) - r0;
  float* h = a.state + seq * H * P * N;
  for (size_t t = 0; t < T; t++) {
    const size_t row = r0 + t;
    for (size_t hd = h0; hd < h1; hd++) {
      // Δ = clamp(softplus(dt + dt_bias)); decay = exp(Δ·A)
      const double sp = softplus(double{a.dt[row * H + hd]} + a.dtBias[hd]);
      const double step = std::min(std::max(sp, a.dtMin), a.dtMax);
      const double decay = std::exp(step * a.A[hd]);
      const float* B = a.B + (row * G + hd / perGroup) * N;
      const float* C = a.C + (row * G + hd / perGroup) * N;
      for (size_t p = 0; p < P; p++) {
        const size_t i = (row * H + hd) * P + p;
        const double xv = a.x[i];
        float* hp = h + (hd * P + p) * N;
        double acc = 0;
        for (size_t n = 0; n < N; n++) {
          const float v = static_cast<float>(hp[n] * decay + step * B[n] * xv);
          hp[n] = v;
          acc += double{v} * C[n];
        }
        a.y[i] = static_cast<float>(acc + double{a.D[hd]} * xv);
      }
    }
  }
}

}  // namespace

const MambaKernels kMambaScalar = {"scalar", conv1dScalar, selectiveScanScalar, ssdScalar};

}  // namespace act
