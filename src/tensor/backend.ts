/**
 * The one interface every model runs on. A backend owns its buffers: it allocates,
 * uploads, runs ops on them and reads them back (the one asynchronous step). On the CPU
 * backends (`cpu.ts`: js, wasm, native) a buffer is the Float32Array itself, so nothing
 * is copied; on a GPU it lives in device memory. A model never computes on a buffer
 * itself: every addition, activation, gather and reduction is an op here, so the same
 * model file runs on every backend and `hw` can count what it runs (`count.ts`).
 *
 * Conventions: row-major, weights in PyTorch order [out, in], outputs first. Sizes are
 * explicit. An operand of an elementwise op that is shorter than the output is repeated
 * (a bias or mix vector of `cols` values broadcast over rows); its length must divide
 * the output's. Batches are packed: B sequences of lengths T_b are one [ΣT_b, width]
 * buffer, with `Seqs` saying where each starts (as flash-attention's cu_seqlens).
 */

export type BackendName = 'js' | 'wasm' | 'native' | 'webgpu' | 'count';

/** float32 values owned by a backend. On the CPU backends: a Float32Array. */
export interface Buf {
  readonly length: number;
}

/** int32 indices (token ids, row numbers) owned by a backend. On the CPU: an Int32Array. */
export interface IdBuf {
  readonly length: number;
}

/** Accumulators in float64 owned by a backend (zero counts, quantile sums, loss sums). */
export interface Tally {
  readonly size: number;
}

/** A weight matrix W [rows = outputs, cols = inputs] owned by one backend. */
export interface Linear {
  readonly rows: number;
  readonly cols: number;
  /** True when the input-major copy that zero skipping reads was made. */
  readonly sparse: boolean;
  /** Bytes the backend holds for this weight (all layouts together). */
  readonly bytes: number;
}

/** How the checkpoint stored a weight: a backend with a kernel for it may keep it so. */
export type WeightDType = 'f32' | 'f16' | 'bf16';

export interface PrepareOptions {
  /** Also keep the input-major copy Wᵀ that zero skipping reads (twice the memory). */
  sparse?: boolean;
  /** The stored precision; the values given are exact in it (default f32). */
  dtype?: WeightDType;
}

export interface MatmulOptions {
  /** y += bias [rows of W], broadcast over the input rows. */
  bias?: Buf;
  /**
   * The global site whose thresholded input this product reads (absent for layers that
   * are never thresholded): how `hw` tells site layers from dense ones (count.ts).
   */
  site?: number;
  /**
   * For one input row: read only the weight rows of Wᵀ whose input is non-zero (x is
   * thresholded). Needs a weight prepared with `sparse`. Ignored for several rows.
   */
  skipZeros?: boolean;
}

export type { UnaryOp } from './reference.ts';

import type { UnaryOp } from './reference.ts';

export type BinaryOp = 'add' | 'sub' | 'mul';

/**
 * Where each sequence of a packed batch starts: rows offsets[b] … offsets[b+1] − 1 of
 * a [rows, width] buffer belong to sequence b. Host data; a GPU backend keeps its own
 * copy of `offsets` per Seqs object.
 */
export class Seqs {
  readonly offsets: Int32Array;
  constructor(lengths: ArrayLike<number>) {
    this.offsets = new Int32Array(lengths.length + 1);
    for (let b = 0; b < lengths.length; b++) {
      const n = lengths[b];
      if (!(Number.isInteger(n) && n >= 0))
        throw new RangeError(`Seqs: length ${n} of sequence ${b}`);
      this.offsets[b + 1] = this.offsets[b] + n;
    }
  }
  /** B sequences of T rows each. */
  static uniform(count: number, length: number): Seqs {
    return new Seqs(new Array<number>(count).fill(length));
  }
  get count(): number {
    return this.offsets.length - 1;
  }
  /** Rows of all sequences together. */
  get rows(): number {
    return this.offsets[this.offsets.length - 1];
  }
  length(b: number): number {
    return this.offsets[b + 1] - this.offsets[b];
  }
}

/**
 * An architecture's own kernel (RWKV's WKV recurrences, Mamba's scan): a name, the
 * reference in plain TypeScript over CPU buffers, and the elementwise work it does per
 * call for `hw` (count.ts). Backends run a faster version registered under the name
 * when they have one (cpu.ts, webgpu/), else the reference (CPU) or a clear error.
 */
