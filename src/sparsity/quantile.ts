/**
 * From a keep-fraction K to a threshold λ (METHOD.md §2): the per-token quantile of
 * |x| across channels, averaged over tokens; or, as an option, the pooled quantile.
 */

import { quantileSorted, rowQuantileSums } from '../tensor/reference.ts';

export { quantileSorted };

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
  rowQuantileSums(
    sums,
    x,
    tokens,
    cols,
    keep.map((k) => 1 - k),
  );
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
