/**
 * Next-token sampling: temperature, nucleus (top-p), greedy at temperature 0, in O(V).
 *
 * Top-p keeps the smallest set of most likely tokens whose probability mass reaches p,
 * then draws from it, walking it most likely first. Sorting the vocabulary (50277
 * tokens) for that cost 25–30 ms per token, as much as a decode step of a 430M model.
 * Here two weighted quickselects (expected O(V), no sort) find where the kept set ends
 * and where the draw falls in that most-likely-first order, with ties in index order as
 * a stable sort leaves them: the same token as the sorted reference `sampleSorted` for
 * the same random draw, except when the draw lies within rounding (≈1e-16 of the mass)
 * of a boundary between two tokens, since the masses are summed in another order.
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
 * Where the running mass of `a` in descending order first reaches `target` (> 0): the
 * value v there, the mass of the values above v, and how many values equal v. Weighted
 * quickselect on `a` (reordered in place): three-way partitions around pseudo-random
 * pivots, keeping only the side where the target lies. Null when the whole mass falls
 * short of the target (by rounding).
 */
function weightedSelect(
  a: Float64Array,
  target: number,
): { value: number; above: number; ties: number } | null {
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
      } else i++;
    }
    const ties = lt - gt;
    if (above + massGt >= target) hi = gt;
    else if (above + massGt + ties * pivot >= target)
      return { value: pivot, above: above + massGt, ties };
    else {
      above += massGt + ties * pivot;
      lo = lt;
    }
  }
  return null;
}

/** The largest τ such that the values ≥ τ hold at least `target` of the mass (for tests). */
export function massThreshold(values: Float64Array, target: number): number {
  return weightedSelect(new Float64Array(values), target)?.value ?? Number.NEGATIVE_INFINITY;
}

/** The r-th token (0-based, in index order) whose weight is `value`. */
function nthWithValue(probs: Float64Array, value: number, r: number): number {
  for (let i = 0; i < probs.length; i++) if (probs[i] === value && r-- === 0) return i;
  throw new Error('sample: no token has the selected weight');
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

  // The kept set: every weight above τ, and the first `m` tokens weighing τ exactly.
  const edge = topP < 1 ? weightedSelect(new Float64Array(probs), topP * sum) : null;
  let kept: Float64Array;
  let mass: number;
  if (!edge) {
    kept = probs.slice();
    mass = sum;
  } else {
    const m = Math.min(edge.ties, Math.max(1, Math.ceil((topP * sum - edge.above) / edge.value)));
    let n = m;
    for (let i = 0; i < probs.length; i++) if (probs[i] > edge.value) n++;
    kept = new Float64Array(n);
    let k = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i] > edge.value) kept[k++] = probs[i];
    kept.fill(edge.value, k);
    mass = edge.above + m * edge.value;
  }

  // The draw: the first token, most likely first, whose running mass reaches u · mass.
  const x = u * mass;
  if (x <= 0) return best;
  const at = weightedSelect(kept, x);
  if (!at) {
    // Rounding put x past the last kept token: that token (the least likely kept).
    const last = weightedSelect(kept, mass * (1 - 1e-12))!;
    return nthWithValue(probs, last.value, last.ties - 1);
  }
  const r = Math.min(at.ties, Math.max(1, Math.ceil((x - at.above) / at.value))) - 1;
  return nthWithValue(probs, at.value, r);
}

/** The sorted reference sampler (O(V log V)), for tests: a stable sort, most likely first. */
export function sampleSorted(
  logits: Float32Array,
  { temperature, topP }: SampleOptions,
  random: () => number,
): number {
  const best = argmax(logits);
  if (temperature <= 0) return best;
  const { probs, sum } = weights(logits, temperature, best);
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]);
  let kept = 0;
  let mass = 0;
  while (kept < order.length && mass < topP * sum) mass += probs[order[kept++]];
  let x = random() * mass;
  for (let j = 0; j < kept; j++) {
    x -= probs[order[j]];
    if (x <= 0) return order[j];
  }
  return order[kept - 1];
}
