/**
 * A built-in LAMBADA-style task that needs no download: the last word of sentences from
 * the held-out Brown documents (cn18…cr09), given the sentence before it and the one
 * before that. Scored like lambada_openai (perplexity and greedy accuracy). Not an
 * lm-eval task: its numbers stand beside nothing published; it is there so a demo on a
 * model trained on Brown text has a zero-shot task that shows a signal.
 */
import { brownDocuments } from '../../data/brown.ts';
import { splitDocuments } from '../../data/documents.ts';
import { loglikelihoodItem } from './requests.ts';
import type { Item, Task } from './task.ts';

/** Items in the built-in set (the first ones, in corpus order). */
const ITEMS = 500;

export const brownCloze: Task = {
  name: 'brown_cloze',
  mainMetric: 'perplexity',
  defaultFiles: [],
  builtIn: true,
  load(): Item[] {
    const items: Item[] = [];
    for (const doc of splitDocuments(brownDocuments(), 0, 0).heldOut) {
      for (const para of doc.text.split('\n')) {
        const sentences = para.split(/(?<=[.!?])\s+/);
        for (let i = 1; i < sentences.length && items.length < ITEMS; i++) {
          // A sentence of 10+ words ending in a plain word and a period.
          const m = /^(.*\S)\s+([A-Za-z]+)\.$/.exec(sentences[i]);
          if (!m || sentences[i].split(' ').length < 10) continue;
          items.push(loglikelihoodItem(items.length, `${sentences[i - 1]} ${m[1]}`, ` ${m[2]}`));
        }
      }
    }
    return items;
  },
};
