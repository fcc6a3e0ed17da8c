/** Numeric comparison that reports the worst elements, in the manner of llm.c's checks. */
export interface CloseOptions {
  atol?: number;
  rtol?: number;
  label?: string;
}

export interface CloseReport {
  maxAbs: number;
  worstIndex: number;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): CloseReport {
  let maxAbs = 0;
  let worstIndex = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > maxAbs || Number.isNaN(d)) {
      maxAbs = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
      worstIndex = i;
    }
  }
  return { maxAbs, worstIndex };
}

/** Fails unless |a−b| ≤ atol + rtol·|b| everywhere; returns the max abs difference. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 0, label = 'values' }: CloseOptions = {},
): number {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  const bad: string[] = [];
  let nBad = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= atol + rtol * Math.abs(expected[i]))) {
      nBad++;
      if (bad.length < 5) bad.push(`  [${i}] got ${actual[i]} want ${expected[i]} (diff ${d})`);
    }
  }
  const { maxAbs } = maxAbsDiff(actual, expected);
  if (nBad > 0) {
    throw new Error(
      `${label}: ${nBad}/${actual.length} elements off (atol ${atol}, rtol ${rtol}, max abs diff ${maxAbs}):\n${bad.join('\n')}`,
    );
  }
  return maxAbs;
}
