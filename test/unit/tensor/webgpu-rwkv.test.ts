/**
 * RWKV-5, 6 and 7 on the WebGPU backend against the reference: the kernel families
 * wkv5, wkv6 and wkv7 over packed batches (sequence lengths 0, 1 and more; outputs and
 * states), then small random models of each version (logits of a packed batch equal to
 * the js backend's, sequence mode equal to step mode). Also how backends are chosen
 * for an architecture whose family the WebGPU backend lacks. Sizes fit a software
 * adapter (lavapipe): this file takes about 10 s there.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UserError } from '../../../src/errors.ts';
import { forward, type LanguageModel, makeBatch } from '../../../src/models/model.ts';
import { architecture, loadModel } from '../../../src/models/registry.ts';
import { type Backend, type Buf, type KernelFamily, Seqs } from '../../../src/tensor/backend.ts';
import { type Wkv5Args, wkv5 } from '../../../src/tensor/families/wkv5.ts';
import { wkv6 } from '../../../src/tensor/families/wkv6.ts';
import { type Wkv7Args, wkv7 } from '../../../src/tensor/families/wkv7.ts';
import { backendNotices, jsBackend, openBackend } from '../../../src/tensor/select.ts';
import { WebGpuBackend } from '../../../src/tensor/webgpu/backend.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';
import { logitsOf, stepAll } from '../../helpers/model.ts';
import { testGpu } from '../../helpers/webgpu.ts';

const gpu = await testGpu();
const be = gpu.backend!;

// Sequences of lengths 6, 0, 1 and 9 in one packed batch.
const LENGTHS = [6, 0, 1, 9];

/** Uniform values in [lo, hi). */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * u());
}

/**
 * Runs `family` on the reference (js) and on webgpu from the same host arrays, and
 * compares the arrays named in `outputs` (each family's outputs and updated state).
 * Returns the largest absolute difference of each output.
 */
async function sameAsReference<A extends object>(
  family: KernelFamily<A>,
  host: A,
  outputs: (keyof A & string)[],
  tol: number,
): Promise<Record<string, number>> {
  const onJs = { ...host } as Record<string, unknown>;
  const onGpu = { ...host } as Record<string, unknown>;
  const uploaded: Buf[] = [];
  for (const [k, v] of Object.entries(host)) {
    if (!(v instanceof Float32Array)) continue;
    onJs[k] = v.slice();
    onGpu[k] = be.upload(v.slice());
    uploaded.push(onGpu[k] as Buf);
  }
  jsBackend.run(family, onJs as A);
  be.run(family, onGpu as A);
  const diffs: Record<string, number> = {};
  for (const k of outputs) {
    const got = await be.read(onGpu[k] as Buf);
    diffs[k] = assertClose(got, onJs[k] as Float32Array, {
      atol: tol,
      rtol: tol,
      label: `${family.name} ${k}`,
    });
  }
  for (const b of uploaded) be.free(b);
  return diffs;
}

/** RWKV-5/6 inputs: decays in [0.5, 1) (one row, or one per token for RWKV-6). */
function wkv56Inputs(H: number, N: number, perToken: boolean, seed: number): Wkv5Args {
  const seqs = new Seqs(LENGTHS);
  const A = H * N;
  const n = seqs.rows * A;
  return {
    out: new Float32Array(n),
    r: uniform(n, seed),
    k: uniform(n, seed + 1),
    v: uniform(n, seed + 2),
    w: uniform(perToken ? n : A, seed + 3, 0.5, 1),
    u: uniform(A, seed + 4),
    state: uniform(LENGTHS.length * A * N, seed + 5),
    seqs,
    heads: H,
    headSize: N,
  };
}

/** RWKV-7 inputs as the model makes them: a = −κ̂, b = κ̂·rate with κ̂ unit-norm per head. */
function wkv7Inputs(H: number, N: number, seed: number): Wkv7Args {
  const seqs = new Seqs(LENGTHS);
  const C = H * N;
  const n = seqs.rows * C;
  const kappa = uniform(n, seed);
  for (let g = 0; g < seqs.rows * H; g++) {
    const row = kappa.subarray(g * N, (g + 1) * N);
    const norm = Math.hypot(...row);
    for (let j = 0; j < N; j++) row[j] /= norm;
  }
  const rate = uniform(n, seed + 1, 0, 1);
  return {
    out: new Float32Array(n),
    bonus: new Float32Array(n),
    r: uniform(n, seed + 2),
    w: uniform(n, seed + 3, 0.55, 1),
    k: uniform(n, seed + 4),
    v: uniform(n, seed + 5),
    a: kappa.map((x) => -x),
    b: kappa.map((x, i) => x * rate[i]),
    u: uniform(C, seed + 6, -0.3, 0.3),
    state: uniform(LENGTHS.length * C * N, seed + 7, -0.2, 0.2),
    seqs,
    heads: H,
    headSize: N,
  };
}

