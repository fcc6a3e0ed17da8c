/**
 * The native addon's kernels against src/tensor/reference.ts, for every kernel family the
 * build and CPU offer: OpenBLAS (dense products) and the own AVX-512 / AVX2 / scalar
 * kernels, switched at run time in one process. Without a built addon the tests are
 * skipped with the reason, except under CI=true (CI builds it), where that fails.
 *
 * Tolerance: inputs uniform in [−1, 1], so outputs are sums of up to ~2·10⁴ terms of
 * size ≤ 1. The kernels sum in other orders (and with FMA), which moves fp32 results by
 * ~1e-6 at these sizes; |got − want| ≤ 1e-4 + 1e-4·|want| leaves room for that, while a
 * wrong index, a dropped tail element or a stale accumulator is off by ≥ 1e-2.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type Backend, jsBackend, type Linear } from '../src/tensor/backend.ts';
import {
  blasUnavailableReason,
  info,
  loadNativeBackend,
  memoryReadBandwidth,
  nativeUnavailableReason,
  setSimd,
  setThreads,
  useBlas,
} from '../src/tensor/native/index.ts';
import * as ref from '../src/tensor/reference.ts';
import { assertClose } from './helpers/assert.ts';

const reason = nativeUnavailableReason();
const ci = process.env.CI === 'true';
const skip = reason ? `native addon not available: ${reason}` : false;
const TOL = { atol: 1e-4, rtol: 1e-4 };

/** Deterministic uniform values in [−1, 1] (mulberry32). */
function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2147483648 - 1;
  }
  return out;
}

/** x with about `zeros` of its entries set to 0 (some of them −0, which also counts as zero). */
function withZeros(n: number, zeros: number, seed: number): Float32Array {
  const x = random(n, seed);
  const pick = random(n, seed + 1);
  for (let i = 0; i < n; i++) if ((pick[i] + 1) / 2 < zeros) x[i] = i % 3 === 0 ? -0 : 0;
  return x;
}

const SIZES = [1, 3, 17, 64, 129];
// Past the 256 KiB threshold (two threads), k-blocking (cols > 512) and, for cols = 20000,
// more than one packed token chunk.
const LARGE: [number, number][] = [
  [1029, 700],
  [300, 300],
  [17, 20000],
];
const TOKENS = [1, 2, 4, 5, 33];

interface Config {
  name: string;
  blas: boolean;
  simd: 'auto' | 'avx512' | 'avx2' | 'scalar';
}

function configs(): Config[] {
  if (reason) return [];
  const list: Config[] = [];
  if (useBlas(true)) list.push({ name: `OpenBLAS + ${info().simd}`, blas: true, simd: 'auto' });
  for (const simd of ['avx512', 'avx2', 'scalar'] as const) {
    try {
      setSimd(simd);
      list.push({ name: `own ${simd}`, blas: false, simd });
    } catch {
      // this CPU lacks it
    }
  }
  setSimd('auto');
  useBlas('auto');
  return list;
}

function use(c: Config): Backend {
  assert.equal(useBlas(c.blas), c.blas);
  setSimd(c.simd);
  return loadNativeBackend()!;
}

test('native addon loads', { skip: ci ? false : skip }, () => {
  assert.equal(reason, null, `native addon must be built under CI: ${reason}`);
  const b = loadNativeBackend();
  assert.ok(b);
  assert.equal(b.name, 'native');
  const i = info();
  assert.ok(['avx512', 'avx2', 'scalar'].includes(i.simd), i.simd);
  assert.ok(i.threads >= 1);
  assert.ok(i.gemm === 'own' || (i.gemm === 'openblas' && i.blas !== null));
  assert.match(b.description, /^native \(.*kernels, \d+ threads?(; .*)?\)$/);
  if (i.blas === null) assert.ok(blasUnavailableReason());
});

for (const c of configs()) {
  describe(`native kernels: ${c.name}`, () => {
    const shapes: [number, number][] = [];
    for (const rows of SIZES) for (const cols of SIZES) shapes.push([rows, cols]);
    shapes.push(...LARGE);

    test('gemv and gemm match the reference on odd shapes', () => {
      const b = use(c);
      let seed = 1;
      for (const [rows, cols] of shapes) {
        const w = random(rows * cols, seed++);
        const l = b.prepare(w, rows, cols);
        const x = random(cols, seed++);
        const y = new Float32Array(rows).fill(Number.NaN);
        const want = new Float32Array(rows);
        b.gemv(y, l, x);
        ref.gemv(want, w, x, rows, cols);
        assertClose(y, want, { ...TOL, label: `gemv ${rows}×${cols}` });
        for (const t of TOKENS) {
          const xs = random(t * cols, seed++);
          const ys = new Float32Array(t * rows).fill(Number.NaN);
          const wants = new Float32Array(t * rows);
          b.gemm(ys, l, xs, t);
          ref.gemm(wants, w, xs, t, rows, cols);
          assertClose(ys, wants, { ...TOL, label: `gemm T=${t} ${rows}×${cols}` });
        }
        b.release(l);
      }
    });

    test('sparseGemv matches the reference at 0 %, 100 % and mixed zeros', () => {
      const b = use(c);
      let seed = 1000;
      for (const [rows, cols] of shapes) {
        const w = random(rows * cols, seed++);
        const wt = new Float32Array(rows * cols);
        ref.transpose(wt, w, rows, cols);
        const l = b.prepare(w, rows, cols, { sparse: true });
        assert.equal(l.sparse, true);
        for (const zeros of [0, 1, 0.5, 0.9]) {
          const x =
            zeros === 0
              ? random(cols, seed++).map((v) => v || 0.5)
              : withZeros(cols, zeros, seed++);
          const y = new Float32Array(rows).fill(Number.NaN);
          const want = new Float32Array(rows);
          const n = b.sparseGemv(y, l, x);
          assert.equal(n, ref.sparseGemv(want, wt, x, rows, cols), `active count ${rows}×${cols}`);
          if (zeros === 0) assert.equal(n, cols);
          if (zeros === 1) assert.equal(n, 0);
          assertClose(y, want, {
            ...TOL,
            label: `sparseGemv ${Math.round(zeros * 100)}% ${rows}×${cols}`,
          });
        }
        // NaN counts as an active input (it is not 0), −0 does not, as in the reference.
        const xn = withZeros(cols, 0.5, seed++);
        xn[cols - 1] = Number.NaN;
        const yn = new Float32Array(rows);
        assert.equal(b.sparseGemv(yn, l, xn), ref.sparseGemv(yn, wt, xn, rows, cols));
        b.release(l);
      }
    });
  });
}

