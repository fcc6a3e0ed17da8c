// AVX2 + FMA per-element kernels: the algorithms of elementwise_avx512.cc with 8 floats
// (two vectors of 4 doubles) per step, masked tails, and the exponent 2ⁿ built from
// bits (AVX2 has no vscalef), so the exps clamp their argument instead.
#include "elementwise.h"

#include <cmath>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define ACT_AVX2 __attribute__((target("avx2,fma")))

namespace act {
namespace {

// Lane mask (all bits set) for the first min(n, 8) lanes, for maskload / maskstore.
ACT_AVX2 inline __m256i lanes(size_t n) {
  const int c = n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// The same mask for the low / high 4 lanes as 64-bit lanes.
ACT_AVX2 inline __m256d lanesLo(__m256i m) {
  return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(m)));
}
ACT_AVX2 inline __m256d lanesHi(__m256i m) {
  return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1)));
}

// 8 floats ⇄ two vectors of 4 doubles.
ACT_AVX2 inline __m256d lo(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
ACT_AVX2 inline __m256d hi(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
ACT_AVX2 inline __m256 pack(__m256d a, __m256d b) {
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(a)), _mm256_cvtpd_ps(b), 1);
}
ACT_AVX2 inline __m256d fround(__m256d x) { return _mm256_cvtps_pd(_mm256_cvtpd_ps(x)); }
ACT_AVX2 inline __m256 load(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }

// e^x in double for x ≤ 0 (or NaN), ~1 ulp; x < −708 gives 0 (the true value is below
// 1e-307, invisible next to the e^0 = 1 it is added to). See elementwise_avx512.cc.
ACT_AVX2 inline __m256d expNeg(__m256d x) {
  const __m256d lowest = _mm256_set1_pd(-708.0);
  const __m256d tiny = _mm256_cmp_pd(x, lowest, _CMP_LT_OQ);  // false for NaN
  x = _mm256_max_pd(lowest, x);                                // keeps a NaN x
  // t = round(x·log2e) + 1.5·2⁵²: n in the low mantissa bits, rounded to nearest.
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  const __m256d t = _mm256_fmadd_pd(x, _mm256_set1_pd(1.4426950408889634), magic);
  const __m256d n = _mm256_sub_pd(t, magic);
  __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), x);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
  __m256d p = _mm256_set1_pd(1.0 / 479001600);  // Taylor series to r¹²
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 39916800));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 3628800));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 362880));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 40320));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 5040));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 720));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 120));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 24));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 6));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.5));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  // 2ⁿ = (n + 1023) << 52; n ≥ −1022 thanks to the clamp.
  const __m256i e = _mm256_slli_epi64(
      _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
  return _mm256_andnot_pd(tiny, _mm256_mul_pd(p, _mm256_castsi256_pd(e)));
}

// e^x in float32, ~1 ulp (Cephes expf), for x clamped to [−87.3, 88.3] so that 2ⁿ stays a
// normal float: the ends give ~1e-38 and ~2e38 where the true value is 0 or inf, which
// changes 1/(1 + e) by less than 1e-38.
ACT_AVX2 inline __m256 exp32(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
  const __m256 magic = _mm256_set1_ps(12582912.0f);  // 1.5·2²³
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

ACT_AVX2 void layerNormRow(float* out, const float* x, const float* w, const float* b, size_t n,
                           double eps) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  for (size_t i = 0; i < n; i += 8) {
    const __m256 xv = load(x + i, lanes(n - i));  // masked lanes are 0
    s0 = _mm256_add_pd(s0, lo(xv));
    s1 = _mm256_add_pd(s1, hi(xv));
  }
  alignas(32) double s[4];
  _mm256_store_pd(s, _mm256_add_pd(s0, s1));
  const __m256d mean = _mm256_set1_pd((s[0] + s[1] + s[2] + s[3]) / static_cast<double>(n));
  // Σ (x − mean)² over the valid lanes only.
  __m256d v0 = _mm256_setzero_pd(), v1 = v0;
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    const __m256 xv = load(x + i, m);
    const __m256d d0 = _mm256_and_pd(_mm256_sub_pd(lo(xv), mean), lanesLo(m));
    const __m256d d1 = _mm256_and_pd(_mm256_sub_pd(hi(xv), mean), lanesHi(m));
    v0 = _mm256_fmadd_pd(d0, d0, v0);
    v1 = _mm256_fmadd_pd(d1, d1, v1);
  }
  _mm256_store_pd(s, _mm256_add_pd(v0, v1));
  const double var = (s[0] + s[1] + s[2] + s[3]) / static_cast<double>(n);
  const __m256d inv = _mm256_set1_pd(1 / std::sqrt(var + eps));
  // out = (x − mean)·inv·w + b
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    const __m256 xv = load(x + i, m), wv = load(w + i, m), bv = load(b + i, m);
    const __m256d n0 = _mm256_mul_pd(_mm256_sub_pd(lo(xv), mean), inv);
    const __m256d n1 = _mm256_mul_pd(_mm256_sub_pd(hi(xv), mean), inv);
    const __m256d y0 = _mm256_fmadd_pd(n0, lo(wv), lo(bv));
    const __m256d y1 = _mm256_fmadd_pd(n1, hi(wv), hi(bv));
    _mm256_maskstore_ps(out + i, m, pack(y0, y1));
  }
}

