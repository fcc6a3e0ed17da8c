/**
 * Mamba's kernel families: the references against independent definitions (the
 * convolution against PyTorch's zero-padded cross-correlation, the SSD recurrence
 * against transformers' chunked algorithm in float64), their state carried across calls,
 * and the native tiers (scalar, AVX2, AVX-512) and the wasm tier against the references
 * on packed batches with empty, one-token and multi-block sequences.
 *
 * Tolerances: the scalar native table computes in double as the reference does (≤ 1e-6
 * relative); the vector tables compute in float32 with a ~2-ulp exp, so scans over 70
 * tokens differ by ~1e-6 relative and are held to 2e-5·max|y| (a wrong index, a dropped
 * tail lane or a stale state is off by ≥ 1e-2·max|y|).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type KernelFamily, Seqs } from '../../../src/tensor/backend.ts';
import type { CpuKernels } from '../../../src/tensor/cpu.ts';
import { type Conv1dArgs, conv1d } from '../../../src/tensor/families/conv1d.ts';
import {
  type SelectiveScanArgs,
  selectiveScan,
  softplus,
} from '../../../src/tensor/families/selective-scan.ts';
import { type SsdArgs, ssd, ssdSequence } from '../../../src/tensor/families/ssd.ts';
import {
  loadNativeKernels,
  nativeUnavailableReason,
  setSimd,
} from '../../../src/tensor/native/index.ts';
import { loadWasmKernels, wasmUnavailableReason } from '../../../src/tensor/wasm/index.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';

/** n values, uniform in [lo, hi) from a seeded generator. */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** A deep copy of a family's arguments (every Float32Array copied), to run twice. */
function copyArgs<A extends object>(a: A): A {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a)) out[k] = v instanceof Float32Array ? v.slice() : v;
  return out as A;
}

// ---------------------------------------------------------------- argument makers

function convArgs(lengths: number[], C: number, K: number, seed: number, bias = true): Conv1dArgs {
  const seqs = new Seqs(lengths);
  return {
    out: new Float32Array(seqs.rows * C),
    x: uniform(seqs.rows * C, seed),
    weight: uniform(C * K, seed + 1),
    bias: bias ? uniform(C, seed + 2) : new Float32Array(0),
    state: uniform(lengths.length * (K - 1) * C, seed + 3),
    seqs,
    channels: C,
    kernel: K,
  };
}

/** Inputs with a trained model's ranges: Δ = softplus(δ + b) around 0.01 … 1, A = −(1 … N). */
function scanArgs(lengths: number[], E: number, N: number, seed: number): SelectiveScanArgs {
  const seqs = new Seqs(lengths);
  const n = seqs.rows;
  return {
    y: new Float32Array(n * E),
    u: uniform(n * E, seed, -2, 2),
    delta: uniform(n * E, seed + 1, -2, 2),
    deltaBias: uniform(E, seed + 2, -4, 0),
    A: Float32Array.from(uniform(E * N, seed + 3, 0, 0.3), (v, i) => -(1 + (i % N)) * Math.exp(v)),
    B: uniform(n * N, seed + 4),
    C: uniform(n * N, seed + 5),
    D: uniform(E, seed + 6, 0.5, 1.5),
    state: uniform(lengths.length * E * N, seed + 7),
    seqs,
    inner: E,
    stateSize: N,
  };
}

function ssdArgs(
  lengths: number[],
  [H, P, G, N]: number[],
  seed: number,
  dtMin = 0,
  dtMax = Number.POSITIVE_INFINITY,
): SsdArgs {
  const seqs = new Seqs(lengths);
  const n = seqs.rows;
  return {
    y: new Float32Array(n * H * P),
    x: uniform(n * H * P, seed, -2, 2),
    dt: uniform(n * H, seed + 1, -3, 3),
    dtBias: uniform(H, seed + 2, -3, 0),
    A: uniform(H, seed + 3, -8, -1),
    B: uniform(n * G * N, seed + 4),
    C: uniform(n * G * N, seed + 5),
    D: uniform(H, seed + 6, 0.5, 1.5),
    state: uniform(lengths.length * H * P * N, seed + 7),
    seqs,
    heads: H,
    headDim: P,
    groups: G,
    stateSize: N,
    dtMin,
    dtMax,
  };
}

