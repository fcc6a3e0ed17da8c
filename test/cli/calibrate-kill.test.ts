/**
 * A real kill: `actsparse calibrate` is SIGKILLed while it runs, then resumed with
 * --resume; the run directory must equal that of an uninterrupted run byte for byte.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { randomRwkv4 } from '../../src/models/random.ts';
import { tmpDir } from '../helpers/shared.ts';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const dir = tmpDir();
const model = join(dir, 'm.safetensors');
writeSafetensors(model, randomRwkv4({ nLayer: 3, nEmbd: 48, nVocab: 256, seed: 2 }), {
  dtype: 'f32',
});
const data = join(dir, 'data.txt');
writeFileSync(
  data,
  'sparse activations in recurrent language models, measured and resumed. '.repeat(200),
);
const args = (out: string) => [
  '--import',
  'tsx',
  main,
  'calibrate',
  model,
  '--data',
  data,
  '--ctx',
  '128',
  '--windows',
  '8',
  '--loss-inc',
  '1.002',
  '--backend',
  'js',
  '--out',
  out,
];
const outputs = (d: string) =>
  ['thresholds.json', 'calibration.csv', 'config.json'].map((f) =>
    readFileSync(join(d, f), 'utf8'),
  );

test('SIGKILL mid-run, then --resume: identical files', { timeout: 240_000 }, async () => {
  const whole = join(dir, 'whole');
  const r = spawnSync(process.execPath, args(whole), { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);

  const killed = join(dir, 'killed');
  const child = spawn(process.execPath, args(killed), { stdio: 'ignore' });
  // Wait until a few sites are journaled, then kill without warning.
  const journal = join(killed, 'journal.jsonl');
  const lines = () =>
    existsSync(journal) ? readFileSync(journal, 'utf8').split('\n').length - 2 : 0;
  const t0 = Date.now();
  while (lines() < 4 && Date.now() - t0 < 120_000) await new Promise((res) => setTimeout(res, 20));
  child.kill('SIGKILL');
  await new Promise((res) => child.on('exit', res));
  const journaled = lines();
  assert.ok(journaled >= 4 && journaled < 21, `killed after ${journaled} of 21 sites`);
  assert.ok(!existsSync(join(killed, 'thresholds.json')));

  const again = spawnSync(process.execPath, args(killed), { encoding: 'utf8' });
  assert.equal(again.status, 2, 'without --resume an unfinished run is refused');
  assert.match(again.stderr, /--resume/);
  const resumed = spawnSync(process.execPath, [...args(killed), '--resume'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /from the journal/);
  assert.deepEqual(outputs(killed), outputs(whole));
});
