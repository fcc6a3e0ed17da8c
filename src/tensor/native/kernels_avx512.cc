// AVX-512F kernels. Every function carries a target attribute instead of the file
// being compiled with -mavx512f, so no AVX-512 instruction leaks into code that runs
// before ops.cc has checked the CPU (__builtin_cpu_supports).
#include "kernels.h"

#include "elementwise.h"

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12 at -O3 flags the deliberately undefined vector inside _mm512_reduce_add_ps.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define ACT_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace act {
namespace {

ACT_AVX512 inline __mmask16 firstLanes(size_t n) {
  return static_cast<__mmask16>((1u << n) - 1u);
}

// One weight row · x; two accumulators hide the FMA latency.
ACT_AVX512 inline float dotRow(const float* w, const float* x, size_t full, __mmask16 tail) {
  __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  size_t c = 0;
  for (; c + 32 <= full; c += 32) {
    a = _mm512_fmadd_ps(_mm512_load_ps(w + c), _mm512_loadu_ps(x + c), a);
    b = _mm512_fmadd_ps(_mm512_load_ps(w + c + 16), _mm512_loadu_ps(x + c + 16), b);
  }
  if (c < full) a = _mm512_fmadd_ps(_mm512_load_ps(w + c), _mm512_loadu_ps(x + c), a);
  // The row's zero padding covers the tail lanes; x must not be read past its end.
  if (tail) a = _mm512_fmadd_ps(_mm512_load_ps(w + full), _mm512_maskz_loadu_ps(tail, x + full), a);
  return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

ACT_AVX512 void gemvRows(float* y, const float* w, size_t ld, const float* x, size_t n,
                         size_t cols) {
  const size_t full = cols & ~size_t{15};
  const __mmask16 tail = firstLanes(cols - full);
  size_t i = 0;
  // Four rows per pass: each x vector is loaded once for four weight streams.
  for (; i + 4 <= n; i += 4) {
    const float* w0 = w + i * ld;
    const float* w1 = w0 + ld;
    const float* w2 = w1 + ld;
    const float* w3 = w2 + ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    size_t c = 0;
    for (; c + 32 <= full; c += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
      a0 = _mm512_fmadd_ps(_mm512_load_ps(w0 + c), x0, a0);
      a1 = _mm512_fmadd_ps(_mm512_load_ps(w1 + c), x0, a1);
      a2 = _mm512_fmadd_ps(_mm512_load_ps(w2 + c), x0, a2);
      a3 = _mm512_fmadd_ps(_mm512_load_ps(w3 + c), x0, a3);
      b0 = _mm512_fmadd_ps(_mm512_load_ps(w0 + c + 16), x1, b0);
      b1 = _mm512_fmadd_ps(_mm512_load_ps(w1 + c + 16), x1, b1);
      b2 = _mm512_fmadd_ps(_mm512_load_ps(w2 + c + 16), x1, b2);
      b3 = _mm512_fmadd_ps(_mm512_load_ps(w3 + c + 16), x1, b3);
    }
    for (; c < cols; c += 16) {
      const __m512 x0 = c < full ? _mm512_loadu_ps(x + c) : _mm512_maskz_loadu_ps(tail, x + c);
      a0 = _mm512_fmadd_ps(_mm512_load_ps(w0 + c), x0, a0);
      a1 = _mm512_fmadd_ps(_mm512_load_ps(w1 + c), x0, a1);
      a2 = _mm512_fmadd_ps(_mm512_load_ps(w2 + c), x0, a2);
      a3 = _mm512_fmadd_ps(_mm512_load_ps(w3 + c), x0, a3);
    }
    y[i] = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));
    y[i + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));
    y[i + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));
    y[i + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));
  }
  for (; i < n; i++) y[i] = dotRow(w + i * ld, x, full, tail);
}

ACT_AVX512 void axpyRows(float* acc, const float* wt, size_t ld, const float* x,
                         const int32_t* idx, size_t n, size_t len) {
  size_t j = 0;
  // Four active inputs per pass: acc is loaded and stored once per four weight rows.
  for (; j + 4 <= n; j += 4) {
    const float* p0 = wt + static_cast<size_t>(idx[j]) * ld;
    const float* p1 = wt + static_cast<size_t>(idx[j + 1]) * ld;
    const float* p2 = wt + static_cast<size_t>(idx[j + 2]) * ld;
    const float* p3 = wt + static_cast<size_t>(idx[j + 3]) * ld;
    const __m512 v0 = _mm512_set1_ps(x[idx[j]]), v1 = _mm512_set1_ps(x[idx[j + 1]]);
    const __m512 v2 = _mm512_set1_ps(x[idx[j + 2]]), v3 = _mm512_set1_ps(x[idx[j + 3]]);
    // Prefetch the next four rows while these stream: a new row starts at a random
    // address, where the hardware prefetcher would need a few misses to catch on.
    const size_t nj = j + 8 <= n ? j + 4 : j;
    const char* q0 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj]) * ld);
    const char* q1 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj + 1]) * ld);
    const char* q2 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj + 2]) * ld);
    const char* q3 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj + 3]) * ld);
    for (size_t r = 0; r < len; r += 16) {
      _mm_prefetch(q0 + r * 4, _MM_HINT_T0);
      _mm_prefetch(q1 + r * 4, _MM_HINT_T0);
      _mm_prefetch(q2 + r * 4, _MM_HINT_T0);
      _mm_prefetch(q3 + r * 4, _MM_HINT_T0);
      __m512 a = _mm512_load_ps(acc + r);
      a = _mm512_fmadd_ps(v0, _mm512_load_ps(p0 + r), a);
      a = _mm512_fmadd_ps(v1, _mm512_load_ps(p1 + r), a);
      a = _mm512_fmadd_ps(v2, _mm512_load_ps(p2 + r), a);
      a = _mm512_fmadd_ps(v3, _mm512_load_ps(p3 + r), a);
      _mm512_store_ps(acc + r, a);
    }
  }
  for (; j < n; j++) {
    const float* p = wt + static_cast<size_t>(idx[j]) * ld;
    const __m512 v = _mm512_set1_ps(x[idx[j]]);
    for (size_t r = 0; r < len; r += 16) {
      _mm512_store_ps(acc + r, _mm512_fmadd_ps(v, _mm512_load_ps(p + r), _mm512_load_ps(acc + r)));
    }
  }
}