describe('webgpu: the RWKV-5/6/7 kernel families against the reference', { skip: gpu.skip }, () => {
  // Head sizes 16 and 64 (the trained models'), 3 and 2 heads.
  for (const [H, N] of [
    [3, 16],
    [2, 64],
  ]) {
    test(`wkv5 and wkv6, ${H} heads of ${N}, lengths ${LENGTHS.join(', ')}`, async (t) => {
      const five = await sameAsReference(
        wkv5,
        wkv56Inputs(H, N, false, 11),
        ['out', 'state'],
        1e-5,
      );
      const six = await sameAsReference(wkv6, wkv56Inputs(H, N, true, 21), ['out', 'state'], 1e-5);
      t.diagnostic(`wkv5 max |Δ| ${JSON.stringify(five)}; wkv6 ${JSON.stringify(six)}`);
    });
    test(`wkv7, ${H} heads of ${N}, lengths ${LENGTHS.join(', ')}`, async (t) => {
      const d = await sameAsReference(wkv7, wkv7Inputs(H, N, 31), ['out', 'bonus', 'state'], 1e-5);
      t.diagnostic(`wkv7 max |Δ| ${JSON.stringify(d)}`);
    });
  }
});

/** Random RWKV-5 (5.2), 6 and 7 of 2 layers × 64, heads of 16. */
function models(backend: Backend): LanguageModel[] {
  const shape = { nLayer: 2, nEmbd: 64, nVocab: 90, headSize: 16 };
  return [
    architecture('rwkv5').random(shape, 8),
    architecture('rwkv6').random(shape, 9),
    architecture('rwkv7').random(shape, 7),
  ].map((ck) => loadModel(ck, backend));
}

describe('webgpu: random RWKV-5, 6 and 7 against the js backend', { skip: gpu.skip }, () => {
  test('a packed batch (lengths 7, 0, 1, 12), then a step each; sequence = step', async (t) => {
    const seqs = [7, 0, 1, 12].map((n, s) =>
      Array.from({ length: n }, (_, i) => (i * 31 + s * 7 + 2) % 90),
    );
    const next = seqs.map((_, s) => [(s * 13 + 1) % 90]);
    const gpuModels = models(be);
    const refModels = models(jsBackend);
    for (let m = 0; m < gpuModels.length; m++) {
      const run = async (model: LanguageModel) => {
        const state = model.newState(seqs.length);
        const all = await model.backend.read(forward(model, makeBatch(model, seqs), state) as Buf);
        const stepped = await model.backend.read(
          forward(model, makeBatch(model, next), state) as Buf,
        );
        state.free();
        return [all, stepped];
      };
      const model = gpuModels[m];
      const [all, stepped] = await run(model);
      const [refAll, refStepped] = await run(refModels[m]);
      // ≤ 1e-4 relative to the largest logit (the bar for fp32 weights).
      const scale = refAll.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
      const tol = { atol: 1e-4 * scale, label: `${model.arch} batch` };
      const dBatch = assertClose(all, refAll, tol);
      const dStep = assertClose(stepped, refStepped, {
        ...tol,
        label: `${model.arch} then a step`,
      });
      // Sequence mode equals step mode on the GPU (the longest sequence, from a fresh state).
      const dMode = assertClose(await stepAll(model, seqs[3]), await logitsOf(model, seqs[3]), {
        ...tol,
        label: `${model.arch} step vs sequence`,
      });
      t.diagnostic(
        `${model.arch}: max |webgpu − js| ${dBatch.toExponential(2)} (batch), ${dStep.toExponential(2)} (step after); step vs sequence ${dMode.toExponential(2)}; largest logit ${scale.toFixed(2)}`,
      );
    }
  });
});

describe('backend choice by kernel family', () => {
  test('auto passes over WebGPU for a family it lacks; webgpu named refuses it', async () => {
    assert.ok(WebGpuBackend.hasFamily('wkv7'));
    assert.ok(!WebGpuBackend.hasFamily('selective-scan'));
    const before = backendNotices.length;
    const b = await openBackend('auto', { families: ['selective-scan'], what: 'Mamba' });
    assert.ok(!(b instanceof WebGpuBackend), 'auto took WebGPU for a family it lacks');
    // One notice at most (only where a GPU could have been taken).
    assert.ok(backendNotices.length - before <= 1);
    await assert.rejects(
      openBackend('webgpu', { families: ['wkv7', 'selective-scan'], what: 'Mamba' }),
      (e: unknown) =>
        e instanceof UserError &&
        /backend "webgpu" has no kernel for the "selective-scan" family that Mamba needs/.test(
          e.message,
        ),
    );
  });
});
