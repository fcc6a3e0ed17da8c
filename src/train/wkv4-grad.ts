/**
 * RWKV-4's WKV recurrence for training: forward and backward over B windows of T tokens
 * (rows n = b·T + t of [B·T, d] arrays), every window starting from the zero state.
 * State and sums are float64. With w = −exp(time_decay) and u = time_first, per channel:
 *
 *   a_0 = b_0 = 0
 *   wkv_t = (a_t + e^(u+k_t)·v_t) / (b_t + e^(u+k_t))
 *   a_{t+1} = e^w·a_t + e^(k_t)·v_t;   b_{t+1} = e^w·b_t + e^(k_t)
 *
 * Two evaluations of the same function:
 *  - direct: the formulas above in float64, one exp per step. Used for a window when
 *    every |k| and |u| is ≤ DIRECT_LIMIT, so that every exponential and every product
 *    of two stays inside float64's range (e^±300 at most: no overflow, no underflow).
 *  - stabilized: the state kept as (ã, b̃, p) with a = ã·e^p, exactly as the inference
 *    kernel (reference.ts `wkv4`) and BlinkDL's CUDA backward keep it; any inputs.
 *
 * Backward (reverse time). With g_t = ∂L/∂wkv_t, den_t = b_t + e^(u+k_t):
 *   α_t = g_t/den_t = ∂L/∂a_t (direct);  β_t = −g_t·wkv_t/den_t = ∂L/∂b_t (direct)
 *   A_t = α_t + e^w·A_{t+1};  B_t = β_t + e^w·B_{t+1}   (total adjoints of a_t, b_t; A_T = 0)
 *   ∂L/∂v_t = α_t·e^(u+k_t) + A_{t+1}·e^(k_t)
 *   ∂L/∂k_t = α_t·e^(u+k_t)·(v_t − wkv_t) + e^(k_t)·(A_{t+1}·v_t + B_{t+1})
 *   ∂L/∂u  = Σ_t α_t·e^(u+k_t)·(v_t − wkv_t)
 *   ∂L/∂w  = Σ_t e^w·(A_{t+1}·a_t + B_{t+1}·b_t)
 */
import type { Vec } from './matmul.ts';

/** Largest |k| and |u| for the direct evaluation (see the header). */
export const DIRECT_LIMIT = 150;

export type WkvMode = 'auto' | 'stabilized';

/** What the direct evaluation keeps per token: the state before it, and e^k. */
export interface DirectState {
  a: Float64Array;
  b: Float64Array;
  ek: Float64Array;
}

/**
 * The direct evaluation's state for all B·T rows of one layer, kept from the forward for
 * the backward (which then needs no exp), and which windows took that evaluation.
 */
export class WkvSaved implements DirectState {
  a: Float64Array;
  b: Float64Array;
  ek: Float64Array;
  direct: Uint8Array;
  constructor(B: number, T: number, d: number) {
    this.a = new Float64Array(B * T * d);
    this.b = new Float64Array(B * T * d);
    this.ek = new Float64Array(B * T * d);
    this.direct = new Uint8Array(B);
  }
}

/** Scratch of one window (a recomputed forward), and per-channel running values. */
export class WkvScratch implements DirectState {
  a: Float64Array;
  b: Float64Array;
  ek: Float64Array;
  p: Float64Array;
  q: Float64Array;
  den: Float64Array;
  e2: Float64Array;
  y: Float64Array;
  /** Per channel: state, adjoints, exponents. */
  s0: Float64Array;
  s1: Float64Array;
  s2: Float64Array;
  eu: Float64Array;
  ew: Float64Array;
  constructor(T: number, d: number) {
    const n = T * d;
    this.a = new Float64Array(n);
    this.b = new Float64Array(n);
    this.ek = new Float64Array(n);
    this.p = new Float64Array(n);
    this.q = new Float64Array(n);
    this.den = new Float64Array(n);
    this.e2 = new Float64Array(n);
    this.y = new Float64Array(n);
    this.s0 = new Float64Array(d);
    this.s1 = new Float64Array(d);
    this.s2 = new Float64Array(d);
    this.eu = new Float64Array(d);
    this.ew = new Float64Array(d);
  }
}

/** True when window `b`'s k and all of u are small enough for the direct evaluation. */
function directFits(k: Vec, u: Vec, off: number, n: number, mode: WkvMode): boolean {
  if (mode === 'stabilized') return false;
  for (let i = 0; i < u.length; i++) if (!(Math.abs(u[i]) <= DIRECT_LIMIT)) return false;
  for (let j = off; j < off + n; j++) if (!(Math.abs(k[j]) <= DIRECT_LIMIT)) return false;
  return true;
}

/**
 * out[n, d] = wkv for B windows of T tokens. `w` holds −exp(time_decay) (float64),
 * `u` time_first. With `saved`, keeps what the backward needs.
 */
