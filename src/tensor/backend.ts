/**
 * One interface for the matrix kernels every model uses, with three implementations:
 * the TypeScript reference (`js`), WebAssembly SIMD (`wasm`) and a native addon
 * (`native`). Weights are handed over once (`prepare`), because the faster backends
 * keep them in their own memory and layouts; activations are passed per call.
 */
import * as ref from './reference.ts';

export type BackendName = 'js' | 'wasm' | 'native';

/** A weight matrix W [rows = outputs, cols = inputs] owned by one backend. */
export interface Linear {
  readonly rows: number;
  readonly cols: number;
  /** True when an input-major copy for `sparseGemv` was made. */
  readonly sparse: boolean;
  /** Bytes the backend holds for this weight (all layouts together). */
  readonly bytes: number;
}

export interface PrepareOptions {
  /** Also keep the input-major copy Wᵀ that `sparseGemv` reads (doubles the memory). */
  sparse?: boolean;
}

/**
 * Optional faster versions of the per-element work of a model (the same signatures as
 * reference.ts); a backend without them uses the reference functions.
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
  /** RWKV-4's WKV recurrence over T tokens of width d (reference.ts `wkv4`). */
  wkv4(
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
  ): void;
  /**
   * The threshold of a site in place (reference.ts `threshold`): zero x[i] unless
   * |x[i]| > λ (`gt`) or ≥ λ (`ge`) over x[0:n]; NaN is zeroed; λ ≤ 0 is the identity.
   */
  threshold(x: Float32Array, lambda: number, comparison: 'gt' | 'ge', n?: number): void;
  /** Exact zeros (±0) among x[0:n] (reference.ts `countZeros`): what observers measure. */
  countZeros(x: Float32Array, n?: number): number;
}

export interface Backend {
  readonly name: BackendName;
  /** Per-element kernels (layer norm, WKV, …); the reference when a backend has none. */
  readonly ops: ElementwiseOps;
  /** One line for `info`/`bench`, e.g. "native (OpenBLAS, 2 threads)". */
  readonly description: string;
  /** Takes W [rows, cols] row-major (PyTorch [out, in]); `w` may be kept or copied. */
  prepare(w: Float32Array, rows: number, cols: number, opts?: PrepareOptions): Linear;
  /** y[rows] = W · x[cols] */
  gemv(y: Float32Array, w: Linear, x: Float32Array): void;
  /** Y[T, rows] = X[T, cols] · Wᵀ */
  gemm(y: Float32Array, w: Linear, x: Float32Array, tokens: number): void;
  /**
   * y = W · x reading only the weight rows of Wᵀ whose input is non-zero (x is already
   * thresholded). Needs `prepare(…, {sparse: true})`. Returns the count of non-zeros.
   */
  sparseGemv(y: Float32Array, w: Linear, x: Float32Array): number;
  /** Frees what `prepare` allocated; the Linear must not be used afterwards. */
  release(w: Linear): void;
}

interface JsLinear extends Linear {
  readonly w: Float32Array;
  readonly wt: Float32Array | null;
}

/** The reference elementwise kernels. */
export const referenceOps: ElementwiseOps = {
  layerNorm: ref.layerNorm,
  timeShiftMix: ref.timeShiftMix,
  sigmoid: ref.sigmoid,
  reluSquare: ref.reluSquare,
  wkv4: ref.wkv4,
  threshold: ref.threshold,
  countZeros: ref.countZeros,
};

/** The reference backend: plain TypeScript, always available. */
export const jsBackend: Backend = {
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
