/**
 * The CPU backends: a buffer is a Float32Array, so allocation, upload and read-back cost
 * nothing, and every op runs at once. Three tiers provide the kernels (`CpuKernels`):
 * the TypeScript reference (`js`), WebAssembly SIMD (`wasm/`) and the native addon
 * (`native/`); an op a tier does not speed up runs the reference function.
 */
import {
  type Backend,
  type BackendName,
  type BinaryOp,
  type Buf,
  f32,
  type IdBuf,
  i32,
  type KernelFamily,
  type Linear,
  type MatmulOptions,
  type PrepareOptions,
  type Seqs,
  type Tally,
  type UnaryOp,
} from './backend.ts';
import { type Wkv4Args, wkv4Batched, wkv4Sequence } from './families/wkv4.ts';
import * as ref from './reference.ts';

/**
 * The per-element kernels a CPU tier may speed up (reference.ts signatures, one
 * sequence at a time).
 */
export interface ElementwiseOps {
  layerNorm(
    out: Float32Array,
    x: Float32Array,
    weight: Float32Array,
    bias: Float32Array,
    rows: number,
    n: number,
    eps?: number,
  ): void;
  timeShiftMix(
    out: Float32Array,
    x: Float32Array,
    prev: Float32Array,
    mix: Float32Array,
    tokens: number,
    n: number,
  ): void;
  sigmoid(out: Float32Array, x: Float32Array, n?: number): void;
  reluSquare(out: Float32Array, x: Float32Array, n?: number): void;
  /** RWKV-4's WKV recurrence over T tokens of one sequence (families/wkv4.ts). */
  wkv4: typeof wkv4Sequence;
  /** A site's threshold in place over x[0:n] (reference.ts `threshold`). */
  threshold(x: Float32Array, lambda: number, comparison: 'gt' | 'ge', n?: number): void;
  /** Exact zeros (±0) among x[0:n]. */
  countZeros(x: Float32Array, n?: number): number;
}

/** What a CPU tier provides: matrix kernels over its own weight layouts, elementwise ops. */
export interface CpuKernels {
  readonly name: 'js' | 'wasm' | 'native';
  readonly description: string;
  readonly ops: ElementwiseOps;
  /** Takes W [rows, cols] row-major; `w` may be kept or copied. */
  prepare(w: Float32Array, rows: number, cols: number, opts?: PrepareOptions): Linear;
  /** y[rows] = W · x[cols] */
  gemv(y: Float32Array, w: Linear, x: Float32Array): void;
  /** Y[T, rows] = X[T, cols] · Wᵀ */
  gemm(y: Float32Array, w: Linear, x: Float32Array, tokens: number): void;
  /** y = W · x reading only the rows of Wᵀ whose input is non-zero; returns the count. */
  sparseGemv(y: Float32Array, w: Linear, x: Float32Array): number;
  release(w: Linear): void;
  /** Faster versions of architecture kernels (families/), by family name. */
  readonly families?: Readonly<Record<string, (args: unknown) => void>>;
}

/** The reference elementwise kernels. */
export const referenceOps: ElementwiseOps = {
  layerNorm: ref.layerNorm,
  timeShiftMix: ref.timeShiftMix,
  sigmoid: ref.sigmoid,
  reluSquare: ref.reluSquare,
  wkv4: wkv4Sequence,
  threshold: ref.threshold,
  countZeros: ref.countZeros,
};

interface JsLinear extends Linear {
  readonly w: Float32Array;
  readonly wt: Float32Array | null;
}