export interface KernelFamily<A> {
  readonly name: string;
  /** The definition, over Float32Array/Int32Array arguments (the CPU buffers). */
  readonly reference: (args: A) => void;
  /** Elementwise operations and state traffic of one call (for the hardware model). */
  readonly cost: (args: A) => OpCost;
}

/** Counts of elementwise work; `stateReads/Writes` are values of recurrent state. */
export interface OpCost {
  add?: number;
  mul?: number;
  cmp?: number;
  exp?: number;
  div?: number;
  rsqrt?: number;
  stateReads?: number;
  stateWrites?: number;
  weightReads?: number;
}

export interface Backend {
  readonly name: BackendName;
  /** One line for `info`/`bench`, e.g. "native (AVX-512 kernels, 2 threads)". */
  readonly description: string;
  /**
   * Tokens a forward over many windows should carry at once (calibration, text loss):
   * a CPU is fastest while a batch's activations stay in its caches, a GPU needs many
   * rows to fill its cores.
   */
  readonly batchRows: number;

  // ---------------------------------------------------------------- memory

  /** n values, all zero. */
  alloc(n: number): Buf;
  /** A buffer holding `data`. On the CPU it is `data` itself: do not change it afterwards. */
  upload(data: Float32Array): Buf;
  uploadIds(ids: Int32Array): IdBuf;
  /** A copy of n values from offset (all by default): the one asynchronous step. */
  read(b: Buf, offset?: number, n?: number): Promise<Float32Array>;
  /** Values offset … offset+n−1 of b, sharing its memory. */
  view(b: Buf, offset: number, n: number): Buf;
  /** dst[0:n] = src[0:n] (n defaults to src.length). */
  copy(dst: Buf, src: Buf, n?: number): void;
  fill(b: Buf, value: number): void;
  /** Gives the memory back (a no-op on the CPU); the buffer must not be used again. */
  free(b: Buf | IdBuf): void;

  // ---------------------------------------------------------------- linear layers

  /** Takes W [rows, cols] row-major (PyTorch [out, in]); the array may be kept. */
  prepare(w: Float32Array, rows: number, cols: number, opts?: PrepareOptions): Linear;
  /** Frees what `prepare` allocated; the Linear must not be used afterwards. */
  release(w: Linear): void;
  /** y[n, W.rows] = x[n, W.cols] · Wᵀ (+ bias) for n input rows. */
  matmul(y: Buf, w: Linear, x: Buf, n: number, opts?: MatmulOptions): void;

  // ---------------------------------------------------------------- elementwise

  /** out[i] = f(x[i]) for i < n (n defaults to out.length). */
  unary(op: UnaryOp, out: Buf, x: Buf, n?: number): void;
  /** out[i] = a[i] ∘ b[i] for i < n; a or b may be shorter and repeated. */
  binary(op: BinaryOp, out: Buf, a: Buf, b: Buf, n?: number): void;
  /** out[i] = a[i] + b[i]·c[i] (a gated residual); b or c may be shorter and repeated. */
  addMul(out: Buf, a: Buf, b: Buf, c: Buf, n?: number): void;
  /** out[i] = x[i]·scale + shift. */
  affine(out: Buf, x: Buf, scale: number, shift: number, n?: number): void;
  /**
   * Layer norm of each of `rows` groups of `n` values: (x − mean)/√(var + eps)·w + b.
   * Element i of group r uses w[(r·n + i) mod w.length]: w of n values is the same for
   * every group; w of H·n values over groups of n is GroupNorm over H heads.
   */
  layerNorm(out: Buf, x: Buf, w: Buf, b: Buf, rows: number, n: number, eps: number): void;
  /** RMS norm of each group of n values: x / √(mean(x²) + eps) · w (w indexed as in layerNorm). */
  rmsNorm(out: Buf, x: Buf, w: Buf, rows: number, n: number, eps: number): void;
  /** L2-normalize each group of n values: x / max(‖x‖, eps) (F.normalize). */
  l2Normalize(out: Buf, x: Buf, rows: number, n: number, eps: number): void;

