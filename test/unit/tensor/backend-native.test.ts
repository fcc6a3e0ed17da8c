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
 *
 * The elementwise ops (CpuKernels.ops) compute in double like the reference where it does
 * (all but sigmoid's float32 exp), so they are held to 1e-6 (layer norm, token
 * shift: relative; sigmoid: absolute) and 1e-5 (wkv4, relative); relu² must be exact.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Linear } from '../../../src/tensor/backend.ts';
import {
  type CpuKernels,
  type ElementwiseOps,
  jsKernels,
  referenceOps,
} from '../../../src/tensor/cpu.ts';
import {
  blasUnavailableReason,
  info,
  loadNativeKernels,
  memoryReadBandwidth,
  nativeUnavailableReason,
  setSimd,
  setThreads,
  useBlas,
} from '../../../src/tensor/native/index.ts';
import * as ref from '../../../src/tensor/reference.ts';
import { assertClose, type CloseOptions } from '../../helpers/assert.ts';

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

function use(c: Config): CpuKernels {
  assert.equal(useBlas(c.blas), c.blas);
  setSimd(c.simd);
  return loadNativeKernels()!;
}

test('native addon loads', { skip: ci ? false : skip }, () => {
  assert.equal(reason, null, `native addon must be built under CI: ${reason}`);
  const b = loadNativeKernels();
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
    const b = loadNativeKernels()!;
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
    const b = loadNativeKernels()!;
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
    const foreign: Linear = jsKernels.prepare(w, 3, 4);
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

// ---- Elementwise ops (CpuKernels.ops) against reference.ts, for every SIMD level ----

const WIDTHS = [1, 3, 17, 64, 192, 1000];
const STEPS = [1, 2, 5, 33, 256];

/** The SIMD levels this CPU offers (each op table is tested at each). */
function simdLevels(): ('avx512' | 'avx2' | 'scalar')[] {
  if (reason) return [];
  const list = (['avx512', 'avx2', 'scalar'] as const).filter((level) => {
    try {
      setSimd(level);
      return true;
    } catch {
      return false; // this CPU lacks it
    }
  });
  setSimd('auto');
  return list;
}

/** Inputs of one RWKV-4 time-mix of T tokens × d channels, as the model produces them. */
function wkvInputs(T: number, d: number, seed: number) {
  const k = random(T * d, seed).map((x) => 3 * x);
  const v = random(T * d, seed + 1);
  const r = random(T * d, seed + 2).map((x) => 1 / (1 + Math.exp(-2 * x))); // σ(r)
  const w = random(d, seed + 3).map((x) => -Math.exp(2 * x)); // −exp(time_decay)
  const u = random(d, seed + 4);
  // The model's initial state (aa = bb = 0, pp = −1e30) on even seeds, a carried one on odd.
  const fresh = seed % 2 === 0;
  const aa = fresh ? new Float32Array(d) : random(d, seed + 5);
  const bb = fresh ? new Float32Array(d) : random(d, seed + 6).map((x) => 1.5 + x);
  const pp = fresh ? new Float32Array(d).fill(-1e30) : random(d, seed + 7).map((x) => 2 * x);
  return { k, v, r, w, u, aa, bb, pp };
}

type WkvInputs = ReturnType<typeof wkvInputs>;

/** assertClose for arrays with NaN and ±inf: those must sit at the same places. */
function assertCloseSpecial(got: Float32Array, want: Float32Array, opts: CloseOptions): void {
  const special = (a: Float32Array) => [...a].map((v) => (Number.isFinite(v) ? 0 : v));
  assert.deepEqual(special(got), special(want), `${opts.label}: NaN and ±inf`);
  const finite = (a: Float32Array) => a.map((v) => (Number.isFinite(v) ? v : 0));
  assertClose(finite(got), finite(want), opts);
}

/** Runs wkv4 on copies of the state: out [T, d] and the updated aa, bb, pp. */
function runWkv(ops: ElementwiseOps, x: WkvInputs, T: number, d: number) {
  const s = { aa: x.aa.slice(), bb: x.bb.slice(), pp: x.pp.slice() };
  const out = new Float32Array(T * d).fill(Number.NaN);
  ops.wkv4(out, x.k, x.v, x.r, x.w, x.u, s.aa, s.bb, s.pp, T, d);
  return { out, ...s };
}

/** The bits of x[0:n]: equal bits mean the same value, sign of zero and NaN included. */
function bits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

/**
 * Site inputs for threshold and countZeros: many exact zeros (+0 and −0), NaN, ±inf, and
 * values exactly at ±λ for each λ of `lambdas`, so that `gt` and `ge` differ.
 */
function siteValues(n: number, seed: number, lambdas: readonly number[]): Float32Array {
  const x = withZeros(n, 0.3, seed);
  const pick = random(n, seed + 2);
  for (let i = 0; i < n; i++) {
    const p = (pick[i] + 1) / 2;
    if (p < 0.05) x[i] = Number.NaN;
    else if (p < 0.07) x[i] = i % 2 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    else if (p < 0.3) x[i] = (i % 2 ? -1 : 1) * lambdas[i % lambdas.length];
  }
  return x;
}

for (const simd of simdLevels()) {
  describe(`native elementwise ops: ${simd}`, () => {
    const ops = (): ElementwiseOps => {
      setSimd(simd);
      return loadNativeKernels()!.ops;
    };
    after(() => setSimd('auto'));

    test('layerNorm, timeShiftMix, sigmoid and reluSquare match the reference', () => {
      const o = ops();
      assert.notEqual(o.layerNorm, ref.layerNorm, 'the native backend has its own ops');
      let seed = 5000;
      for (const d of WIDTHS) {
        for (const T of STEPS) {
          const n = T * d;
          const label = `T=${T} d=${d}`;
          // Rows with an offset and a spread, as a residual stream has.
          const x = random(n, seed++).map((v, i) => 3 * v + (i % 7) - 2);
          const w = random(d, seed++);
          const b = random(d, seed++);
          const got = new Float32Array(n).fill(Number.NaN);
          const want = new Float32Array(n);
          o.layerNorm(got, x, w, b, T, d);
          ref.layerNorm(want, x, w, b, T, d);
          assertClose(got, want, { atol: 1e-6, rtol: 1e-6, label: `layerNorm ${label}` });

          const prev = random(d, seed++);
          const mix = random(d, seed++).map((v) => (v + 1) / 2);
          o.timeShiftMix(got, x, prev, mix, T, d);
          ref.timeShiftMix(want, x, prev, mix, T, d);
          assertClose(got, want, { atol: 1e-6, rtol: 1e-6, label: `timeShiftMix ${label}` });

          const z = random(n, seed++).map((v) => 12 * v); // σ saturates at both ends
          o.sigmoid(got, z);
          ref.sigmoid(want, z);
          assertClose(got, want, { atol: 1e-6, label: `sigmoid ${label}` });

          // relu² is exact: (a + |a|)/2 squared is one rounding in float32 and in double.
          o.reluSquare(got, z);
          ref.reluSquare(want, z);
          assert.deepEqual(got, want, `reluSquare ${label}`);
        }
      }
    });

    test('in place, defaults and special values behave as in the reference', () => {
      const o = ops();
      const x = random(3 * 17, 77).map((v) => 4 * v);
      const w = random(17, 78);
      const b = random(17, 79);
      // layerNorm in place (as Rwkv4.load does on the embedding), and eps given explicitly.
      const want = new Float32Array(x.length);
      ref.layerNorm(want, x, w, b, 3, 17, 1e-5);
      const inPlace = x.slice();
      o.layerNorm(inPlace, inPlace, w, b, 3, 17);
      assertClose(inPlace, want, { atol: 1e-6, rtol: 1e-6, label: 'layerNorm in place' });
      const got = new Float32Array(x.length);
      o.layerNorm(got, x, w, b, 3, 17, 0.5);
      ref.layerNorm(want, x, w, b, 3, 17, 0.5);
      assertClose(got, want, { atol: 1e-6, rtol: 1e-6, label: 'layerNorm eps = 0.5' });
      // n defaults to out.length; a given n leaves the rest of out alone.
      const s = x.slice();
      o.sigmoid(s, s);
      ref.sigmoid(want, x);
      assertClose(s, want, { atol: 1e-6, label: 'sigmoid in place' });
      const part = new Float32Array(x.length).fill(9);
      o.reluSquare(part, x, 20);
      assert.deepEqual(part.subarray(20), new Float32Array(x.length - 20).fill(9));
      // Special values: NaN stays NaN, ±inf saturate, −inf → NaN in relu² as in the reference.
      const special = new Float32Array([
        Number.NaN,
        Number.POSITIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
        -0,
        0,
        3e38,
        -3e38,
        1e-40,
        -89,
        89,
        -104,
        104,
        16,
        -16,
        0.5,
        -0.5,
        1e-7,
      ]);
      const a = new Float32Array(special.length);
      const e = new Float32Array(special.length);
      o.sigmoid(a, special);
      ref.sigmoid(e, special);
      assertCloseSpecial(a, e, { atol: 1e-6, label: 'sigmoid special values' });
      assert.ok(Number.isNaN(a[0]));
      o.reluSquare(a, special);
      ref.reluSquare(e, special);
      assert.deepEqual(a, e, 'reluSquare special values');
    });

    test('wkv4 matches the reference (output and float32 state)', () => {
      const o = ops();
      let seed = 6000;
      for (const d of WIDTHS) {
        for (const T of STEPS) {
          const x = wkvInputs(T, d, seed++);
          const got = runWkv(o, x, T, d);
          const want = runWkv(referenceOps, x, T, d);
          for (const key of ['out', 'aa', 'bb', 'pp'] as const) {
            assertClose(got[key], want[key], {
              atol: 1e-6,
              rtol: 1e-5,
              label: `wkv4 ${key} T=${T} d=${d} seed ${seed - 1}`,
            });
          }
        }
      }
    });

    test('wkv4 carries its state: two calls equal one', () => {
      const o = ops();
      for (const [T1, T2, d] of [
        [1, 1, 17],
        [5, 28, 192],
        [100, 156, 64],
        [200, 56, 1000],
      ]) {
        const T = T1 + T2;
        const x = wkvInputs(T, d, 7000 + T + d);
        const one = runWkv(o, x, T, d);
        const s = { aa: x.aa.slice(), bb: x.bb.slice(), pp: x.pp.slice() };
        const out = new Float32Array(T * d);
        const first = (a: Float32Array) => a.subarray(0, T1 * d);
        const rest = (a: Float32Array) => a.subarray(T1 * d);
        o.wkv4(first(out), first(x.k), first(x.v), first(x.r), x.w, x.u, s.aa, s.bb, s.pp, T1, d);
        o.wkv4(rest(out), rest(x.k), rest(x.v), rest(x.r), x.w, x.u, s.aa, s.bb, s.pp, T2, d);
        // The state lives in float32 between tokens in both cases: identical bits.
        assert.deepEqual(out, one.out, `out ${T1}+${T2} d=${d}`);
        assert.deepEqual([s.aa, s.bb, s.pp], [one.aa, one.bb, one.pp], `state ${T1}+${T2}`);
      }
    });

    test('wkv4 on extreme inputs: no NaN where the reference has none', () => {
      const o = ops();
      const [T, d] = [33, 64];
      const x = wkvInputs(T, d, 8000); // fresh state: pp = −1e30
      // k at ±60 and 0, decays from −1e-4 to −e⁸, bonuses ±30: exps far out of range.
      for (let j = 0; j < T * d; j++) x.k[j] = [60, -60, 0, 59.5, -30][j % 5];
      for (let i = 0; i < d; i++) {
        x.w[i] = -Math.exp(-9 + (17 * i) / (d - 1));
        x.u[i] = i % 2 ? 30 : -30;
      }
      const got = runWkv(o, x, T, d);
      const want = runWkv(referenceOps, x, T, d);
      for (const key of ['out', 'aa', 'bb', 'pp'] as const) {
        assert.ok(!want[key].some(Number.isNaN), `the reference has no NaN in ${key}`);
        assert.ok(!got[key].some(Number.isNaN), `NaN in ${key}`);
        assertClose(got[key], want[key], { atol: 1e-6, rtol: 1e-5, label: `extreme ${key}` });
      }
      // Infinite and NaN inputs give NaN exactly where the reference gives it.
      const y = wkvInputs(T, d, 8002);
      y.k[5] = Number.POSITIVE_INFINITY;
      y.k[d + 6] = Number.NEGATIVE_INFINITY;
      y.v[2 * d + 7] = Number.NaN;
      y.pp[8] = Number.NEGATIVE_INFINITY;
      y.u[9] = Number.POSITIVE_INFINITY;
      const g = runWkv(o, y, T, d);
      const e = runWkv(referenceOps, y, T, d);
      for (const key of ['out', 'aa', 'bb', 'pp'] as const) {
        assertCloseSpecial(g[key], e[key], { atol: 1e-6, rtol: 1e-5, label: `inf/NaN ${key}` });
      }
    });

    test('threshold and countZeros match the reference bit for bit', () => {
      const o = ops();
      assert.notEqual(o.threshold, ref.threshold, 'the native backend has its own ops');
      // λ exactly at float32 values, 0.1 (no float32: the kernel compares with a rounded
      // bound), beyond the float32 range at both ends, ±inf, and the no-op λ ≤ 0.
      const lambdas = [0.5, 0.25, Math.fround(0.3), 0.1, 1e-50, 1e39, Infinity, 0, -1, -Infinity];
      const atLambda = [0.5, 0.25, Math.fround(0.3), Math.fround(0.1), 1e-45, 3e38];
      let seed = 10000;
      for (const n of [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 192, 193, 768, 1000, 4099]) {
        const x = siteValues(n, seed++, atLambda);
        for (const cmp of ['gt', 'ge'] as const) {
          for (const lambda of lambdas) {
            const got = x.slice();
            const want = x.slice();
            o.threshold(got, lambda, cmp);
            ref.threshold(want, lambda, cmp);
            assert.deepEqual(bits(got), bits(want), `threshold ${cmp} λ=${lambda} n=${n}`);
            assert.equal(o.countZeros(got), ref.countZeros(got), `countZeros after λ=${lambda}`);
          }
          // An odd n below the length: the values past it stay as they were.
          const m = n >> 1 || n;
          const got = x.slice();
          const want = x.slice();
          o.threshold(got, 0.25, cmp, m);
          ref.threshold(want, 0.25, cmp, m);
          assert.deepEqual(bits(got), bits(want), `threshold ${cmp} n=${m} of ${n}`);
          assert.deepEqual(bits(got.subarray(m)), bits(x.subarray(m)));
        }
        for (const m of [0, 1, n >> 1, n]) {
          assert.equal(o.countZeros(x, m), ref.countZeros(x, m), `countZeros n=${m} of ${n}`);
        }
      }
      // The counts are exact, whatever the share of zeros (0 %, 100 %, ±0 only, NaN only).
      const z = new Float32Array(1001).map((_, i) => (i % 2 ? -0 : 0));
      assert.equal(o.countZeros(z), 1001);
      assert.equal(o.countZeros(z.subarray(1), 999), 999);
      assert.equal(o.countZeros(new Float32Array(1001).fill(Number.NaN)), 0);
      assert.equal(o.countZeros(random(1001, 99)), 0);
    });

    test('one and two threads give identical results', () => {
      const o = ops();
      const [T, d] = [256, 1000]; // past both parallel thresholds
      const x = wkvInputs(T, d, 9001);
      const z = random(T * d, 9002);
      const w = random(d, 9003);
      const results = [1, 2].map((threads) => {
        setThreads(threads);
        const ln = new Float32Array(T * d);
        o.layerNorm(ln, z, w, x.u, T, d);
        const mix = new Float32Array(T * d);
        o.timeShiftMix(mix, z, w, x.u, T, d);
        const sg = new Float32Array(T * d);
        o.sigmoid(sg, z);
        return [ln, mix, sg, ...Object.values(runWkv(o, x, T, d))];
      });
      setThreads(2);
      assert.deepEqual(results[1], results[0]);
    });
  });
}

describe('native elementwise ops: bad arguments', { skip }, () => {
  test('sizes, types and overlaps give clear errors, never out-of-bounds access', () => {
    const o = loadNativeKernels()!.ops;
    const f = (n: number) => new Float32Array(n);
    assert.throws(() => o.sigmoid(f(4), f(3)), {
      name: 'RangeError',
      message: /sigmoid: x has 3 values; needs n = 4/,
    });
    assert.throws(() => o.sigmoid(f(4), f(8), 5), /out has 4 values; needs n = 5/);
    assert.throws(() => o.reluSquare(f(4), new Float64Array(4) as unknown as Float32Array), {
      name: 'TypeError',
      message: /reluSquare: x must be a Float32Array/,
    });
    assert.throws(() => o.sigmoid(f(4), f(4), -1), { name: 'RangeError', message: /n must be/ });
    assert.throws(() => o.sigmoid(f(4), f(4), 1.5), /integer/);
    assert.throws(
      () => o.layerNorm(f(6), f(6), f(2), f(3), 2, 3),
      /weight has 2 values; needs n = 3/,
    );
    assert.throws(
      () => o.layerNorm(f(6), f(5), f(3), f(3), 2, 3),
      /x has 5 values; needs rows·n = 6/,
    );
    assert.throws(() => o.layerNorm(f(6), f(6), f(3), f(3), 2, 3, '1e-5' as unknown as number), {
      name: 'TypeError',
      message: /eps must be a number/,
    });
    assert.throws(() => o.timeShiftMix(f(6), f(6), f(2), f(3), 2, 3), /prev has 2 values/);
    const [T, d] = [3, 4];
    const args = () => [f(T * d), f(T * d), f(T * d), f(T * d), f(d), f(d), f(d), f(d), f(d)];
    for (const [i, name] of ['out', 'k', 'v', 'r', 'w', 'u', 'aa', 'bb', 'pp'].entries()) {
      const a = args();
      a[i] = f(a[i].length - 1);
      const [out, k, v, r, w, u, aa, bb, pp] = a;
      assert.throws(() => o.wkv4(out, k, v, r, w, u, aa, bb, pp, T, d), {
        name: 'RangeError',
        message: new RegExp(`wkv4: ${name} has ${a[i].length} values; needs (T·d|d) =`),
      });
    }
    const [out, k, v, r, w, u, aa, bb, pp] = args();
    assert.throws(() => o.wkv4(out, k, v, r, w, u, aa, bb, pp, T, 2 ** 31), /d must be/);
    // In place is allowed where the kernel reads each value before writing it…
    o.sigmoid(out, out);
    o.wkv4(k, k, v, r, w, u, aa, bb, pp, T, d);
    o.layerNorm(out, out, w, u, T, d);
    // …any other overlap is refused.
    const buf = f(64);
    assert.throws(
      () => o.sigmoid(buf.subarray(0, 8), buf.subarray(4, 12)),
      /same array or not overlap/,
    );
    assert.throws(() => o.timeShiftMix(out, out, w, u, T, d), /out and x must not overlap/);
    assert.throws(() => o.wkv4(out, k, v, r, w, u, aa, aa, pp, T, d), /aa and bb must not overlap/);
    assert.throws(() => o.wkv4(out, k, v, r, w, u, aa, bb, r.subarray(0, d), T, d), /pp and r/);
    assert.throws(() => o.wkv4(w, k, v, r, w, u, aa, bb, pp, 1, d), /out and w must not overlap/);
    // threshold and countZeros: the comparison, λ and n are checked before anything is written.
    const x = f(8).fill(0.25);
    assert.throws(() => o.threshold(x, 0.5, 'lt' as 'gt'), {
      name: 'RangeError',
      message: /threshold: comparison must be 'gt' or 'ge', not 'lt'/,
    });
    for (const bad of ['gtx', 'g', '', 'gt€', 'GT']) {
      assert.throws(() => o.threshold(x, 0.5, bad as 'gt'), { name: 'RangeError' }, bad);
    }
    assert.throws(() => o.threshold(x, 0.5, 1 as unknown as 'gt'), {
      name: 'TypeError',
      message: /comparison must be the string/,
    });
    assert.throws(() => o.threshold(x, Number.NaN, 'gt'), {
      name: 'RangeError',
      message: /threshold: lambda is NaN/,
    });
    assert.throws(() => o.threshold(x, '0.5' as unknown as number, 'gt'), {
      name: 'TypeError',
      message: /lambda must be a number/,
    });
    assert.throws(() => o.threshold(x, 0.5, 'gt', 9), {
      name: 'RangeError',
      message: /threshold: x has 8 values; needs n = 9/,
    });
    assert.throws(() => o.threshold(x, 0.5, 'ge', 2.5), /n must be an integer/);
    assert.throws(() => o.threshold(new Float64Array(8) as unknown as Float32Array, 0.5, 'gt'), {
      name: 'TypeError',
      message: /threshold: x must be a Float32Array/,
    });
    assert.deepEqual([...x], new Array(8).fill(0.25));
    assert.throws(() => o.countZeros(x, 9), {
      name: 'RangeError',
      message: /countZeros: x has 8 values; needs n = 9/,
    });
    assert.throws(() => o.countZeros(x, -1), /n must be an integer/);
    assert.throws(() => o.countZeros([0, 0] as unknown as Float32Array), {
      name: 'TypeError',
      message: /countZeros: x must be a Float32Array/,
    });
    // Nothing was written by a refused call, and zero sizes are no-ops.
    const y = f(4).fill(7);
    o.layerNorm(y, y, f(0), f(0), 0, 4);
    o.timeShiftMix(y, f(4), f(0), f(0), 0, 4);
    o.wkv4(f(0), f(0), f(0), f(0), f(0), f(0), f(0), f(0), f(0), 5, 0);
    assert.deepEqual([...y], [7, 7, 7, 7]);
  });
});
