/** The built-in next-word task: held-out text only, four choices of like frequency, and a model that does it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openModel } from '../../../src/api.ts';
import { embeddedModelPath } from '../../../src/cli/commands/demo.ts';
import { brownDocuments } from '../../../src/data/brown.ts';
import { splitDocuments } from '../../../src/data/documents.ts';
import { evaluateUnit } from '../../../src/eval/evaluate.ts';
import { chanceAccuracy, limitItems } from '../../../src/eval/run.ts';
import { getTask } from '../../../src/eval/tasks/registry.ts';

const task = getTask('brown_next_word');
const items = task.load('');

test('brown_next_word: 500 items of held-out text, the true word among 4 distinct choices', () => {
  assert.equal(task.builtIn, true);
  assert.equal(task.mainMetric, 'acc');
  assert.equal(items.length, 500);
  assert.deepEqual(task.load(''), items, 'deterministic');
  assert.equal(chanceAccuracy(items), 0.25);
  const held = splitDocuments(brownDocuments(), 0, 0)
    .heldOut.map((d) => d.text)
    .join('\n');
  const golds = new Set<number>();
  for (const it of items) {
    assert.equal(it.kind, 'multiple-choice');
    assert.equal(it.requests.length, 4);
    const choices = it.requests.map((r) => r.continuation);
    assert.equal(new Set(choices).size, 4, 'distinct choices');
    for (const c of choices) assert.match(c, /^ [a-z]+$/);
    golds.add(it.gold);
    // The context and the gold word are the held-out text itself.
    const { context, continuation } = it.requests[it.gold];
    assert.ok(held.includes(`${context.split(/(?<=[.!?]) /).at(-1)}${continuation} `));
  }
  assert.equal(golds.size, 4, 'the answer is at every position');
});

test('the embedded model does it well above chance', async () => {
  const { model, tokenizer, checkpoint } = await openModel(embeddedModelPath());
  checkpoint.close();
  const first = limitItems(items, 100);
  const r = await evaluateUnit(model, tokenizer, { kind: 'task', name: task.name, items: first });
  const { acc, acc_stderr } = r.task!.metrics;
  // Measured 49% on all 500 items; chance is 25%.
  assert.ok(acc - 0.25 > 2.5 * acc_stderr, `acc ${acc} ± ${acc_stderr}`);
});