/** The reference tier: plain TypeScript, always available. */
export const jsKernels: CpuKernels = {
  name: 'js',
  ops: referenceOps,
  description: 'js (TypeScript reference kernels, 1 thread)',
  prepare(w, rows, cols, opts = {}) {
    if (w.length !== rows * cols) throw new Error(`prepare: ${w.length} values != ${rows}×${cols}`);
    let wt: Float32Array | null = null;
    if (opts.sparse) {
      wt = new Float32Array(rows * cols);
      ref.transpose(wt, w, rows, cols);
    }
    const l: JsLinear = { rows, cols, sparse: !!wt, bytes: 4 * w.length * (wt ? 2 : 1), w, wt };
    return l;
  },
  gemv(y, l, x) {
    const { w, rows, cols } = l as JsLinear;
    ref.gemv(y, w, x, rows, cols);
  },
  gemm(y, l, x, tokens) {
    const { w, rows, cols } = l as JsLinear;
    ref.gemm(y, w, x, tokens, rows, cols);
  },
  sparseGemv(y, l, x) {
    const { wt, rows, cols } = l as JsLinear;
    if (!wt) throw new Error('sparseGemv: weight was prepared without {sparse: true}');
    return ref.sparseGemv(y, wt, x, rows, cols);
  },
  release() {},
};

class CpuTally implements Tally {
  readonly data: Float64Array;
  constructor(readonly size: number) {
    this.data = new Float64Array(size);
  }
}

function tallyOf(t: Tally): Float64Array {
  if (!(t instanceof CpuTally))
    throw new TypeError('a CPU backend was given another backend’s tally');
  return t.data;
}

/** A Backend on the CPU over one tier's kernels. */
export class CpuBackend implements Backend {
  readonly name: BackendName;
  // Measured on the 3M Brown RWKV-4's calibration: 512 rows per product as fast as the
  // old one-window-at-a-time code, 4096 rows 15% slower (activations leave the caches).
  readonly batchRows = 512;
  private readonly families: Readonly<Record<string, (args: unknown) => void>>;
  constructor(readonly kernels: CpuKernels) {
    this.name = kernels.name;
    // WKV-4 runs each sequence through the tier's kernel.
    this.families = {
      wkv4: (a) => wkv4Batched(kernels.ops.wkv4, a as Wkv4Args),
      ...kernels.families,
    };
  }

  get description(): string {
    return this.kernels.description;
  }

  // ---------------------------------------------------------------- memory

  alloc(n: number): Buf {
    return new Float32Array(n);
  }
  upload(data: Float32Array): Buf {
    return data;
  }
  uploadIds(ids: Int32Array): IdBuf {
    return ids;
  }
  read(b: Buf, offset = 0, n = b.length - offset): Promise<Float32Array> {
    return Promise.resolve(f32(b).slice(offset, offset + n));
  }
  view(b: Buf, offset: number, n: number): Buf {
    if (offset < 0 || offset + n > b.length)
      throw new RangeError(`view: ${offset}+${n} outside a buffer of ${b.length}`);
    return f32(b).subarray(offset, offset + n);
  }
  copy(dst: Buf, src: Buf, n = src.length): void {
    f32(dst).set(f32(src).subarray(0, n));
  }
  fill(b: Buf, value: number): void {
    f32(b).fill(value);
  }
  free(): void {}

  // ---------------------------------------------------------------- linear layers

  prepare(w: Float32Array, rows: number, cols: number, opts?: PrepareOptions): Linear {
    return this.kernels.prepare(w, rows, cols, opts);
  }
  release(w: Linear): void {
    this.kernels.release(w);
  }
  matmul(y: Buf, w: Linear, x: Buf, n: number, opts: MatmulOptions = {}): void {
    const k = this.kernels;
    const yy = f32(y);
    if (n === 1) {
      if (opts.skipZeros && w.sparse) k.sparseGemv(yy, w, f32(x));
      else k.gemv(yy, w, f32(x));
    } else if (n > 0) k.gemm(yy, w, f32(x), n);
    if (opts.bias) ref.binary('add', yy, yy, f32(opts.bias), n * w.rows);
  }

  // ---------------------------------------------------------------- elementwise

