// AVX-512F per-element kernels (see elementwise.h for the precision of each). 16 floats
// per step, widened to two vectors of 8 doubles where the reference computes in double;
// tails are masked, so any n works and nothing is read or written past it.
#include "elementwise.h"

#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12 at -O3 flags the deliberately undefined vector inside _mm512_reduce_add_pd.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define ACT_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace act {
namespace {

ACT_AVX512 inline __mmask16 lanes(size_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// 16 floats ⇄ two vectors of 8 doubles.
ACT_AVX512 inline __m512d lo(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
ACT_AVX512 inline __m512d hi(__m512 v) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
ACT_AVX512 inline __m512 pack(__m512d a, __m512d b) {
  const __m512d l = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(a)));
  return _mm512_castpd_ps(_mm512_insertf64x4(l, _mm256_castps_pd(_mm512_cvtpd_ps(b)), 1));
}
// Math.fround on 8 doubles.
ACT_AVX512 inline __m512d fround(__m512d x) { return _mm512_cvtps_pd(_mm512_cvtpd_ps(x)); }

// e^x in double for x ≤ 0 (or NaN), ~1 ulp: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its
// Taylor series to r¹², and ·2ⁿ by vscalefpd, which also gives subnormals and 0.
ACT_AVX512 inline __m512d expNeg(__m512d x) {
  // Below −746 the result rounds to 0 anyway; max(c, x) keeps a NaN x (second operand).
  x = _mm512_max_pd(_mm512_set1_pd(-746.0), x);
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x − n·ln2 with ln2 split in two (Cody–Waite) for a correctly rounded r.
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-01), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
  __m512d p = _mm512_set1_pd(1.0 / 479001600);  // 1/12!
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 39916800));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 3628800));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 362880));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 40320));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 5040));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 720));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 120));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 24));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 6));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  return _mm512_scalef_pd(p, n);
}

// e^x in float32, ~1 ulp (Cephes expf polynomial); overflows to +inf, underflows to 0.
ACT_AVX512 inline __m512 exp32(__m512 x) {
  // |x| ≤ 150 keeps n small for vscalefps; beyond, the result is inf or 0 all the same.
  x = _mm512_min_ps(_mm512_set1_ps(150.0f), _mm512_max_ps(_mm512_set1_ps(-150.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  // e^r ≈ 1 + r + r²·p(r)
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

ACT_AVX512 void layerNormRow(float* out, const float* x, const float* w, const float* b, size_t n,
                             double eps) {
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  for (size_t i = 0; i < n; i += 16) {
    const __m512 xv = _mm512_maskz_loadu_ps(lanes(n - i), x + i);  // masked lanes are 0
    s0 = _mm512_add_pd(s0, lo(xv));
    s1 = _mm512_add_pd(s1, hi(xv));
  }
  const double meanS = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / static_cast<double>(n);
  const __m512d mean = _mm512_set1_pd(meanS);
  // Σ (x − mean)² over the valid lanes only (a masked-off 0 would add mean²).
  __m512d v0 = _mm512_setzero_pd(), v1 = v0;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    const __m512d d0 = _mm512_maskz_sub_pd(static_cast<__mmask8>(m), lo(xv), mean);
    const __m512d d1 = _mm512_maskz_sub_pd(static_cast<__mmask8>(m >> 8), hi(xv), mean);
    v0 = _mm512_fmadd_pd(d0, d0, v0);
    v1 = _mm512_fmadd_pd(d1, d1, v1);
  }
  const double var = _mm512_reduce_add_pd(_mm512_add_pd(v0, v1)) / static_cast<double>(n);
  const __m512d inv = _mm512_set1_pd(1 / std::sqrt(var + eps));
  // out = (x − mean)·inv·w + b
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 wv = _mm512_maskz_loadu_ps(m, w + i), bv = _mm512_maskz_loadu_ps(m, b + i);
    const __m512d n0 = _mm512_mul_pd(_mm512_sub_pd(lo(xv), mean), inv);
    const __m512d n1 = _mm512_mul_pd(_mm512_sub_pd(hi(xv), mean), inv);
    const __m512d y0 = _mm512_fmadd_pd(n0, lo(wv), lo(bv));
    const __m512d y1 = _mm512_fmadd_pd(n1, hi(wv), hi(bv));
    _mm512_mask_storeu_ps(out + i, m, pack(y0, y1));
  }
}

ACT_AVX512 void mixRow(float* out, const float* x, const float* prev, const float* mix, size_t n) {
  const __m512d one = _mm512_set1_pd(1.0);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 pv = _mm512_maskz_loadu_ps(m, prev + i);
    const __m512 mv = _mm512_maskz_loadu_ps(m, mix + i);
    // x·mix + prev·(1 − mix)
    const __m512d y0 =
        _mm512_fmadd_pd(lo(xv), lo(mv), _mm512_mul_pd(lo(pv), _mm512_sub_pd(one, lo(mv))));
    const __m512d y1 =
        _mm512_fmadd_pd(hi(xv), hi(mv), _mm512_mul_pd(hi(pv), _mm512_sub_pd(one, hi(mv))));
    _mm512_mask_storeu_ps(out + i, m, pack(y0, y1));
  }
}

ACT_AVX512 void sigmoidValues(float* out, const float* x, size_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 e = exp32(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(m, x + i)));
    _mm512_mask_storeu_ps(out + i, m, _mm512_div_ps(one, _mm512_add_ps(one, e)));
  }
}