  // ---------------------------------------------------------------- sequences

  /**
   * RWKV's token shift with mix, per sequence: out_t = x_t·mix + x_{t−1}·(1 − mix), where
   * x_{−1} of sequence b is prev[b] ([B, cols], the state).
   */
  timeShiftMix(out: Buf, x: Buf, prev: Buf, mix: Buf, seqs: Seqs, cols: number): void;
  /** The previous row within each sequence: out_t = x_{t−1}, prev[b] at its start. */
  tokenShift(out: Buf, x: Buf, prev: Buf, seqs: Seqs, cols: number): void;
  /** out[b] = the last row of sequence b (an empty sequence leaves out[b] as it is). */
  lastRows(out: Buf, x: Buf, seqs: Seqs, cols: number): void;
  /** out[i] = table[idx[i]] (rows of `cols` values): embeddings, selecting sequences. */
  gather(out: Buf, table: Buf, idx: IdBuf, cols: number): void;
  /**
   * Appends the rows of each sequence to its cache: cache[b, starts[b] + t] = x[row t of b]
   * for caches [B, capacity, cols].
   */
  appendRows(
    cache: Buf,
    x: Buf,
    seqs: Seqs,
    starts: Int32Array,
    capacity: number,
    cols: number,
  ): void;
  /**
   * Causal attention per sequence and head: row t of sequence b (position
   * starts[b] + t) attends to cached rows 0 … starts[b] + t of that sequence:
   * out = softmax(scale · q·Kᵀ) · V, with q [rows, heads·hd] and caches [B, capacity,
   * heads·hd] that already hold the rows (appendRows first).
   */
  attention(
    out: Buf,
    q: Buf,
    keys: Buf,
    values: Buf,
    seqs: Seqs,
    starts: Int32Array,
    capacity: number,
    heads: number,
    headDim: number,
    scale: number,
  ): void;

  // ---------------------------------------------------------------- sites and reductions

  /**
   * A site's threshold in place: zero x[i] unless |x[i]| > λ (`gt`) or ≥ λ (`ge`); NaN is
   * zeroed; λ ≤ 0 is the identity.
   */
  threshold(x: Buf, lambda: number, comparison: 'gt' | 'ge', n?: number): void;
  /** `size` float64 accumulators, all zero. */
  tally(size: number): Tally;
  /** t[slot] += the number of exact zeros among x[0:n]. */
  tallyZeros(t: Tally, slot: number, x: Buf, n?: number): void;
  /** t[slot] += Σ x[0:n]. */
  tallySum(t: Tally, slot: number, x: Buf, n?: number): void;
  /**
   * For each of `rows` rows of x [rows, cols] and each q of `qs`: t[slot + k] +=
   * Quantile_q(|x_row|), with linear interpolation as numpy does (METHOD.md §2).
   */
  tallyQuantiles(
    t: Tally,
    slot: number,
    x: Buf,
    rows: number,
    cols: number,
    qs: readonly number[],
  ): void;
  readTally(t: Tally): Promise<Float64Array>;
  /**
   * The fused loss: for each row r of logits [rows, vocab], with s = slots[r] (or the
   * one slot given): t[s] += −log softmax(logits[r])[targets[r]]; and when `misses` is
   * given, t[misses + s] += 1 if some logit of the row exceeds the target's (the target
   * is not the greedy choice). Logits are never read back.
   */
  tallyNll(
    t: Tally,
    logits: Buf,
    targets: IdBuf,
    slots: IdBuf | number,
    rows: number,
    vocab: number,
    misses?: number,
  ): void;

  // ---------------------------------------------------------------- architectures

  /** Runs an architecture's kernel (its recurrence) on this backend. */
  run<A>(family: KernelFamily<A>, args: A): void;
}

/** The Float32Array behind a CPU buffer (the reference kernels take arrays). */
export function f32(b: Buf): Float32Array {
  if (!(b instanceof Float32Array)) throw new TypeError('a CPU kernel was given a non-CPU buffer');
  return b;
}

/** The Int32Array behind a CPU index buffer. */
export function i32(b: IdBuf): Int32Array {
  if (!(b instanceof Int32Array))
    throw new TypeError('a CPU kernel was given a non-CPU index buffer');
  return b;
}
