/**
 * RWKV-7's WKV recurrence (the "generalized delta rule") as a kernel family: the
 * definition for one sequence (`wkv7Sequence`, the form every backend's kernel is tested
 * against) and the family that runs it over a packed batch, one state per sequence.
 *
 * Per head of size N, with the state S [N, N] held as the official code holds it
 * (rwkv_v7_demo_rnn.py, the rwkv pip package, rwkv.cpp: S[i][j], i the value index, j
 * the key index, out_i = Σ_j S_ij·r_j), and per token:
 *
 *   sa = S·a                                   (sa_i = Σ_j S_ij·a_j)
 *   S ← S·diag(w) + sa·bᵀ + v·kᵀ               (S_ij ← S_ij·w_j + sa_i·b_j + v_i·k_j)
 *   out = S·r
 *   bonus = (Σ_j r_j·k_j·u_j)·v                 (u = r_k of the head)
 *
 * RWKV-7 calls it with a = −κ̂ and b = κ̂·a_iclr (κ̂ the normalized key), so S·(a·bᵀ) is
 * the delta rule's "−S·κ̂·(κ̂·a)ᵀ". The bonus is returned apart because the model adds it
 * after the GroupNorm of `out`. The state [B, H, N, N] is float32 and rounded after
 * every token, as in the reference kernels.
 *
 * The reference steps token by token, as BlinkDL's kernels do (the training kernel's
 * CHUNK_LEN only checkpoints the state for the backward pass); a chunked (WY) form is
 * flash-linear-attention's, not the reference's, and is not used.
 */
import { type Buf, f32, type KernelFamily, type Seqs } from '../backend.ts';

/**
 * The WKV-7 recurrence over T tokens of one sequence: r, w, k, v, a, b, out, bonus are
 * [T, H·N] (head h is columns h·N … h·N + N − 1); u is [H·N]; S is [H, N, N], updated in
 * place.
 */
export function wkv7Sequence(
  out: Float32Array,
  bonus: Float32Array,
  r: Float32Array,
  w: Float32Array,
  k: Float32Array,
  v: Float32Array,
  a: Float32Array,
  b: Float32Array,
  u: Float32Array,
  S: Float32Array,
  T: number,
  H: number,
  N: number,
): void {
  const C = H * N;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = t * C + h * N; // this token's head h
      const s0 = h * N * N; // its state
      for (let i = 0; i < N; i++) {
        const row = s0 + i * N;
        // sa_i = Σ_j S_ij·a_j (the state before this token)
        let sa = 0;
        for (let j = 0; j < N; j++) sa += S[row + j] * a[o + j];
        // S_ij ← S_ij·w_j + sa_i·b_j + v_i·k_j, then out_i = Σ_j S_ij·r_j
        const vi = v[o + i];
        let y = 0;
        for (let j = 0; j < N; j++) {
          const s = Math.fround(S[row + j] * w[o + j] + sa * b[o + j] + vi * k[o + j]);
          S[row + j] = s;
          y += s * r[o + j];
        }
        out[o + i] = y;
      }
      // bonus_i = (Σ_j r_j·k_j·u_j)·v_i
      let c = 0;
      for (let j = 0; j < N; j++) c += r[o + j] * k[o + j] * u[h * N + j];
      for (let i = 0; i < N; i++) bonus[o + i] = c * v[o + i];
    }
  }
}

export interface Wkv7Args {
  /** [rows, H·N]: S·r after each token's update */
  out: Buf;
  /** [rows, H·N]: (Σ r·k·u)·v per head */
  bonus: Buf;
  /** receptance [rows, H·N] */
  r: Buf;
  /** the decay in (0, 1), per token and key channel [rows, H·N] */
  w: Buf;
  /** key (already scaled by the in-context learning rate) [rows, H·N] */
  k: Buf;
  /** value [rows, H·N] */
  v: Buf;
  /** [rows, H·N]: −κ̂ in RWKV-7 */
  a: Buf;
  /** [rows, H·N]: κ̂·a in RWKV-7 */
  b: Buf;
  /** the bonus weights r_k [H·N] */
  u: Buf;
  /** [B, H, N, N], S[b][h][i][j] with i the value index and j the key index */
  state: Buf;
  seqs: Seqs;
  heads: number;
  headSize: number;
}

/** Runs `sequence` (wkv7Sequence or a faster equal) on each sequence of the batch. */
export function wkv7Batched(sequence: typeof wkv7Sequence, x: Wkv7Args): void {
  const { seqs, heads: H, headSize: N } = x;
  const C = H * N;
  const o = seqs.offsets;
  const rows = (t: Buf, s: number) => f32(t).subarray(o[s] * C, o[s + 1] * C);
  for (let s = 0; s < seqs.count; s++) {
    const T = seqs.length(s);
    if (T === 0) continue;
    sequence(
      rows(x.out, s),
      rows(x.bonus, s),
      rows(x.r, s),
      rows(x.w, s),
      rows(x.k, s),
      rows(x.v, s),
      rows(x.a, s),
      rows(x.b, s),
      f32(x.u),
      f32(x.state).subarray(s * H * N * N, (s + 1) * H * N * N),
      T,
      H,
      N,
    );
  }
}

export const wkv7: KernelFamily<Wkv7Args> = {
  name: 'wkv7',
  reference: (x) => wkv7Batched(wkv7Sequence, x),
  // Per token and head: sa (N² mul, N(N−1) add); the update S·w + sa·b + v·k (3N² mul,
  // 2N² add); out = S·r (N² mul, N(N−1) add); the bonus Σ r·k·u (2N mul, N−1 add) and
  // its product with v (N mul). The state of each sequence with tokens is read and
  // written once per call (it stays in registers and caches across its tokens).
  cost: ({ seqs, heads: H, headSize: N }) => {
    const n = seqs.rows * H;
    let active = 0;
    for (let s = 0; s < seqs.count; s++) if (seqs.length(s) > 0) active++;
    return {
      mul: n * (5 * N * N + 3 * N),
      add: n * (4 * N * N - N - 1),
      stateReads: active * H * N * N,
      stateWrites: active * H * N * N,
    };
  },
};
