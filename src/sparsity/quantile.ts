/**
 * From a keep-fraction K to a threshold λ (METHOD.md §2): the per-token quantile of
 * |x| across channels, averaged over tokens; or, as an option, the pooled quantile.
 */

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
 * λ for each keep-fraction K: mean over tokens t of Quantile_{1−K}(|x[t, :]|), for x of
 * shape [tokens, cols]. Returns one λ per K, in the order given.
 */
export function perTokenQuantileThresholds(
  x: Float32Array,
  tokens: number,
  cols: number,
  keep: readonly number[],
): number[] {
  const sums = new Float64Array(keep.length);
  const row = new Float32Array(cols);
  for (let t = 0; t < tokens; t++) {
    for (let c = 0; c < cols; c++) row[c] = Math.abs(x[t * cols + c]);
    row.sort();
    keep.forEach((k, i) => {
      sums[i] += quantileSorted(row, 1 - k);
    });
  }
  return Array.from(sums, (s) => s / tokens);
}

/**
 * The alternative statistic: one quantile of |x| over all values pooled together
 * (tokens × channels). Holds the values of every chunk at once.
 */
export function pooledQuantileThresholds(
  chunks: readonly Float32Array[],
  keep: readonly number[],
): number[] {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const c of chunks) {
    for (let i = 0; i < c.length; i++) all[o + i] = Math.abs(c[i]);
    o += c.length;
  }
  all.sort();
  return keep.map((k) => quantileSorted(all, 1 - k));
}