  unary(op: UnaryOp, out: Buf, x: Buf, n = out.length): void {
    if (op === 'sigmoid') this.kernels.ops.sigmoid(f32(out), f32(x), n);
    else if (op === 'reluSquare') this.kernels.ops.reluSquare(f32(out), f32(x), n);
    else ref.unary(op, f32(out), f32(x), n);
  }
  binary(op: BinaryOp, out: Buf, a: Buf, b: Buf, n = out.length): void {
    ref.binary(op, f32(out), f32(a), f32(b), n);
  }
  addMul(out: Buf, a: Buf, b: Buf, c: Buf, n = out.length): void {
    ref.addMul(f32(out), f32(a), f32(b), f32(c), n);
  }
  affine(out: Buf, x: Buf, scale: number, shift: number, n = out.length): void {
    ref.affine(f32(out), f32(x), scale, shift, n);
  }
  layerNorm(out: Buf, x: Buf, w: Buf, b: Buf, rows: number, n: number, eps: number): void {
    // The tiers' kernels take one weight for every row; GroupNorm weights use the reference.
    if (w.length === n) this.kernels.ops.layerNorm(f32(out), f32(x), f32(w), f32(b), rows, n, eps);
    else ref.layerNorm(f32(out), f32(x), f32(w), f32(b), rows, n, eps);
  }
  rmsNorm(out: Buf, x: Buf, w: Buf, rows: number, n: number, eps: number): void {
    ref.rmsNorm(f32(out), f32(x), f32(w), rows, n, eps);
  }
  l2Normalize(out: Buf, x: Buf, rows: number, n: number, eps: number): void {
    ref.l2Normalize(f32(out), f32(x), rows, n, eps);
  }

  // ---------------------------------------------------------------- sequences