export function wkv4Forward(
  out: Vec,
  k: Vec,
  v: Vec,
  w: Float64Array,
  u: Vec,
  B: number,
  T: number,
  d: number,
  s: WkvScratch,
  saved: WkvSaved | null = null,
  mode: WkvMode = 'auto',
): void {
  for (let b = 0; b < B; b++) {
    const off = b * T * d;
    const direct = directFits(k, u, off, T * d, mode);
    if (saved) saved.direct[b] = direct ? 1 : 0;
    if (direct) forwardDirect(out, k, v, w, u, off, T, d, s, saved, off);
    else forwardStabilized(out, k, v, w, u, off, T, d, s, false);
  }
}

/**
 * Gradients of the loss through wkv: writes dk, dv [n, d]; adds into dw (∂L/∂w, not yet
 * ∂L/∂time_decay) and du [d]. `gy` is ∂L/∂wkv; `saved` what wkv4Forward kept, if it did.
 */
export function wkv4Backward(
  dk: Vec,
  dv: Vec,
  dw: Float64Array,
  du: Float64Array,
  gy: Vec,
  k: Vec,
  v: Vec,
  w: Float64Array,
  u: Vec,
  B: number,
  T: number,
  d: number,
  s: WkvScratch,
  saved: WkvSaved | null = null,
  mode: WkvMode = 'auto',
): void {
  for (let b = 0; b < B; b++) {
    const off = b * T * d;
    if (saved ? saved.direct[b] === 1 : directFits(k, u, off, T * d, mode)) {
      if (saved) {
        setRates(w, u, d, s);
        backwardDirect(dk, dv, dw, du, gy, v, off, T, d, s, saved, off);
      } else {
        forwardDirect(null, k, v, w, u, off, T, d, s, s, 0);
        backwardDirect(dk, dv, dw, du, gy, v, off, T, d, s, s, 0);
      }
    } else {
      forwardStabilized(null, k, v, w, u, off, T, d, s, true);
      backwardStabilized(dk, dv, dw, du, gy, k, v, w, off, T, d, s);
    }
  }
}

// ---------------------------------------------------------------- direct

/** eu = e^u, ew = e^w per channel. */
function setRates(w: Float64Array, u: Vec, d: number, s: WkvScratch): void {
  for (let i = 0; i < d; i++) {
    s.eu[i] = Math.exp(u[i]);
    s.ew[i] = Math.exp(w[i]);
  }
}

/** The recurrence of the header; `keep` (from row `keepOff`) gets a_t, b_t, e^(k_t). */
function forwardDirect(
  out: Vec | null,
  k: Vec,
  v: Vec,
  w: Float64Array,
  u: Vec,
  off: number,
  T: number,
  d: number,
  s: WkvScratch,
  keep: DirectState | null,
  keepOff: number,
): void {
  const { s0: a, s1: bb, eu, ew } = s;
  setRates(w, u, d, s);
  a.fill(0);
  bb.fill(0);
  // Token-major: each step walks one contiguous row of k, v.
  for (let t = 0; t < T; t++) {
    const row = off + t * d;
    const krow = keepOff + t * d;
    for (let i = 0; i < d; i++) {
      const j = row + i;
      const ek = Math.exp(k[j]);
      const vt = v[j];
      if (keep) {
        keep.a[krow + i] = a[i];
        keep.b[krow + i] = bb[i];
        keep.ek[krow + i] = ek;
      }
      // e = e^(u+k); wkv = (a + e·v) / (b + e)
      if (out) {
        const e = eu[i] * ek;
        out[j] = (a[i] + e * vt) / (bb[i] + e);
      }
      // a ← e^w·a + e^k·v;  b ← e^w·b + e^k
      a[i] = ew[i] * a[i] + ek * vt;
      bb[i] = ew[i] * bb[i] + ek;
    }
  }
}

/** The backward of the header over one window, from the state kept at row `keepOff`. */
function backwardDirect(
  dk: Vec,
  dv: Vec,
  dw: Float64Array,
  du: Float64Array,
  gy: Vec,
  v: Vec,
  off: number,
  T: number,
  d: number,
  s: WkvScratch,
  keep: DirectState,
  keepOff: number,
): void {
  // s0 = A_{t+1}, s1 = B_{t+1}: the adjoints of the state after token t.
  const { s0: A, s1: Bq, eu, ew } = s;
  A.fill(0);
  Bq.fill(0);
  for (let t = T - 1; t >= 0; t--) {
    const row = off + t * d;
    const krow = keepOff + t * d;
    for (let i = 0; i < d; i++) {
      const j = row + i;
      const ek = keep.ek[krow + i];
      const at = keep.a[krow + i];
      const bt = keep.b[krow + i];
      const vt = v[j];
      // e = e^(u+k); den = b + e; wkv = (a + e·v) / den
      const e = eu[i] * ek;
      const den = bt + e;
      const y = (at + e * vt) / den;
      // α = g/den (∂L/∂a_t directly), β = −α·wkv (∂L/∂b_t directly)
      const alpha = gy[j] / den;
      // through e^(u+k) in this token's output: ∂wkv/∂k = ∂wkv/∂u = e·(v − wkv)/den
      const direct = alpha * e * (vt - y);
      du[i] += direct;
      const At = A[i];
      const Bt = Bq[i];
      dv[j] = alpha * e + At * ek;
      dk[j] = direct + ek * (At * vt + Bt);
      // ∂a_{t+1}/∂w = e^w·a_t (and b alike)
      dw[i] += ew[i] * (At * at + Bt * bt);
      A[i] = alpha + ew[i] * At;
      Bq[i] = -alpha * y + ew[i] * Bt;
    }
  }
}