// ---------------------------------------------------------------- the references

describe('conv1d reference', () => {
  test('equals PyTorch’s zero-padded cross-correlation cut to the sequence', () => {
    for (const K of [1, 2, 4]) {
      const [T, C] = [7, 5];
      const a = convArgs([T], C, K, 11);
      a.state = new Float32Array((K - 1) * C); // a fresh sequence: zero padding
      conv1d.reference(a);
      const x = a.x as Float32Array;
      const w = a.weight as Float32Array;
      const b = a.bias as Float32Array;
      // nn.Conv1d(C, C, K, groups=C, padding=K−1)(x)[..., :T]: out[t] = b + Σ_k w[k]·xpad[t + k]
      const want = new Float32Array(T * C);
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          let s = b[c];
          for (let k = 0; k < K; k++) {
            const i = t + k - (K - 1);
            s += w[c * K + k] * (i >= 0 ? x[i * C + c] : 0);
          }
          want[t * C + c] = s;
        }
      }
      assertClose(a.out as Float32Array, want, { atol: 1e-6, label: `K ${K}` });
      // The state is the last K − 1 inputs.
      assert.deepEqual(a.state, x.slice((T - K + 1) * C, T * C));
    }
  });

  test('a sequence in pieces (0, 1, 2 and 5 tokens) equals it whole, without a bias too', () => {
    for (const bias of [true, false]) {
      const [C, K] = [6, 4];
      const whole = convArgs([8], C, K, 21, bias);
      const parts = copyArgs(whole);
      conv1d.reference(whole);
      const x = parts.x as Float32Array;
      const out = new Float32Array(8 * C);
      let t = 0;
      for (const n of [0, 1, 2, 5]) {
        const p = { ...parts, seqs: new Seqs([n]), x: x.subarray(t * C, (t + n) * C) };
        p.out = out.subarray(t * C, (t + n) * C);
        conv1d.reference(p);
        t += n;
      }
      assert.deepEqual(out, whole.out);
      assert.deepEqual(parts.state, whole.state);
    }
  });
});

describe('selective scan reference', () => {
  test('one token is the formula; a sequence in pieces equals it whole', () => {
    const [E, N] = [3, 4];
    const a = scanArgs([1], E, N, 5);
    const h0 = (a.state as Float32Array).slice();
    selectiveScan.reference(a);
    const f = (k: keyof SelectiveScanArgs) => a[k] as Float32Array;
    for (let e = 0; e < E; e++) {
      const dt = softplus(f('delta')[e] + f('deltaBias')[e]);
      let y = f('D')[e] * f('u')[e];
      for (let n = 0; n < N; n++) {
        const h = Math.exp(dt * f('A')[e * N + n]) * h0[e * N + n] + dt * f('B')[n] * f('u')[e];
        y += h * f('C')[n];
        assert.ok(Math.abs(f('state')[e * N + n] - h) < 1e-6);
      }
      assert.ok(Math.abs(f('y')[e] - y) < 1e-5, `y[${e}] ${f('y')[e]} vs ${y}`);
    }

    const whole = scanArgs([9], 5, 6, 8);
    const parts = copyArgs(whole);
    selectiveScan.reference(whole);
    const rows = (b: Float32Array, t: number, n: number, w: number) =>
      b.subarray(t * w, (t + n) * w);
    let t = 0;
    for (const n of [4, 0, 1, 4]) {
      const p = { ...parts, seqs: new Seqs([n]) };
      for (const k of ['y', 'u', 'delta'] as const) p[k] = rows(parts[k] as Float32Array, t, n, 5);
      for (const k of ['B', 'C'] as const) p[k] = rows(parts[k] as Float32Array, t, n, 6);
      selectiveScan.reference(p);
      t += n;
    }
    assert.deepEqual(parts.y, whole.y);
    assert.deepEqual(parts.state, whole.state);
  });
});

