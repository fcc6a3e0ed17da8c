// The WKV-7 kernel body for one sequence and one head, included by wkv7.cc once per
// instruction set, each time in its own namespace WKV7_NS, with WKV7_TARGET (the target
// attribute of its functions) and WKV7_WIDTH (floats per vector: 4, 8 or 16) defined.
// GCC/Clang vector extensions: the compiler emits the instruction set of WKV7_TARGET; the
// tail of a row (N not a multiple of the width) runs one value at a time. No include
// guard: it is meant to be included repeatedly.

namespace WKV7_NS {

constexpr size_t W = WKV7_WIDTH;
typedef float V __attribute__((vector_size(W * sizeof(float))));
// The same vector read from or written to any 4-byte-aligned float (JavaScript arrays).
typedef float VU __attribute__((vector_size(W * sizeof(float)), aligned(4), may_alias));
typedef float V4 __attribute__((vector_size(4 * sizeof(float))));

// Σ of the lanes, by halving (a few shuffles, not W dependent scalar adds).
WKV7_TARGET inline float lanes(V x) {
#if WKV7_WIDTH == 16
  union {
    V v;
    V4 q[4];
  } u = {x};
  const V4 s = (u.q[0] + u.q[1]) + (u.q[2] + u.q[3]);
#elif WKV7_WIDTH == 8
  union {
    V v;
    V4 q[2];
  } u = {x};
  const V4 s = u.q[0] + u.q[1];
#else
  const V4 s = x;
#endif
  return (s[0] + s[1]) + (s[2] + s[3]);
}

WKV7_TARGET inline V at(const float* p) { return *reinterpret_cast<const VU*>(p); }

// One token's update of rows i0 … i0 + R − 1 of a head's state, R rows at a time so that
// their dot products (and lane sums) run side by side instead of one after another.
template <int R>
WKV7_TARGET inline void rows(float* S, size_t i0, size_t N, const float* r, const float* w,
                             const float* k, const float* v, const float* a, const float* b,
                             float* out) {
  const size_t nv = N - N % W;
  // sa_i = Σ_j S_ij·a_j over the state before this token
  V acc[R] = {};
  size_t j = 0;
  for (; j < nv; j += W) {
    const V aj = at(a + j);
    for (int q = 0; q < R; q++) acc[q] += at(S + (i0 + q) * N + j) * aj;
  }
  float sa[R];
  for (int q = 0; q < R; q++) {
    sa[q] = lanes(acc[q]);
    for (size_t jt = j; jt < N; jt++) sa[q] += S[(i0 + q) * N + jt] * a[jt];
  }
  // S_ij ← S_ij·w_j + sa_i·b_j + v_i·k_j; out_i = Σ_j S_ij·r_j
  V yacc[R] = {};
  for (j = 0; j < nv; j += W) {
    const V wj = at(w + j), bj = at(b + j), kj = at(k + j), rj = at(r + j);
    for (int q = 0; q < R; q++) {
      float* p = S + (i0 + q) * N + j;
      const V s = at(p) * wj + sa[q] * bj + v[i0 + q] * kj;
      *reinterpret_cast<VU*>(p) = s;
      yacc[q] += s * rj;
    }
  }
  for (int q = 0; q < R; q++) {
    float y = lanes(yacc[q]);
    for (size_t jt = j; jt < N; jt++) {
      float* p = S + (i0 + q) * N + jt;
      *p = *p * w[jt] + sa[q] * b[jt] + v[i0 + q] * k[jt];
      y += *p * r[jt];
    }
    out[i0 + q] = y;
  }
}

// Tokens offsets[seq] … offsets[seq + 1] − 1 of head h.
WKV7_TARGET void head(const Wkv7Args& x, size_t seq, size_t h) {
  const size_t N = x.headSize, C = x.heads * N;
  float* S = x.state + (seq * x.heads + h) * N * N;
  const float* u = x.u + h * N;
  for (int32_t t = x.offsets[seq]; t < x.offsets[seq + 1]; t++) {
    const size_t o = static_cast<size_t>(t) * C + h * N;
    const float *r = x.r + o, *w = x.w + o, *k = x.k + o, *v = x.v + o, *a = x.a + o,
                *b = x.b + o;
    size_t i = 0;
    for (; i + 4 <= N; i += 4) rows<4>(S, i, N, r, w, k, v, a, b, x.out + o);
    for (; i < N; i++) rows<1>(S, i, N, r, w, k, v, a, b, x.out + o);
    // bonus_i = (Σ_j r_j·k_j·u_j)·v_i
    float c = 0;
    for (size_t j = 0; j < N; j++) c += r[j] * k[j] * u[j];
    for (size_t q = 0; q < N; q++) x.bonus[o + q] = c * v[q];
  }
}

}  // namespace WKV7_NS