ACT_AVX512 void reluSquareValues(float* out, const float* x, size_t n) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    // The reference's (a + |a|)/2, not max(a, 0): the same for every finite a, and −inf
    // gives NaN in both.
    const __m512 a = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 v = _mm512_mul_ps(_mm512_add_ps(a, _mm512_abs_ps(a)), half);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, v));
  }
}

// Math.max(x, y): NaN when either is NaN (vmaxpd alone would return y).
ACT_AVX512 inline __m512d jsMax(__m512d x, __m512d y) {
  const __mmask8 nan = _mm512_cmp_pd_mask(x, y, _CMP_UNORD_Q);
  return _mm512_mask_add_pd(_mm512_max_pd(x, y), nan, x, y);
}

// ex = e^(x − q), ey = e^(y − q) for q = Math.max(x, y), as the reference computes them
// with two exps: one of the two is e^0 = 1 (NaN when q is infinite or NaN), the other is
// e^−|x − y|. One exp instead of two.
ACT_AVX512 inline void expPair(__m512d x, __m512d y, __m512d q, __m512d& ex, __m512d& ey) {
  const __m512i sign = _mm512_castpd_si512(_mm512_set1_pd(-0.0));  // −|x − y|: set the sign bit
  const __m512d negAbs =
      _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(_mm512_sub_pd(x, y)), sign));
  const __m512d z = expNeg(negAbs);
  const __m512d one = _mm512_add_pd(_mm512_sub_pd(q, q), _mm512_set1_pd(1.0));
  const __mmask8 xWins = _mm512_cmp_pd_mask(x, y, _CMP_GE_OQ);  // false for NaN: ex = NaN
  ex = _mm512_mask_blend_pd(xWins, z, one);
  ey = _mm512_mask_blend_pd(xWins, one, z);
}

// The recurrence state of 8 channels, in double (always holding float32 values).
struct Lanes {
  __m512d a, b, p, w, u;
};

// One token for 8 channels: returns σ(r)·wkv (r is already σ(r)) and advances the state.
ACT_AVX512 inline __m512d wkvStep(Lanes& s, __m512d kt, __m512d vt, __m512d rt) {
  // wkv = (e1·aa + e2·v) / (e1·bb + e2), e1 = e^(pp − q), e2 = e^(u + k − q)
  __m512d ww = _mm512_add_pd(s.u, kt);
  __m512d e1, e2;
  expPair(s.p, ww, jsMax(s.p, ww), e1, e2);
  const __m512d num = _mm512_fmadd_pd(e2, vt, _mm512_mul_pd(e1, s.a));
  const __m512d den = _mm512_fmadd_pd(e1, s.b, e2);
  const __m512d out = _mm512_div_pd(_mm512_mul_pd(rt, num), den);
  // aa ← e1·aa + e2·v; bb ← e1·bb + e2; pp ← q with q = max(pp + w, k), all float32
  ww = _mm512_add_pd(s.p, s.w);
  const __m512d q = jsMax(ww, kt);
  expPair(ww, kt, q, e1, e2);
  s.a = fround(_mm512_fmadd_pd(e2, vt, _mm512_mul_pd(e1, s.a)));
  s.b = fround(_mm512_fmadd_pd(e1, s.b, e2));
  s.p = fround(q);
  return out;
}

