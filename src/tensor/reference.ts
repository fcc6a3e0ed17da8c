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

/**
 * Layer norm of each of `rowsCount` groups of `n` values: (x − mean)/√(var + eps)·w + b.
 * Element i of group r uses weight[(r·n + i) mod weight.length]: a weight of n values is
 * the same for every group; one of H·n values over groups of n is GroupNorm over H heads.
 */
export function layerNorm(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  rowsCount: number,
  n: number,
  eps = 1e-5,
): void {
  const wl = weight.length;
  for (let t = 0; t < rowsCount; t++) {
    const o = t * n;
    const w0 = o % wl;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[o + i];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const d = x[o + i] - mean;
      v += d * d;
    }
    const inv = 1 / Math.sqrt(v / n + eps);
    for (let i = 0; i < n; i++)
      out[o + i] = (x[o + i] - mean) * inv * weight[w0 + i] + bias[w0 + i];
  }
}

/** RMS norm of each group of n values: x / √(mean(x²) + eps) · w (w indexed as in layerNorm). */
export function rmsNorm(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  rowsCount: number,
  n: number,
  eps: number,
): void {
  const wl = weight.length;
  for (let t = 0; t < rowsCount; t++) {
    const o = t * n;
    const w0 = o % wl;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) out[o + i] = x[o + i] * inv * weight[w0 + i];
  }
}

/** Each group of n values divided by max(‖x‖₂, eps), as torch's F.normalize. */
export function l2Normalize(
  out: Float32Array,
  x: Float32Array,
  rowsCount: number,
  n: number,
  eps: number,
): void {
  for (let t = 0; t < rowsCount; t++) {
    const o = t * n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.max(Math.sqrt(ss), eps);
    for (let i = 0; i < n; i++) out[o + i] = x[o + i] * inv;
  }
}

/** The elementwise functions of `Backend.unary`. */
export type UnaryOp =
  | 'sigmoid'
  | 'silu'
  | 'relu'
  | 'reluSquare'
  | 'tanh'
  | 'exp'
  | 'softplus'
  | 'abs'
  | 'neg';

/** out[i] = f(x[i]) for i < n. */
export function unary(op: UnaryOp, out: Float32Array, x: Float32Array, n = out.length): void {
  switch (op) {
    case 'sigmoid':
      sigmoid(out, x, n);
      return;
    case 'reluSquare':
      reluSquare(out, x, n);
      return;
    case 'silu':
      for (let i = 0; i < n; i++) out[i] = x[i] / (1 + Math.exp(-x[i]));
      return;
    case 'relu':
      // NaN and −0 become +0, as the branchless max of the fast kernels gives.
      for (let i = 0; i < n; i++) out[i] = x[i] > 0 ? x[i] : 0;
      return;
    case 'tanh':
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]);
      return;
    case 'exp':
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]);
      return;
    case 'softplus':
      // log(1 + e^x), linear above 20 as torch's F.softplus (threshold 20).
      for (let i = 0; i < n; i++) out[i] = x[i] > 20 ? x[i] : Math.log1p(Math.exp(x[i]));
      return;
    case 'abs':
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]);
      return;
    case 'neg':
      for (let i = 0; i < n; i++) out[i] = -x[i];
      return;
  }
}

/**
 * out[i] = a[i] ∘ b[i] for i < n. An operand shorter than n is repeated (a bias of `cols`
 * values over rows): its length must divide n.
 */
