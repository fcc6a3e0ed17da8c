/**
 * Models on the WebGPU backend against the reference backend (js): the trained RWKV-4
 * and OPT fixtures (golden logits, sequence and step mode), packed batches with
 * sequences of length 0 and 1 equal to each sequence alone, thresholded runs with the
 * same zero counts per site, the zero-skipping step mode, and a model whose head and
 * embedding are split across bindings.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { forward, type LanguageModel, makeBatch } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { architecture, loadModel } from '../../../src/models/registry.ts';
import { zeroCounter } from '../../../src/sparsity/plan.ts';
import { perTokenQuantileThresholds } from '../../../src/sparsity/quantile.ts';
import type { Backend, Buf } from '../../../src/tensor/backend.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { assertClose } from '../../helpers/assert.ts';
import { logitsOf, observe, stepAll } from '../../helpers/model.ts';
import { needsShared, shared } from '../../helpers/shared.ts';
import { testGpu } from '../../helpers/webgpu.ts';

const gpu = await testGpu();
const be = gpu.backend!;
// 64 KiB bindings: a [300, 96] embedding and head (112 KiB) are split.
const small = await testGpu({ maxBindingBytes: 64 << 10, offsetAlignment: 256 });

const RWKV = 'models/pth/brown-rwkv4-3m.bf16.pth';
const OPT = 'models/opt/brown-opt-3m';
const TOKENS = 'models/pth/brown-rwkv4-3m.prompt-tokens.json';
const REFS: Record<string, string> = {
  [RWKV]: 'models/pth/brown-rwkv4-3m.prompt.ref.f32',
  [OPT]: 'models/opt/brown-opt-3m.prompt.ref.f32',
};

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

function load(path: string, backend: Backend, sparse = false): LanguageModel {
  const ckpt = openCheckpoint(shared(path));
  try {
    return loadModel(ckpt, backend, { sparse });
  } finally {
    ckpt.close();
  }
}

/** ≤ 1e-4 relative to the largest logit (the bar for fp32 weights). */
function sameLogits(got: Float32Array, want: Float32Array, label: string): number {
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  return assertClose(got, want, { atol: 1e-4 * scale, label });
}

/** λ per site for about `zeros` of zeros, from the dense activations on the js backend. */
function lambdasFor(model: LanguageModel, tokens: number[], zeros: number): Float32Array {
  const lambda = new Float32Array(model.thresholds.length);
  observe(model, tokens, (g, x, rows, cols) => {
    lambda[g] = perTokenQuantileThresholds(x, rows, cols, [1 - zeros])[0];
  });
  return lambda;
}

/**
 * λ per site for about `zeros` of zeros in this batch, set in the widest gap between
 * the js backend's |x| values near that quantile: float32 rounding on another backend
 * (about 1e-6 relative) then flips no value across λ (a λ taken from the data itself
 * sits on a value, and one flip changes the logits far beyond 1e-4). Sites are set in
 * the order the model runs them, each on inputs thresholded by the sites before.
 */
function lambdasInGaps(model: LanguageModel, seqs: number[][], zeros: number): Float32Array {
  model.setThresholds(new Float32Array(model.thresholds.length));
  const state = model.newState(seqs.length);
  forward(model, makeBatch(model, seqs), state, {
    logits: 'none',
    hook: (g, x, rows, cols) => {
      const v = Float64Array.from((x as Float32Array).subarray(0, rows * cols), Math.abs).sort();
      // The widest relative gap between neighbours within ±5% of the quantile.
      const at = (q: number) => Math.min(v.length - 1, Math.floor(q * v.length));
      let best = at(zeros);
      for (let i = at(zeros - 0.05); i < at(zeros + 0.05); i++)
        if ((v[i + 1] - v[i]) / v[i + 1] > (v[best + 1] - v[best]) / v[best + 1]) best = i;
      const lambda = (v[best] + v[best + 1]) / 2;
      // λ from now on, and on this input as applySite would have done.
      model.thresholds[g] = lambda;
      model.backend.threshold(x, lambda, model.sites.comparison, rows * cols);
    },
  });
  state.free();
  return Float32Array.from(model.thresholds);
}

/** Zeros per site over a batch run (sequence mode), read from the backend. */
async function zerosPerSite(model: LanguageModel, seqs: number[][]): Promise<Float64Array> {
  const counter = zeroCounter(model);
  const state = model.newState(seqs.length);
  forward(model, makeBatch(model, seqs), state, { logits: 'none', hook: counter.hook });
  state.free();
  return Float64Array.from((await counter.read()).zeros);
}

