/**
 * Mamba-2's SSD scan as a kernel family: H heads of P channels, each with one scalar
 * decay A[h] per head and a state [P, N]; B and C are shared by the H/G heads of each of
 * G groups (transformers' Mamba2Mixer.torch_forward, its one-token form, which is the
 * recurrence its chunked sequence form computes):
 *
 *   Δ = clamp(softplus(dt + dt_bias), lo, hi)             per token and head
 *   h[p, n] ← exp(Δ·A) · h[p, n] + (Δ·B[g, n]) · x[p]     g = head / (H/G)
 *   y[p] = Σ_n h[p, n] · C[g, n] + D · x[p]
 *
 * with A = −exp(A_log) [H]. The gated norm and everything else stay in the model.
 */
import { type Buf, f32, type KernelFamily, type Seqs } from '../backend.ts';
import { softplus } from './selective-scan.ts';

/** Dimensions and the time-step limits of a call. */
export interface SsdShape {
  heads: number;
  headDim: number;
  groups: number;
  stateSize: number;
  /** time_step_limit: Δ is clamped to [dtMin, dtMax] (0 and +∞ by default). */
  dtMin: number;
  dtMax: number;
}

/**
 * The scan over T tokens of one sequence: y, x [T, H·P]; dt [T, H]; B, C [T, G·N]; dt_bias,
 * A, D [H]; h [H·P·N] updated in place, rounded to float32 after every token. `y` may be
 * `x` itself (each x[t, h, p] is read before y[t, h, p] is written) but must not otherwise
 * overlap an argument.
 */
export function ssdSequence(
  y: Float32Array,
  x: Float32Array,
  dt: Float32Array,
  dtBias: Float32Array,
  A: Float32Array,
  B: Float32Array,
  C: Float32Array,
  D: Float32Array,
  h: Float32Array,
  T: number,
  s: SsdShape,
): void {
  const { heads: H, headDim: P, groups: G, stateSize: N } = s;
  const perGroup = H / G;
  for (let t = 0; t < T; t++) {
    for (let hd = 0; hd < H; hd++) {
      const step = Math.min(Math.max(softplus(dt[t * H + hd] + dtBias[hd]), s.dtMin), s.dtMax);
      const decay = Math.exp(step * A[hd]);
      const bc = (t * G + Math.floor(hd / perGroup)) * N;
      for (let p = 0; p < P; p++) {
        const i = (t * H + hd) * P + p;
        const xv = x[i];
        const k0 = (hd * P + p) * N;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          // h = h·exp(Δ·A) + (Δ·B)·x; y += h·C
          const v = Math.fround(h[k0 + n] * decay + step * B[bc + n] * xv);
          h[k0 + n] = v;
          acc += v * C[bc + n];
        }
        y[i] = acc + D[hd] * xv;
      }
    }
  }
}

export interface SsdArgs extends SsdShape {
  /** [rows, H·P] */
  y: Buf;
  /** The convolved x part [rows, H·P] */
  x: Buf;
  /** in_proj's dt part [rows, H], before dt_bias */
  dt: Buf;
  /** [H] each: dt_bias, −exp(A_log), D */
  dtBias: Buf;
  A: Buf;
  D: Buf;
  /** The convolved B and C parts [rows, G·N] each */
  B: Buf;
  C: Buf;
  /** [batch, H·P·N] */
  state: Buf;
  seqs: Seqs;
}

/** Runs `sequence` (ssdSequence or a faster equal) on each non-empty sequence. */
export function ssdBatched(sequence: typeof ssdSequence, a: SsdArgs): void {
  const { seqs, heads: H, headDim: P, groups: G, stateSize: N } = a;
  const o = seqs.offsets;
  const rows = (b: Buf, s: number, w: number) => f32(b).subarray(o[s] * w, o[s + 1] * w);
  const S = H * P * N;
  for (let s = 0; s < seqs.count; s++) {
    const T = seqs.length(s);
    if (T === 0) continue;
    sequence(
      rows(a.y, s, H * P),
      rows(a.x, s, H * P),
      rows(a.dt, s, H),
      f32(a.dtBias),
      f32(a.A),
      rows(a.B, s, G * N),
      rows(a.C, s, G * N),
      f32(a.D),
      f32(a.state).subarray(s * S, (s + 1) * S),
      T,
      a,
    );
  }
}

export const ssd: KernelFamily<SsdArgs> = {
  name: 'ssd',
  reference: (a) => ssdBatched(ssdSequence, a),
  // Per token and head: dt + bias, softplus (2 adds, 2 exp-class), the clamp (2 compares),
  // Δ·A and its exp. Per token, head and channel: the D skip (1 mul, 1 add). Per token,
  // head, channel and state index: Δ·B, ·x, h·decay, +, ·C, Σ → 4 muls, 2 adds. The
  // state [H, P, N] is read and written once per call and sequence.
  cost: ({ seqs, heads: H, headDim: P, stateSize: N }) => {
    const th = seqs.rows * H;
    let active = 0;
    for (let s = 0; s < seqs.count; s++) if (seqs.length(s) > 0) active++;
    return {
      add: 2 * th + th * P + 2 * th * P * N,
      mul: th + th * P + 4 * th * P * N,
      exp: 3 * th,
      cmp: 2 * th,
      stateReads: active * H * P * N,
      stateWrites: active * H * P * N,
    };
  },
};
