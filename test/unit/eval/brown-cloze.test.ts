/** The built-in Brown cloze task: held-out documents only, LAMBADA-shaped requests. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { brownDocuments } from '../../../src/data/brown.ts';
import { splitDocuments } from '../../../src/data/documents.ts';
import { getTask } from '../../../src/eval/tasks/registry.ts';

test('brown_cloze: 500 items from cn18…cr09, context then " word"', () => {
  const task = getTask('brown_cloze');
  assert.equal(task.builtIn, true);
  const items = task.load('');
  assert.equal(items.length, 500);
  const held = splitDocuments(brownDocuments(), 0, 0)
    .heldOut.map((d) => d.text)
    .join('\n');
  for (const it of items) {
    assert.equal(it.kind, 'loglikelihood');
    const [{ context, continuation }] = it.requests;
    assert.match(continuation, /^ [A-Za-z]+$/);
    assert.ok(context.split(' ').length >= 10);
    // Every item is text of the held-out documents: the sentence with its last word.
    const sentenceEnd = `${context.split(/(?<=[.!?]) /).at(-1)}${continuation}.`;
    assert.ok(held.includes(sentenceEnd), sentenceEnd);
  }
});
