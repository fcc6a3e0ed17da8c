/**
 * Next-token sampling: temperature, nucleus (top-p), greedy at temperature 0, in O(V).
 *
 * Top-p keeps the smallest set of most likely tokens whose probability mass reaches
 * p and draws from it. Sorting the whole vocabulary (50277 tokens) to find that set
 * cost 25–30 ms per token, as much as a decode step of a 430M model; here a weighted
 * quickselect finds the probability at the edge of the set in expected O(V), and only
 * the kept values are sorted, by a numeric typed-array sort, to walk them most likely
 * first as the sorted reference `sampleSorted` does: the same random draw gives the
 * same token.
 */

export interface SampleOptions {
  temperature: number;
  topP: number;
}

/** Index of the largest logit (the first on ties). */
function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** p_i ∝ exp((l_i − max) / T), unnormalized, and their sum (in index order). */
function weights(logits: Float32Array, temperature: number, best: number) {
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - logits[best]) / temperature);
    sum += probs[i];
  }
  return { probs, sum };
}

/**
 * The largest value τ such that the values ≥ τ hold at least `target` of the mass:
 * quickselect on a copy, three-way partitions around a pseudo-random pivot, keeping
 * only the side where the edge lies. Expected O(n).
 */
export function massThreshold(values: Float64Array, target: number): number {
  const a = Float64Array.from(values);
  let lo = 0;
  let hi = a.length;
  let above = 0; // mass of the values known to be above a[lo, hi)
  let seed = 0x9e3779b9;
  while (lo < hi) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const pivot = a[lo + (seed % (hi - lo))];
    // [lo, gt): > pivot; [gt, lt): == pivot; [lt, hi): < pivot.
    let gt = lo;
    let i = lo;
    let lt = hi;
    let massGt = 0;
    let massEq = 0;
    while (i < lt) {
      const v = a[i];
      if (v > pivot) {
        a[i] = a[gt];
        a[gt++] = v;
        massGt += v;
        i++;
      } else if (v < pivot) {
        a[i] = a[--lt];
        a[lt] = v;
      } else {
        massEq += v;
        i++;
      }
    }
    if (above + massGt >= target) hi = gt;
    else if (above + massGt + massEq >= target) return pivot;
    else {
      above += massGt + massEq;
      lo = lt;
    }
  }
  // The target lies beyond every value (rounding): keep everything.
  return Number.NEGATIVE_INFINITY;
}

/**
 * The reference's walk over values sorted most likely first (`desc(j)` is the j-th):
 * keep while the mass is below `limit`, then find where `u` · mass falls. Returns the
 * position drawn, or null when the values ran out before the limit.
 */
function walk(desc: (j: number) => number, n: number, limit: number, u: number, all: boolean) {
  let kept = 0;
  let mass = 0;
  while (kept < n && mass < limit) mass += desc(kept++);
  if (mass < limit && !all) return null;
  let x = u * mass;
  for (let j = 0; j < kept; j++) {
    x -= desc(j);
    if (x <= 0) return j;
  }
  return kept - 1;
}

export function sample(
  logits: Float32Array,
  { temperature, topP }: SampleOptions,
  random: () => number,
): number {
  const best = argmax(logits);
  if (temperature <= 0) return best;
  const { probs, sum } = weights(logits, temperature, best);
  const u = random();
  if (topP >= 1) {
    // Every token is kept: one pass in index order (the same distribution as sorted).
    let x = u * sum;
    for (let i = 0; i < probs.length; i++) {
      x -= probs[i];
      if (x <= 0) return i;
    }
    return probs.length - 1;
  }
  // The kept set is a prefix of the sorted order: the values at or above τ. Sorting
  // those values (a numeric typed-array sort) gives the reference's sums exactly,
  // since tied tokens have equal values; the token is found by its value afterwards.
  const tau = massThreshold(probs, topP * sum);
  let n = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] >= tau) n++;
  const vals = new Float64Array(n);
  n = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] >= tau) vals[n++] = probs[i];
  vals.sort();
  const desc = (j: number) => vals[n - 1 - j];
  const j = walk(desc, n, topP * sum, u, n === probs.length);
  if (j === null) return sortedDraw(probs, topP * sum, u);
  // Position j is the r-th of its value in the sorted order: ties go by index.
  const v = desc(j);
  let r = 0;
  while (j - r - 1 >= 0 && desc(j - r - 1) === v) r++;
  for (let i = 0; i < probs.length; i++) if (probs[i] === v && r-- === 0) return i;
  throw new Error('sample: the drawn value is not among the probabilities');
}

/** The reference: sort every token, most likely first (stable on ties). */
function sortedDraw(probs: Float64Array, limit: number, u: number): number {
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]);
  return order[walk((j) => probs[order[j]], order.length, limit, u, true)!];
}

/** The sorted reference sampler (O(V log V)), for tests. */
export function sampleSorted(
  logits: Float32Array,
  { temperature, topP }: SampleOptions,
  random: () => number,
): number {
  const best = argmax(logits);
  if (temperature <= 0) return best;
  const { probs, sum } = weights(logits, temperature, best);
  return sortedDraw(probs, topP * sum, random());
}
