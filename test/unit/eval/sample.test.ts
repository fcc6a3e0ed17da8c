/** Sampling: the O(V) top-p sampler draws exactly what the sorted reference draws. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { massThreshold, sample, sampleSorted } from '../../../src/eval/sample.ts';
import { rng } from '../../../src/util/random.ts';

/** Logits of a few shapes: flat, peaked, with ties, with a dominant token. */
function logitsOf(kind: string, V: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: V }, (_, i) => {
    if (kind === 'ties') return Math.floor(r() * 4); // many equal values
    if (kind === 'peaked') return 8 * r() ** 6;
    if (kind === 'dominant') return i === 3 ? 20 : r();
    return r() * 2 - 1;
  });
}

test('top-p: the same token as the sorted reference for the same draw', () => {
  let draws = 0;
  for (const kind of ['flat', 'peaked', 'ties', 'dominant']) {
    for (const V of [1, 2, 7, 64, 1000]) {
      for (const topP of [0.01, 0.3, 0.85, 0.999]) {
        for (const temperature of [0.5, 1, 2]) {
          const logits = logitsOf(kind, V, V * 31 + draws);
          const a = rng(draws + 1);
          const b = rng(draws + 1);
          for (let k = 0; k < 20; k++) {
            const want = sampleSorted(logits, { temperature, topP }, b);
            assert.equal(
              sample(logits, { temperature, topP }, a),
              want,
              `${kind} V=${V} p=${topP}`,
            );
            draws++;
          }
        }
      }
    }
  }
  assert.equal(draws, 4 * 5 * 4 * 3 * 20);
});

test('top-p 1 draws each token with its probability; temperature 0 is greedy', () => {
  const logits = Float32Array.from([0, 1, 2, -1, 0.5]);
  const p = Array.from(logits, (l) => Math.exp(l));
  const z = p.reduce((x, y) => x + y, 0);
  const n = 100_000;
  const counts = new Array(logits.length).fill(0);
  // Draws on an even grid of u: each token's share is its probability to within 1/n.
  let i = 0;
  const grid = () => (i++ + 0.5) / n;
  for (let k = 0; k < n; k++) counts[sample(logits, { temperature: 1, topP: 1 }, grid)]++;
  for (const [t, c] of counts.entries())
    assert.ok(Math.abs(c / n - p[t] / z) < 2 / n, `token ${t}`);
  assert.equal(sample(logits, { temperature: 0, topP: 0.9 }, Math.random), 2);
});

test('massThreshold: the values ≥ τ are the smallest top set reaching the mass', () => {
  const r = rng(5);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + Math.floor(r() * 300);
    const v = Float64Array.from({ length: n }, () => (r() < 0.3 ? 0.5 : r()));
    const total = v.reduce((x, y) => x + y, 0);
    const target = r() * total;
    const tau = massThreshold(v, target);
    const sorted = [...v].sort((x, y) => y - x);
    let k = 0;
    let mass = 0;
    while (mass < target) mass += sorted[k++];
    assert.equal(tau, sorted[Math.max(0, k - 1)], `trial ${trial}`);
  }
});

test('O(V): 50277 tokens in well under the sorted reference’s time', () => {
  const logits = logitsOf('flat', 50277, 1);
  const time = (f: typeof sample) => {
    const r = rng(1);
    const t0 = performance.now();
    for (let k = 0; k < 20; k++) f(logits, { temperature: 1, topP: 0.85 }, r);
    return (performance.now() - t0) / 20;
  };
  time(sample);
  const fast = time(sample);
  const sorted = time(sampleSorted);
  assert.ok(fast < sorted, `${fast.toFixed(2)} ms vs sorted ${sorted.toFixed(2)} ms`);
});