/**
 * transformers' sequence-mode SSD (Mamba2Mixer.torch_forward, the chunked algorithm), in
 * float64 for one sequence from state h0: x·Δ and A·Δ per chunk of L tokens; within a chunk
 * Y_diag[l] = Σ_{s≤l} (C_l·B_s)·exp(Σ_{s<r≤l} A·Δ_r)·(x·Δ)_s; the chunk's state
 * Σ_l B_l·exp(Acum_last − Acum_l)·(x·Δ)_l; the state entering each chunk (segment sums of
 * the chunk totals) read out as Y_off[l] = C_l·S·exp(Acum_l); y = Y_diag + Y_off + D·x.
 */
function chunkedSsd(a: SsdArgs, L: number, h0: Float32Array): { y: Float64Array; h: Float64Array } {
  const { heads: H, headDim: P, groups: G, stateSize: N } = a;
  const T = a.seqs.rows;
  const f = (k: keyof SsdArgs) => a[k] as Float32Array;
  const y = new Float64Array(T * H * P);
  const S = Float64Array.from(h0);
  for (let hd = 0; hd < H; hd++) {
    const g = Math.floor(hd / (H / G));
    const B = (t: number, n: number) => f('B')[(t * G + g) * N + n];
    const C = (t: number, n: number) => f('C')[(t * G + g) * N + n];
    const step = (t: number) =>
      Math.min(Math.max(softplus(f('dt')[t * H + hd] + f('dtBias')[hd]), a.dtMin), a.dtMax);
    const xd = (t: number, p: number) => f('x')[(t * H + hd) * P + p] * step(t);
    for (let c0 = 0; c0 < T; c0 += L) {
      const len = Math.min(L, T - c0);
      const Acum: number[] = [];
      // Acum[l] = Σ_{r≤l} A·Δ_r within the chunk
      for (let l = 0; l < len; l++) Acum.push((l ? Acum[l - 1] : 0) + f('A')[hd] * step(c0 + l));
      for (let l = 0; l < len; l++) {
        for (let p = 0; p < P; p++) {
          let v = f('D')[hd] * f('x')[((c0 + l) * H + hd) * P + p];
          for (let s = 0; s <= l; s++) {
            let cb = 0;
            for (let n = 0; n < N; n++) cb += C(c0 + l, n) * B(c0 + s, n);
            v += cb * Math.exp(Acum[l] - Acum[s]) * xd(c0 + s, p);
          }
          for (let n = 0; n < N; n++)
            v += C(c0 + l, n) * S[(hd * P + p) * N + n] * Math.exp(Acum[l]);
          y[((c0 + l) * H + hd) * P + p] = v;
        }
      }
      // S ← exp(Acum_last)·S + the chunk's own state
      const last = Acum[len - 1];
      for (let p = 0; p < P; p++) {
        for (let n = 0; n < N; n++) {
          let own = 0;
          for (let l = 0; l < len; l++)
            own += B(c0 + l, n) * Math.exp(last - Acum[l]) * xd(c0 + l, p);
          const k = (hd * P + p) * N + n;
          S[k] = Math.exp(last) * S[k] + own;
        }
      }
    }
  }
  return { y, h: S };
}

