/**
 * The semantics of the sites' kernels in src/tensor/reference.ts, checked on hand-made
 * values: `threshold` (what a site does before its linear layer) and `countZeros` (what
 * the sparsity observers measure). The native versions are held to these bit for bit in
 * backend-native.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsKernels, referenceOps } from '../../../src/tensor/cpu.ts';
import { countZeros, threshold } from '../../../src/tensor/reference.ts';

/** Each value with the sign of its zeros visible: −0 as the string '-0'. */
function show(x: Float32Array): (number | string)[] {
  return [...x].map((v) => (Object.is(v, -0) ? '-0' : v));
}

const X = () => new Float32Array([0.5, -0.5, 0.25, -0.75, Number.NaN, -0, 0, 2, -Infinity]);

test('threshold gt keeps |x| > λ, ge keeps |x| ≥ λ; NaN is zeroed and −0 becomes +0', () => {
  const gt = X();
  threshold(gt, 0.5, 'gt');
  assert.deepEqual(show(gt), [0, 0, 0, -0.75, 0, 0, 0, 2, -Infinity]);
  const ge = X();
  threshold(ge, 0.5, 'ge');
  assert.deepEqual(show(ge), [0.5, -0.5, 0, -0.75, 0, 0, 0, 2, -Infinity]);
});

test('threshold with λ ≤ 0 is the identity, NaN and −0 included; λ = +∞ keeps only ±∞ (ge)', () => {
  for (const lambda of [0, -0, -1, -Infinity]) {
    for (const cmp of ['gt', 'ge'] as const) {
      const x = X();
      threshold(x, lambda, cmp);
      assert.deepEqual(show(x), show(X()), `λ = ${lambda} ${cmp}`);
    }
  }
  const gt = X();
  threshold(gt, Infinity, 'gt');
  assert.deepEqual(show(gt), new Array(9).fill(0));
  const ge = X();
  threshold(ge, Infinity, 'ge');
  assert.deepEqual(show(ge), [0, 0, 0, 0, 0, 0, 0, 0, -Infinity]);
});

test('threshold compares the float32 value with the double λ, as JavaScript does', () => {
  // fround(0.1) = 0.10000000149…, just above the double 0.1: with gt it passes λ = 0.1
  // but not λ = fround(0.1).
  const x = new Float32Array([0.1, -0.1]);
  threshold(x, 0.1, 'gt');
  assert.deepEqual([...x], [Math.fround(0.1), Math.fround(-0.1)]);
  threshold(x, Math.fround(0.1), 'gt');
  assert.deepEqual(show(x), [0, 0]);
});

test('threshold and countZeros work on x[0:n] only; n defaults to x.length', () => {
  const x = X();
  threshold(x, 1, 'gt', 3);
  assert.deepEqual(show(x), [0, 0, 0, -0.75, Number.NaN, '-0', 0, 2, -Infinity]);
  assert.equal(countZeros(x), 5); // three thresholded, −0 and +0; NaN is not a zero
  assert.equal(countZeros(x, 3), 3);
  assert.equal(countZeros(x, 0), 0);
  assert.equal(countZeros(new Float32Array(0)), 0);
  assert.equal(countZeros(X()), 2);
});

test('threshold and countZeros refuse a NaN λ, an unknown comparison and a bad n', () => {
  const x = X();
  assert.throws(() => threshold(x, Number.NaN, 'gt'), { name: 'RangeError', message: /λ is NaN/ });
  assert.throws(() => threshold(x, 0.5, 'lt' as 'gt'), {
    name: 'RangeError',
    message: /comparison must be 'gt' or 'ge', not lt/,
  });
  assert.throws(() => threshold(x, 0.5, 'gt', 10), /n = 10 is not an integer in \[0, 9\]/);
  assert.throws(() => threshold(x, 0.5, 'gt', -1), { name: 'RangeError' });
  assert.throws(() => threshold(x, 0.5, 'gt', 1.5), { name: 'RangeError' });
  assert.deepEqual(show(x), show(X()), 'a refused call writes nothing');
  assert.throws(() => countZeros(x, 10), /countZeros: n = 10 is not an integer/);
  assert.throws(() => countZeros(x, 0.5), { name: 'RangeError' });
});

test('one definition: the reference tier uses these functions', () => {
  assert.equal(referenceOps.threshold, threshold);
  assert.equal(referenceOps.countZeros, countZeros);
  assert.equal(jsKernels.ops, referenceOps);
});
