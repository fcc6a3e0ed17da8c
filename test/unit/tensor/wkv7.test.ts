/**
 * RWKV-7's WKV kernel family: the TypeScript reference against an independent float64
 * transcription of the official matrix form, its cost, and every CPU tier's kernel
 * (js = the reference, wasm SIMD128, native at each SIMD level the CPU has) against the
 * reference over packed batches with empty and one-token sequences.
 *
 * Tolerance: the tiers run in float32 with other summation orders (and FMA), the
 * reference accumulates in double; on unit-scale inputs with N ≤ 64 that moves results by
 * ~1e-6 relative to their scale, far below the error of a wrong index or a stale row.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Seqs } from '../../../src/tensor/backend.ts';
import { type Wkv7Args, wkv7 } from '../../../src/tensor/families/wkv7.ts';
import {
  info,
  loadNativeKernels,
  nativeUnavailableReason,
  setSimd,
  setThreads,
} from '../../../src/tensor/native/index.ts';
import { backendNotices } from '../../../src/tensor/select.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';
import { cpuBackends } from '../../helpers/backends.ts';

/**
 * Inputs as RWKV-7 makes them, seeded: r, k, v unit Gaussians, decays exp(−0.61·σ(·)),
 * a = −κ̂ and b = κ̂·rate with κ̂ unit-norm per head, u = r_k, a non-zero starting state.
 */
function inputs(lengths: number[], H: number, N: number, seed: number): Wkv7Args {
  const u = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  const seqs = new Seqs(lengths);
  const C = H * N;
  const n = seqs.rows * C;
  const fill = (count: number, f: () => number) => Float32Array.from({ length: count }, f);
  const kappa = fill(n, gauss);
  for (let g = 0; g < seqs.rows * H; g++) {
    let ss = 0;
    for (let j = 0; j < N; j++) ss += kappa[g * N + j] ** 2;
    for (let j = 0; j < N; j++) kappa[g * N + j] /= Math.sqrt(ss);
  }
  const rate = fill(n, u);
  return {
    out: new Float32Array(n),
    bonus: new Float32Array(n),
    r: fill(n, gauss),
    w: fill(n, () => Math.exp(-0.606531 / (1 + Math.exp(-3 * gauss())))),
    k: fill(n, gauss),
    v: fill(n, gauss),
    a: kappa.map((x) => -x),
    b: kappa.map((x, i) => x * rate[i]),
    u: fill(C, () => 0.3 * gauss()),
    state: fill(lengths.length * H * N * N, () => 0.2 * gauss()),
    seqs,
    heads: H,
    headSize: N,
  };
}

/** A copy whose outputs and state are fresh arrays (inputs shared). */
function copy(x: Wkv7Args): Wkv7Args {
  const c = (b: Wkv7Args['out']) => (b as Float32Array).slice();
  return { ...x, out: c(x.out), bonus: c(x.bonus), state: c(x.state) };
}

/**
 * The official matrix form in float64 (rwkv_v7_demo_rnn.py, per head):
 * state = state·diag(w) + state·(a bᵀ) + v kᵀ; out = state·r; bonus = (Σ r·k·u)·v.
 */
function official(x: Wkv7Args): { out: Float64Array; bonus: Float64Array; state: Float64Array } {
  const { seqs, heads: H, headSize: N } = x;
  const C = H * N;
  const [r, w, k, v, a, b, u] = [x.r, x.w, x.k, x.v, x.a, x.b, x.u] as Float32Array[];
  const out = new Float64Array(seqs.rows * C);
  const bonus = new Float64Array(seqs.rows * C);
  const state = Float64Array.from(x.state as Float32Array);
  for (let s = 0; s < seqs.count; s++) {
    for (let t = seqs.offsets[s]; t < seqs.offsets[s + 1]; t++) {
      for (let h = 0; h < H; h++) {
        const S = state.subarray((s * H + h) * N * N, (s * H + h + 1) * N * N);
        const o = t * C + h * N;
        // ab = a bᵀ [N, N]; S·ab computed from the old S
        const next = new Float64Array(N * N);
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) {
            let sab = 0;
            for (let m = 0; m < N; m++) sab += S[i * N + m] * a[o + m] * b[o + j];
            next[i * N + j] = S[i * N + j] * w[o + j] + sab + v[o + i] * k[o + j];
          }
        }
        S.set(next);
        let c = 0;
        for (let j = 0; j < N; j++) c += r[o + j] * k[o + j] * u[h * N + j];
        for (let i = 0; i < N; i++) {
          let y = 0;
          for (let j = 0; j < N; j++) y += S[i * N + j] * r[o + j];
          out[o + i] = y;
          bonus[o + i] = c * v[o + i];
        }
      }
    }
  }
  return { out, bonus, state };
}

/** |got − want| ≤ tol · max|want| over the arrays, with the worst elements printed. */
function closeToScale(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, label: string) {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  return assertClose(got, want, { atol: tol * scale, label });
}

// Head sizes 64 (every release), 16 (a toy) and 13 (a tail that no vector width divides);
// packed batches with an empty and a one-token sequence.
const CASES: [number[], number, number][] = [
  [[6, 0, 1, 23], 3, 16],
  [[40], 2, 64],
  [[2, 9], 2, 13],
];

