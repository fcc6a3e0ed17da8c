/**
 * SciQ (test, 1000): `{support.lstrip()}\nQuestion: {question}\nAnswer:` →
 * distractor1, distractor2, distractor3, correct_answer; gold is always 3 (lm-eval's
 * sciq.yaml). The official files are JSON arrays; Hugging Face exports are JSON lines.
 */
import { multipleChoice, pyLstrip } from './requests.ts';
import { jsonRows, readText, resolveInput, str } from './source.ts';
import type { Item, Task } from './task.ts';

export const sciq: Task = {
  name: 'sciq',
  mainMetric: 'acc',
  defaultFiles: ['sciq/test.jsonl'],
  load(path: string): Item[] {
    const file = resolveInput(path, 'sciq/test.jsonl');
    return jsonRows(file, readText(file)).map((row, i) => {
      const context = `${pyLstrip(str(row, 'support'))}\nQuestion: ${str(row, 'question')}\nAnswer:`;
      const choices = ['distractor1', 'distractor2', 'distractor3', 'correct_answer'].map((f) =>
        str(row, f),
      );
      return multipleChoice(i, context, choices, 3);
    });
  },
};
