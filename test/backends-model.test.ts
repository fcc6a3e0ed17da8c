/**
 * RWKV-4 on every backend reproduces the golden logits, and with thresholds the
 * zero-skipping step mode equals thresholded sequence mode on each of them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { memoryCheckpoint } from '../src/io/memory.ts';
import { openCheckpoint } from '../src/io/open.ts';
import { randomRwkv4 } from '../src/models/random.ts';
import { RWKV4_SITES, Rwkv4 } from '../src/models/rwkv4.ts';
import { perTokenQuantileThresholds } from '../src/sparsity/quantile.ts';
import type { Backend } from '../src/tensor/backend.ts';
import { backendNotices, selectBackend } from '../src/tensor/select.ts';
import { assertClose } from './helpers/assert.ts';
import { needsShared, shared } from './helpers/shared.ts';

/** Every backend; under CI all three must load (CI builds them). */
function backends(): [string, Backend | null][] {
  return (['js', 'wasm', 'native'] as const).map((n) => {
    try {
      return [n, selectBackend(n)];
    } catch {
      if (process.env.CI === 'true')
        throw new Error(`backend ${n} must load in CI: ${backendNotices.join(' ')}`);
      return [n, null];
    }
  });
}

const pth = 'models/pth/brown-rwkv4-3m.bf16.pth';
const toks = 'models/pth/brown-rwkv4-3m.prompt-tokens.json';
const refl = 'models/pth/brown-rwkv4-3m.prompt.ref.f32';

describe('golden logits on every backend', () => {
  for (const [name, backend] of backends()) {
    test(
      `${name}: brown-rwkv4 sequence (256) and step (32)`,
      {
        ...needsShared(pth, toks, refl),
        ...(backend ? {} : { skip: `${name} backend not built here: ${backendNotices.join(' ')}` }),
      },
      () => {
        const tokens: number[] = JSON.parse(readFileSync(shared(toks), 'utf8'));
        const b = readFileSync(shared(refl));
        const expected = new Float32Array(
          b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength),
        );
        const ckpt = openCheckpoint(shared(pth));
        const model = Rwkv4.load(ckpt, backend!, { sparse: true });
        ckpt.close();
        const d = assertClose(model.forward(tokens, model.newState()), expected, {
          atol: 1e-4,
          label: `${name} sequence`,
        });
        const s = model.newState();
        const steps = new Float32Array(32 * 256);
        for (let t = 0; t < 32; t++) steps.set(model.step(tokens[t], s), t * 256);
        assertClose(steps, expected.subarray(0, 32 * 256), { atol: 1e-4, label: `${name} step` });
        console.log(`  ${name}: max abs diff ${d.toExponential(2)}`);
      },
    );
  }
});

describe('thresholded step mode (sparse kernels) equals thresholded sequence mode', () => {
  for (const [name, backend] of backends()) {
    test(name, backend ? {} : { skip: `${name} backend not built here` }, () => {
      const model = Rwkv4.load(
        memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 64, nVocab: 80, seed: 4 })),
        backend!,
        {
          sparse: true,
        },
      );
      const tokens = Array.from({ length: 24 }, (_, i) => (i * 29 + 3) % 80);
      // λ for about 50% zeros at every site, from the dense activations.
      const lambda = new Float32Array(model.thresholds.length);
      model.observer = (site, x, T) => {
        lambda[site] = perTokenQuantileThresholds(
          x,
          T,
          model.sites.perBlock[site % RWKV4_SITES.length].cols,
          [0.5],
        )[0];
      };
      const dense = model.forward(tokens, model.newState());
      model.observer = null;
      model.setThresholds(lambda);
      const seq = model.forward(tokens, model.newState());
      const s = model.newState();
      const steps = new Float32Array(seq.length);
      let zeros = 0;
      let total = 0;
      model.observer = (_g, x) => {
        for (const v of x) zeros += v === 0 ? 1 : 0;
        total += x.length;
      };
      tokens.forEach((t, i) => {
        steps.set(model.step(t, s), i * 80);
      });
      assertClose(steps, seq, { atol: 2e-4, rtol: 1e-4, label: `${name} sparse step vs sequence` });
      assert.ok(
        zeros / total > 0.4,
        `thresholds made ${((100 * zeros) / total).toFixed(1)}% zeros`,
      );
      // The thresholds really change the output (the test would catch ignored λ).
      let diff = 0;
      for (let i = 0; i < seq.length; i++) diff = Math.max(diff, Math.abs(seq[i] - dense[i]));
      assert.ok(diff > 1e-3, `thresholded logits differ from dense by ${diff}`);
      // λ = 0 everywhere is the dense model again.
      model.observer = null;
      model.setThresholds(new Float32Array(lambda.length));
      assert.deepEqual(model.forward(tokens, model.newState()), dense);
    });
  }
});
