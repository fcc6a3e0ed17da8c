/**
 * ARC-Easy (test, 2376) and ARC-Challenge (test, 1172): `Question: {question}\nAnswer:`
 * → the choice texts. Rows `{query, choices, gold}` (shared files; query already starts
 * with "Question: ") or Hugging Face `{question, choices: {text, label}, answerKey}`.
 */
import { multipleChoice } from './requests.ts';
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

function arcTask(name: string, file: string, mainMetric: Task['mainMetric']): Task {
  return {
    name,
    mainMetric,
    defaultFiles: [file],
    load(path: string): Item[] {
      const resolved = resolveInput(path, file);
      return jsonRows(resolved, readText(resolved)).map((row, i) => {
        if (has(row, 'query')) {
          const choices = strList(row, 'choices');
          const gold = goldIndex(row, 'gold', int(row, 'gold'), choices.length);
          return multipleChoice(i, `${str(row, 'query')}\nAnswer:`, choices, gold);
        }
        if (!has(row, 'question')) {
          throw fieldError(row, 'question', 'missing (nor is there a "query" field)');
        }
        // lm-eval: `choices.label.index(answerKey)`; labels are letters or digits.
        const { texts, gold } = labeledChoices(row, 'answerKey', str(row, 'answerKey'));
        return multipleChoice(i, `Question: ${str(row, 'question')}\nAnswer:`, texts, gold);
      });
    },
  };
}

export const arcEasy = arcTask('arc_easy', 'arc/arc_easy.jsonl', 'acc');
export const arcChallenge = arcTask('arc_challenge', 'arc/arc_challenge.jsonl', 'acc_norm');
