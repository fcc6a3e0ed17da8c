/**
 * The living definition of every kernel, in plain TypeScript. Faster backends
 * (wasm/, native/) implement the same functions and are tested against these.
 * Conventions: row-major arrays, weights in PyTorch order [out, in], outputs first.
 */

/** y[rows] = W[rows, cols] · x[cols] */
export function gemv(
  y: Float32Array,
  w: Float32Array,
  x: Float32Array,
  rows: number,
  cols: number,
): void {
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    // Four partial sums: shorter dependency chains, and the order the fast kernels use.
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      s0 += w[off + c] * x[c];
      s1 += w[off + c + 1] * x[c + 1];
      s2 += w[off + c + 2] * x[c + 2];
      s3 += w[off + c + 3] * x[c + 3];
    }
    for (; c < cols; c++) s0 += w[off + c] * x[c];
    y[r] = s0 + s1 + s2 + s3;
  }
}

/** Y[T, rows] = X[T, cols] · W[rows, cols]ᵀ — a linear layer over T tokens. */
export function gemm(
  y: Float32Array,
  w: Float32Array,
  x: Float32Array,
  tokens: number,
  rows: number,
  cols: number,
): void {
  // 4 tokens × 4 outputs per tile: each weight and input value loaded once per tile.
  let t = 0;
  for (; t + 4 <= tokens; t += 4) {
    const x0 = t * cols;
    const x1 = x0 + cols;
    const x2 = x1 + cols;
    const x3 = x2 + cols;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let c = 0; c < cols; c++) {
        const wv = w[o + c];
        a0 += wv * x[x0 + c];
        a1 += wv * x[x1 + c];
        a2 += wv * x[x2 + c];
        a3 += wv * x[x3 + c];
      }
      y[t * rows + r] = a0;
      y[(t + 1) * rows + r] = a1;
      y[(t + 2) * rows + r] = a2;
      y[(t + 3) * rows + r] = a3;
    }
  }
  for (; t < tokens; t++) {
    gemv(y.subarray(t * rows, (t + 1) * rows), w, x.subarray(t * cols, (t + 1) * cols), rows, cols);
  }
}

/**
 * y[rows] = W · x reading only the weights of non-zero inputs. `wt` is the input-major
 * copy Wᵀ [cols, rows]: each non-zero x[c] adds x[c]·wt[c, :] to y. Returns the number
 * of non-zero inputs (the events an event-driven chip would process).
 */
export function sparseGemv(
  y: Float32Array,
  wt: Float32Array,
  x: Float32Array,
  rows: number,
  cols: number,
): number {
  y.fill(0, 0, rows);
  let active = 0;
  for (let c = 0; c < cols; c++) {
    const v = x[c];
    if (v === 0) continue;
    active++;
    const off = c * rows;
    for (let r = 0; r < rows; r++) y[r] += v * wt[off + r];
  }
  return active;
}

/** wt[cols, rows] = w[rows, cols]ᵀ */
export function transpose(wt: Float32Array, w: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) wt[c * rows + r] = w[o + c];
  }
}

/** out = (x − mean) / sqrt(var + eps) · weight + bias, over the last `n` values of each row. */
export function layerNorm(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  rowsCount: number,
  n: number,
  eps = 1e-5,
): void {
  for (let t = 0; t < rowsCount; t++) {
    const o = t * n;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[o + i];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const d = x[o + i] - mean;
      v += d * d;
    }
    const inv = 1 / Math.sqrt(v / n + eps);
    for (let i = 0; i < n; i++) out[o + i] = (x[o + i] - mean) * inv * weight[i] + bias[i];
  }
}

/** Elementwise: out = a + b. */
export function add(out: Float32Array, a: Float32Array, b: Float32Array, n = out.length): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/** Elementwise: out = a · b. */
export function mul(out: Float32Array, a: Float32Array, b: Float32Array, n = out.length): void {
  for (let i = 0; i < n; i++) out[i] = a[i] * b[i];
}

/** out = σ(x) = 1 / (1 + e^−x) */
export function sigmoid(out: Float32Array, x: Float32Array, n = out.length): void {
  for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp(-x[i]));
}

/** out = relu(x)² */
export function reluSquare(out: Float32Array, x: Float32Array, n = out.length): void {
  for (let i = 0; i < n; i++) {
    // (a + |a|) / 2 = max(a, 0) without a branch: ~5× faster on mixed signs.
    const a = x[i];
    const v = (a + Math.abs(a)) * 0.5;
    out[i] = v * v;
  }
}

/**
 * The threshold of a site, in place: zero every x[i] whose magnitude does not pass λ —
 * `gt` keeps |x| > λ (RWKV), `ge` keeps |x| ≥ λ (the authors' OPT code). NaN passes
 * neither, so it is zeroed, and a zeroed −0 becomes +0. λ ≤ 0 is the identity (exact
 * zeros stay zeros, NaN stays NaN); λ = +∞ zeroes every finite value; λ = NaN is refused.
 */
export function threshold(
  x: Float32Array,
  lambda: number,
  comparison: 'gt' | 'ge',
  n = x.length,
): void {
  if (!(Number.isInteger(n) && n >= 0 && n <= x.length)) {
    throw new RangeError(`threshold: n = ${n} is not an integer in [0, ${x.length}]`);
  }
  if (comparison !== 'gt' && comparison !== 'ge') {
    throw new RangeError(`threshold: comparison must be 'gt' or 'ge', not ${String(comparison)}`);
  }
  if (!(lambda > 0)) {
    if (Number.isNaN(lambda)) throw new RangeError('threshold: λ is NaN');
    return;
  }
  if (comparison === 'gt') {
    for (let i = 0; i < n; i++) if (!(Math.abs(x[i]) > lambda)) x[i] = 0;
  } else {
    for (let i = 0; i < n; i++) if (!(Math.abs(x[i]) >= lambda)) x[i] = 0;
  }
}

/** The number of exact zeros (+0 and −0; not NaN) among x[0:n]. */
export function countZeros(x: Float32Array, n = x.length): number {
  if (!(Number.isInteger(n) && n >= 0 && n <= x.length)) {
    throw new RangeError(`countZeros: n = ${n} is not an integer in [0, ${x.length}]`);
  }
  let z = 0;
  for (let i = 0; i < n; i++) if (x[i] === 0) z++;
  return z;
}

/**
 * Token shift mix for T tokens of width n: out_t = x_t·mix + x_{t−1}·(1−mix), where
 * x_{−1} = `prev` (the state carried from the previous call).
 */
export function timeShiftMix(
  out: Float32Array,
  x: Float32Array,
  prev: Float32Array,
  mix: Float32Array,
  tokens: number,
  n: number,
): void {
  for (let t = 0; t < tokens; t++) {
    const o = t * n;
    const p = t === 0 ? prev : x.subarray(o - n, o);
    for (let i = 0; i < n; i++) out[o + i] = x[o + i] * mix[i] + p[i] * (1 - mix[i]);
  }
}

/** Log-softmax of one row, returned as a new Float64Array (for NLL and scoring). */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/** −log softmax(row)[target] for the row of `n` logits at `off`, without allocating. */
export function nll(logits: Float32Array, off: number, n: number, target: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (logits[off + i] > max) max = logits[off + i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[off + i] - max);
  return max + Math.log(sum) - logits[off + target];
}

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
export function wkv4(
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
