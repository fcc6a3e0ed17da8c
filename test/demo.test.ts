/**
 * The README's main command, end to end: `actsparse demo` on the embedded model writes a
 * calibration, an evaluation, speed and hardware estimates, and a report.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readThresholds } from '../src/formats/thresholds.ts';
import { runCommand } from './helpers/cli.ts';
import { tmpDir } from './helpers/shared.ts';

test('actsparse demo', { timeout: 600_000 }, async () => {
  const out = join(tmpDir(), 'demo');
  const { out: stdout } = await runCommand(['demo', '--out', out]);
  const run = join(out, 'run');
  for (const f of [
    'thresholds.json',
    'calibration.csv',
    'eval/results.json',
    'bench.json',
    'hw.json',
    'hw-cpu.json',
  ]) {
    assert.ok(existsSync(join(run, f)), f);
  }
  const plan = readThresholds(join(run, 'thresholds.json'));
  // The embedded model is a trained model: calibration at 1.0005 more than doubles its zeros.
  assert.ok(plan.results.sparsity.macWeighted > 2 * plan.results.sparsity.naturalMacWeighted);
  assert.ok(plan.results.lossGrowth < 1.0005 ** 42);
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  assert.ok((html.match(/<svg/g) ?? []).length >= 5);
  assert.match(stdout, /Demo finished in \d+ s/);
  assert.match(stdout, /report: +.*report\.html/);
  // A second demo into the same place never overwrites the first.
  assert.ok(!existsSync(`${out}-2`));
});
