/**
 * Mamba's selective scan as a kernel family: per channel e of E and state index n of N
 * a linear recurrence whose step Δ, input matrix B and output matrix C depend on the
 * token (transformers' MambaMixer.slow_forward, steps 3.b–3.c, and the D skip):
 *
 *   Δ = softplus(δ + δ_bias)                         per token and channel
 *   h[e, n] ← exp(Δ·A[e, n]) · h[e, n] + (Δ·B[n]) · u[e]
 *   y[e] = Σ_n h[e, n] · C[n] + D[e] · u[e]
 *
 * with A = −exp(A_log) [E, N] and the state h [E, N] per sequence. The gate SiLU(z) and
 * everything else stay in the model.
 */
import { type Buf, f32, type KernelFamily, type Seqs } from '../backend.ts';

/** torch's F.softplus (β = 1, threshold 20): log(1 + eˣ), and x itself above 20. */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/**
 * The scan over T tokens of one sequence: y, u, δ [T, E]; B, C [T, N]; A [E, N]; δ_bias,
 * D [E]; h [E, N] updated in place. The state is rounded to float32 after every token,
 * as transformers keeps it. `y` may be `u` or `delta` itself (each is read before y[t, e]
 * is written) but must not otherwise overlap an argument.
 */
export function selectiveScanSequence(
  y: Float32Array,
  u: Float32Array,
  delta: Float32Array,
  deltaBias: Float32Array,
  A: Float32Array,
  B: Float32Array,
  C: Float32Array,
  D: Float32Array,
  h: Float32Array,
  T: number,
  E: number,
  N: number,
): void {
  for (let t = 0; t < T; t++) {
    const bc = t * N;
    for (let e = 0; e < E; e++) {
      const i = t * E + e;
      const dt = softplus(delta[i] + deltaBias[e]);
      const x = u[i];
      let acc = 0;
      for (let n = 0; n < N; n++) {
        const k = e * N + n;
        // h = exp(Δ·A)·h + (Δ·B)·u; y += h·C
        const v = Math.fround(Math.exp(dt * A[k]) * h[k] + dt * B[bc + n] * x);
        h[k] = v;
        acc += v * C[bc + n];
      }
      y[i] = acc + D[e] * x;
    }
  }
}

export interface SelectiveScanArgs {
  /** [rows, E] */
  y: Buf;
  /** The convolved input u [rows, E] */
  u: Buf;
  /** dt_proj's product without its bias, [rows, E] */
  delta: Buf;
  /** dt_proj.bias [E] */
  deltaBias: Buf;
  /** −exp(A_log) [E, N] */
  A: Buf;
  /** [rows, N] each */
  B: Buf;
  C: Buf;
  /** [E] */
  D: Buf;
  /** [batch, E·N] */
  state: Buf;
  seqs: Seqs;
  inner: number;
  stateSize: number;
}

/** Runs `sequence` (selectiveScanSequence or a faster equal) on each non-empty sequence. */
export function selectiveScanBatched(
  sequence: typeof selectiveScanSequence,
  a: SelectiveScanArgs,
): void {
  const { seqs, inner: E, stateSize: N } = a;
  const o = seqs.offsets;
  const rows = (b: Buf, s: number, w: number) => f32(b).subarray(o[s] * w, o[s + 1] * w);
  for (let s = 0; s < seqs.count; s++) {
    const T = seqs.length(s);
    if (T === 0) continue;
    sequence(
      rows(a.y, s, E),
      rows(a.u, s, E),
      rows(a.delta, s, E),
      f32(a.deltaBias),
      f32(a.A),
      rows(a.B, s, N),
      rows(a.C, s, N),
      f32(a.D),
      f32(a.state).subarray(s * E * N, (s + 1) * E * N),
      T,
      E,
      N,
    );
  }
}

export const selectiveScan: KernelFamily<SelectiveScanArgs> = {
  name: 'selectiveScan',
  reference: (a) => selectiveScanBatched(selectiveScanSequence, a),
  // Per token and channel: δ + bias and softplus (log(1 + eˣ): 2 adds, 2 exp-class), the
  // D skip (1 mul, 1 add). Per token, channel and state index: Δ·A, exp, Δ·B, ·u, ·h, +,
  // ·C, Σ → 5 muls, 2 adds, 1 exp. The state [E, N] is read and written once per call and
  // sequence.
  cost: ({ seqs, inner: E, stateSize: N }) => {
    const te = seqs.rows * E;
    let active = 0;
    for (let s = 0; s < seqs.count; s++) if (seqs.length(s) > 0) active++;
    return {
      add: 3 * te + 2 * te * N,
      mul: te + 5 * te * N,
      exp: 2 * te + te * N,
      stateReads: active * E * N,
      stateWrites: active * E * N,
    };
  },
};