describe('SSD reference', () => {
  test('equals transformers’ chunked algorithm (chunks of 4, 16 and 64 over 37 tokens)', () => {
    for (const [shape, dtMax] of [
      [[4, 3, 2, 5], Number.POSITIVE_INFINITY],
      [[2, 4, 1, 8], 0.5], // time_step_limit clamps Δ
    ] as const) {
      const a = ssdArgs([37], [...shape], 31, 0.01, dtMax);
      const h0 = (a.state as Float32Array).slice();
      ssd.reference(a);
      for (const L of [4, 16, 64]) {
        const want = chunkedSsd(a, L, h0);
        const y = a.y as Float32Array;
        assertClose(y, want.y, { atol: 2e-5 * maxAbs(y), label: `y, chunks of ${L}` });
        assertClose(a.state as Float32Array, want.h, {
          atol: 2e-5 * maxAbs(a.state as Float32Array),
          label: `state, chunks of ${L}`,
        });
      }
    }
  });

  test('a sequence in pieces equals it whole; y may be x itself', () => {
    const dims = [4, 2, 2, 3];
    const whole = ssdArgs([10], dims, 41);
    const parts = copyArgs(whole);
    ssd.reference(whole);
    const [H, P, G, N] = dims;
    let t = 0;
    for (const n of [3, 0, 1, 6]) {
      const rows = (k: 'x' | 'dt' | 'B' | 'C', w: number) =>
        (parts[k] as Float32Array).subarray(t * w, (t + n) * w);
      const x = rows('x', H * P);
      ssdSequence(
        x,
        x,
        rows('dt', H),
        parts.dtBias as Float32Array,
        parts.A as Float32Array,
        rows('B', G * N),
        rows('C', G * N),
        parts.D as Float32Array,
        parts.state as Float32Array,
        n,
        parts,
      );
      t += n;
    }
    assert.deepEqual(parts.x, whole.y);
    assert.deepEqual(parts.state, whole.state);
  });
});

// ---------------------------------------------------------------- fast tiers

/** Runs `family` by the reference and by `fast` on copies of `args`; compares every output. */
function compare<A extends object>(
  family: KernelFamily<A>,
  fast: (a: unknown) => void,
  args: A,
  outputs: (keyof A)[],
  rel: number,
  label: string,
): number {
  const want = copyArgs(args);
  const got = copyArgs(args);
  family.reference(want);
  fast(got);
  let worst = 0;
  for (const k of outputs) {
    const w = want[k] as Float32Array;
    const diff = assertClose(got[k] as Float32Array, w, {
      atol: rel * Math.max(1, maxAbs(w)),
      label: `${label} ${String(k)}`,
    });
    // relative to the output's scale, as the tolerance
    worst = Math.max(worst, diff / Math.max(1, maxAbs(w)));
  }
  return worst;
}

/** Every family on a batch with empty, one-token and multi-block sequences. */
function checkTier(families: CpuKernels['families'], rel: number, label: string): void {
  assert.ok(families, `${label} registers no families`);
  const lengths = [0, 1, 70, 5, 0];
  let worst = 0;
  for (const [C, K, bias] of [
    [37, 4, true],
    [16, 1, false],
    [300, 3, true],
  ] as const) {
    worst = Math.max(
      worst,
      compare(
        conv1d,
        families.conv1d,
        convArgs(lengths, C, K, 3, bias),
        ['out', 'state'],
        rel,
        `${label} conv C ${C} K ${K}`,
      ),
    );
  }
  for (const [E, N] of [
    [40, 16],
    [9, 13],
    [3, 300],
  ]) {
    worst = Math.max(
      worst,
      compare(
        selectiveScan,
        families.selectiveScan,
        scanArgs(lengths, E, N, 7),
        ['y', 'state'],
        rel,
        `${label} scan E ${E} N ${N}`,
      ),
    );
  }
  for (const [dims, dtMax] of [
    [[6, 4, 2, 16], Number.POSITIVE_INFINITY],
    [[3, 5, 3, 9], 0.3],
    [[2, 2, 1, 264], Number.POSITIVE_INFINITY],
  ] as const) {
    worst = Math.max(
      worst,
      compare(
        ssd,
        families.ssd,
        ssdArgs(lengths, [...dims], 9, 0.001, dtMax),
        ['y', 'state'],
        rel,
        `${label} ssd ${dims.join('×')}`,
      ),
    );
  }
  console.log(`  ${label}: max |Δ| / max(1, max |reference|) ${worst.toExponential(2)}`);
}

const nativeReason = nativeUnavailableReason();
const ci = process.env.CI === 'true';

function simdLevels(): ('avx512' | 'avx2' | 'scalar')[] {
  if (nativeReason) return [];
  const list = (['avx512', 'avx2', 'scalar'] as const).filter((level) => {
    try {
      setSimd(level);
      return true;
    } catch {
      return false;
    }
  });
  setSimd('auto');
  return list;
}

