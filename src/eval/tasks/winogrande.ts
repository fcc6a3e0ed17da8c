/**
 * WinoGrande (xl, dev, 1267), partial scoring: the sentence up to the blank with each
 * option substituted is a context; the rest of the sentence after the blank is the one
 * continuation scored under each; gold = answer − 1. Rows in partial form
 * `{context_options, continuation, gold}` (shared file) or Hugging Face
 * `{sentence, option1, option2, answer: "1" | "2"}`.
 */
import { partialItem, pyStrip } from './requests.ts';
import {
  fieldError,
  goldIndex,
  has,
  int,
  jsonRows,
  type Row,
  readText,
  resolveInput,
  str,
  strList,
} from './source.ts';
import type { Item, Task } from './task.ts';

export const winogrande: Task = {
  name: 'winogrande',
  mainMetric: 'acc',
  defaultFiles: ['winogrande/winogrande.jsonl'],
  load(path: string): Item[] {
    const file = resolveInput(path, 'winogrande/winogrande.jsonl');
    return jsonRows(file, readText(file)).map((row, i) => {
      const p = has(row, 'context_options') ? partialForm(row) : fromSentence(row);
      // lm-eval's target is stripped and joined by its " " delimiter; stripping here
      // also accepts files that kept the leading space of older harness versions.
      return partialItem(i, p.contexts, pyStrip(p.target), p.gold);
    });
  },
};

interface WinoRow {
  contexts: string[];
  target: string;
  gold: number;
}

function partialForm(row: Row): WinoRow {
  const contexts = strList(row, 'context_options');
  const gold = goldIndex(row, 'gold', int(row, 'gold'), contexts.length);
  return { contexts, target: str(row, 'continuation'), gold };
}

/** lm-eval's preprocess_winogrande: doc_to_choice, doc_to_target, doc_to_text. */
function fromSentence(row: Row): WinoRow {
  if (!has(row, 'sentence')) {
    throw fieldError(row, 'sentence', 'missing (nor is there a "context_options" field)');
  }
  const sentence = str(row, 'sentence');
  const blank = sentence.indexOf('_');
  if (blank < 0) throw fieldError(row, 'sentence', 'has no blank "_"');
  const options = [str(row, 'option1'), str(row, 'option2')];
  if (row.data.answer === '') {
    throw fieldError(
      row,
      'answer',
      'is empty',
      'The test split has no answers; use the validation (dev) split.',
    );
  }
  return {
    contexts: options.map((o) => sentence.slice(0, blank) + o),
    target: sentence.slice(blank + 1),
    gold: goldIndex(row, 'answer', int(row, 'answer'), 2, 1),
  };
}
