/**
 * A built-in multiple-choice task that needs no download: the next word of held-out
 * Brown text (documents cn18…cr09, never used for training or calibration) among four
 * choices, the true word and three words of about the same frequency in that text, so
 * that a model cannot win by preferring common words. Scored as lm-eval scores
 * multiple choice (acc, and acc_norm by the choices' character lengths); chance is 25%.
 * Not an lm-eval task: its numbers stand beside nothing published; it is there so a
 * small model trained on Brown text has a zero-shot task it can do well above chance.
 *
 * Item: the sentence before, then the sentence up to a word at a seeded position (at
 * least the fifth word, never the last); the word must be lower-case letters only.
 * Distractors: three of the twelve words nearest to it in frequency rank.
 */
import { brownDocuments } from '../../data/brown.ts';
import { splitDocuments } from '../../data/documents.ts';
import { rng } from '../../util/random.ts';
import { multipleChoice } from './requests.ts';
import type { Item, Task } from './task.ts';

/** Items in the built-in set (the first ones, in corpus order). */
const ITEMS = 500;
const CHOICES = 4;
/** Distractors are drawn from this many words nearest in frequency rank. */
const NEAR = 12;
const WORD = /^[a-z]+$/;

/** Lower-case words of the texts by frequency rank (ties alphabetical). */
function rankWords(texts: readonly string[]): { ranked: string[]; rank: Map<string, number> } {
  const count = new Map<string, number>();
  for (const t of texts) {
    for (const w of t.split(/\s+/)) if (WORD.test(w)) count.set(w, (count.get(w) ?? 0) + 1);
  }
  const ranked = [...count].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([w]) => w);
  return { ranked, rank: new Map(ranked.map((w, i) => [w, i])) };
}

export const brownNextWord: Task = {
  name: 'brown_next_word',
  mainMetric: 'acc',
  defaultFiles: [],
  builtIn: true,
  load(): Item[] {
    const held = splitDocuments(brownDocuments(), 0, 0).heldOut.map((d) => d.text);
    const { ranked, rank } = rankWords(held);
    const items: Item[] = [];
    for (const text of held) {
      for (const para of text.split('\n')) {
        const sentences = para.split(/(?<=[.!?])\s+/);
        for (let i = 1; i < sentences.length && items.length < ITEMS; i++) {
          const words = sentences[i].split(' ');
          if (words.length < 8) continue;
          const random = rng(items.length + 1);
          const p = 4 + Math.floor(random() * (words.length - 5));
          const gold = words[p];
          if (!WORD.test(gold)) continue;
          // The NEAR words nearest in rank, alternating below and above.
          const r = rank.get(gold)!;
          const near: string[] = [];
          for (let d = 1; near.length < NEAR && d < ranked.length; d++) {
            for (const j of [r - d, r + d]) if (j >= 0 && j < ranked.length) near.push(ranked[j]);
          }
          const choices: string[] = [];
          while (choices.length < CHOICES - 1) {
            const w = near[Math.floor(random() * near.length)];
            if (!choices.includes(w)) choices.push(w);
          }
          const at = Math.floor(random() * CHOICES);
          choices.splice(at, 0, gold);
          const context = `${sentences[i - 1]} ${words.slice(0, p).join(' ')}`;
          items.push(multipleChoice(items.length, context, choices, at));
        }
      }
    }
    return items;
  },
};