ACT_AVX2 void mixRow(float* out, const float* x, const float* prev, const float* mix, size_t n) {
  const __m256d one = _mm256_set1_pd(1.0);
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    const __m256 xv = load(x + i, m), pv = load(prev + i, m), mv = load(mix + i, m);
    // x·mix + prev·(1 − mix)
    const __m256d y0 =
        _mm256_fmadd_pd(lo(xv), lo(mv), _mm256_mul_pd(lo(pv), _mm256_sub_pd(one, lo(mv))));
    const __m256d y1 =
        _mm256_fmadd_pd(hi(xv), hi(mv), _mm256_mul_pd(hi(pv), _mm256_sub_pd(one, hi(mv))));
    _mm256_maskstore_ps(out + i, m, pack(y0, y1));
  }
}

ACT_AVX2 void sigmoidValues(float* out, const float* x, size_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    const __m256 e = exp32(_mm256_sub_ps(_mm256_setzero_ps(), load(x + i, m)));
    _mm256_maskstore_ps(out + i, m, _mm256_div_ps(one, _mm256_add_ps(one, e)));
  }
}

ACT_AVX2 void reluSquareValues(float* out, const float* x, size_t n) {
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    // The reference's (a + |a|)/2 (see elementwise_avx512.cc).
    const __m256 a = load(x + i, m);
    const __m256 v = _mm256_mul_ps(_mm256_add_ps(a, _mm256_and_ps(a, absMask)), half);
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(v, v));
  }
}

// Math.max(x, y): NaN when either is NaN.
ACT_AVX2 inline __m256d jsMax(__m256d x, __m256d y) {
  const __m256d nan = _mm256_cmp_pd(x, y, _CMP_UNORD_Q);
  return _mm256_blendv_pd(_mm256_max_pd(x, y), _mm256_add_pd(x, y), nan);
}

// ex = e^(x − q), ey = e^(y − q) for q = Math.max(x, y) with one exp (elementwise_avx512.cc).
ACT_AVX2 inline void expPair(__m256d x, __m256d y, __m256d q, __m256d& ex, __m256d& ey) {
  const __m256d negAbs = _mm256_or_pd(_mm256_sub_pd(x, y), _mm256_set1_pd(-0.0));
  const __m256d z = expNeg(negAbs);
  const __m256d one = _mm256_add_pd(_mm256_sub_pd(q, q), _mm256_set1_pd(1.0));
  const __m256d xWins = _mm256_cmp_pd(x, y, _CMP_GE_OQ);  // false for NaN: ex = NaN
  ex = _mm256_blendv_pd(z, one, xWins);
  ey = _mm256_blendv_pd(one, z, xWins);
}

struct Lanes {
  __m256d a, b, p, w, u;
};

