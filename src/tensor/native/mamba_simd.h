// The vector Mamba kernels, written once with GCC/Clang vector extensions: included by
// mamba_avx2.cc and mamba_avx512.cc inside their own namespace after `ACT_VEC_BYTES` and
// a target pragma are set, so that each instruction set gets its own copy. No standard
// library calls here (those headers are included before the pragma).
//
// The scans keep each channel's state in vectors over the state index n and run the
// tokens of a block inside (the state never leaves the core while a block is scanned);
// Δ and the SSD decays of a block are computed first, vectorized over channels.

typedef float vf __attribute__((vector_size(ACT_VEC_BYTES)));
typedef int32_t vi __attribute__((vector_size(ACT_VEC_BYTES)));
constexpr size_t W = ACT_VEC_BYTES / sizeof(float);
// States of up to kMaxVectors·W values per channel stay in registers / L1 (N ≤ 256).
constexpr size_t kMaxVectors = 256 / W;

inline vf splat(float v) { return vf{} + v; }
inline vf loadv(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline float hsum(vf v) {
  float s = 0;
  for (size_t i = 0; i < W; i++) s += v[i];
  return s;
}

// e^x in float32, ~1 ulp (Cephes expf), x clamped to [−87.3, 88.3] (2ⁿ stays normal).
inline vf vexp(vf x) {
  x = vmin(splat(88.3f), vmax(splat(-87.3f), x));
  const vf magic = splat(12582912.0f);  // 1.5·2²³: round(x·log2e) in the low mantissa bits
  const vf t = x * 1.44269504088896341f + magic;
  const vf n = t - magic;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + (r + 1.0f);
  const vi e = ((vi)t + 127) << 23;
  return p * (vf)e;
}

// ln(u) for u in [1, 2] (Cephes logf without the range reduction it does not need here).
inline vf vlog12(vf u) {
  const vi big = u > 1.41421356f;  // then ln u = ln(u/2) + ln 2
  const vf f = (big ? u * 0.5f : u) - 1.0f;
  const vf e = (vf)(big & (vi)splat(1.0f));  // 1.0f where big, else 0
  const vf z = f * f;
  vf y = splat(7.0376836292e-2f);
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y = y + e * -2.12194440e-4f - z * 0.5f;
  return f + y + e * 0.693359375f;
}

// torch's softplus: max(x, 0) + log1p(e^−|x|), and x itself above 20. log1p(v) is
// ln(1 + v)·v/((1 + v) − 1), exact for the v that 1 + v rounds away.
inline vf vsoftplus(vf x) {
  const vf v = vexp(-vmax(x, -x));
  const vf u = v + 1.0f;
  const vf d = u - 1.0f;
  const vf l1p = d == 0.0f ? v : vlog12(u) * (v / (d == 0.0f ? splat(1.0f) : d));
  const vf s = vmax(x, splat(0.0f)) + l1p;
  return x > 20.0f ? x : s;
}

inline double softplusScalar(double x) {
  return x > 20 ? x : __builtin_log1p(__builtin_exp(x));
}

void conv1dSimd(const Conv1dCall& a, size_t seq, size_t c0, size_t c1, float* wt) {
  const size_t C = a.C, K = a.K, S = K - 1, n = c1 - c0;
  const size_t r0 = static_cast<size_t>(a.offsets[seq]);
  const size_t T = static_cast<size_t>(a.offsets[seq + 1]) - r0;
  const float* x = a.x + r0 * C;
  float* out = a.out + r0 * C;
  float* state = a.state + seq * S * C;
  // Taps transposed to [K, n], so that channels are contiguous.
  for (size_t c = 0; c < n; c++)
    for (size_t k = 0; k < K; k++) wt[k * n + c] = a.weight[(c0 + c) * K + k];
  // Row j of [state; x] for this piece's channels.
  auto row = [&](size_t j) { return j < S ? state + j * C + c0 : x + (j - S) * C + c0; };
  for (size_t t = 0; t < T; t++) {
    float* o = out + t * C + c0;
    size_t c = 0;
    // out[t, c] = bias[c] + Σ_k w[c, k]·[state; x][t + k, c]
    for (; c + W <= n; c += W) {
      vf acc = a.bias ? loadv(a.bias + c0 + c) : splat(0.0f);
      for (size_t k = 0; k < K; k++) acc += loadv(wt + k * n + c) * loadv(row(t + k) + c);
      storev(o + c, acc);
    }
    for (; c < n; c++) {
      float acc = a.bias ? a.bias[c0 + c] : 0.0f;
      for (size_t k = 0; k < K; k++) acc += wt[k * n + c] * row(t + k)[c];
      o[c] = acc;
    }
  }
  // The state becomes the last S rows of [state; x] (ascending j reads rows ≥ j).
  for (size_t j = 0; j < S; j++) {
    const float* src = row(T + j);
    float* dst = state + j * C + c0;
    if (src != dst) __builtin_memmove(dst, src, n * sizeof(float));
  }
}

void selectiveScanSimd(const SelectiveScanCall& a, size_t seq, size_t e0, size_t e1, float* dts) {
  const size_t E = a.E, N = a.N, n = e1 - e0, NV = N / W, tail = NV * W;
  const size_t r0 = static_cast<size_t>(a.offsets[seq]);
  const size_t T = static_cast<size_t>(a.offsets[seq + 1]) - r0;
  float* h = a.state + seq * E * N;
  vf hv[kMaxVectors], Av[kMaxVectors];
  for (size_t t0 = 0; t0 < T; t0 += kTokenBlock) {
    const size_t nt = T - t0 < kTokenBlock ? T - t0 : kTokenBlock;
    // Δ[t, e] = softplus(δ + δ_bias) for the block, channels in vectors.
    for (size_t t = 0; t < nt; t++) {
      const float* d = a.delta + (r0 + t0 + t) * E + e0;
      float* o = dts + t * n;
      size_t c = 0;
      for (; c + W <= n; c += W) storev(o + c, vsoftplus(loadv(d + c) + loadv(a.deltaBias + e0 + c)));
      for (; c < n; c++) o[c] = static_cast<float>(softplusScalar(double{d[c]} + a.deltaBias[e0 + c]));
    }
    for (size_t e = e0; e < e1; e++) {
      float* he = h + e * N;
      const float* Ae = a.A + e * N;
      for (size_t j = 0; j < NV; j++) {
        hv[j] = loadv(he + j * W);
        Av[j] = loadv(Ae + j * W);
      }
      for (size_t t = 0; t < nt; t++) {
        const size_t row = r0 + t0 + t;
        const float dt = dts[t * n + (e - e0)], x = a.u[row * E + e];
        const float* B = a.B + row * N;
        const float* C = a.C + row * N;
        vf acc = splat(0.0f);
        // h = exp(Δ·A)·h + (Δ·B)·u; y += h·C
        for (size_t j = 0; j < NV; j++) {
          hv[j] = vexp(Av[j] * dt) * hv[j] + (loadv(B + j * W) * dt) * x;
          acc += hv[j] * loadv(C + j * W);
        }
        float s = hsum(acc);
        for (size_t k = tail; k < N; k++) {
          he[k] = __builtin_expf(dt * Ae[k]) * he[k] + (dt * B[k]) * x;
          s += he[k] * C[k];
        }
        a.y[row * E + e] = s + a.D[e] * x;
      }
      for (size_t j = 0; j < NV; j++) storev(he + j * W, hv[j]);
    }
  }
}

void ssdSimd(const SsdCall& a, size_t seq, size_t h0, size_t h1, float* scratch) {
  const size_t H = a.H, P = a.P, G = a.G, N = a.N, perGroup = H / G, nh = h1 - h0;
  const size_t NV = N / W, tail = NV * W;
  const size_t r0 = static_cast<size_t>(a.offsets[seq]);
  const size_t T = static_cast<size_t>(a.offsets[seq + 1]) - r0;
  float* steps = scratch;
  float* decays = scratch + kTokenBlock * nh;
  vf hv[kMaxVectors];
  for (size_t t0 = 0; t0 < T; t0 += kTokenBlock) {
    const size_t nt = T - t0 < kTokenBlock ? T - t0 : kTokenBlock;
    // Δ = clamp(softplus(dt + dt_bias)) and decay = exp(Δ·A) per token and head.
    for (size_t t = 0; t < nt; t++) {
      for (size_t hd = h0; hd < h1; hd++) {
        double st = softplusScalar(double{a.dt[(r0 + t0 + t) * H + hd]} + a.dtBias[hd]);
        st = st < a.dtMin ? a.dtMin : st > a.dtMax ? a.dtMax : st;
        steps[t * nh + hd - h0] = static_cast<float>(st);
        decays[t * nh + hd - h0] = static_cast<float>(__builtin_exp(st * a.A[hd]));
      }
    }
    for (size_t hd = h0; hd < h1; hd++) {
      const size_t g = hd / perGroup;
      for (size_t p = 0; p < P; p++) {
        float* hp = a.state + seq * H * P * N + (hd * P + p) * N;
        for (size_t j = 0; j < NV; j++) hv[j] = loadv(hp + j * W);
        for (size_t t = 0; t < nt; t++) {
          const size_t row = r0 + t0 + t;
          const float st = steps[t * nh + hd - h0], dec = decays[t * nh + hd - h0];
          const size_t i = (row * H + hd) * P + p;
          const float xv = a.x[i];
          const float* B = a.B + (row * G + g) * N;
          const float* C = a.C + (row * G + g) * N;
          vf acc = splat(0.0f);
          // h = h·exp(Δ·A) + (Δ·B)·x; y += h·C
          for (size_t j = 0; j < NV; j++) {
            hv[j] = hv[j] * dec + (loadv(B + j * W) * st) * xv;
            acc += hv[j] * loadv(C + j * W);
          }
          float s = hsum(acc);
          for (size_t k = tail; k < N; k++) {
            hp[k] = hp[k] * dec + (st * B[k]) * xv;
            s += hp[k] * C[k];
          }
          a.y[i] = s + a.D[hd] * xv;
        }
        for (size_t j = 0; j < NV; j++) storev(hp + j * W, hv[j]);
      }
    }
  }
}
