// AVX2 + FMA kernels for x86-64 CPUs without AVX-512 (the same algorithms as
// kernels_avx512.cc with 8-lane vectors). Function-level target attributes, see there.
#include "kernels.h"

#include "elementwise.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define ACT_AVX2 __attribute__((target("avx2,fma")))

namespace act {
namespace {

// Lane mask selecting the first n (0..8) lanes, for maskload.
ACT_AVX2 inline __m256i firstLanes(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lanes);
}

ACT_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

ACT_AVX2 void gemvRows(float* y, const float* w, size_t ld, const float* x, size_t n,
                       size_t cols) {
  const size_t full = cols & ~size_t{7};
  const __m256i tail = firstLanes(cols - full);
  size_t i = 0;
  // Four rows per pass, two accumulators each (8 independent FMA chains).
  for (; i + 4 <= n; i += 4) {
    const float* w0 = w + i * ld;
    const float* w1 = w0 + ld;
    const float* w2 = w1 + ld;
    const float* w3 = w2 + ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    size_t c = 0;
    for (; c + 16 <= full; c += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
      a0 = _mm256_fmadd_ps(_mm256_load_ps(w0 + c), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_load_ps(w1 + c), x0, a1);
      a2 = _mm256_fmadd_ps(_mm256_load_ps(w2 + c), x0, a2);
      a3 = _mm256_fmadd_ps(_mm256_load_ps(w3 + c), x0, a3);
      b0 = _mm256_fmadd_ps(_mm256_load_ps(w0 + c + 8), x1, b0);
      b1 = _mm256_fmadd_ps(_mm256_load_ps(w1 + c + 8), x1, b1);
      b2 = _mm256_fmadd_ps(_mm256_load_ps(w2 + c + 8), x1, b2);
      b3 = _mm256_fmadd_ps(_mm256_load_ps(w3 + c + 8), x1, b3);
    }
    for (; c < cols; c += 8) {
      // Weight rows are zero-padded to 16 floats; x is masked past its end.
      const __m256 x0 = c < full ? _mm256_loadu_ps(x + c) : _mm256_maskload_ps(x + c, tail);
      a0 = _mm256_fmadd_ps(_mm256_load_ps(w0 + c), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_load_ps(w1 + c), x0, a1);
      a2 = _mm256_fmadd_ps(_mm256_load_ps(w2 + c), x0, a2);
      a3 = _mm256_fmadd_ps(_mm256_load_ps(w3 + c), x0, a3);
    }
    y[i] = hsum(_mm256_add_ps(a0, b0));
    y[i + 1] = hsum(_mm256_add_ps(a1, b1));
    y[i + 2] = hsum(_mm256_add_ps(a2, b2));
    y[i + 3] = hsum(_mm256_add_ps(a3, b3));
  }
  for (; i < n; i++) {
    const float* wr = w + i * ld;
    __m256 a = _mm256_setzero_ps();
    for (size_t c = 0; c < cols; c += 8) {
      const __m256 x0 = c < full ? _mm256_loadu_ps(x + c) : _mm256_maskload_ps(x + c, tail);
      a = _mm256_fmadd_ps(_mm256_load_ps(wr + c), x0, a);
    }
    y[i] = hsum(a);
  }
}

ACT_AVX2 void axpyRows(float* acc, const float* wt, size_t ld, const float* x,
                       const int32_t* idx, size_t n, size_t len) {
  size_t j = 0;
  // Four active inputs per pass: acc is loaded and stored once per four weight rows.
  for (; j + 4 <= n; j += 4) {
    const float* p0 = wt + static_cast<size_t>(idx[j]) * ld;
    const float* p1 = wt + static_cast<size_t>(idx[j + 1]) * ld;
    const float* p2 = wt + static_cast<size_t>(idx[j + 2]) * ld;
    const float* p3 = wt + static_cast<size_t>(idx[j + 3]) * ld;
    const __m256 v0 = _mm256_set1_ps(x[idx[j]]), v1 = _mm256_set1_ps(x[idx[j + 1]]);
    const __m256 v2 = _mm256_set1_ps(x[idx[j + 2]]), v3 = _mm256_set1_ps(x[idx[j + 3]]);
    // Prefetch the next four rows while these stream: a new row starts at a random
    // address, where the hardware prefetcher would need a few misses to catch on.
    const size_t nj = j + 8 <= n ? j + 4 : j;
    const char* q0 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj]) * ld);
    const char* q1 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj + 1]) * ld);
    const char* q2 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj + 2]) * ld);
    const char* q3 = reinterpret_cast<const char*>(wt + static_cast<size_t>(idx[nj + 3]) * ld);
    for (size_t r = 0; r < len; r += 8) {
      if ((r & 15) == 0) {
        _mm_prefetch(q0 + r * 4, _MM_HINT_T0);
        _mm_prefetch(q1 + r * 4, _MM_HINT_T0);
        _mm_prefetch(q2 + r * 4, _MM_HINT_T0);
        _mm_prefetch(q3 + r * 4, _MM_HINT_T0);
      }
      __m256 a = _mm256_load_ps(acc + r);
      a = _mm256_fmadd_ps(v0, _mm256_load_ps(p0 + r), a);
      a = _mm256_fmadd_ps(v1, _mm256_load_ps(p1 + r), a);
      a = _mm256_fmadd_ps(v2, _mm256_load_ps(p2 + r), a);
      a = _mm256_fmadd_ps(v3, _mm256_load_ps(p3 + r), a);
      _mm256_store_ps(acc + r, a);
    }
  }
  for (; j < n; j++) {
    const float* p = wt + static_cast<size_t>(idx[j]) * ld;
    const __m256 v = _mm256_set1_ps(x[idx[j]]);
    for (size_t r = 0; r < len; r += 8) {
      _mm256_store_ps(acc + r, _mm256_fmadd_ps(v, _mm256_load_ps(p + r), _mm256_load_ps(acc + r)));
    }
  }
}

