/**
 * The README's main command, end to end: `actsparse demo` on the embedded model writes a
 * calibration, an evaluation on a task it does well above chance, speed on the embedded
 * model and on the 430M layout, hardware estimates, and a report showing all of them.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readBench } from '../../src/formats/bench.ts';
import { readEvalResults } from '../../src/formats/results.ts';
import { readThresholds } from '../../src/formats/thresholds.ts';
import { runCommand } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/shared.ts';

test('actsparse demo', { timeout: 900_000 }, async () => {
  const out = join(tmpDir(), 'demo');
  const { out: stdout } = await runCommand(['demo', '--out', out]);
  const run = join(out, 'run');
  for (const f of [
    'thresholds.json',
    'calibration.csv',
    'eval/results.json',
    'bench.json',
    'bench-430m.json',
    'hw.json',
    'hw-cpu.json',
  ]) {
    assert.ok(existsSync(join(run, f)), f);
  }
  const plan = readThresholds(join(run, 'thresholds.json'));
  // The embedded model is a trained model: calibration at 1.0005 more than doubles its zeros.
  assert.ok(plan.results.sparsity.macWeighted > 2 * plan.results.sparsity.naturalMacWeighted);
  assert.ok(plan.results.lossGrowth < 1.0005 ** 42);
  // The task: well above its chance level, dense and sparse.
  const ev = readEvalResults(join(run, 'eval', 'results.json'));
  const chance = (ev.config.chance as Record<string, number>).brown_next_word;
  assert.equal(chance, 0.25);
  for (const r of [ev.results, ev.dense!.results]) {
    const { acc, acc_stderr } = r.brown_next_word as Record<string, number>;
    assert.ok(acc - chance > 4 * acc_stderr, `acc ${acc} ± ${acc_stderr}`);
  }
  // Speed on the 430M layout, with λ set for the calibrated zeros of each site.
  const big = readBench(join(run, 'bench-430m.json')).model!;
  assert.match(big.shape, /24x1024/);
  assert.match(big.zerosSource ?? '', /calibrated zeros per site/);
  assert.ok(big.measuredZeros > 0.3, `${big.measuredZeros}`);
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  assert.ok((html.match(/<svg/g) ?? []).length >= 5);
  for (const f of ['hw-cpu.json', 'bench-430m.json']) assert.ok(html.includes(f), f);
  assert.match(stdout, /Demo finished in \d+ s/);
  assert.match(
    stdout,
    /accuracy: +brown_next_word, 500 items: acc [\d.]+% → [\d.]+% .*chance 25\.0%/,
  );
  assert.match(stdout, /decode, 430M layout .*tokens\/s/);
  assert.match(stdout, /report: +.*report\.html/);
  // A second demo into the same folder is refused: nothing is overwritten.
  await assert.rejects(runCommand(['demo', '--out', out]), /already holds a demo/);
});
