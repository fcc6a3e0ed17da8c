/**
 * The wasm backend against the TypeScript reference (src/tensor/reference.ts).
 * Inputs and weights are uniform in [−1, 1]; the kernels sum in f32 in another order than
 * the reference (which sums in f64), so outputs must agree within atol = 1e-4·√cols
 * (observed: ≤ 2e-6·√cols up to cols = 4096; 1.5e-5·√cols at cols = 300 000, where f32
 * rounding grows with the partial sums). A wrong or missing term is off by ~0.1–1. Without build/wasm/kernels.wasm the tests are
 * skipped with the reason, except under CI=true, where CI has built it and they must run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserError } from '../../../src/errors.ts';
import type { Linear } from '../../../src/tensor/backend.ts';
import * as ref from '../../../src/tensor/reference.ts';
import {
  loadWasmKernels,
  type WasmKernels,
  wasmUnavailableReason,
} from '../../../src/tensor/wasm/index.ts';
import { assertClose } from '../../helpers/assert.ts';

const reason = wasmUnavailableReason();
const skip = reason && process.env.CI !== 'true' ? `wasm backend unavailable: ${reason}` : false;

function load(opts?: Parameters<typeof loadWasmKernels>[0]): WasmKernels {
  const b = loadWasmKernels(opts);
  if (!b) throw new Error(`wasm backend unavailable: ${wasmUnavailableReason()}`);
  return b;
}

/** Deterministic uniform [−1, 1) values (mulberry32), with a fraction of exact zeros. */
function makeRandom(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return (n: number, zeros = 0): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = next() < zeros ? 0 : next() * 2 - 1;
    return a;
  };
}

const atol = (cols: number) => 1e-4 * Math.sqrt(cols);
const SIZES = [1, 3, 17, 64, 129];

function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const wt = new Float32Array(rows * cols);
  ref.transpose(wt, w, rows, cols);
  return wt;
}

