/**
 * The three matrix products a trainer needs, for a linear layer W [out, in] (PyTorch
 * order) applied to n rows:
 *
 *   forward         Y[n, out]  = X[n, in] · Wᵀ
 *   backwardInput   dX[n, in]  = dY[n, out] · W
 *   backwardWeight  dW[out, in] = dYᵀ · X
 *
 * Three implementations, fastest first (`bestMatmul` picks):
 *  - `sgemmMatmul`: a general GEMM with transpose flags (the addon's `sgemm`, OpenBLAS
 *    when it loaded), no copies;
 *  - `backendMatmul`: a CPU tier's only product, Y = X·Wᵀ, with transposed copies (Wᵀ once
 *    per optimizer step; Xᵀ and dYᵀ for every weight gradient);
 *  - `referenceMatmul`: plain TypeScript, float32 or float64 (gradient checks).
 *
 * Why the trainer does not run on the `Backend` interface the models use: training needs
 * products with either operand transposed (dY·W, dYᵀ·X) and float64 for gradient checks,
 * which the inference interface (Y = X·Wᵀ over prepared weights, float32 buffers) does
 * not offer; and the trainer is a CPU tool for small models (it made the embedded
 * 3 M-parameter one), so it calls the CPU tiers' kernels directly: the addon's general
 * sgemm when built, else a tier's Y = X·Wᵀ with transposed copies.
 */
import type { Linear } from '../tensor/backend.ts';
import type { CpuKernels } from '../tensor/cpu.ts';
import * as native from '../tensor/native/index.ts';

/** A float array of either precision: float32 for training, float64 for gradient checks. */
export type Vec = Float32Array | Float64Array;

export interface Matmul<A extends Vec = Float32Array> {
  readonly description: string;
  /** Y[n, out] = X[n, in] · W[out, in]ᵀ */
  forward(y: A, x: A, w: A, n: number, out: number, inp: number): void;
  /** dX[n, in] = dY[n, out] · W[out, in] */
  backwardInput(dx: A, dy: A, w: A, n: number, out: number, inp: number): void;
  /** dW[out, in] = dY[n, out]ᵀ · X[n, in] (overwrites dW) */
  backwardWeight(dw: A, dy: A, x: A, n: number, out: number, inp: number): void;
  /** The weights changed (an optimizer step): forget prepared copies of them. */
  weightsChanged(): void;
}

// ---------------------------------------------------------------- reference

/** Y = X·Wᵀ with 4 outputs per pass over an input row (each x value loaded once per 4). */
export function matmulForward(y: Vec, x: Vec, w: Vec, n: number, out: number, inp: number): void {
  for (let t = 0; t < n; t++) {
    const xo = t * inp;
    const yo = t * out;
    let o = 0;
    for (; o + 4 <= out; o += 4) {
      const w0 = o * inp;
      const w1 = w0 + inp;
      const w2 = w1 + inp;
      const w3 = w2 + inp;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let i = 0; i < inp; i++) {
        const xv = x[xo + i];
        a0 += w[w0 + i] * xv;
        a1 += w[w1 + i] * xv;
        a2 += w[w2 + i] * xv;
        a3 += w[w3 + i] * xv;
      }
      y[yo + o] = a0;
      y[yo + o + 1] = a1;
      y[yo + o + 2] = a2;
      y[yo + o + 3] = a3;
    }
    for (; o < out; o++) {
      let a = 0;
      for (let i = 0; i < inp; i++) a += w[o * inp + i] * x[xo + i];
      y[yo + o] = a;
    }
  }
}

/** dX = dY·W: each row of dX is a sum of rows of W weighted by dY (sequential access). */
export function matmulBackwardInput(
  dx: Vec,
  dy: Vec,
  w: Vec,
  n: number,
  out: number,
  inp: number,
): void {
  // One float64 row accumulator keeps float32 rounding out of the sum.
  const acc = new Float64Array(inp);
  for (let t = 0; t < n; t++) {
    acc.fill(0);
    for (let o = 0; o < out; o++) {
      const g = dy[t * out + o];
      if (g === 0) continue;
      const wo = o * inp;
      for (let i = 0; i < inp; i++) acc[i] += g * w[wo + i];
    }
    const xo = t * inp;
    for (let i = 0; i < inp; i++) dx[xo + i] = acc[i];
  }
}

/** dW = dYᵀ·X: a sum over rows of outer products dY[t]ᵀ X[t], accumulated in float64. */
export function matmulBackwardWeight(
  dw: Vec,
  dy: Vec,
  x: Vec,
  n: number,
  out: number,
  inp: number,
): void {
  const acc = new Float64Array(out * inp);
  for (let t = 0; t < n; t++) {
    const xo = t * inp;
    for (let o = 0; o < out; o++) {
      const g = dy[t * out + o];
      if (g === 0) continue;
      const wo = o * inp;
      for (let i = 0; i < inp; i++) acc[wo + i] += g * x[xo + i];
    }
  }
  for (let j = 0; j < out * inp; j++) dw[j] = acc[j];
}

/** The plain-TypeScript products, for either precision. */
export function referenceMatmul<A extends Vec>(): Matmul<A> {
  return {
    description: 'TypeScript reference products (1 thread)',
    forward: matmulForward,
    backwardInput: matmulBackwardInput,
    backwardWeight: matmulBackwardWeight,
    weightsChanged() {},
  };
}