describe('native backend behaviour', { skip }, () => {
  after(() => {
    useBlas('auto');
    setSimd('auto');
    setThreads(2);
  });

  test('one and two threads give identical dense results (each output is summed by one thread)', () => {
    const b = use({ name: 'own', blas: false, simd: 'auto' });
    const [rows, cols] = [1029, 700];
    const w = random(rows * cols, 7);
    const x = random(5 * cols, 8);
    const l = b.prepare(w, rows, cols);
    const out = (threads: number) => {
      setThreads(threads);
      const y = new Float32Array(rows);
      const ys = new Float32Array(5 * rows);
      b.gemv(y, l, x);
      b.gemm(ys, l, x, 5);
      return [y, ys];
    };
    const one = out(1);
    const two = out(2);
    assert.deepEqual(two[0], one[0]);
    assert.deepEqual(two[1], one[1]);
    b.release(l);
  });

  test('setThreads clamps to [1, cores]', () => {
    assert.equal(setThreads(0), 1);
    const max = setThreads(1 << 20);
    assert.ok(max >= 1 && max < 1 << 20);
    assert.equal(info().threads, max);
    setThreads(2);
  });

  test('bytes counts both layouts; release frees, and a new weight works after it', () => {
    const b = loadNativeBackend()!;
    const [rows, cols] = [64, 129];
    const w = random(rows * cols, 3);
    const dense = b.prepare(w, rows, cols);
    const sparse = b.prepare(w, rows, cols, { sparse: true });
    assert.ok(dense.bytes >= 4 * rows * cols);
    assert.ok(sparse.bytes >= 8 * rows * cols && sparse.bytes > dense.bytes);
    b.release(dense);
    b.release(dense); // twice is harmless
    const x = random(cols, 4);
    const y = new Float32Array(rows);
    assert.throws(() => b.gemv(y, dense, x), /used after release/);
    // Reuse: a fresh weight (likely in the memory just freed) computes correctly.
    const again = b.prepare(w, rows, cols);
    const want = new Float32Array(rows);
    ref.gemv(want, w, x, rows, cols);
    b.gemv(y, again, x);
    assertClose(y, want, { ...TOL, label: 'gemv after release' });
    b.sparseGemv(y, sparse, x);
    assertClose(y, want, { ...TOL, label: 'sparseGemv beside a released weight' });
    b.release(again);
    b.release(sparse);
  });

  test('bad arguments give clear errors, not crashes', () => {
    const b = loadNativeBackend()!;
    const w = random(12, 5);
    assert.throws(() => b.prepare(w, 3, 5), /12 values != 3×5/);
    assert.throws(() => b.prepare(w, 0, 12), /positive/);
    assert.throws(() => b.prepare(w, 2.5, 4), /integer/);
    const l = b.prepare(w, 3, 4);
    const x = new Float32Array(4);
    assert.throws(() => b.gemv(new Float32Array(2), l, x), /y has 2 values; needs rows = 3/);
    assert.throws(() => b.gemv(new Float32Array(3), l, new Float32Array(3)), /x has 3 values/);
    assert.throws(() => b.gemm(new Float32Array(6), l, new Float32Array(8), 3), /tokens·rows/);
    assert.throws(() => b.gemm(new Float32Array(6), l, new Float32Array(8), -1), /tokens must be/);
    assert.throws(() => b.sparseGemv(new Float32Array(3), l, x), /without \{sparse: true\}/);
    const shared = new Float32Array(7);
    assert.throws(() => b.gemv(shared.subarray(0, 3), l, shared.subarray(2, 6)), /overlap/);
    const foreign: Linear = jsBackend.prepare(w, 3, 4);
    assert.throws(() => b.gemv(new Float32Array(3), foreign, x), /another backend/);
    // T = 0 is a no-op.
    const y = new Float32Array(3).fill(7);
    b.gemm(y, l, new Float32Array(0), 0);
    assert.deepEqual([...y], [7, 7, 7]);
    b.release(l);
  });

  test('memoryReadBandwidth measures a positive rate and checks its arguments', () => {
    const before = info().threads;
    const gbs = memoryReadBandwidth(8 << 20, 2);
    assert.ok(Number.isFinite(gbs) && gbs > 0.1, `${gbs} GB/s`);
    assert.equal(info().threads, before, 'thread count restored');
    assert.throws(() => memoryReadBandwidth(1000, 1), /between 1 MiB/);
  });
});
