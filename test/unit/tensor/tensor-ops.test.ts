/**
 * The core ops of the backend interface: the reference definitions on hand-computed
 * values, and every CPU tier's backend (js, wasm, native) against them, with views,
 * broadcasts and packed batches that hold sequences of length 0 and 1.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Seqs } from '../../../src/tensor/backend.ts';
import * as ref from '../../../src/tensor/reference.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';
import { cpuBackends } from '../../helpers/backends.ts';

const F = (...v: number[]) => Float32Array.from(v);
const rand = (n: number, seed: number, scale = 1) => {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
};

describe('reference definitions on hand-computed values', () => {
  test('unary functions', () => {
    const x = F(-30, -1, -0, 0, 0.5, 21, Number.NaN);
    const out = new Float32Array(x.length);
    ref.unary('relu', out, x);
    assert.deepEqual(
      [...out].map((v) => (Object.is(v, -0) ? '-0' : v)),
      [0, 0, 0, 0, 0.5, 21, 0],
    );
    ref.unary('silu', out, F(0, 1, -1), 3);
    assertClose(out.subarray(0, 3), [0, 1 / (1 + Math.exp(-1)), -1 / (1 + Math.exp(1))], {
      atol: 1e-7,
    });
    // softplus is linear above 20 (torch's threshold) and log1p(e^x) below.
    ref.unary('softplus', out, F(21, 0, -5), 3);
    assertClose(out.subarray(0, 3), [21, Math.log(2), Math.log1p(Math.exp(-5))], { atol: 1e-7 });
    ref.unary('tanh', out, F(0.5), 1);
    assert.equal(out[0], Math.fround(Math.tanh(0.5)));
    ref.unary('abs', out, F(-2, 3), 2);
    ref.unary('neg', out.subarray(2), F(4), 1);
    ref.unary('exp', out.subarray(3), F(1), 1);
    assertClose(out.subarray(0, 4), [2, 3, -4, Math.E], { atol: 1e-6 });
  });

  test('binary and addMul repeat a shorter operand (a bias over rows)', () => {
    const a = F(1, 2, 3, 4, 5, 6);
    const out = new Float32Array(6);
    ref.binary('add', out, a, F(10, 20, 30));
    assert.deepEqual([...out], [11, 22, 33, 14, 25, 36]);
    ref.binary('sub', out, F(1, 1), a, 6);
    assert.deepEqual([...out], [0, -1, -2, -3, -4, -5]);
    ref.binary('mul', out, a, F(2));
    assert.deepEqual([...out], [2, 4, 6, 8, 10, 12]);
    ref.addMul(out, a, F(1, -1), a);
    assert.deepEqual([...out], [2, 0, 6, 0, 10, 0]);
    ref.affine(out, a, 2, -1, 3);
    assert.deepEqual([...out.subarray(0, 3)], [1, 3, 5]);
  });

  test('layer norm per group with per-head weights is GroupNorm', () => {
    // Two heads of 2 channels, one row: each head normalised alone, weights per channel.
    const x = F(1, 3, 10, 30);
    const out = new Float32Array(4);
    ref.layerNorm(out, x, F(1, 2, 3, 4), F(0, 0, 1, 1), 2, 2, 0);
    assertClose(out, [-1, 2, -3 + 1, 4 + 1], { atol: 1e-6 });
    // A weight of n values is the same for every group.
    ref.layerNorm(out, x, F(1, 1), F(0, 0), 2, 2, 0);
    assertClose(out, [-1, 1, -1, 1], { atol: 1e-6 });
  });

  test('rms norm and L2 normalisation', () => {
    const out = new Float32Array(4);
    ref.rmsNorm(out, F(3, 4, 0, 0), F(1, 2, 1, 1), 2, 2, 0.5);
    // group 1: mean(x²) = 12.5, /√13; group 0 of zeros stays 0; weights index per element.
    assertClose(out, [3 / Math.sqrt(13), 8 / Math.sqrt(13), 0, 0], { atol: 1e-6 });
    ref.l2Normalize(out, F(3, 4, 1e-9, 0), 2, 2, 1e-6);
    // The second group's norm 1e-9 is below eps: divided by eps, as F.normalize does.
    assertClose(out, [0.6, 0.8, 1e-3, 0], { atol: 1e-7 });
  });

  test('token shift, last rows and gather over a packed batch', () => {
    // Sequences of 2, 0 and 3 rows of 2 columns.
    const seqs = new Seqs([2, 0, 3]);
    const x = F(1, 1, 2, 2, 3, 3, 4, 4, 5, 5);
    const prev = F(-1, -1, -2, -2, -3, -3);
    const out = new Float32Array(10);
    ref.tokenShift(out, x, prev, seqs.offsets, 2);
    assert.deepEqual([...out], [-1, -1, 1, 1, -3, -3, 3, 3, 4, 4]);
    // In place gives the same.
    const y = x.slice();
    ref.tokenShift(y, y, prev, seqs.offsets, 2);
    assert.deepEqual(y, out);
    const last = F(9, 9, 8, 8, 7, 7);
    ref.lastRows(last, x, seqs.offsets, 2);
    assert.deepEqual([...last], [2, 2, 8, 8, 5, 5], 'the empty sequence keeps its row');
    const g = new Float32Array(6);
    ref.gather(g, x, Int32Array.from([4, 0, 4]), 2);
    assert.deepEqual([...g], [5, 5, 1, 1, 5, 5]);
    assert.throws(() => ref.gather(g, x, Int32Array.from([5]), 2), /row 5 of 5/);
  });

  test('attention: softmax(scale·q·Kᵀ)·V per sequence and head, causal, continuing a cache', () => {
    // One head of dim 1, two sequences; the second continues a cache of 1 row.
    const cap = 3;
    const keys = new Float32Array(2 * cap);
    const values = new Float32Array(2 * cap);
    keys[cap] = 2; // sequence 1's cached key and value
    values[cap] = 10;
    const seqs = new Seqs([2, 1]);
    const starts = Int32Array.from([0, 1]);
    const k = F(1, 0, 1);
    const v = F(4, 6, 20);
    ref.appendRows(keys, k, seqs.offsets, starts, cap, 1);
    ref.appendRows(values, v, seqs.offsets, starts, cap, 1);
    assert.deepEqual([...keys], [1, 0, 0, 2, 1, 0]);
    const q = F(1, 2, 3);
    const out = new Float32Array(3);
    ref.attention(out, q, keys, values, seqs.offsets, starts, cap, 1, 1, 0.5);
    const soft = (s: number[], vs: number[]) => {
      const e = s.map((x) => Math.exp(x));
      const z = e.reduce((a, b) => a + b, 0);
      return e.reduce((a, w, i) => a + (w / z) * vs[i], 0);
    };
    assertClose(
      out,
      [4, soft([2 * 0.5 * 1, 2 * 0.5 * 0], [4, 6]), soft([3 * 0.5 * 2, 3 * 0.5 * 1], [10, 20])],
      { atol: 1e-5 },
    );
    assert.throws(
      () => ref.appendRows(keys, k, seqs.offsets, Int32Array.from([2, 2]), cap, 1),
      /exceed the capacity/,
    );
  });

  test('row quantiles: numpy linear interpolation of sorted |x|, summed over rows', () => {
    const sums = new Float64Array(3);
    // |row 0| sorted: 1 2 3 4; |row 1|: 0 0 0 8.
    ref.rowQuantileSums(sums, F(-4, 1, 3, -2, 0, 8, 0, -0), 2, 4, [0, 0.5, 0.9]);
    assertClose(sums, [1 + 0, 2.5 + 0, 3.7 + 0.7 * 8], { atol: 1e-9 });
  });
});

describe('every CPU backend equals the reference definitions', () => {
  for (const [name, be] of cpuBackends()) {
    const opts = be ? {} : { skip: `${name} backend not built here` };
    test(`${name}: elementwise, norms and sequences on views of larger buffers`, opts, () => {
      const b = be!;
      const rows = 5;
      const cols = 48;
      const n = rows * cols;
      const big = b.upload(rand(n + 16, 1));
      const x = b.view(big, 16, n); // an offset view
      const xs = rand(n + 16, 1).subarray(16);
      const w = b.upload(rand(cols, 2, 2));
      const bias = b.upload(rand(cols, 3));
      const out = b.alloc(n);
      const want = new Float32Array(n);
      for (const op of ['sigmoid', 'silu', 'relu', 'reluSquare', 'tanh', 'softplus'] as const) {
        b.unary(op, out, x);
        ref.unary(op, want, xs);
        assertClose(out as Float32Array, want, { atol: 1e-6, rtol: 1e-6, label: `${name} ${op}` });
      }
      b.binary('add', out, x, bias);
      ref.binary('add', want, xs, bias as Float32Array);
      assert.deepEqual(out, want);
      b.addMul(out, x, w, x);
      ref.addMul(want, xs, w as Float32Array, xs);
      assert.deepEqual(out, want);
      b.layerNorm(out, x, w, bias, rows, cols, 1e-5);
      ref.layerNorm(want, xs, w as Float32Array, bias as Float32Array, rows, cols, 1e-5);
      assertClose(out as Float32Array, want, {
        atol: 1e-5,
        rtol: 1e-5,
        label: `${name} layerNorm`,
      });
      // GroupNorm: 4 heads of 12 per row, weights of the whole row.
      b.layerNorm(out, x, w, bias, rows * 4, 12, 64e-5);
      ref.layerNorm(want, xs, w as Float32Array, bias as Float32Array, rows * 4, 12, 64e-5);
      assertClose(out as Float32Array, want, {
        atol: 1e-5,
        rtol: 1e-5,
        label: `${name} groupNorm`,
      });
      b.rmsNorm(out, x, w, rows, cols, 1e-6);
      ref.rmsNorm(want, xs, w as Float32Array, rows, cols, 1e-6);
      assertClose(out as Float32Array, want, { atol: 1e-6, label: `${name} rmsNorm` });
      // Token shift with mix over a packed batch of 2, 0, 1 and 2 rows.
      const seqs = new Seqs([2, 0, 1, 2]);
      const prev = b.upload(rand(4 * cols, 4));
      b.timeShiftMix(out, x, prev, w, seqs, cols);
      const shifted = new Float32Array(n);
      ref.tokenShift(shifted, xs, prev as Float32Array, seqs.offsets, cols);
      for (let i = 0; i < n; i++) {
        const m = (w as Float32Array)[i % cols];
        want[i] = xs[i] * m + shifted[i] * (1 - m);
      }
      assertClose(out as Float32Array, want, { atol: 1e-6, label: `${name} timeShiftMix` });
    });

    test(`${name}: attention over sequences (matrix products) equals the loops`, opts, () => {
      const b = be!;
      const heads = 3;
      const hd = 8;
      const d = heads * hd;
      const cap = 12;
      // Sequence 0: 5 new rows after 2 cached; sequence 1: 1 row after 4; sequence 2: 7 new.
      const starts = Int32Array.from([2, 4, 0]);
      const seqs = new Seqs([5, 1, 7]);
      const cacheK = rand(3 * cap * d, 5);
      const cacheV = rand(3 * cap * d, 6);
      const k = rand(13 * d, 7);
      const v = rand(13 * d, 8);
      const q = rand(13 * d, 9);
      const keys = b.upload(cacheK.slice());
      const values = b.upload(cacheV.slice());
      b.appendRows(keys, b.upload(k), seqs, starts, cap, d);
      b.appendRows(values, b.upload(v), seqs, starts, cap, d);
      const out = b.alloc(13 * d);
      b.attention(out, b.upload(q), keys, values, seqs, starts, cap, heads, hd, hd ** -0.5);
      const rk = cacheK.slice();
      const rv = cacheV.slice();
      ref.appendRows(rk, k, seqs.offsets, starts, cap, d);
      ref.appendRows(rv, v, seqs.offsets, starts, cap, d);
      const want = new Float32Array(13 * d);
      ref.attention(want, q, rk, rv, seqs.offsets, starts, cap, heads, hd, hd ** -0.5);
      assertClose(out as Float32Array, want, {
        atol: 1e-5,
        rtol: 1e-5,
        label: `${name} attention`,
      });
    });

    test(`${name}: tallies (zeros, sums, row quantiles, the fused loss)`, opts, async () => {
      const b = be!;
      const rows = 6;
      const cols = 40;
      const xs = rand(rows * cols, 10);
      for (let i = 0; i < xs.length; i += 3) xs[i] = 0;
      const t = b.tally(8);
      b.tallyZeros(t, 0, b.upload(xs));
      b.tallySum(t, 1, b.upload(xs), 7);
      b.tallyQuantiles(t, 2, b.upload(xs), rows, cols, [0.1, 0.5, 0.99]);
      const sums = await b.readTally(t);
      assert.equal(sums[0], Math.ceil(xs.length / 3));
      assertClose([sums[1]], [xs.subarray(0, 7).reduce((a, v) => a + v, 0)], { atol: 1e-6 });
      const q = new Float64Array(3);
      ref.rowQuantileSums(q, xs, rows, cols, [0.1, 0.5, 0.99]);
      assertClose(sums.subarray(2, 5), q, { atol: 1e-9 });
      // tallyNll: rows to slots [0, 1, 0], misses counted after them.
      const V = 10;
      const logits = rand(3 * V, 11, 3);
      const targets = Int32Array.from([2, 5, 9]);
      logits[V + 5] = 50; // row 1's target is the greedy choice
      const nt = b.tally(4);
      b.tallyNll(
        nt,
        b.upload(logits),
        b.uploadIds(targets),
        b.uploadIds(Int32Array.from([0, 1, 0])),
        3,
        V,
        2,
      );
      const got = await b.readTally(nt);
      const nll = (r: number) => ref.nll(logits, r * V, V, targets[r]);
      const miss = (r: number) => (ref.beatsTarget(logits, r * V, V, targets[r]) ? 1 : 0);
      assertClose(got, [nll(0) + nll(2), nll(1), miss(0) + miss(2), 0], { atol: 1e-9 });
    });

    test(`${name}: matmul with bias and zero skipping for one row`, opts, async () => {
      const b = be!;
      const rows = 24;
      const cols = 40;
      const wh = rand(rows * cols, 12);
      const w = b.prepare(wh, rows, cols, { sparse: true });
      const x = rand(3 * cols, 13);
      for (let i = 0; i < x.length; i += 2) x[i] = 0;
      const bias = rand(rows, 14);
      const y = b.alloc(3 * rows);
      b.matmul(y, w, b.upload(x), 3, { bias: b.upload(bias) });
      const want = new Float32Array(3 * rows);
      ref.gemm(want, wh, x, 3, rows, cols);
      ref.binary('add', want, want, bias);
      assertClose(await b.read(y), want, { atol: 1e-5, rtol: 1e-5, label: `${name} gemm+bias` });
      const y1 = b.alloc(rows);
      b.matmul(y1, w, b.view(b.upload(x), cols, cols), 1, { skipZeros: true });
      assertClose(
        await b.read(y1),
        want.subarray(rows, 2 * rows).map((v, i) => v - bias[i]),
        {
          atol: 1e-5,
          rtol: 1e-5,
          label: `${name} sparse gemv`,
        },
      );
      b.release(w);
    });
  }
});

test('Seqs: offsets of packed sequences; bad lengths are refused', () => {
  const s = new Seqs([3, 0, 2]);
  assert.deepEqual([...s.offsets], [0, 3, 3, 5]);
  assert.equal(s.count, 3);
  assert.equal(s.rows, 5);
  assert.equal(s.length(2), 2);
  assert.deepEqual([...Seqs.uniform(2, 4).offsets], [0, 4, 8]);
  assert.throws(() => new Seqs([1, -1]), /length -1 of sequence 1/);
});