describe('wkv7 reference', () => {
  test('equals the official matrix form in float64 (out, bonus, state)', () => {
    CASES.forEach(([lengths, H, N], i) => {
      const x = inputs(lengths, H, N, 11 + i);
      const want = official(x);
      wkv7.reference(x);
      const label = `lengths ${lengths} H ${H} N ${N}`;
      closeToScale(x.out as Float32Array, want.out, 2e-6, `${label} out`);
      closeToScale(x.bonus as Float32Array, want.bonus, 2e-6, `${label} bonus`);
      closeToScale(x.state as Float32Array, want.state, 2e-6, `${label} state`);
    });
  });

  test('an empty sequence leaves its state alone; two calls equal one', () => {
    const x = inputs([5, 0, 7], 2, 8, 3);
    const before = (x.state as Float32Array).slice(2 * 64, 4 * 64);
    const whole = copy(x);
    wkv7.reference(whole);
    assert.deepEqual((whole.state as Float32Array).slice(2 * 64, 4 * 64), before);
    // Sequence 2 split after 3 tokens: the state carries the rest exactly.
    const C = 16;
    const first = { ...copy(x), seqs: new Seqs([5, 0, 3]) };
    wkv7.reference(first);
    const tail = (b: Wkv7Args['r']) => (b as Float32Array).subarray(8 * C);
    const second: Wkv7Args = {
      ...first,
      out: new Float32Array(4 * C),
      bonus: new Float32Array(4 * C),
      r: tail(x.r),
      w: tail(x.w),
      k: tail(x.k),
      v: tail(x.v),
      a: tail(x.a),
      b: tail(x.b),
      seqs: new Seqs([0, 0, 4]),
    };
    wkv7.reference(second);
    assert.deepEqual(second.state, whole.state);
    assert.deepEqual(second.out, (whole.out as Float32Array).subarray(8 * C));
  });

  test('cost: 5N²+3N mul and 4N²−N−1 add per token and head; state once per sequence', () => {
    const x = inputs([3, 0, 2], 2, 4, 1);
    // 5 tokens × 2 heads; N = 4: mul 92, add 59; two sequences with tokens: 2·2·16 values.
    assert.deepEqual(wkv7.cost(x), {
      mul: 10 * 92,
      add: 10 * 59,
      stateReads: 64,
      stateWrites: 64,
    });
  });
});

describe('wkv7 on every CPU backend equals the reference', () => {
  for (const [name, backend] of cpuBackends()) {
    const opts = backend
      ? {}
      : { skip: `${name} backend not built here: ${backendNotices.join(' ')}` };
    test(name, opts, () => {
      CASES.forEach(([lengths, H, N], i) => {
        const x = inputs(lengths, H, N, 21 + i);
        const got = copy(x);
        wkv7.reference(x);
        backend!.run(wkv7, got);
        const label = `${name} lengths ${lengths} H ${H} N ${N}`;
        closeToScale(got.out as Float32Array, x.out as Float32Array, 1e-5, `${label} out`);
        closeToScale(got.bonus as Float32Array, x.bonus as Float32Array, 1e-5, `${label} bonus`);
        closeToScale(got.state as Float32Array, x.state as Float32Array, 1e-5, `${label} state`);
      });
    });
  }
});

describe('native wkv7', () => {
  const reason = nativeUnavailableReason();
  const skip = reason
    ? process.env.CI === 'true'
      ? false // fails below: CI builds the addon
      : `native addon not available: ${reason}`
    : false;

  test('each SIMD level and thread count equals the reference', { skip }, () => {
    const kernels = loadNativeKernels();
    assert.ok(kernels?.families?.wkv7, `native addon: ${reason}`);
    const threadsBefore = info().threads;
    const levels = (['avx512', 'avx2', 'scalar'] as const).filter((l) => {
      try {
        setSimd(l);
        return true;
      } catch {
        return false; // this CPU lacks it
      }
    });
    try {
      for (const level of levels) {
        setSimd(level);
        for (const threads of [1, 2]) {
          setThreads(threads);
          // 300 tokens × 4 heads of 64: enough work to go to the pool.
          for (const [lengths, H, N] of [
            ...CASES,
            [[300, 1], 4, 64] as [number[], number, number],
          ]) {
            const x = inputs(lengths, H, N, 5);
            const got = copy(x);
            wkv7.reference(x);
            kernels.families.wkv7(got);
            const label = `${level} ${threads} threads lengths ${lengths} H ${H} N ${N}`;
            closeToScale(got.out as Float32Array, x.out as Float32Array, 1e-5, `${label} out`);
            closeToScale(
              got.bonus as Float32Array,
              x.bonus as Float32Array,
              1e-5,
              `${label} bonus`,
            );
            closeToScale(
              got.state as Float32Array,
              x.state as Float32Array,
              1e-5,
              `${label} state`,
            );
          }
        }
      }
    } finally {
      setSimd('auto');
      setThreads(threadsBefore);
    }
  });

  test('bad arguments are refused before any work', { skip }, () => {
    const kernels = loadNativeKernels();
    assert.ok(kernels?.families?.wkv7);
    const run = (x: Wkv7Args) => kernels.families!.wkv7(x);
    const x = inputs([3, 2], 2, 8, 1);
    assert.throws(
      () => run({ ...x, r: new Float32Array(10) }),
      /r has 10 values; needs rows·H·N = 80/,
    );
    assert.throws(
      () => run({ ...x, state: new Float32Array(100) }),
      /state has 100 values; needs B·H·N·N = 256/,
    );
    assert.throws(() => run({ ...x, out: x.r }), /out and r must not overlap/);
    assert.throws(() => run({ ...x, bonus: x.state }), /bonus and state must not overlap/);
    const bad = new Seqs([3, 2]);
    bad.offsets[1] = 4;
    bad.offsets[2] = 3;
    assert.throws(() => run({ ...x, seqs: bad }), /offsets must not decrease/);
  });
});