ACT_AVX512 void wkv4Channels(float* out, const float* k, const float* v,
                             const float* r, const float* w, const float* u, float* aa,
                             float* bb, float* pp, size_t T, size_t d, size_t i0, size_t i1) {
  // 16 channels at a time (two independent chains of 8), the state in registers for all
  // T tokens; each token reads 16 consecutive floats of k, v, r at stride d.
  for (size_t i = i0; i < i1; i += 16) {
    const __mmask16 m = lanes(i1 - i);
    const __m512 wv = _mm512_maskz_loadu_ps(m, w + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    const __m512 av = _mm512_maskz_loadu_ps(m, aa + i), bv = _mm512_maskz_loadu_ps(m, bb + i);
    const __m512 pv = _mm512_maskz_loadu_ps(m, pp + i);
    Lanes s0{lo(av), lo(bv), lo(pv), lo(wv), lo(uv)};
    Lanes s1{hi(av), hi(bv), hi(pv), hi(wv), hi(uv)};
    for (size_t t = 0; t < T; t++) {
      const size_t j = t * d + i;
      const __m512 kv = _mm512_maskz_loadu_ps(m, k + j);
      const __m512 vv = _mm512_maskz_loadu_ps(m, v + j);
      const __m512 rv = _mm512_maskz_loadu_ps(m, r + j);
      const __m512d o0 = wkvStep(s0, lo(kv), lo(vv), lo(rv));
      const __m512d o1 = wkvStep(s1, hi(kv), hi(vv), hi(rv));
      _mm512_mask_storeu_ps(out + j, m, pack(o0, o1));
    }
    _mm512_mask_storeu_ps(aa + i, m, pack(s0.a, s1.a));
    _mm512_mask_storeu_ps(bb + i, m, pack(s0.b, s1.b));
    _mm512_mask_storeu_ps(pp + i, m, pack(s0.p, s1.p));
  }
}

// x[i] = 0 where |x[i]| fails `Cmp` against λ (an ordered compare: NaN fails).
template <int Cmp>
ACT_AVX512 void thresholdWith(float* x, size_t n, float lambda) {
  const __m512 bound = _mm512_set1_ps(lambda);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + i));
    // Store +0 into the valid lanes that fail; the others are left untouched.
    const __mmask16 keep = _mm512_cmp_ps_mask(a, bound, Cmp);
    _mm512_mask_storeu_ps(x + i, static_cast<__mmask16>(m & ~keep), _mm512_setzero_ps());
  }
}

ACT_AVX512 void thresholdValues(float* x, size_t n, float lambda, bool strict) {
  if (strict) thresholdWith<_CMP_GT_OQ>(x, n, lambda);
  else thresholdWith<_CMP_GE_OQ>(x, n, lambda);
}

ACT_AVX512 size_t countZeroValues(const float* x, size_t n) {
  // Per-lane counts in int32 (n < 2³¹), one masked increment per zero lane.
  __m512i count = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  const __m512 zero = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    // EQ_OQ: −0 equals 0, NaN equals nothing; masked-off lanes (loaded as 0) do not count.
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __mmask16 z = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_EQ_OQ);
    count = _mm512_mask_add_epi32(count, z, count, one);
  }
  return static_cast<size_t>(static_cast<unsigned>(_mm512_reduce_add_epi32(count)));
}

}  // namespace

const ElementwiseKernels kElementwiseAvx512 = {
    layerNormRow, mixRow, sigmoidValues, reluSquareValues, wkv4Channels, thresholdValues,
    countZeroValues};

}  // namespace act

#endif
