/**
 * RWKV-5's state update as a kernel family (RWKV-6 adds a decay per token, wkv6.ts): per
 * head of N channels a matrix state S [N, N], indexed S[i, j] with i the key channel and
 * j the value channel, the layout of ChatRWKV (`s` of shape (H, N, N), a = k @ v with k
 * (N, 1) and v (1, N)) and of rwkv.cpp (`att_heads`, state[h][i][j]). Per token:
 *
 *   out_j = Σ_i r_i·(u_i·k_i·v_j + S_ij)        (the bonus u for the current token)
 *   S_ij ← w_i·S_ij + k_i·v_j                   (the decay w of key channel i)
 *
 * computed as out_j = Σ_i r_i·S_ij + b·v_j with b = Σ_i r_i·u_i·k_i: the same sum, with
 * 3 instead of 4 multiplications per state value (the fast kernels and `cost` agree).
 * GroupNorm and the gate are the model's (backend ops), not part of the family.
 *
 * u and w are per channel ([H·N], index h·N + i): RWKV-5.0/5.1 checkpoints hold one value
 * per head, which the model repeats over the head's channels when it loads them.
 */
import { type Buf, f32, type KernelFamily, type OpCost, type Seqs } from '../backend.ts';

/**
 * The definition over T tokens of one sequence, head by head (a head's state stays in
 * the caches over all T tokens). r, k, v, out are [T, H·N]; u is [H·N]; w is [H·N] when
 * `wStride` is 0 (one decay for every token, RWKV-5) or [T, H·N] when it is H·N (a decay
 * per token, RWKV-6); s is [H, N, N], updated in place. Sums are in double, the state is
 * rounded to float32 after every token as in the reference implementations. `out` must
 * not overlap another argument.
 */
export function wkvHeadsSequence(
  out: Float32Array,
  r: Float32Array,
  k: Float32Array,
  v: Float32Array,
  w: Float32Array,
  wStride: number,
  u: Float32Array,
  s: Float32Array,
  T: number,
  H: number,
  N: number,
): void {
  const A = H * N;
  const acc = new Float64Array(N);
  for (let h = 0; h < H; h++) {
    const s0 = h * N * N;
    for (let t = 0; t < T; t++) {
      const x0 = t * A + h * N; // this token's head h in r, k, v, out
      const w0 = t * wStride + h * N;
      // b = Σ_i r_i·u_i·k_i; out_j starts as b·v_j
      let bonus = 0;
      for (let i = 0; i < N; i++) bonus += r[x0 + i] * u[h * N + i] * k[x0 + i];
      for (let j = 0; j < N; j++) acc[j] = bonus * v[x0 + j];
      for (let i = 0; i < N; i++) {
        const ri = r[x0 + i];
        const ki = k[x0 + i];
        const wi = w[w0 + i];
        const row = s0 + i * N;
        for (let j = 0; j < N; j++) {
          // out_j += r_i·S_ij (the state before this token); S_ij ← w_i·S_ij + k_i·v_j
          acc[j] += ri * s[row + j];
          s[row + j] = Math.fround(wi * s[row + j] + ki * v[x0 + j]);
        }
      }
      for (let j = 0; j < N; j++) out[x0 + j] = acc[j];
    }
  }
}

export interface Wkv5Args {
  /** [rows, H·N]: Σ_i r_i·(u_i·k_i·v_j + S_ij), before GroupNorm */
  out: Buf;
  /** [rows, H·N] each: receptance, key, value */
  r: Buf;
  k: Buf;
  v: Buf;
  /** w = exp(−exp(time_decay)) [H·N] */
  w: Buf;
  /** u [H·N]: time_faaaa, or exp(time_first) (5.0/5.1) */
  u: Buf;
  /** [B, H, N, N]: S[b, h, i, j], i the key and j the value channel */
  state: Buf;
  seqs: Seqs;
  heads: number;
  headSize: number;
}

/** One sequence's update (wkvHeadsSequence or a faster equal). */
export type WkvHeadsSequence = typeof wkvHeadsSequence;

/**
 * Runs `sequence` on each sequence of the batch with its state, w either one row [H·N]
 * (`perToken` false) or a row per token. Empty sequences leave their state as it is.
 */
export function wkvHeadsBatched(sequence: WkvHeadsSequence, a: Wkv5Args, perToken: boolean): void {
  const { seqs, heads: H, headSize: N } = a;
  const A = H * N;
  const o = seqs.offsets;
  const rows = (b: Buf, q: number) => f32(b).subarray(o[q] * A, o[q + 1] * A);
  for (let q = 0; q < seqs.count; q++) {
    const T = seqs.length(q);
    if (T === 0) continue;
    sequence(
      rows(a.out, q),
      rows(a.r, q),
      rows(a.k, q),
      rows(a.v, q),
      perToken ? rows(a.w, q) : f32(a.w),
      perToken ? A : 0,
      f32(a.u),
      f32(a.state).subarray(q * A * N, (q + 1) * A * N),
      T,
      H,
      N,
    );
  }
}

/**
 * The work of one call: per token and head, b = Σ r·u·k (2N mul, N add), out_j = b·v_j
 * + Σ_i r_i·S_ij (N + N² mul, N² add) and S_ij ← w_i·S_ij + k_i·v_j (2N² mul, N² add);
 * each sequence's state (H·N² values) read and written once per call.
 */
export function wkvHeadsCost(seqs: Seqs, H: number, N: number): OpCost {
  const perToken = H * N; // channels
  const tokens = seqs.rows;
  let active = 0;
  for (let q = 0; q < seqs.count; q++) if (seqs.length(q) > 0) active++;
  return {
    mul: tokens * perToken * (3 * N + 3),
    add: tokens * perToken * (2 * N + 1),
    stateReads: active * perToken * N,
    stateWrites: active * perToken * N,
  };
}

export const wkv5: KernelFamily<Wkv5Args> = {
  name: 'wkv5',
  reference: (a) => wkvHeadsBatched(wkvHeadsSequence, a, false),
  cost: ({ seqs, heads, headSize }) => wkvHeadsCost(seqs, heads, headSize),
};