export function binary(
  op: 'add' | 'sub' | 'mul',
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  n = out.length,
): void {
  const al = Math.min(a.length, n);
  const bl = Math.min(b.length, n);
  if (al === n && bl === n) {
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
    else if (op === 'sub') for (let i = 0; i < n; i++) out[i] = a[i] - b[i];
    else for (let i = 0; i < n; i++) out[i] = a[i] * b[i];
    return;
  }
  if (al === n) {
    // b repeated every bl values (a bias over rows): row by row, no modulo per element.
    for (let o = 0; o < n; o += bl) {
      const m = Math.min(bl, n - o);
      if (op === 'add') for (let i = 0; i < m; i++) out[o + i] = a[o + i] + b[i];
      else if (op === 'sub') for (let i = 0; i < m; i++) out[o + i] = a[o + i] - b[i];
      else for (let i = 0; i < m; i++) out[o + i] = a[o + i] * b[i];
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const x = a[i % al];
    const y = b[i % bl];
    out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : x * y;
  }
}

/** out[i] = a[i] + b[i]·c[i] for i < n; operands shorter than n are repeated. */
export function addMul(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  n = out.length,
): void {
  const al = Math.min(a.length, n);
  const bl = Math.min(b.length, n);
  const cl = Math.min(c.length, n);
  if (al === n && bl === n && cl === n) {
    for (let i = 0; i < n; i++) out[i] = a[i] + b[i] * c[i];
    return;
  }
  // The shorter operands all of one length L (vectors of `cols` over rows): row by row,
  // no modulo per element.
  const L = Math.min(al, bl, cl);
  if ([al, bl, cl].every((m) => m === n || m === L) && n % L === 0) {
    for (let o = 0; o < n; o += L) {
      const oa = al === n ? o : 0;
      const ob = bl === n ? o : 0;
      const oc = cl === n ? o : 0;
      for (let i = 0; i < L; i++) out[o + i] = a[oa + i] + b[ob + i] * c[oc + i];
    }
    return;
  }
  for (let i = 0; i < n; i++) out[i] = a[i % al] + b[i % bl] * c[i % cl];
}

/** out[i] = x[i]·scale + shift for i < n. */
export function affine(
  out: Float32Array,
  x: Float32Array,
  scale: number,
  shift: number,
  n = out.length,
): void {
  for (let i = 0; i < n; i++) out[i] = x[i] * scale + shift;
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

// ---------------------------------------------------------------- sequences (packed batches)

/**
 * The previous row within each sequence of a packed batch: out_t = x_{t−1}, prev[b] at
 * the start of sequence b. `offsets` (B + 1 values) say where each sequence starts.
 */
export function tokenShift(
  out: Float32Array,
  x: Float32Array,
  prev: Float32Array,
  offsets: Int32Array,
  cols: number,
): void {
  for (let b = 0; b + 1 < offsets.length; b++) {
    const start = offsets[b];
    const end = offsets[b + 1];
    // Backwards, so that out may be x itself.
    for (let t = end - 1; t > start; t--) out.set(x.subarray((t - 1) * cols, t * cols), t * cols);
    if (end > start) out.set(prev.subarray(b * cols, (b + 1) * cols), start * cols);
  }
}

/** out[b] = the last row of sequence b; an empty sequence leaves out[b] as it is. */
export function lastRows(
  out: Float32Array,
  x: Float32Array,
  offsets: Int32Array,
  cols: number,
): void {
  for (let b = 0; b + 1 < offsets.length; b++) {
    const end = offsets[b + 1];
    if (end > offsets[b]) out.set(x.subarray((end - 1) * cols, end * cols), b * cols);
  }
}

/** out[i] = table[idx[i]], rows of `cols` values. */
export function gather(
  out: Float32Array,
  table: Float32Array,
  idx: Int32Array,
  cols: number,
): void {
  const rowsInTable = table.length / cols;
  for (let i = 0; i < idx.length; i++) {
    const r = idx[i];
    if (!(r >= 0 && r < rowsInTable)) throw new RangeError(`gather: row ${r} of ${rowsInTable}`);
    out.set(table.subarray(r * cols, (r + 1) * cols), i * cols);
  }
}

/** cache[b, starts[b] + t] = row t of sequence b of x, for caches [B, capacity, cols]. */
export function appendRows(
  cache: Float32Array,
  x: Float32Array,
  offsets: Int32Array,
  starts: Int32Array,
  capacity: number,
  cols: number,
): void {
  for (let b = 0; b + 1 < offsets.length; b++) {
    const n = offsets[b + 1] - offsets[b];
    if (starts[b] + n > capacity)
      throw new RangeError(`appendRows: ${starts[b] + n} rows exceed the capacity ${capacity}`);
    const dst = (b * capacity + starts[b]) * cols;
    cache.set(x.subarray(offsets[b] * cols, offsets[b + 1] * cols), dst);
  }
}

/**
 * Causal attention, the plain definition: row t of sequence b (position p = starts[b] + t)
 * attends, per head, to cached rows 0 … p of its sequence: out = softmax(scale·q·Kᵀ)·V.
 * Scores and sums are kept in double precision (fp32 or better, as Hugging Face upcasts).
 */
export function attention(
  out: Float32Array,
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  offsets: Int32Array,
  starts: Int32Array,
  capacity: number,
  heads: number,
  headDim: number,
  scale: number,
): void {
  const d = heads * headDim;
  const scores = new Float64Array(capacity);
  const qs = new Float32Array(headDim);
  for (let b = 0; b + 1 < offsets.length; b++) {
    const cache = b * capacity * d;
    for (let row = offsets[b]; row < offsets[b + 1]; row++) {
      const n = starts[b] + (row - offsets[b]) + 1; // keys this row sees
      for (let h = 0; h < heads; h++) {
        const qo = row * d + h * headDim;
        // q is scaled first (in float32, as Hugging Face scales the projection).
        for (let i = 0; i < headDim; i++) qs[i] = q[qo + i] * scale;
        // s_j = (scale·q) · k_j
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < n; j++) {
          const ko = cache + j * d + h * headDim;
          let s = 0;
          for (let i = 0; i < headDim; i++) s += qs[i] * keys[ko + i];
          scores[j] = s;
          if (s > max) max = s;
        }
        // p_j = exp(s_j − max) / Σ exp(…)
        let sum = 0;
        for (let j = 0; j < n; j++) {
          const e = Math.exp(scores[j] - max);
          scores[j] = e;
          sum += e;
        }
        // out_h = Σ_j p_j v_j
        const acc = out.subarray(qo, qo + headDim);
        acc.fill(0);
        for (let j = 0; j < n; j++) {
          const w = scores[j] / sum;
          const vo = cache + j * d + h * headDim;
          for (let i = 0; i < headDim; i++) acc[i] += w * values[vo + i];
        }
      }
    }
  }
}

// ---------------------------------------------------------------- statistics

/** numpy/torch `quantile` with linear interpolation, of an ascending-sorted array. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * For each row of x [rows, cols] and each q: sums[k] += Quantile_q(|x_row|) (linear
 * interpolation). The per-token statistic of METHOD.md §2, before the mean over tokens.
 */
export function rowQuantileSums(
  sums: Float64Array,
  x: Float32Array,
  rows: number,
  cols: number,
  qs: readonly number[],
): void {
  const row = new Float32Array(cols);
  for (let t = 0; t < rows; t++) {
    for (let c = 0; c < cols; c++) row[c] = Math.abs(x[t * cols + c]);
    row.sort();
    for (let k = 0; k < qs.length; k++) sums[k] += quantileSorted(row, qs[k]);
  }
}

/** Whether some logit of the row at `off` exceeds the target's (the target is not greedy). */
export function beatsTarget(logits: Float32Array, off: number, n: number, target: number): boolean {
  const v = logits[off + target];
  for (let j = 0; j < n; j++) if (logits[off + j] > v) return true;
  return false;
}
