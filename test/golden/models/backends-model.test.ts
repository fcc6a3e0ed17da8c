/**
 * RWKV-4 on every backend reproduces the golden logits, and with thresholds the
 * zero-skipping step mode equals thresholded sequence mode on each of them; for every
 * architecture, a packed batch equals each sequence alone on every backend.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { forward, type LanguageModel, makeBatch } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { architecture, loadModel } from '../../../src/models/registry.ts';
import { Rwkv4 } from '../../../src/models/rwkv4.ts';
import { perTokenQuantileThresholds } from '../../../src/sparsity/quantile.ts';
import type { Backend, Buf } from '../../../src/tensor/backend.ts';
import { backendNotices } from '../../../src/tensor/select.ts';
import { assertClose } from '../../helpers/assert.ts';
import { cpuBackends } from '../../helpers/backends.ts';
import { logitsOf, observe, stepAll } from '../../helpers/model.ts';
import { needsShared, shared } from '../../helpers/shared.ts';

const pth = 'models/pth/brown-rwkv4-3m.bf16.pth';
const toks = 'models/pth/brown-rwkv4-3m.prompt-tokens.json';
const refl = 'models/pth/brown-rwkv4-3m.prompt.ref.f32';

describe('golden logits on every backend', () => {
  for (const [name, backend] of cpuBackends()) {
    test(
      `${name}: brown-rwkv4 sequence (256) and step (32)`,
      {
        ...needsShared(pth, toks, refl),
        ...(backend ? {} : { skip: `${name} backend not built here: ${backendNotices.join(' ')}` }),
      },
      async () => {
        const tokens: number[] = JSON.parse(readFileSync(shared(toks), 'utf8'));
        const b = readFileSync(shared(refl));
        const expected = new Float32Array(
          b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength),
        );
        const ckpt = openCheckpoint(shared(pth));
        const model = Rwkv4.load(ckpt, backend!, { sparse: true });
        ckpt.close();
        const d = assertClose(await logitsOf(model, tokens), expected, {
          atol: 1e-4,
          label: `${name} sequence`,
        });
        const steps = await stepAll(model, tokens.slice(0, 32));
        assertClose(steps, expected.subarray(0, 32 * 256), { atol: 1e-4, label: `${name} step` });
        console.log(`  ${name}: max abs diff ${d.toExponential(2)}`);
      },
    );
  }
});

/** λ per site for about `zeros` of zeros, from the dense activations of `tokens`. */
function lambdasFor(model: LanguageModel, tokens: number[], zeros: number): Float32Array {
  const lambda = new Float32Array(model.thresholds.length);
  observe(model, tokens, (g, x, rows, cols) => {
    lambda[g] = perTokenQuantileThresholds(x, rows, cols, [1 - zeros])[0];
  });
  return lambda;
}

describe('thresholded step mode (zero-skipping kernels) equals thresholded sequence mode', () => {
  for (const [name, backend] of cpuBackends()) {
    // d = 512: block weights of ≥ 1 MiB, so step mode really reads them through the
    // zero-skipping kernel (smaller ones stay on the dense path, see skipZeros).
    const big = (arch: string) =>
      arch === 'rwkv4'
        ? Rwkv4.load(
            memoryCheckpoint(randomRwkv4({ nLayer: 1, nEmbd: 512, nVocab: 80, seed: 4 })),
            backend!,
            { sparse: true },
          )
        : loadModel(architecture(arch).random({ nLayer: 1, nEmbd: 512, nVocab: 80 }, 4), backend!, {
            sparse: true,
          });
    for (const arch of ['rwkv4', 'mamba', 'mamba2'])
      test(
        `${name} ${arch}`,
        backend ? {} : { skip: `${name} backend not built here` },
        async () => {
          const model = big(arch);
          const tokens = Array.from({ length: 12 }, (_, i) => (i * 29 + 3) % 80);
          const lambda = lambdasFor(model, tokens, 0.5);
          const dense = await logitsOf(model, tokens);
          model.setThresholds(lambda);
          const seq = await logitsOf(model, tokens);
          let zeros = 0;
          let total = 0;
          observe(model, tokens, (_g, x) => {
            for (const v of x) zeros += v === 0 ? 1 : 0;
            total += x.length;
          });
          const steps = await stepAll(model, tokens);
          assertClose(steps, seq, {
            atol: 2e-4,
            rtol: 1e-4,
            label: `${name} sparse step vs sequence`,
          });
          assert.ok(
            zeros / total > 0.4,
            `thresholds made ${((100 * zeros) / total).toFixed(1)}% zeros`,
          );
          // The thresholds really change the output (the test would catch ignored λ).
          let diff = 0;
          for (let i = 0; i < seq.length; i++) diff = Math.max(diff, Math.abs(seq[i] - dense[i]));
          assert.ok(diff > 1e-3, `thresholded logits differ from dense by ${diff}`);
          // λ = 0 everywhere is the dense model again.
          model.setThresholds(new Float32Array(lambda.length));
          assert.deepEqual(await logitsOf(model, tokens), dense);
        },
      );
  }
});

