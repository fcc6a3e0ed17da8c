/**
 * LAMBADA (OpenAI's test file, 5153): context = the text up to its last space,
 * continuation = " " + the last word (lm-eval: `text.split(' ')[:-1]|join(' ')` and
 * `' ' + text.split(' ')[-1]`). Rows `{text}`.
 */
import { loglikelihoodItem } from './requests.ts';
import { fieldError, jsonRows, readText, resolveInput, str } from './source.ts';
import type { Item, Task } from './task.ts';

export const lambadaOpenai: Task = {
  name: 'lambada_openai',
  mainMetric: 'perplexity',
  defaultFiles: ['lambada/lambada_test.jsonl'],
  load(path: string): Item[] {
    const file = resolveInput(path, 'lambada/lambada_test.jsonl');
    return jsonRows(file, readText(file)).map((row, i) => {
      const text = str(row, 'text');
      if (text === '') throw fieldError(row, 'text', 'is empty');
      // No space: an empty context and the whole text as the word, as Python's split gives.
      const cut = text.lastIndexOf(' ');
      return loglikelihoodItem(i, cut < 0 ? '' : text.slice(0, cut), ` ${text.slice(cut + 1)}`);
    });
  },
};
