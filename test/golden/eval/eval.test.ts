/** `actsparse eval` end to end on a random model and hand-written task files. */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UserError } from '../../../src/errors.ts';
import { writeSafetensors } from '../../../src/io/safetensors.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { runCommand as run } from '../../helpers/cli.ts';
import { tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir();
const model = join(dir, 'm.safetensors');
writeSafetensors(model, randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 8 }), {
  dtype: 'f32',
});
const tasks = join(dir, 'tasks');
mkdirSync(join(tasks, 'arc'), { recursive: true });
mkdirSync(join(tasks, 'lambada'), { recursive: true });
const arc = [
  {
    query: 'Question: Which is a color?\nAnswer:',
    choices: ['red', 'dog', 'run', 'seven'],
    gold: 0,
  },
  {
    query: 'Question: Which is an animal?\nAnswer:',
    choices: ['blue', 'cat', 'jump', 'two'],
    gold: 1,
  },
  {
    query: 'Question: Which is a number?\nAnswer:',
    choices: ['green', 'cow', 'sit', 'three'],
    gold: 3,
  },
];
writeFileSync(join(tasks, 'arc', 'arc_easy.jsonl'), arc.map((r) => JSON.stringify(r)).join('\n'));
writeFileSync(
  join(tasks, 'lambada', 'lambada_test.jsonl'),
  ['the cat sat on the mat and the cat', 'one two three four five six seven']
    .map((text) => JSON.stringify({ text }))
    .join('\n'),
);
const text = join(dir, 'held.txt');
writeFileSync(text, 'held-out words for a loss measurement. '.repeat(30));

describe('eval', () => {
  test('dense: results.json shaped like lm-eval, held-out loss, samples', async () => {
    const out = join(dir, 'dense');
    const r = await run([
      'eval',
      model,
      '--tasks',
      'arc_easy,lambada_openai',
      '--task-dir',
      tasks,
      '--text',
      text,
      '--ctx',
      '64',
      '--out',
      out,
      '--log-samples',
    ]);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    assert.deepEqual(Object.keys(res.results).sort(), ['arc_easy', 'lambada_openai']);
    for (const k of ['acc', 'acc_stderr', 'acc_norm', 'acc_norm_stderr'])
      assert.equal(typeof res.results.arc_easy[k], 'number');
    assert.ok(res.results.lambada_openai.perplexity > 1);
    assert.equal(res.dense, null);
    assert.ok(res.heldOut[text].meanNll > 0);
    assert.equal(res.sparsity.perSite.length, 14);
    const samples = readFileSync(join(out, 'samples_arc_easy.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(samples.length, 3);
    assert.equal(samples[1].gold, 1);
    assert.equal(samples[1].requests[1].continuation, ' cat');
    // acc agrees with the logged scores: argmax of the log-likelihoods vs gold.
    const acc = samples.filter((s) => {
      const ll = s.scores.map((x: { logLikelihood: number }) => x.logLikelihood);
      return ll.indexOf(Math.max(...ll)) === s.gold;
    }).length;
    assert.equal(res.results.arc_easy.acc, acc / 3);
    assert.match(r.out, /arc_easy\s+acc\s+[\d.]+/);
  });

  test('with thresholds: dense and sparse side by side, with the sparsity', async () => {
    const cal = join(dir, 'cal');
    await run([
      'calibrate',
      model,
      '--data',
      text,
      '--ctx',
      '32',
      '--windows',
      '4',
      '--method',
      'uniform',
      '--keep',
      '0.3',
      '--out',
      cal,
    ]);
    const out = join(dir, 'sparse');
    const r = await run([
      'eval',
      model,
      '--thresholds',
      join(cal, 'thresholds.json'),
      '--tasks',
      'arc_easy',
      '--task-dir',
      tasks,
      '--text',
      text,
      '--ctx',
      '64',
      '--out',
      out,
    ]);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    assert.ok(res.dense.results.arc_easy);
    assert.ok(res.sparsity.macWeighted > res.sparsity.naturalMacWeighted + 0.3);
    assert.notEqual(res.heldOut[text].meanNll, res.dense.heldOut[text].meanNll);
    assert.match(r.out, /dense\s+sparse/);
    assert.match(
      r.out,
      /MAC-weighted sparsity of block-site inputs during evaluation: sparse [\d.]+%/,
    );
  });

  test('mistakes: unknown task, missing data, nothing to do', async () => {
    const fail = (args: string[], re: RegExp) =>
      assert.rejects(
        run(args),
        (e: unknown) => e instanceof UserError && re.test(`${e.message} ${e.hint}`),
      );
    await fail(
      ['eval', model, '--tasks', 'mmlu', '--task-dir', tasks, '--out', join(dir, 'x')],
      /mmlu/,
    );
    await fail(
      ['eval', model, '--tasks', 'piqa', '--task-dir', tasks, '--out', join(dir, 'x')],
      /no data for task piqa/,
    );
    await fail(
      ['eval', model, '--task-dir', join(dir, 'empty'), '--out', join(dir, 'x')],
      /no task has data in .*empty, and no --text/,
    );
  });
});
