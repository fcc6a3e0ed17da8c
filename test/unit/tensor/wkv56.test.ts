/**
 * RWKV-5/6's state update (families/wkv5.ts, wkv6.ts): the reference against ChatRWKV's
 * formula written out in float64, a packed batch against each sequence alone, the native
 * (AVX-512, AVX2, baseline) and wasm kernels against the reference, the addon's argument
 * checks, and the cost counts.
 *
 * Tolerance of the fast kernels: they sum in float32 with FMA where the reference sums in
 * double; outputs are sums of ~N·T terms of size ≤ 1 (|out| up to ~20 here), so the
 * float32 rounding moves them by ~1e-6; 2e-5 + 2e-5·|want| leaves room for that, while
 * a wrong index, a stale accumulator or a skipped decay is off by ≥ 1e-2.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Seqs } from '../../../src/tensor/backend.ts';
import type { CpuKernels } from '../../../src/tensor/cpu.ts';
import { type Wkv5Args, wkv5, wkvHeadsCost } from '../../../src/tensor/families/wkv5.ts';
import { wkv6 } from '../../../src/tensor/families/wkv6.ts';
import {
  loadNativeKernels,
  nativeUnavailableReason,
  setSimd,
} from '../../../src/tensor/native/index.ts';
import { loadWasmKernels, wasmUnavailableReason } from '../../../src/tensor/wasm/index.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';

const ci = process.env.CI === 'true';

/** Uniform values in [lo, hi). */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * u());
}

/** Inputs for lengths `lengths`, H heads of N: decays in [0.5, 1) (per token for RWKV-6). */
function inputs(lengths: number[], H: number, N: number, perToken: boolean, seed = 1): Wkv5Args {
  const seqs = new Seqs(lengths);
  const A = H * N;
  const rows = seqs.rows;
  return {
    out: new Float32Array(rows * A).fill(Number.NaN),
    r: uniform(rows * A, seed),
    k: uniform(rows * A, seed + 1),
    v: uniform(rows * A, seed + 2),
    w: uniform(perToken ? rows * A : A, seed + 3, 0.5, 1),
    u: uniform(A, seed + 4),
    state: uniform(lengths.length * A * N, seed + 5),
    seqs,
    heads: H,
    headSize: N,
  };
}

/** A copy of the arguments with fresh output and state arrays (inputs shared). */
function copy(a: Wkv5Args): Wkv5Args {
  return {
    ...a,
    out: new Float32Array(a.out.length).fill(Number.NaN),
    state: Float32Array.from(a.state as Float32Array),
  };
}

/**
 * ChatRWKV's RNN form, in float64 per head: a = k·vᵀ (N×N), out = r·(u∘a + s),
 * s = a + w∘s with u and w along the key index (its (H, N, 1) shapes).
 */
function chatRwkv(a: Wkv5Args, perToken: boolean): { out: Float64Array; state: Float64Array } {
  const { seqs, heads: H, headSize: N } = a;
  const A = H * N;
  const [r, k, v, w, u] = [a.r, a.k, a.v, a.w, a.u] as Float32Array[];
  const out = new Float64Array(seqs.rows * A);
  const state = Float64Array.from(a.state as Float32Array);
  for (let q = 0; q < seqs.count; q++) {
    for (let t = seqs.offsets[q]; t < seqs.offsets[q + 1]; t++) {
      for (let h = 0; h < H; h++) {
        const s = state.subarray((q * H + h) * N * N, (q * H + h + 1) * N * N);
        const c = (i: number) => t * A + h * N + i;
        const wt = (i: number) => w[(perToken ? t * A : 0) + h * N + i];
        for (let j = 0; j < N; j++) {
          let o = 0;
          for (let i = 0; i < N; i++)
            o += r[c(i)] * (u[h * N + i] * k[c(i)] * v[c(j)] + s[i * N + j]);
          out[c(j)] = o;
        }
        for (let i = 0; i < N; i++)
          for (let j = 0; j < N; j++) s[i * N + j] = k[c(i)] * v[c(j)] + wt(i) * s[i * N + j];
      }
    }
  }
  return { out, state };
}

const SHAPES: [number, number][] = [
  [2, 8],
  [3, 5],
  [4, 64],
];
// Lengths 0 and 1 included: an empty sequence's state must stay as it is.
const LENGTHS = [5, 0, 1, 37];

