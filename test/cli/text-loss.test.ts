/**
 * One text loss: the same text gives the same mean NLL through `perplexity`,
 * `eval --text` and the held-out loss of `calibrate` (data/windows.ts textWindows:
 * windows overlapping by one token, the tail kept).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { textWindows } from '../../src/data/windows.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { randomRwkv4 } from '../../src/models/random.ts';
import { runCommand } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/shared.ts';

test('textWindows: every token after the first predicted once, the tail kept', () => {
  assert.deepEqual(textWindows([1, 2, 3, 4, 5, 6, 7], 3), [
    [1, 2, 3, 4],
    [4, 5, 6, 7],
  ]);
  assert.deepEqual(textWindows([1, 2, 3, 4, 5, 6], 3), [
    [1, 2, 3, 4],
    [4, 5, 6],
  ]);
  assert.deepEqual(textWindows([1, 2, 3, 4, 5, 6], 3, 1), [[1, 2, 3, 4]]);
  assert.deepEqual(textWindows([1], 3), []);
  // Predictions: (4 − 1) + (3 − 1) = 5 = 6 − 1 tokens.
});

test('perplexity, eval --text and calibrate’s held-out loss agree on the same text', async () => {
  const dir = tmpDir();
  const model = join(dir, 'm.safetensors');
  writeSafetensors(model, randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 3 }), {
    dtype: 'f32',
  });
  // 20 documents: calibrate keeps the last two (its held-out tenth) for the held-out loss.
  const words = 'the cat sat on a mat while dogs ran far away in the rain'.split(' ');
  const docs = Array.from({ length: 20 }, (_, i) =>
    Array.from({ length: 60 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '),
  );
  const all = join(dir, 'all.jsonl');
  writeFileSync(all, docs.map((text) => JSON.stringify({ text })).join('\n'));
  const held = join(dir, 'held.jsonl');
  writeFileSync(
    held,
    docs
      .slice(18)
      .map((text) => JSON.stringify({ text }))
      .join('\n'),
  );
  const common = ['--backend', 'js', '--ctx', '64'];

  const ppl = await runCommand(['perplexity', model, held, ...common]);
  const fromPpl = Number(/mean NLL ([\d.]+)/.exec(ppl.out)?.[1]);

  const ev = join(dir, 'eval');
  await runCommand(['eval', model, '--text', held, '--windows', '1000', '--out', ev, ...common]);
  const results = JSON.parse(readFileSync(join(ev, 'results.json'), 'utf8'));
  const fromEval = results.heldOut[held].meanNll;

  // Calibration caps its held-out windows at --windows: 10 is more than the held-out text gives.
  const cal = join(dir, 'cal');
  const calArgs = ['--method', 'none', '--docs', '18', '--windows', '10', '--out', cal];
  await runCommand(['calibrate', model, '--data', all, ...calArgs, ...common]);
  const plan = JSON.parse(readFileSync(join(cal, 'thresholds.json'), 'utf8'));
  const fromCal = plan.results.heldOut.denseLoss;
  assert.ok(plan.results.heldOut.windows < 10, 'every held-out window was scored');

  assert.ok(Number.isFinite(fromPpl) && fromPpl > 0, ppl.out);
  // perplexity prints 5 decimals; the others are full precision and equal.
  assert.ok(Math.abs(fromPpl - fromEval) < 1e-5, `perplexity ${fromPpl}, eval ${fromEval}`);
  assert.equal(fromCal, fromEval, `calibrate ${fromCal}, eval ${fromEval}`);
});