describe('webgpu: trained fixtures', { skip: gpu.skip }, () => {
  for (const path of [RWKV, OPT]) {
    const name = path.split('/').pop();
    test(
      `${name}: golden logits, sequence (256) and step (48)`,
      needsShared(path, TOKENS, REFS[path]),
      async () => {
        const tokens: number[] = JSON.parse(readFileSync(shared(TOKENS), 'utf8'));
        const expected = f32(shared(REFS[path]));
        const model = load(path, be);
        const ref = load(path, jsBackend);
        const seq = await logitsOf(model, tokens);
        assertClose(seq, expected, { atol: 1e-4, label: `${name} sequence vs golden` });
        const d = sameLogits(seq, await logitsOf(ref, tokens), `${name} sequence vs js`);
        const steps = await stepAll(model, tokens.slice(0, 48));
        sameLogits(steps, expected.subarray(0, 48 * 256), `${name} step vs golden`);
        console.log(`  ${name}: max |webgpu − js| ${d.toExponential(2)}`);
      },
    );

    test(
      `${name}: a packed batch (lengths 0, 1, 40, 17) equals js, dense and at 50% zeros, same zero counts`,
      needsShared(path, TOKENS),
      async () => {
        const tokens: number[] = JSON.parse(readFileSync(shared(TOKENS), 'utf8'));
        const seqs = [
          tokens.slice(0, 0),
          tokens.slice(1, 2),
          tokens.slice(3, 43),
          tokens.slice(100, 117),
        ];
        const model = load(path, be);
        const ref = load(path, jsBackend);
        for (const zeros of [0, 0.5]) {
          const lambda = zeros
            ? lambdasInGaps(ref, seqs, zeros)
            : new Float32Array(ref.thresholds.length);
          model.setThresholds(lambda);
          ref.setThresholds(lambda);
          const run = async (m: LanguageModel) => {
            const state = m.newState(seqs.length);
            const all = await m.backend.read(forward(m, makeBatch(m, seqs), state) as Buf);
            // Then one token each (step mode, T = 1 per sequence), from the same state.
            const next = seqs.map((_, s) => [tokens[200 + s]]);
            const stepped = await m.backend.read(forward(m, makeBatch(m, next), state) as Buf);
            return [all, stepped];
          };
          const [a, b] = await run(model);
          const [ra, rb] = await run(ref);
          sameLogits(a, ra, `${name} zeros ${zeros} batch`);
          sameLogits(b, rb, `${name} zeros ${zeros} batch, then a step`);
          // A sequence alone equals its rows in the batch.
          const alone = await logitsOf(model, seqs[2]);
          sameLogits(a.subarray(256, 41 * 256), alone, `${name} zeros ${zeros} alone`);
          if (zeros) {
            const got = await zerosPerSite(model, seqs);
            const want = await zerosPerSite(ref, seqs);
            assert.deepEqual([...got], [...want], `${name}: zero counts per site`);
            assert.ok(got.reduce((x, y) => x + y, 0) > 0);
          }
        }
      },
    );
  }
});

describe('webgpu: random models', { skip: gpu.skip }, () => {
  test('thresholded step mode through the zero-skipping kernel equals js (RWKV-4, d = 512)', async () => {
    // Block weights of 1 MiB: step mode reads them through the zero-skipping kernel.
    const ck = () => memoryCheckpoint(randomRwkv4({ nLayer: 1, nEmbd: 512, nVocab: 80, seed: 4 }));
    const model = loadModel(ck(), be, { sparse: true });
    const ref = loadModel(ck(), jsBackend, { sparse: true });
    const tokens = Array.from({ length: 8 }, (_, i) => (i * 29 + 3) % 80);
    const lambda = lambdasFor(ref, tokens, 0.6);
    model.setThresholds(lambda);
    ref.setThresholds(lambda);
    sameLogits(await stepAll(model, tokens), await stepAll(ref, tokens), 'sparse step');
  });

  test('select copies sequences of a state (RWKV-4 and OPT)', async () => {
    for (const [arch, shape] of [
      ['rwkv4', { nLayer: 2, nEmbd: 64, nVocab: 90 }],
      ['opt', { nLayer: 2, nEmbd: 64, nVocab: 90, nHead: 4 }],
    ] as const) {
      const ck = () => architecture(arch).random(shape, 6);
      const outs: Float32Array[] = [];
      for (const b of [be, jsBackend]) {
        const m = loadModel(ck(), b);
        const state = m.newState(3);
        forward(m, makeBatch(m, [[1, 2, 3], [4], [5, 6, 7, 8, 9]]), state, { logits: 'none' });
        const picked = state.select([2, 0, 2]);
        outs.push(await b.read(forward(m, makeBatch(m, [[4], [5], [6]]), picked) as Buf));
      }
      sameLogits(outs[0], outs[1], `${arch} select`);
    }
  });
});

describe('webgpu: a head and embedding larger than one binding', { skip: small.skip }, () => {
  test('RWKV-4 logits equal js, sequence and step', async () => {
    const ck = () => memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 96, nVocab: 300, seed: 7 }));
    const model = loadModel(ck(), small.backend!);
    const ref = loadModel(ck(), jsBackend);
    const tokens = Array.from({ length: 20 }, (_, i) => (i * 97 + 5) % 300);
    sameLogits(await logitsOf(model, tokens), await logitsOf(ref, tokens), 'split sequence');
    sameLogits(
      await stepAll(model, tokens.slice(0, 4)),
      await stepAll(ref, tokens.slice(0, 4)),
      'split step',
    );
  });
});