ACT_AVX512 size_t nonzero(int32_t* idx, const float* x, size_t n) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i step = _mm512_set1_epi32(16);
  __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  size_t count = 0;
  for (size_t c = 0; c < n; c += 16) {
    const __mmask16 valid = n - c >= 16 ? static_cast<__mmask16>(0xFFFF) : firstLanes(n - c);
    // Unordered compare: NaN is "not equal to zero", as in the reference; −0 is zero.
    const __mmask16 m =
        _mm512_mask_cmp_ps_mask(valid, _mm512_maskz_loadu_ps(valid, x + c), zero, _CMP_NEQ_UQ);
    // Compress into a register then store all 16 lanes (vpcompressd to memory is slow on
    // AMD); the caller leaves 16 entries of slack.
    _mm512_storeu_si512(idx + count, _mm512_maskz_compress_epi32(m, lane));
    count += static_cast<size_t>(__builtin_popcount(m));
    lane = _mm512_add_epi32(lane, step);
  }
  return count;
}

// GEMM register tile: M weight rows × 32 tokens of Yᵀ in 2·M zmm accumulators. For each
// k, two vectors of packed X (32 tokens) meet M broadcast weights W[r, k]; the weights are
// read in place (row-major), only X is packed.
constexpr int kPanel = 32;
constexpr int kTileRows = 12;

template <int M>
ACT_AVX512 void tile(float* y, size_t ldy, const float* w, size_t ldw, const float* xp, size_t kc,
                     size_t tv, bool accumulate) {
  __m512 acc[M][2];
#pragma GCC unroll 12
  for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (size_t k = 0; k < kc; k++) {
    const __m512 x0 = _mm512_load_ps(xp + k * kPanel);
    const __m512 x1 = _mm512_load_ps(xp + k * kPanel + 16);
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) {
      const __m512 wv = _mm512_set1_ps(w[r * ldw + k]);
      acc[r][0] = _mm512_fmadd_ps(wv, x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(wv, x1, acc[r][1]);
    }
  }
  // Transpose out through the stack: tmp[r][t] → Y[t, r] for the tv valid tokens.
  alignas(64) float tmp[M][kPanel];
#pragma GCC unroll 12
  for (int r = 0; r < M; r++) {
    _mm512_store_ps(tmp[r], acc[r][0]);
    _mm512_store_ps(tmp[r] + 16, acc[r][1]);
  }
  for (size_t t = 0; t < tv; t++) {
    float* yt = y + t * ldy;
    for (int r = 0; r < M; r++) yt[r] = accumulate ? yt[r] + tmp[r][t] : tmp[r][t];
  }
}

using TileFn = void (*)(float*, size_t, const float*, size_t, const float*, size_t, size_t, bool);
const TileFn kTiles[kTileRows + 1] = {nullptr,  tile<1>,  tile<2>, tile<3>, tile<4>,
                                      tile<5>,  tile<6>,  tile<7>, tile<8>, tile<9>,
                                      tile<10>, tile<11>, tile<12>};

ACT_AVX512 void gemmRows(float* y, size_t ldy, const float* w, size_t ldw, const float* xp,
                         size_t tokens, size_t cols, size_t nrows, size_t k0, size_t kc,
                         bool accumulate) {
  // Row tile outside, token panels inside: the 12 × kc weight tile stays in L1 while
  // every panel of X passes by.
  for (size_t r = 0; r < nrows; r += kTileRows) {
    const size_t m = nrows - r < kTileRows ? nrows - r : kTileRows;
    for (size_t t0 = 0; t0 < tokens; t0 += kPanel) {
      const float* xpp = xp + (t0 / kPanel) * cols * kPanel + k0 * kPanel;
      const size_t tv = tokens - t0 < kPanel ? tokens - t0 : kPanel;
      kTiles[m](y + t0 * ldy + r, ldy, w + r * ldw + k0, ldw, xpp, kc, tv, accumulate);
    }
  }
}

// Four streams (quarters of the range) at once: one sequential stream per core leaves
// DRAM bandwidth unused that the 4-row GEMV reaches.
ACT_AVX512 float readSum(const float* p, size_t n) {
  const size_t q = n / 4;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < q; i += 16) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + q + i));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + 2 * q + i));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + 3 * q + i));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

const Kernels kAvx512 = {"avx512", kTileRows, kPanel, gemvRows, axpyRows, nonzero,
                         gemmRows, readSum, &kElementwiseAvx512};

}  // namespace

const Kernels* avx512Kernels() { return &kAvx512; }

}  // namespace act

#else

namespace act {
const Kernels* avx512Kernels() { return nullptr; }
}  // namespace act

#endif