/** RWKV-4, 5 (5.0 and 5.2), 6, 7, OPT, Mamba and Mamba-2, random weights of realistic magnitudes. */
function models(backend: Backend): LanguageModel[] {
  const rwkv56 = { nLayer: 2, nEmbd: 64, nVocab: 90, headSize: 16 };
  return [
    architecture('rwkv4').random({ nLayer: 2, nEmbd: 64, nVocab: 90 }, 5),
    architecture('rwkv5').random({ ...rwkv56, gate: false, perChannel: false }, 7),
    architecture('rwkv5').random(rwkv56, 8),
    architecture('rwkv6').random(rwkv56, 9),
    architecture('rwkv7').random({ nLayer: 3, nEmbd: 64, nVocab: 90, headSize: 16 }, 7),
    architecture('opt').random({ nLayer: 2, nEmbd: 64, nVocab: 90, nHead: 4 }, 6),
    architecture('mamba').random({ nLayer: 2, nEmbd: 64, nVocab: 90 }, 7),
    architecture('mamba2').random(
      { nLayer: 2, nEmbd: 64, nVocab: 90, headDim: 16, nGroups: 2, nState: 16 },
      8,
    ),
  ].map((ck) => loadModel(ck, backend, { sparse: true }));
}

describe('a batch of sequences equals each sequence alone', () => {
  // Lengths 0 and 1 included: an empty sequence must leave its state as it is.
  const seqs = [17, 1, 0, 30, 5].map((n, s) =>
    Array.from({ length: n }, (_, i) => (i * 31 + s * 7 + 2) % 90),
  );
  for (const [name, backend] of cpuBackends()) {
    const opts = backend ? {} : { skip: `${name} backend not built here` };
    test(
      `${name}: sequence mode, then one token each (step), dense and thresholded`,
      opts,
      async () => {
        for (const model of models(backend!)) {
          for (const zeros of [0, 0.5]) {
            model.setThresholds(
              zeros ? lambdasFor(model, seqs[3], zeros) : new Float32Array(model.thresholds.length),
            );
            const label = `${name} ${model.arch} zeros ${zeros}`;
            // Sequence mode: all five at once from a fresh state of five.
            const state = model.newState(seqs.length);
            const all = await model.backend.read(
              forward(model, makeBatch(model, seqs), state) as Buf,
            );
            // Then one more token for each (T = 1 per sequence).
            const next = seqs.map((_, s) => [(s * 13 + 1) % 90]);
            const stepped = await model.backend.read(
              forward(model, makeBatch(model, next), state) as Buf,
            );
            const V = model.nVocab;
            let row = 0;
            for (let s = 0; s < seqs.length; s++) {
              const alone = model.newState();
              const want = await logitsOf(model, seqs[s], alone);
              const got = all.subarray(row * V, (row + seqs[s].length) * V);
              assertClose(got, want, { atol: 2e-5, rtol: 2e-5, label: `${label} sequence ${s}` });
              row += seqs[s].length;
              const wantNext = await stepAll(model, next[s], alone);
              assertClose(stepped.subarray(s * V, (s + 1) * V), wantNext, {
                atol: 2e-5,
                rtol: 2e-5,
                label: `${label} step ${s}`,
              });
            }
          }
        }
      },
    );

    test(`${name}: select copies sequences of a state (and repeats them)`, opts, async () => {
      for (const model of models(backend!)) {
        const state = model.newState(3);
        forward(model, makeBatch(model, [seqs[0], seqs[3], seqs[4]]), state, { logits: 'none' });
        const picked = state.select([2, 0, 2]);
        const next = [[4], [5], [6]];
        const got = await model.backend.read(forward(model, makeBatch(model, next), picked) as Buf);
        const V = model.nVocab;
        for (const [i, src] of [
          [0, 4],
          [1, 0],
          [2, 4],
        ]) {
          const alone = model.newState();
          await logitsOf(model, seqs[src], alone);
          const want = await stepAll(model, next[i], alone);
          assertClose(got.subarray(i * V, (i + 1) * V), want, {
            atol: 2e-5,
            rtol: 2e-5,
            label: `${name} ${model.arch} select ${i}`,
          });
        }
      }
    });
  }
});