  timeShiftMix(out: Buf, x: Buf, prev: Buf, mix: Buf, seqs: Seqs, cols: number): void {
    const o = seqs.offsets;
    const [oo, xx, pp, mm] = [f32(out), f32(x), f32(prev), f32(mix)];
    for (let b = 0; b < seqs.count; b++) {
      const T = seqs.length(b);
      if (T === 0) continue;
      this.kernels.ops.timeShiftMix(
        oo.subarray(o[b] * cols, o[b + 1] * cols),
        xx.subarray(o[b] * cols, o[b + 1] * cols),
        pp.subarray(b * cols, (b + 1) * cols),
        mm,
        T,
        cols,
      );
    }
  }
  tokenShift(out: Buf, x: Buf, prev: Buf, seqs: Seqs, cols: number): void {
    ref.tokenShift(f32(out), f32(x), f32(prev), seqs.offsets, cols);
  }
  lastRows(out: Buf, x: Buf, seqs: Seqs, cols: number): void {
    ref.lastRows(f32(out), f32(x), seqs.offsets, cols);
  }
  gather(out: Buf, table: Buf, idx: IdBuf, cols: number): void {
    ref.gather(f32(out), f32(table), i32(idx), cols);
  }
  appendRows(
    cache: Buf,
    x: Buf,
    seqs: Seqs,
    starts: Int32Array,
    capacity: number,
    cols: number,
  ): void {
    ref.appendRows(f32(cache), f32(x), seqs.offsets, starts, capacity, cols);
  }
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
  ): void {
    const d = heads * headDim;
    const o = seqs.offsets;
    for (let b = 0; b < seqs.count; b++) {
      const T = seqs.length(b);
      if (T === 0) continue;
      const rows = (a: Buf) => f32(a).subarray(o[b] * d, o[b + 1] * d);
      const cache = (a: Buf) => f32(a).subarray(b * capacity * d, (b + 1) * capacity * d);
      // One token: the plain loops. Several: matrix products over the sequence, with
      // the tier's GEMM (far faster; equal up to rounding).
      if (T === 1) {
        ref.attention(
          rows(out),
          rows(q),
          cache(keys),
          cache(values),
          new Int32Array([0, 1]),
          starts.subarray(b, b + 1),
          capacity,
          heads,
          headDim,
          scale,
        );
      } else {
        this.sequenceAttention(
          rows(out),
          rows(q),
          cache(keys),
          cache(values),
          starts[b],
          T,
          heads,
          headDim,
          scale,
        );
      }
    }
  }

  /**
   * Attention of T rows at positions start … start+T−1 with the tier's matrix products,
   * head by head: S = (scale·Q_h)·K_hᵀ [T, n] over all n = start+T cached keys, causal
   * softmax row by row (row t sees keys 0 … start+t), O_h = P·V_h. The masked part of S
   * is computed and discarded, still far faster than loops.
   */
  private sequenceAttention(
    out: Float32Array,
    q: Float32Array,
    K: Float32Array,
    V: Float32Array,
    start: number,
    T: number,
    heads: number,
    hd: number,
    scale: number,
  ): void {
    const k = this.kernels;
    const d = heads * hd;
    const n = start + T;
    const qh = new Float32Array(T * hd);
    const kh = new Float32Array(n * hd);
    const vt = new Float32Array(hd * n);
    const oh = new Float32Array(T * hd);
    const probs = new Float32Array(T * n);
    for (let h = 0; h < heads; h++) {
      // Gather scale·Q_h [T, hd], K_h [n, hd] and V_hᵀ [hd, n] from the interleaved heads.
      for (let t = 0; t < T; t++)
        for (let i = 0; i < hd; i++) qh[t * hd + i] = q[t * d + h * hd + i] * scale;
      for (let j = 0; j < n; j++) {
        kh.set(K.subarray(j * d + h * hd, j * d + (h + 1) * hd), j * hd);
        for (let i = 0; i < hd; i++) vt[i * n + j] = V[j * d + h * hd + i];
      }
      const kLin = k.prepare(kh, n, hd);
      const vLin = k.prepare(vt, hd, n);
      try {
        k.gemm(probs, kLin, qh, T); // S [T, n]
        for (let t = 0; t < T; t++) softmaxRow(probs, t * n, start + t + 1, n);
        k.gemm(oh, vLin, probs, T); // O_h [T, hd]
      } finally {
        k.release(kLin);
        k.release(vLin);
      }
      for (let t = 0; t < T; t++) out.set(oh.subarray(t * hd, (t + 1) * hd), t * d + h * hd);
    }
  }

  // ---------------------------------------------------------------- sites and reductions

  threshold(x: Buf, lambda: number, comparison: 'gt' | 'ge', n = x.length): void {
    this.kernels.ops.threshold(f32(x), lambda, comparison, n);
  }
  tally(size: number): Tally {
    return new CpuTally(size);
  }
  tallyZeros(t: Tally, slot: number, x: Buf, n = x.length): void {
    tallyOf(t)[slot] += this.kernels.ops.countZeros(f32(x), n);
  }
  tallySum(t: Tally, slot: number, x: Buf, n = x.length): void {
    const xx = f32(x);
    let s = 0;
    for (let i = 0; i < n; i++) s += xx[i];
    tallyOf(t)[slot] += s;
  }
  tallyQuantiles(
    t: Tally,
    slot: number,
    x: Buf,
    rows: number,
    cols: number,
    qs: readonly number[],
  ): void {
    const sums = new Float64Array(qs.length);
    ref.rowQuantileSums(sums, f32(x), rows, cols, qs);
    const d = tallyOf(t);
    for (let k = 0; k < qs.length; k++) d[slot + k] += sums[k];
  }
  readTally(t: Tally): Promise<Float64Array> {
    return Promise.resolve(tallyOf(t).slice());
  }
  tallyNll(
    t: Tally,
    logits: Buf,
    targets: IdBuf,
    slots: IdBuf | number,
    rows: number,
    vocab: number,
    misses?: number,
  ): void {
    const d = tallyOf(t);
    const l = f32(logits);
    const tg = i32(targets);
    const sl = typeof slots === 'number' ? null : i32(slots);
    for (let r = 0; r < rows; r++) {
      const s = sl ? sl[r] : (slots as number);
      d[s] += ref.nll(l, r * vocab, vocab, tg[r]);
      if (misses !== undefined && ref.beatsTarget(l, r * vocab, vocab, tg[r])) d[misses + s] += 1;
    }
  }

  // ---------------------------------------------------------------- architectures

  run<A>(family: KernelFamily<A>, args: A): void {
    const own = this.families[family.name];
    if (own) own(args);
    else family.reference(args);
  }
}

/** Row [off, off+n) of width `width`: softmax over the first `n`, zeros after (the causal mask). */
function softmaxRow(s: Float32Array, off: number, n: number, width: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) if (s[off + j] > max) max = s[off + j];
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp(s[off + j] - max);
    s[off + j] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let j = 0; j < n; j++) s[off + j] *= inv;
  s.fill(0, off + n, off + width);
}