// ---------------------------------------------------------------- stabilized

/**
 * As reference.ts `wkv4` (float64 state): a = ã·e^p, and every exponential is of a
 * difference ≤ 0. Saves per token: ã_t, b̃_t, p_t (state before t), q_t (the exponent of
 * the output step), den̂_t = e^(p−q)·b̃ + e^(u+k−q), e2_t = e^(u+k−q), wkv_t.
 */
function forwardStabilized(
  out: Vec | null,
  k: Vec,
  v: Vec,
  w: Float64Array,
  u: Vec,
  off: number,
  T: number,
  d: number,
  s: WkvScratch,
  save: boolean,
): void {
  const { s0: aa, s1: bb, s2: pp } = s;
  for (let i = 0; i < d; i++) {
    aa[i] = 0;
    bb[i] = 0;
    pp[i] = -1e300;
  }
  for (let t = 0; t < T; t++) {
    const row = off + t * d;
    for (let i = 0; i < d; i++) {
      const j = row + i;
      const kt = k[j];
      const vt = v[j];
      const p = pp[i];
      // ww = u + k; q = max(p, ww); wkv = (e1·ã + e2·v) / (e1·b̃ + e2)
      let ww = u[i] + kt;
      const q = Math.max(p, ww);
      let e1 = Math.exp(p - q);
      let e2 = Math.exp(ww - q);
      const den = e1 * bb[i] + e2;
      const y = (e1 * aa[i] + e2 * vt) / den;
      if (out) out[j] = y;
      if (save) {
        const st = t * d + i;
        s.a[st] = aa[i];
        s.b[st] = bb[i];
        s.p[st] = p;
        s.q[st] = q;
        s.den[st] = den;
        s.e2[st] = e2;
        s.y[st] = y;
      }
      // ww = p + w; q' = max(ww, k); ã ← e^(ww−q')·ã + e^(k−q')·v; p ← q'
      ww = p + w[i];
      const q2 = Math.max(ww, kt);
      e1 = Math.exp(ww - q2);
      e2 = Math.exp(kt - q2);
      aa[i] = e1 * aa[i] + e2 * vt;
      bb[i] = e1 * bb[i] + e2;
      pp[i] = q2;
    }
  }
}

/**
 * The backward of the header with scaled adjoints: A_{t+1} = Â·e^o, B_{t+1} = B̂·e^o,
 * where o_t = max(w + o_{t+1}, −q_t) (A_t = α_t + e^w·A_{t+1} and α_t = (g/den̂)·e^(−q_t)).
 * Then e^(k_t)·A_{t+1} = Â·e^(k_t+o) with k_t + o ≤ 0, and e^w·A_{t+1}·a_t =
 * Â·ã_t·e^(w+o+p_t) with w + o + p_t ≤ 0, because q_s ≥ p_s ≥ k_t + (s−t−1)·w for s > t.
 */
function backwardStabilized(
  dk: Vec,
  dv: Vec,
  dw: Float64Array,
  du: Float64Array,
  gy: Vec,
  k: Vec,
  v: Vec,
  w: Float64Array,
  off: number,
  T: number,
  d: number,
  s: WkvScratch,
): void {
  const { s0: A, s1: Bq, s2: o } = s;
  A.fill(0);
  Bq.fill(0);
  o.fill(-1e300);
  for (let t = T - 1; t >= 0; t--) {
    const row = off + t * d;
    for (let i = 0; i < d; i++) {
      const j = row + i;
      const st = t * d + i;
      const kt = k[j];
      const vt = v[j];
      const y = s.y[st];
      const e2 = s.e2[st];
      // α̂ = g/den̂: α_t = α̂·e^(−q_t), and α_t·e^(u+k) = α̂·e2
      const ah = gy[j] / s.den[st];
      const direct = ah * e2 * (vt - y);
      du[i] += direct;
      const ot = o[i];
      const ek = Math.exp(kt + ot); // e^k·e^o
      dv[j] = ah * e2 + A[i] * ek;
      dk[j] = direct + ek * (A[i] * vt + Bq[i]);
      dw[i] += Math.exp(w[i] + ot + s.p[st]) * (A[i] * s.a[st] + Bq[i] * s.b[st]);
      // A_t = α_t + e^w·A_{t+1}, rescaled to the new exponent o'
      const on = Math.max(w[i] + ot, -s.q[st]);
      const carry = Math.exp(w[i] + ot - on);
      const fresh = ah * Math.exp(-s.q[st] - on);
      A[i] = carry * A[i] + fresh;
      Bq[i] = carry * Bq[i] - fresh * y;
      o[i] = on;
    }
  }
}
