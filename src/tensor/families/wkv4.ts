/**
 * RWKV-4's WKV recurrence as a kernel family: the definition for one sequence
 * (`wkv4Sequence`, the form every backend's kernel is tested against) and the family
 * that runs it over a packed batch, one state row per sequence.
 */
import { type Buf, f32, type KernelFamily, type Seqs } from '../backend.ts';

/**
 * The WKV recurrence over T tokens, with the shared exponent pp keeping exp() finite:
 *
 *   ww = u + k; q = max(pp, ww); e1 = exp(pp − q); e2 = exp(ww − q)
 *   wkv = (e1·aa + e2·v) / (e1·bb + e2)
 *   ww = pp + w; q = max(ww, k); e1 = exp(ww − q); e2 = exp(k − q)
 *   aa ← e1·aa + e2·v; bb ← e1·bb + e2; pp ← q
 *
 * Writes out[t, i] = σ(r)[t, i] · wkv[t, i]; updates aa, bb, pp in place.
 */
export function wkv4Sequence(
  out: Float32Array,
  k: Float32Array,
  v: Float32Array,
  r: Float32Array,
  w: Float32Array,
  u: Float32Array,
  aa: Float32Array,
  bb: Float32Array,
  pp: Float32Array,
  T: number,
  d: number,
): void {
  for (let i = 0; i < d; i++) {
    let a = aa[i];
    let bsum = bb[i];
    let p = pp[i];
    const wi = w[i];
    const ui = u[i];
    for (let t = 0; t < T; t++) {
      const j = t * d + i;
      const kt = k[j];
      const vt = v[j];
      let ww = ui + kt;
      let q = Math.max(p, ww);
      let e1 = Math.exp(p - q);
      let e2 = Math.exp(ww - q);
      out[j] = (r[j] * (e1 * a + e2 * vt)) / (e1 * bsum + e2);
      ww = p + wi;
      q = Math.max(ww, kt);
      e1 = Math.exp(ww - q);
      e2 = Math.exp(kt - q);
      // The state stays float32, as in the reference implementations.
      a = Math.fround(e1 * a + e2 * vt);
      bsum = Math.fround(e1 * bsum + e2);
      p = Math.fround(q);
    }
    aa[i] = a;
    bb[i] = bsum;
    pp[i] = p;
  }
}

export interface Wkv4Args {
  /** [rows, d]: σ(r)·wkv */
  out: Buf;
  /** [rows, d] each */
  k: Buf;
  v: Buf;
  /** σ(receptance) [rows, d] */
  r: Buf;
  /** w = −exp(time_decay) [d] */
  w: Buf;
  /** u = time_first [d] */
  u: Buf;
  /** The state, [B, d] each: numerator, denominator, shared exponent. */
  aa: Buf;
  bb: Buf;
  pp: Buf;
  seqs: Seqs;
  d: number;
}

/** Runs `sequence` (wkv4Sequence or a faster equal) on each sequence of the batch. */
export function wkv4Batched(sequence: typeof wkv4Sequence, a: Wkv4Args): void {
  const { seqs, d } = a;
  const o = seqs.offsets;
  const rows = (b: Buf, s: number) => f32(b).subarray(o[s] * d, o[s + 1] * d);
  const state = (b: Buf, s: number) => f32(b).subarray(s * d, (s + 1) * d);
  for (let s = 0; s < seqs.count; s++) {
    const T = seqs.length(s);
    if (T === 0) continue;
    sequence(
      rows(a.out, s),
      rows(a.k, s),
      rows(a.v, s),
      rows(a.r, s),
      f32(a.w),
      f32(a.u),
      state(a.aa, s),
      state(a.bb, s),
      state(a.pp, s),
      T,
      d,
    );
  }
}

export const wkv4: KernelFamily<Wkv4Args> = {
  name: 'wkv4',
  reference: (a) => wkv4Batched(wkv4Sequence, a),
  // Per channel and token: ww = u+k; q = max(p, ww); e1 = exp(p−q); e2 = exp(ww−q);
  // out = r·(e1·a + e2·v)/(e1·b + e2); then ww = p+w; q = max(ww, k); e1, e2 again;
  // a = e1·a + e2·v; b = e1·b + e2; p = q → 10 add, 7 mul, 4 exp, 1 div, 2 max; state
  // a, b, p read and written once per call and sequence.
  cost: ({ seqs, d }) => {
    const n = seqs.rows * d;
    return {
      add: 10 * n,
      mul: 7 * n,
      exp: 4 * n,
      div: n,
      cmp: 2 * n,
      stateReads: 3 * d * seqs.count,
      stateWrites: 3 * d * seqs.count,
    };
  },
};