describe('wasm backend', { skip }, () => {
  it('loads the built kernels', () => {
    assert.equal(reason, null);
    assert.equal(load().name, 'wasm');
  });

  it('gemv matches the reference for odd and even shapes', () => {
    const b = load();
    const rnd = makeRandom(1);
    const shapes = SIZES.flatMap((r) => SIZES.map((c) => [r, c]));
    shapes.push([257, 1000], [1000, 31], [16, 4096]);
    for (const [rows, cols] of shapes) {
      const w = rnd(rows * cols);
      const x = rnd(cols);
      const l = b.prepare(w, rows, cols);
      // One sentinel past the end: a kernel must not write beyond `rows`.
      const y = new Float32Array(rows + 1).fill(7);
      const want = new Float32Array(rows);
      b.gemv(y, l, x);
      ref.gemv(want, w, x, rows, cols);
      assertClose(y.subarray(0, rows), want, { atol: atol(cols), label: `gemv ${rows}×${cols}` });
      assert.equal(y[rows], 7);
      b.release(l);
    }
  });

  it('gemm matches the reference for T in {1, 2, 5, 33} and odd shapes', () => {
    const b = load();
    const rnd = makeRandom(2);
    for (const tokens of [1, 2, 5, 33]) {
      for (const [rows, cols] of [
        [1, 1],
        [3, 17],
        [17, 3],
        [64, 129],
        [129, 64],
        [33, 257],
      ]) {
        const w = rnd(rows * cols);
        const x = rnd(tokens * cols);
        const l = b.prepare(w, rows, cols);
        const y = new Float32Array(tokens * rows);
        const want = new Float32Array(tokens * rows);
        b.gemm(y, l, x, tokens);
        ref.gemm(want, w, x, tokens, rows, cols);
        assertClose(y, want, { atol: atol(cols), label: `gemm T=${tokens} ${rows}×${cols}` });
        b.release(l);
      }
    }
  });

  it('gemm splits long inputs into token chunks without changing results', () => {
    // 1.2 MB of scratch per token: the 16 MiB budget takes 12 tokens at a time, so 13 → 12 + 1.
    const b = load();
    const rnd = makeRandom(3);
    const [tokens, rows, cols] = [13, 16, 300_000];
    const w = rnd(rows * cols);
    const x = rnd(tokens * cols);
    const l = b.prepare(w, rows, cols);
    const y = new Float32Array(tokens * rows);
    const want = new Float32Array(tokens * rows);
    b.gemm(y, l, x, tokens);
    ref.gemm(want, w, x, tokens, rows, cols);
    assertClose(y, want, { atol: atol(cols), label: 'chunked gemm' });
    b.gemm(y, l, x, 0); // no tokens: a no-op, not an error
    b.release(l);
  });

  it('sparseGemv matches the reference at 0%, mixed and 100% zeros', () => {
    const b = load();
    const rnd = makeRandom(4);
    for (const zeros of [0, 0.3, 0.5, 0.9, 0.99, 1]) {
      for (const [rows, cols] of [
        [1, 1],
        [3, 17],
        [17, 129],
        [129, 64],
        [64, 1000],
        [1000, 7],
      ]) {
        const w = rnd(rows * cols);
        const x = rnd(cols, zeros);
        const l = b.prepare(w, rows, cols, { sparse: true });
        const y = new Float32Array(rows).fill(7);
        const want = new Float32Array(rows);
        const n = b.sparseGemv(y, l, x);
        const nWant = ref.sparseGemv(want, transposed(w, rows, cols), x, rows, cols);
        const label = `sparseGemv ${zeros * 100}% zeros ${rows}×${cols}`;
        assert.equal(n, nWant, `${label}: active count`);
        assertClose(y, want, { atol: atol(cols), label });
        if (zeros === 1)
          assert.ok(
            y.every((v) => v === 0),
            `${label}: all outputs 0`,
          );
        b.release(l);
      }
    }
  });

  it('sparseGemv treats −0 as zero and NaN as active, like the reference', () => {
    const b = load();
    const w = makeRandom(5)(4 * 10);
    const x = new Float32Array(10);
    x[2] = -0;
    x[5] = Number.NaN;
    x[7] = 0.5;
    const l = b.prepare(w, 4, 10, { sparse: true });
    const y = new Float32Array(4);
    const want = new Float32Array(4);
    assert.equal(b.sparseGemv(y, l, x), 2);
    assert.equal(ref.sparseGemv(want, transposed(w, 4, 10), x, 4, 10), 2);
    assert.ok(y.every((v) => Number.isNaN(v)));
  });

  it('gemv and gemm still work on a weight prepared with {sparse: true}', () => {
    const b = load();
    const rnd = makeRandom(6);
    const [rows, cols, tokens] = [129, 65, 5];
    const w = rnd(rows * cols);
    const x = rnd(tokens * cols, 0.5);
    const l = b.prepare(w, rows, cols, { sparse: true });
    assert.equal(l.sparse, true);
    // Packed rows padded to 16; Wᵀ rows padded to an odd number of 16 plus one zero row.
    assert.equal(l.bytes, 4 * (144 * cols + 144 * (cols + 1)));
    const y = new Float32Array(tokens * rows);
    const want = new Float32Array(tokens * rows);
    b.gemv(y, l, x);
    ref.gemv(want, w, x, rows, cols);
    assertClose(y.subarray(0, rows), want.subarray(0, rows), { atol: atol(cols), label: 'gemv' });
    b.gemm(y, l, x, tokens);
    ref.gemm(want, w, x, tokens, rows, cols);
    assertClose(y, want, { atol: atol(cols), label: 'gemm' });
    const ys = new Float32Array(rows);
    b.sparseGemv(ys, l, x);
    assertClose(ys, want.subarray(0, rows), { atol: atol(cols), label: 'sparse vs dense' });
  });

  it('rejects misuse with clear errors', () => {
    const b = load();
    const w = new Float32Array(6);
    assert.throws(() => b.prepare(w, 2, 4), /6 values != 2×4/);
    assert.throws(() => b.prepare(new Float32Array(0), 0, 4), /bad shape/);
    const l = b.prepare(w, 2, 3);
    assert.equal(l.sparse, false);
    assert.throws(() => b.sparseGemv(new Float32Array(2), l, new Float32Array(3)), /sparse: true/);
    assert.throws(
      () => b.gemv(new Float32Array(2), l, new Float32Array(2)),
      /x has 2 values, needs 3/,
    );
    assert.throws(
      () => b.gemv(new Float32Array(1), l, new Float32Array(3)),
      /y has 1 values, needs 2/,
    );
    assert.throws(() => b.gemm(new Float32Array(4), l, new Float32Array(6), 2.5), /token count/);
    assert.throws(
      () => b.gemm(new Float32Array(3), l, new Float32Array(6), 2),
      /y has 3 values, needs 4/,
    );
    const other = load();
    assert.throws(
      () => other.gemv(new Float32Array(2), l, new Float32Array(3)),
      /not prepared by this/,
    );
    const foreign: Linear = { rows: 2, cols: 3, sparse: false, bytes: 24 };
    assert.throws(
      () => b.gemv(new Float32Array(2), foreign, new Float32Array(3)),
      /not prepared by this/,
    );
    b.release(l);
    b.release(l); // releasing twice is harmless
    assert.throws(() => b.gemv(new Float32Array(2), l, new Float32Array(3)), /released/);
  });

  it('prepare/release in a loop does not grow memory without bound', () => {
    const b = load();
    const rnd = makeRandom(7);
    const ws = [
      [300, 200],
      [17, 5000],
      [1000, 100],
      [1, 1],
    ].map(([r, c]) => ({ r, c, w: rnd(r * c) }));
    const cycle = () => {
      // Interleaved lifetimes: prepare all, release in a different order.
      const ls = ws.map(({ r, c, w }, i) => b.prepare(w, r, c, { sparse: i % 2 === 0 }));
      for (const [i, l] of ls.entries()) {
        if (l.rows > 1) b.gemv(new Float32Array(l.rows), l, rnd(l.cols));
        if (i % 2 === 0) b.sparseGemv(new Float32Array(l.rows), l, rnd(l.cols, 0.5));
      }
      for (const i of [2, 0, 3, 1]) b.release(ls[i]);
    };
    cycle();
    const used = b.usedBytes; // scratch only
    const reserved = b.memoryBytes;
    for (let i = 0; i < 30; i++) cycle();
    assert.equal(b.usedBytes, used);
    assert.equal(b.memoryBytes, reserved);
  });

  it('a model that does not fit the wasm memory gives a UserError that suggests native', () => {
    const b = load({ maxMemoryBytes: 4 * 1024 * 1024 });
    const small = b.prepare(new Float32Array(64 * 64), 64, 64);
    const big = new Float32Array(1024 * 1024); // 4 MiB: cannot fit next to anything
    assert.throws(
      () => b.prepare(big, 1024, 1024),
      (e: unknown) =>
        e instanceof UserError &&
        /limited to 4\.0 MiB/.test(e.message) &&
        /--backend native/.test(e.hint ?? ''),
    );
    // A failed prepare leaves the allocator consistent: the sparse copy's failure frees the packed one.
    const usedBefore = b.usedBytes;
    assert.throws(
      () => b.prepare(new Float32Array(512 * 1024), 512, 1024, { sparse: true }),
      UserError,
    );
    assert.equal(b.usedBytes, usedBefore);
    const y = new Float32Array(64);
    b.gemv(y, small, new Float32Array(64).fill(1));
    assert.ok(y.every((v) => v === 0));
  });
});
