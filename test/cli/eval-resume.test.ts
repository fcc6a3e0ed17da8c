/**
 * A real kill: `actsparse eval` (sparse and dense passes, tasks and a text) is
 * SIGKILLed after its first finished unit, then resumed with --resume: results.json
 * equals that of an uninterrupted run byte for byte, the units' timings aside.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../../src/cli/dispatch.ts';
import type { Io } from '../../src/cli/io.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { randomRwkv4 } from '../../src/models/random.ts';
import { tmpDir } from '../helpers/shared.ts';

const dir = tmpDir('actsparse-eval-resume-');
const model = join(dir, 'm.safetensors');
writeSafetensors(model, randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 7 }), {
  dtype: 'f32',
});
const text = join(dir, 'held.txt');
writeFileSync(text, 'held-out words for a loss measurement, and a few more. '.repeat(40));
const quiet: Io = { out: () => {}, err: () => {}, tty: false };

async function cli(argv: string[]): Promise<void> {
  const err: string[] = [];
  const code = await runCli(argv, { ...quiet, err: (s) => err.push(s) });
  assert.equal(code, 0, err.join(''));
}

/** results.json without its timing block (the only part a resumed run may change). */
function withoutTiming(path: string): string {
  const r = JSON.parse(readFileSync(path, 'utf8'));
  assert.ok(r.timing && Object.keys(r.timing).length > 0);
  delete r.timing;
  return JSON.stringify(r, null, 2);
}

test('SIGKILL mid-run, then --resume: the same results.json', { timeout: 120_000 }, async () => {
  const run = join(dir, 'cal');
  await cli(['calibrate', model, '--data', text, '--ctx', '32', '--windows', '4', '--out', run]);
  const args = (out: string) => [
    'eval',
    model,
    '--thresholds',
    run,
    '--tasks',
    'brown_next_word,brown_cloze',
    '--limit',
    '60',
    '--text',
    text,
    '--ctx',
    '32',
    '--backend',
    'js',
    '--out',
    out,
  ];
  const whole = join(dir, 'whole');
  await cli(args(whole));

  const killed = join(dir, 'killed');
  const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args(killed)], {
    stdio: 'ignore',
  });
  // Kill without warning once the first unit is journaled (6 units in all).
  const journal = join(killed, 'journal.jsonl');
  const units = () =>
    existsSync(journal) ? readFileSync(journal, 'utf8').split('\n').filter(Boolean).length - 1 : 0;
  const t0 = Date.now();
  while (units() < 1 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  const done = units();
  assert.ok(done >= 1 && done < 6, `killed after ${done} of 6 units`);
  assert.ok(!existsSync(join(killed, 'results.json')));

  await cli([...args(killed), '--resume']);
  assert.equal(
    withoutTiming(join(killed, 'results.json')),
    withoutTiming(join(whole, 'results.json')),
  );
  // The file as written: the same bytes once the timing block is taken out.
  const strip = (p: string) =>
    readFileSync(p, 'utf8').replace(/\n {2}"timing": \{[\s\S]*?\n {2}\},/, '');
  assert.equal(strip(join(killed, 'results.json')), strip(join(whole, 'results.json')));
});
