/**
 * The causal depthwise convolution of Mamba and Mamba-2 as a kernel family: each channel
 * c is convolved with its own K taps over the sequence, seeing only the current and the
 * K − 1 previous inputs, as `nn.Conv1d(C, C, K, groups=C, padding=K−1)` with the output
 * cut to the sequence length. The K − 1 previous inputs of each sequence are its state,
 * so a sequence continues across calls (step mode is a call with T = 1).
 */
import { type Buf, f32, type KernelFamily, type Seqs } from '../backend.ts';

/**
 * One sequence of T rows of C channels:
 *
 *   out[t, c] = bias[c] + Σ_{k<K} w[c, k] · x[t − (K−1) + k, c]
 *
 * where rows before the start come from `state` ([K−1, C], oldest first), which is then
 * replaced by the last K − 1 inputs (old state rows and x together). `bias` may be empty
 * (use_conv_bias false). `out` must not overlap `x` or `state`.
 */
export function conv1dSequence(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array,
  state: Float32Array,
  T: number,
  C: number,
  K: number,
): void {
  const S = K - 1; // rows of state
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let acc = bias.length ? bias[c] : 0;
      // Tap k reads row j = t + k of [state; x] (input t − (K−1) + k).
      for (let k = 0; k < K; k++) {
        const j = t + k;
        acc += w[c * K + k] * (j < S ? state[j * C + c] : x[(j - S) * C + c]);
      }
      out[t * C + c] = acc;
    }
  }
  // The last S rows of [state; x]: shift the state when T < S, else copy x's tail.
  if (T >= S) state.set(x.subarray((T - S) * C, T * C));
  else if (T > 0) {
    state.copyWithin(0, T * C, S * C);
    state.set(x.subarray(0, T * C), (S - T) * C);
  }
}

export interface Conv1dArgs {
  /** [rows, C] */
  out: Buf;
  /** [rows, C] */
  x: Buf;
  /** conv1d.weight [C, 1, K] as [C, K] */
  weight: Buf;
  /** conv1d.bias [C], or an empty buffer when the convolution has none */
  bias: Buf;
  /** [B, (K−1)·C]: each sequence's last K − 1 inputs, oldest first */
  state: Buf;
  seqs: Seqs;
  channels: number;
  kernel: number;
}

/** Runs `sequence` (conv1dSequence or a faster equal) on each non-empty sequence. */
export function conv1dBatched(sequence: typeof conv1dSequence, a: Conv1dArgs): void {
  const { seqs, channels: C, kernel: K } = a;
  const o = seqs.offsets;
  const S = (K - 1) * C;
  for (let s = 0; s < seqs.count; s++) {
    const T = seqs.length(s);
    if (T === 0) continue;
    sequence(
      f32(a.out).subarray(o[s] * C, o[s + 1] * C),
      f32(a.x).subarray(o[s] * C, o[s + 1] * C),
      f32(a.weight),
      f32(a.bias),
      f32(a.state).subarray(s * S, (s + 1) * S),
      T,
      C,
      K,
    );
  }
}

export const conv1d: KernelFamily<Conv1dArgs> = {
  name: 'conv1d',
  reference: (a) => conv1dBatched(conv1dSequence, a),
  // Per row and channel: K multiply-adds, plus the bias add; each sequence's K − 1 state
  // rows are read once and written once per call.
  cost: ({ seqs, channels: C, kernel: K, bias }) => {
    const n = seqs.rows * C;
    let active = 0;
    for (let s = 0; s < seqs.count; s++) if (seqs.length(s) > 0) active++;
    const state = active * (K - 1) * C;
    return {
      mul: K * n,
      add: (K - 1 + (bias.length ? 1 : 0)) * n,
      stateReads: state,
      stateWrites: state,
    };
  },
};
