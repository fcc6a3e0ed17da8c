/**
 * OpenBookQA (main, test, 500): `{question_stem}` → the choice texts. Rows
 * `{query, choices, gold}` (shared file) or Hugging Face
 * `{question_stem, choices: {text, label}, answerKey}`.
 */
import { multipleChoice, pyLstrip } from './requests.ts';
import {
  fieldError,
  goldIndex,
  has,
  int,
  jsonRows,
  labeledChoices,
  readText,
  resolveInput,
  str,
  strList,
} from './source.ts';
import type { Item, Task } from './task.ts';

export const openbookqa: Task = {
  name: 'openbookqa',
  mainMetric: 'acc_norm',
  defaultFiles: ['openbookqa/openbook_qa.jsonl'],
  load(path: string): Item[] {
    const file = resolveInput(path, 'openbookqa/openbook_qa.jsonl');
    return jsonRows(file, readText(file)).map((row, i) => {
      if (has(row, 'query')) {
        const choices = strList(row, 'choices');
        const gold = goldIndex(row, 'gold', int(row, 'gold'), choices.length);
        return multipleChoice(i, str(row, 'query'), choices, gold);
      }
      if (!has(row, 'question_stem')) {
        throw fieldError(row, 'question_stem', 'missing (nor is there a "query" field)');
      }
      // lm-eval: `choices.label.index(answerKey.lstrip())`.
      const { texts, gold } = labeledChoices(row, 'answerKey', pyLstrip(str(row, 'answerKey')));
      return multipleChoice(i, str(row, 'question_stem'), texts, gold);
    });
  },
};
