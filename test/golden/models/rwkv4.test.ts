/**
 * RWKV-4 against reference implementations: rwkv.cpp's expected logits, float64
 * per-position references, BlinkDL's own code on a trained model; and the property
 * that sequence mode equals step mode.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { forward, makeBatch, type SiteHook, sequenceLogits } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { Rwkv4 } from '../../../src/models/rwkv4.ts';
import { logSoftmax } from '../../../src/tensor/reference.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { assertClose, maxAbsDiff } from '../../helpers/assert.ts';
import { logitsOf, stepAll } from '../../helpers/model.ts';
import { needsShared, shared } from '../../helpers/shared.ts';

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

function load(path: string): Rwkv4 {
  const ckpt = openCheckpoint(path);
  try {
    return Rwkv4.load(ckpt, jsBackend);
  } finally {
    ckpt.close();
  }
}

function meanNll(logits: Float32Array, tokens: number[], V: number): number {
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++)
    sum -= logSoftmax(logits.subarray(t * V, (t + 1) * V))[tokens[t + 1]];
  return sum / (tokens.length - 1);
}

const tiny = (fmt: string) => `models/rwkvcpp/tiny-rwkv-4v0-660K-${fmt}.bin`;
const prompt = [...'"in'].map((c) => c.charCodeAt(0));

describe('RWKV-4 tiny (rwkv.cpp files) against expected-logits-4v0-660K.bin', () => {
  // rwkv.cpp's own test accepts |Σ(logits − expected)| ≤ 1.05·|expected sum| for the
  // quantized files (tests/test_tiny_rwkv.c): −0.170404 for Q5_0 and 0.278034 for Q5_1.
  const cases: [string, number, number | null][] = [
    ['FP32', 1e-4, null],
    ['FP16', 2e-2, null],
    ['Q5_0', Number.POSITIVE_INFINITY, 0.170404],
    ['Q5_1', Number.POSITIVE_INFINITY, 0.278034],
  ];
  for (const [fmt, atol, sumTol] of cases) {
    test(fmt, needsShared(tiny(fmt), 'models/rwkvcpp/expected-logits-4v0-660K.bin'), async () => {
      const expected = f32(shared('models/rwkvcpp/expected-logits-4v0-660K.bin'));
      const model = load(shared(tiny(fmt)));
      const steps = await stepAll(model, prompt);
      const lastStep = steps.subarray(2 * 256);
      const seq = await sequenceLogits(model, prompt, model.newState(), 'last');
      for (const [label, got] of [
        ['step', lastStep],
        ['sequence', seq],
      ] as const) {
        if (sumTol === null) {
          const d = assertClose(got, expected, { atol, label: `${fmt} ${label}` });
          console.log(`  ${fmt} ${label}: max abs diff ${d.toExponential(2)}`);
        } else {
          let sum = 0;
          for (let i = 0; i < 256; i++) sum += got[i] - expected[i];
          const { maxAbs } = maxAbsDiff(got, expected);
          console.log(
            `  ${fmt} ${label}: difference sum ${sum.toFixed(6)} (rwkv.cpp's bound ${sumTol}), max abs ${maxAbs.toFixed(4)}`,
          );
          assert.ok(Math.abs(sum) <= 1.05 * sumTol, `${fmt} ${label}: difference sum ${sum}`);
          const argmax = (a: Float32Array) => a.indexOf(Math.max(...a));
          assert.equal(argmax(got), argmax(expected), `${fmt} ${label}: argmax`);
        }
      }
    });
  }
});

describe('RWKV-4 tiny FP32 against the 70-token float64 reference', () => {
  const refJson = 'models/reference/tiny-rwkv-prompt70-reference.json';
  const refLogits = 'models/reference/tiny-rwkv-4v0-660K-FP32.prompt70.logits.f32';
  test(
    'every position, step and sequence mode; mean NLL',
    needsShared(refJson, refLogits, tiny('FP32')),
    async () => {
      const ref = JSON.parse(readFileSync(shared(refJson), 'utf8'));
      const tokens: number[] = ref.tokens;
      const expected = f32(shared(refLogits));
      const model = load(shared(tiny('FP32')));
      const seq = await logitsOf(model, tokens);
      const steps = await stepAll(model, tokens);
      const dSeq = assertClose(seq, expected, { atol: 1e-4, label: 'sequence' });
      const dStep = assertClose(steps, expected, { atol: 1e-4, label: 'step' });
      const entry = ref.models.find(
        (m: { model: string }) => m.model === 'tiny-rwkv-4v0-660K-FP32.bin',
      );
      const nll = meanNll(seq, tokens, 256);
      console.log(
        `  prompt70: max abs diff sequence ${dSeq.toExponential(2)}, step ${dStep.toExponential(2)}; mean NLL ${nll}`,
      );
      assert.ok(entry, 'the reference JSON lists the 4v0 FP32 model');
      const refNll: number = entry.mean_nll_nats;
      assert.ok(Math.abs(nll - refNll) <= 1e-4, `mean NLL ${nll} vs reference ${refNll}`);
    },
  );
});

describe('RWKV-4 trained on Brown (BlinkDL .pth, bf16) against BlinkDL’s own code', () => {
  const pth = 'models/pth/brown-rwkv4-3m.bf16.pth';
  const toks = 'models/pth/brown-rwkv4-3m.prompt-tokens.json';
  const refl = 'models/pth/brown-rwkv4-3m.prompt.ref.f32';
  test('256 positions ≤ 1e-4; mean NLL 1.2555', needsShared(pth, toks, refl), async () => {
    const tokens: number[] = JSON.parse(readFileSync(shared(toks), 'utf8'));
    const expected = f32(shared(refl));
    const model = load(shared(pth));
    const seq = await logitsOf(model, tokens);
    const d = assertClose(seq, expected, { atol: 1e-4, label: 'brown-rwkv4 sequence' });
    const steps = await stepAll(model, tokens.slice(0, 64));
    assertClose(steps, expected.subarray(0, 64 * 256), { atol: 1e-4, label: 'brown-rwkv4 step' });
    const nll = meanNll(seq, tokens, 256);
    console.log(`  brown-rwkv4-3m: max abs diff ${d.toExponential(2)}, mean NLL ${nll.toFixed(5)}`);
    assert.ok(Math.abs(nll - 1.2555) < 5e-5 + 1e-4, `mean NLL ${nll}`);
  });
});

describe('sequence mode equals step mode', () => {
  const relClose = (a: Float32Array, b: Float32Array, label: string) => {
    let scale = 0;
    for (const v of b) scale = Math.max(scale, Math.abs(v));
    const { maxAbs } = maxAbsDiff(a, b);
    assert.ok(maxAbs <= 1e-5 * scale, `${label}: max abs diff ${maxAbs} > 1e-5 × ${scale}`);
  };

  test('random model with realistic FFN magnitudes, across calls that carry state', async () => {
    const model = Rwkv4.load(
      memoryCheckpoint(randomRwkv4({ nLayer: 3, nEmbd: 64, nVocab: 97, seed: 7 })),
      jsBackend,
    );
    const tokens = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 97);
    const steps = await stepAll(model, tokens);
    // Two sequence calls: 25 tokens, then 15 continuing from the carried state.
    const s = model.newState();
    const a = await logitsOf(model, tokens.slice(0, 25), s);
    const b = await logitsOf(model, tokens.slice(25), s);
    const seq = new Float32Array(steps.length);
    seq.set(a);
    seq.set(b, a.length);
    relClose(seq, steps, 'random model');
    // The FFN is really exercised: ReLU² leaves a healthy share of non-zeros.
    let nz = 0;
    let total = 0;
    const hook: SiteHook = (site, x, rows, cols) => {
      if (site % 7 === 6) {
        for (const v of x as Float32Array) nz += v !== 0 ? 1 : 0;
        total += rows * cols;
      }
    };
    forward(model, makeBatch(model, [tokens]), model.newState(), { hook, logits: 'none' });
    assert.ok(nz / total > 0.2 && nz / total < 0.8, `ffn.value density ${nz / total}`);
  });

  test('tiny rwkv.cpp model', needsShared(tiny('FP32')), async () => {
    const model = load(shared(tiny('FP32')));
    const tokens = [...'Hello, sparse world!'].map((c) => c.charCodeAt(0));
    relClose(await logitsOf(model, tokens), await stepAll(model, tokens), 'tiny');
  });

  test('state clone continues identically', async () => {
    const model = Rwkv4.load(
      memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 50, seed: 3 })),
      jsBackend,
    );
    const s = model.newState();
    await logitsOf(model, [1, 2, 3, 4], s);
    const c = s.clone();
    const a = await stepAll(model, [5], s);
    const b = await stepAll(model, [5], c);
    assert.deepEqual(a, b);
  });
});