describe(
  'native Mamba kernels',
  { skip: nativeReason && !ci ? `native addon not available: ${nativeReason}` : false },
  () => {
    after(() => setSimd('auto'));
    for (const level of simdLevels()) {
      test(`${level} equals the reference`, () => {
        setSimd(level);
        checkTier(loadNativeKernels()!.families, level === 'scalar' ? 1e-6 : 2e-5, level);
      });
    }

    test('bad arguments give clear errors; y = u and y = x in place are allowed', () => {
      const fam = loadNativeKernels()!.families!;
      const c = convArgs([2, 3], 4, 3, 1);
      assert.throws(() => fam.conv1d({ ...c, x: new Float32Array(19) }), {
        name: 'RangeError',
        message: /conv1d: x has 19 values; needs rows·C = 20/,
      });
      assert.throws(
        () => fam.conv1d({ ...c, state: new Float32Array(15) }),
        /state has 15 values; needs B·\(K−1\)·C = 16/,
      );
      assert.throws(
        () => fam.conv1d({ ...c, bias: new Float32Array(3) }),
        /bias has 3 values; needs C \(or empty\)/,
      );
      assert.throws(() => fam.conv1d({ ...c, out: c.x }), /out and x must not overlap/);
      const bad = { ...c, seqs: { offsets: new Int32Array([0, 3, 2]) } };
      assert.throws(() => fam.conv1d(bad), /offsets must not decrease/);
      const s = scanArgs([2], 4, 5, 2);
      assert.throws(
        () => fam.selectiveScan({ ...s, A: new Float32Array(19) }),
        /selectiveScan: A has 19 values; needs E·N = 20/,
      );
      assert.throws(() => fam.selectiveScan({ ...s, y: s.B }), /y and B must not overlap/);
      const inPlace = copyArgs(s);
      inPlace.y = inPlace.u;
      fam.selectiveScan(inPlace);
      const want = copyArgs(s);
      selectiveScan.reference(want);
      assertClose(inPlace.u as Float32Array, want.y as Float32Array, { atol: 1e-5 });
      const d = ssdArgs([3], [4, 2, 2, 3], 3);
      assert.throws(() => fam.ssd({ ...d, groups: 3 }), /ssd: G must divide H/);
      assert.throws(() => fam.ssd({ ...d, dtMin: 1, dtMax: 0 }), /dtMin must not exceed dtMax/);
      assert.throws(() => fam.ssd({ ...d, state: d.x }), /state and x must not overlap|x has/);
    });
  },
);

const wasmReason = wasmUnavailableReason();
describe(
  'wasm Mamba kernels',
  { skip: wasmReason && !ci ? `wasm kernels not available: ${wasmReason}` : false },
  () => {
    test('equal the reference', () => {
      checkTier(loadWasmKernels()!.families, 2e-5, 'wasm');
    });

    test('equal the reference when a batch runs in pieces (small scratch)', () => {
      // 4800 bytes: 16 conv rows (C 37), 7 scan rows (E 40) and 1 row (N 300) per piece,
      // so the 70-token sequence is split and the short ones are grouped.
      checkTier(loadWasmKernels({ scanScratchBytes: 4800 })!.families, 2e-5, 'wasm in pieces');
    });

    test('y = u and y = x in place equal the reference', () => {
      const fam = loadWasmKernels()!.families!;
      const s = scanArgs([3, 0, 1], 9, 5, 2);
      const inPlace = copyArgs(s);
      inPlace.y = inPlace.u;
      fam.selectiveScan(inPlace);
      const want = copyArgs(s);
      selectiveScan.reference(want);
      assertClose(inPlace.u as Float32Array, want.y as Float32Array, { atol: 1e-5 });
      assertClose(inPlace.state as Float32Array, want.state as Float32Array, { atol: 1e-5 });
      const d = ssdArgs([3, 1, 0], [4, 2, 2, 3], 3);
      const dIn = copyArgs(d);
      dIn.y = dIn.x;
      fam.ssd(dIn);
      const dWant = copyArgs(d);
      ssd.reference(dWant);
      assertClose(dIn.x as Float32Array, dWant.y as Float32Array, { atol: 1e-5 });
    });
  },
);