// One token for 4 channels: returns σ(r)·wkv and advances the float32 state.
ACT_AVX2 inline __m256d wkvStep(Lanes& s, __m256d kt, __m256d vt, __m256d rt) {
  // wkv = (e1·aa + e2·v) / (e1·bb + e2), e1 = e^(pp − q), e2 = e^(u + k − q)
  __m256d ww = _mm256_add_pd(s.u, kt);
  __m256d e1, e2;
  expPair(s.p, ww, jsMax(s.p, ww), e1, e2);
  const __m256d num = _mm256_fmadd_pd(e2, vt, _mm256_mul_pd(e1, s.a));
  const __m256d den = _mm256_fmadd_pd(e1, s.b, e2);
  const __m256d out = _mm256_div_pd(_mm256_mul_pd(rt, num), den);
  // aa ← e1·aa + e2·v; bb ← e1·bb + e2; pp ← q with q = max(pp + w, k)
  ww = _mm256_add_pd(s.p, s.w);
  const __m256d q = jsMax(ww, kt);
  expPair(ww, kt, q, e1, e2);
  s.a = fround(_mm256_fmadd_pd(e2, vt, _mm256_mul_pd(e1, s.a)));
  s.b = fround(_mm256_fmadd_pd(e1, s.b, e2));
  s.p = fround(q);
  return out;
}

ACT_AVX2 void wkv4Channels(float* out, const float* k, const float* v,
                           const float* r, const float* w, const float* u, float* aa,
                           float* bb, float* pp, size_t T, size_t d, size_t i0, size_t i1) {
  // 8 channels at a time (two chains of 4), the state in registers for all T tokens.
  for (size_t i = i0; i < i1; i += 8) {
    const __m256i m = lanes(i1 - i);
    const __m256 wv = load(w + i, m), uv = load(u + i, m);
    const __m256 av = load(aa + i, m), bv = load(bb + i, m), pv = load(pp + i, m);
    Lanes s0{lo(av), lo(bv), lo(pv), lo(wv), lo(uv)};
    Lanes s1{hi(av), hi(bv), hi(pv), hi(wv), hi(uv)};
    for (size_t t = 0; t < T; t++) {
      const size_t j = t * d + i;
      const __m256 kv = load(k + j, m), vv = load(v + j, m), rv = load(r + j, m);
      const __m256d o0 = wkvStep(s0, lo(kv), lo(vv), lo(rv));
      const __m256d o1 = wkvStep(s1, hi(kv), hi(vv), hi(rv));
      _mm256_maskstore_ps(out + j, m, pack(o0, o1));
    }
    _mm256_maskstore_ps(aa + i, m, pack(s0.a, s1.a));
    _mm256_maskstore_ps(bb + i, m, pack(s0.b, s1.b));
    _mm256_maskstore_ps(pp + i, m, pack(s0.p, s1.p));
  }
}

// x[i] = 0 where |x[i]| fails `Cmp` against λ (an ordered compare: NaN fails).
template <int Cmp>
ACT_AVX2 void thresholdWith(float* x, size_t n, float lambda) {
  const __m256 bound = _mm256_set1_ps(lambda);
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    const __m256 a = _mm256_and_ps(load(x + i, m), absMask);
    // Store +0 into the valid lanes that fail (andnot: not kept, and in range).
    const __m256 keep = _mm256_cmp_ps(a, bound, Cmp);
    const __m256i drop = _mm256_andnot_si256(_mm256_castps_si256(keep), m);
    _mm256_maskstore_ps(x + i, drop, _mm256_setzero_ps());
  }
}

ACT_AVX2 void thresholdValues(float* x, size_t n, float lambda, bool strict) {
  if (strict) thresholdWith<_CMP_GT_OQ>(x, n, lambda);
  else thresholdWith<_CMP_GE_OQ>(x, n, lambda);
}

ACT_AVX2 size_t countZeroValues(const float* x, size_t n) {
  // Per-lane counts in int32 (n < 2³¹): a true compare is −1, so subtract it.
  __m256i count = _mm256_setzero_si256();
  for (size_t i = 0; i < n; i += 8) {
    const __m256i m = lanes(n - i);
    // EQ_OQ: −0 equals 0, NaN equals nothing; masked-off lanes load as 0, so and with m.
    const __m256 z = _mm256_cmp_ps(load(x + i, m), _mm256_setzero_ps(), _CMP_EQ_OQ);
    count = _mm256_sub_epi32(count, _mm256_and_si256(_mm256_castps_si256(z), m));
  }
  alignas(32) uint32_t c[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(c), count);
  size_t total = 0;
  for (uint32_t v : c) total += v;
  return total;
}

}  // namespace

const ElementwiseKernels kElementwiseAvx2 = {
    layerNormRow, mixRow, sigmoidValues, reluSquareValues, wkv4Channels, thresholdValues,
    countZeroValues};

}  // namespace act

#endif