// ---------------------------------------------------------------- via a Backend

/**
 * wt[cols, rows] = w[rows, cols]ᵀ. Eight source rows at a time: the eight writes per
 * column are adjacent, the reads stream along eight rows (~4× a naive loop in V8).
 */
export function transposeInto(wt: Float32Array, w: Float32Array, rows: number, cols: number): void {
  let r = 0;
  for (; r + 8 <= rows; r += 8) {
    for (let c = 0; c < cols; c++) {
      const o = c * rows + r;
      const i = r * cols + c;
      wt[o] = w[i];
      wt[o + 1] = w[i + cols];
      wt[o + 2] = w[i + 2 * cols];
      wt[o + 3] = w[i + 3 * cols];
      wt[o + 4] = w[i + 4 * cols];
      wt[o + 5] = w[i + 5 * cols];
      wt[o + 6] = w[i + 6 * cols];
      wt[o + 7] = w[i + 7 * cols];
    }
  }
  for (; r < rows; r++) for (let c = 0; c < cols; c++) wt[c * rows + r] = w[r * cols + c];
}

/**
 * The three products through `backend.gemm` (Y = X·Lᵀ for a prepared L):
 *   forward: L = W;  backwardInput: L = Wᵀ [in, out];
 *   backwardWeight: X' = dYᵀ [out, n], L = Xᵀ [in, n], so Y' = dYᵀ·X [out, in].
 * Prepared weights are cached by array until `weightsChanged()`.
 */
export function backendMatmul(backend: CpuKernels): Matmul<Float32Array> {
  const cache = new Map<Float32Array, Linear>();
  const cacheT = new Map<Float32Array, Linear>();
  let scratch: Float32Array = new Float32Array(0);
  let scratch2: Float32Array = new Float32Array(0);
  const grow = (a: Float32Array, n: number) => (a.length >= n ? a : new Float32Array(n));
  const prepared = (w: Float32Array, out: number, inp: number, transposed: boolean): Linear => {
    const map = transposed ? cacheT : cache;
    let l = map.get(w);
    if (!l) {
      if (transposed) {
        scratch = grow(scratch, out * inp);
        transposeInto(scratch, w, out, inp);
        l = backend.prepare(scratch.subarray(0, out * inp).slice(), inp, out);
      } else {
        l = backend.prepare(w, out, inp);
      }
      map.set(w, l);
    }
    return l;
  };
  return {
    description: `${backend.description}: Y = X·Wᵀ, with transposed copies for the gradients`,
    forward(y, x, w, n, out, inp) {
      backend.gemm(y, prepared(w, out, inp, false), x, n);
    },
    backwardInput(dx, dy, w, n, out, inp) {
      backend.gemm(dx, prepared(w, out, inp, true), dy, n);
    },
    backwardWeight(dw, dy, x, n, out, inp) {
      scratch = grow(scratch, n * inp);
      scratch2 = grow(scratch2, n * out);
      // Xᵀ [in, n] becomes the "weight", dYᵀ [out, n] the input rows.
      transposeInto(scratch, x, n, inp);
      transposeInto(scratch2, dy, n, out);
      const l = backend.prepare(scratch.subarray(0, n * inp), inp, n);
      try {
        backend.gemm(dw, l, scratch2.subarray(0, n * out), out);
      } finally {
        backend.release(l);
      }
    },
    weightsChanged() {
      for (const l of cache.values()) backend.release(l);
      for (const l of cacheT.values()) backend.release(l);
      cache.clear();
      cacheT.clear();
    },
  };
}

// ---------------------------------------------------------------- general GEMM

/**
 * C[m, n] = op(A)·op(B), row-major: op(A) [m, k] (A stored [k, m] when transA), op(B)
 * [k, n] (B stored [n, k] when transB). The addon's train_gemm.cc.
 */
export type Sgemm = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
) => void;

/** The three products as one general GEMM each: X·Wᵀ, dY·W, dYᵀ·X. */
export function sgemmMatmul(sgemm: Sgemm, description: string): Matmul<Float32Array> {
  return {
    description,
    forward(y, x, w, n, out, inp) {
      sgemm(false, true, n, out, inp, x, w, y);
    },
    backwardInput(dx, dy, w, n, out, inp) {
      sgemm(false, false, n, inp, out, dy, w, dx);
    },
    backwardWeight(dw, dy, x, n, out, inp) {
      sgemm(true, false, out, inp, n, dy, x, dw);
    },
    weightsChanged() {},
  };
}

/**
 * The fastest products available: the addon's sgemm, else the native backend's GEMM
 * with transposed copies, else plain TypeScript.
 */
export function bestMatmul(): Matmul<Float32Array> {
  const backend = native.loadNativeKernels();
  if (!backend) return referenceMatmul<Float32Array>();
  const sgemm = addonSgemm();
  if (sgemm) return sgemmMatmul(sgemm, `${backend.description}: general sgemm`);
  return backendMatmul(backend);
}

/** The addon's sgemm, or null (addon not built). */
export function addonSgemm(): Sgemm | null {
  return native.nativeSgemm();
}