describe('reference', () => {
  for (const [family, perToken] of [
    [wkv5, false],
    [wkv6, true],
  ] as const) {
    test(`${family.name} equals ChatRWKV's formula; a batch equals each sequence alone`, () => {
      for (const [H, N] of SHAPES) {
        const a = inputs(LENGTHS, H, N, perToken);
        const want = chatRwkv(a, perToken);
        const got = copy(a);
        family.reference(got);
        const label = `${family.name} H=${H} N=${N}`;
        assertClose(got.out as Float32Array, want.out, { atol: 1e-5, rtol: 1e-5, label });
        assertClose(got.state as Float32Array, want.state, { atol: 1e-5, rtol: 1e-5, label });
        // Sequence 1 is empty: its state is untouched.
        const S = H * N * N;
        assert.deepEqual(
          (got.state as Float32Array).subarray(S, 2 * S),
          (a.state as Float32Array).subarray(S, 2 * S),
        );
        // Each sequence alone, from its own state, gives the same rows and state.
        for (let q = 0; q < LENGTHS.length; q++) {
          const o = a.seqs.offsets;
          const A = H * N;
          const alone: Wkv5Args = {
            ...a,
            out: new Float32Array(LENGTHS[q] * A),
            r: (a.r as Float32Array).subarray(o[q] * A, o[q + 1] * A),
            k: (a.k as Float32Array).subarray(o[q] * A, o[q + 1] * A),
            v: (a.v as Float32Array).subarray(o[q] * A, o[q + 1] * A),
            w: perToken ? (a.w as Float32Array).subarray(o[q] * A, o[q + 1] * A) : a.w,
            state: (a.state as Float32Array).slice(q * S, (q + 1) * S),
            seqs: new Seqs([LENGTHS[q]]),
          };
          family.reference(alone);
          assert.deepEqual(alone.out, (got.out as Float32Array).subarray(o[q] * A, o[q + 1] * A));
          assert.deepEqual(alone.state, (got.state as Float32Array).subarray(q * S, (q + 1) * S));
        }
      }
    });
  }

  test('the decay acts on the key index, per token for RWKV-6', () => {
    // One head of 2: S starts at zero; after token 0, S_ij = k_i·v_j; token 1 reads it.
    const a = inputs([2], 1, 2, true);
    const [k, v, w, r] = [a.k, a.v, a.w, a.r] as Float32Array[];
    a.state = new Float32Array(4);
    a.u = new Float32Array(2);
    const got = copy(a);
    wkv6.reference(got);
    const s = got.state as Float32Array;
    // S after token 1: w_{1,i}·k_{0,i}·v_{0,j} + k_{1,i}·v_{1,j}
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 2; j++)
        assert.ok(
          Math.abs(s[i * 2 + j] - (w[2 + i] * k[i] * v[j] + k[2 + i] * v[2 + j])) < 1e-6,
          `S[${i}][${j}]`,
        );
    // out of token 1 with u = 0: Σ_i r_{1,i}·k_{0,i}·v_{0,j}
    const out = got.out as Float32Array;
    for (let j = 0; j < 2; j++)
      assert.ok(Math.abs(out[2 + j] - (r[2] * k[0] + r[3] * k[1]) * v[j]) < 1e-6, `out[${j}]`);
  });

  test('cost: per token 3N+3 multiplies and 2N+1 adds per channel; state once per sequence', () => {
    const seqs = new Seqs([2, 0, 3]);
    const c = wkvHeadsCost(seqs, 2, 4);
    const channels = 8;
    assert.deepEqual(c, {
      mul: 5 * channels * (3 * 4 + 3),
      add: 5 * channels * (2 * 4 + 1),
      stateReads: 2 * channels * 4,
      stateWrites: 2 * channels * 4,
    });
    assert.deepEqual(wkv6.cost({ ...inputs([2, 0, 3], 2, 4, true) }), c);
  });
});

/** Checks a tier's wkv5 and wkv6 against the reference on every shape. */
function matchesReference(kernels: CpuKernels, label: string): void {
  for (const [family, perToken] of [
    [wkv5, false],
    [wkv6, true],
  ] as const) {
    const run = kernels.families?.[family.name];
    assert.ok(run, `${label} registers ${family.name}`);
    for (const [H, N] of SHAPES) {
      const a = inputs(LENGTHS, H, N, perToken, 7);
      const want = copy(a);
      family.reference(want);
      const got = copy(a);
      run(got);
      const what = `${label} ${family.name} H=${H} N=${N}`;
      const tol = { atol: 2e-5, rtol: 2e-5 };
      assertClose(got.out as Float32Array, want.out as Float32Array, {
        ...tol,
        label: `${what} out`,
      });
      assertClose(got.state as Float32Array, want.state as Float32Array, {
        ...tol,
        label: `${what} state`,
      });
      const S = H * N * N;
      assert.deepEqual(
        (got.state as Float32Array).subarray(S, 2 * S),
        (a.state as Float32Array).subarray(S, 2 * S),
        `${what}: the empty sequence's state is untouched`,
      );
    }
  }
}

const nativeReason = nativeUnavailableReason();
describe('native', { skip: nativeReason && !ci ? nativeReason : false }, () => {
  for (const simd of ['avx512', 'avx2', 'scalar'] as const) {
    test(`${simd}: wkv5 and wkv6 match the reference (one thread and the pool)`, (t) => {
      try {
        setSimd(simd);
      } catch {
        t.skip(`this CPU lacks ${simd}`);
        return;
      }
      try {
        matchesReference(loadNativeKernels() as CpuKernels, `native ${simd}`);
      } finally {
        setSimd('auto');
      }
    });
  }

  test('bad arguments are refused with the reason', () => {
    const run = (a: Wkv5Args) => (loadNativeKernels() as CpuKernels).families?.wkv6(a);
    const a = inputs([3, 2], 2, 4, true);
    assert.throws(() => run({ ...a, state: new Float32Array(10) }), /state has 10 values/);
    assert.throws(() => run({ ...a, w: new Float32Array(8) }), /w has 8 values; needs rows·H·N/);
    const shared = new Float32Array((a.out as Float32Array).length);
    assert.throws(() => run({ ...a, out: shared, r: shared }), /out and r must not overlap/);
    const bad = { ...a, seqs: new Seqs([3, 2]) };
    bad.seqs.offsets[1] = 9;
    assert.throws(() => run(bad), /offsets must not decrease/);
  });
});

const wasmReason = wasmUnavailableReason();
describe('wasm', { skip: wasmReason && !ci ? wasmReason : false }, () => {
  test('wkv5 and wkv6 match the reference', () => {
    matchesReference(loadWasmKernels() as CpuKernels, 'wasm');
  });
});