ACT_AVX2 size_t nonzero(int32_t* idx, const float* x, size_t n) {
  const __m256 zero = _mm256_setzero_ps();
  const size_t full = n & ~size_t{7};
  size_t count = 0;
  for (size_t c = 0; c < full; c += 8) {
    // Unordered compare: NaN counts as non-zero, −0 as zero (as in the reference).
    unsigned m = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + c), zero, _CMP_NEQ_UQ)));
    while (m) {
      idx[count++] = static_cast<int32_t>(c + static_cast<size_t>(__builtin_ctz(m)));
      m &= m - 1;
    }
  }
  for (size_t c = full; c < n; c++) {
    if (x[c] != 0.0f) idx[count++] = static_cast<int32_t>(c);
  }
  return count;
}

// GEMM register tile: M weight rows × 16 tokens of Yᵀ in 2·M ymm accumulators (M ≤ 6
// leaves room for the two X vectors and a broadcast among 16 registers).
constexpr int kPanel = 16;
constexpr int kTileRows = 6;

template <int M>
ACT_AVX2 void tile(float* y, size_t ldy, const float* w, size_t ldw, const float* xp, size_t kc,
                   size_t tv, bool accumulate) {
  __m256 acc[M][2];
#pragma GCC unroll 6
  for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (size_t k = 0; k < kc; k++) {
    const __m256 x0 = _mm256_load_ps(xp + k * kPanel);
    const __m256 x1 = _mm256_load_ps(xp + k * kPanel + 8);
#pragma GCC unroll 6
    for (int r = 0; r < M; r++) {
      const __m256 wv = _mm256_broadcast_ss(w + r * ldw + k);
      acc[r][0] = _mm256_fmadd_ps(wv, x0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(wv, x1, acc[r][1]);
    }
  }
  alignas(32) float tmp[M][kPanel];
#pragma GCC unroll 6
  for (int r = 0; r < M; r++) {
    _mm256_store_ps(tmp[r], acc[r][0]);
    _mm256_store_ps(tmp[r] + 8, acc[r][1]);
  }
  for (size_t t = 0; t < tv; t++) {
    float* yt = y + t * ldy;
    for (int r = 0; r < M; r++) yt[r] = accumulate ? yt[r] + tmp[r][t] : tmp[r][t];
  }
}

using TileFn = void (*)(float*, size_t, const float*, size_t, const float*, size_t, size_t, bool);
const TileFn kTiles[kTileRows + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

ACT_AVX2 void gemmRows(float* y, size_t ldy, const float* w, size_t ldw, const float* xp,
                       size_t tokens, size_t cols, size_t nrows, size_t k0, size_t kc,
                       bool accumulate) {
  for (size_t r = 0; r < nrows; r += kTileRows) {
    const size_t m = nrows - r < kTileRows ? nrows - r : kTileRows;
    for (size_t t0 = 0; t0 < tokens; t0 += kPanel) {
      const float* xpp = xp + (t0 / kPanel) * cols * kPanel + k0 * kPanel;
      const size_t tv = tokens - t0 < kPanel ? tokens - t0 : kPanel;
      kTiles[m](y + t0 * ldy + r, ldy, w + r * ldw + k0, ldw, xpp, kc, tv, accumulate);
    }
  }
}

// Four streams at once, as in kernels_avx512.cc.
ACT_AVX2 float readSum(const float* p, size_t n) {
  const size_t q = n / 4;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < q; i += 8) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + q + i));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + 2 * q + i));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + 3 * q + i));
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

const Kernels kAvx2 = {"avx2", kTileRows, kPanel, gemvRows, axpyRows, nonzero,
                       gemmRows, readSum, &kElementwiseAvx2};

}  // namespace

const Kernels* avx2Kernels() { return &kAvx2; }

}  // namespace act

#else

namespace act {
const Kernels* avx2Kernels() { return nullptr; }
}  // namespace act

#endif
