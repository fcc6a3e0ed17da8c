/**
 * HellaSwag (validation, 10042): `{activity_label}: {ctx_a} {ctx_b capitalized}` → the
 * four endings, all cleaned as lm-eval's hellaswag/utils.py does. Files: Hugging Face
 * JSON lines `{activity_label, ctx_a, ctx_b, endings, label}`, or the six-lines-per-item
 * text (optionally .gz) of the shared folder: `activity_label: ctx`, the label, then the
 * four endings. That file's ctx is one string, so ctx_b cannot be capitalized there.
 */
import { UserError } from '../../errors.ts';
import { multipleChoice, pyCapitalize, pyStrip } from './requests.ts';
import {
  fieldError,
  goldIndex,
  int,
  jsonRows,
  type Row,
  readText,
  resolveInput,
  str,
  strList,
  textLines,
} from './source.ts';
import type { Item, Task } from './task.ts';

/** lm-eval's `preprocess`: strip, " [title]" → ". ", drop [..] tags, one pass of "  " → " ". */
export function preprocess(text: string): string {
  text = pyStrip(text);
  text = text.replaceAll(' [title]', '. ');
  // Python's `.` does not match "\n" but does match "\r"; [^\n] keeps that.
  text = text.replace(/\[[^\n]*?\]/g, '');
  return text.replaceAll('  ', ' ');
}

export const hellaswag: Task = {
  name: 'hellaswag',
  mainMetric: 'acc_norm',
  defaultFiles: ['hellaswag/hellaswag_val_full.txt.gz'],
  load(path: string): Item[] {
    const file = resolveInput(path, 'hellaswag/hellaswag_val_full.txt.gz');
    const text = readText(file);
    return text.trimStart().startsWith('{') ? fromJsonRows(file, text) : fromSixLines(file, text);
  },
};

function fromJsonRows(file: string, text: string): Item[] {
  return jsonRows(file, text).map((row, i) => {
    const ctx = `${str(row, 'ctx_a')} ${pyCapitalize(str(row, 'ctx_b'))}`;
    const endings = strList(row, 'endings');
    return multipleChoice(
      i,
      preprocess(`${str(row, 'activity_label')}: ${ctx}`),
      endings.map(preprocess),
      hfLabel(row, endings.length),
    );
  });
}

function hfLabel(row: Row, choices: number): number {
  if (row.data.label === '') {
    throw fieldError(
      row,
      'label',
      'is empty',
      'The test split has no labels; use the validation split.',
    );
  }
  return goldIndex(row, 'label', int(row, 'label'), choices);
}

function fromSixLines(file: string, text: string): Item[] {
  const lines = textLines(text);
  const items: Item[] = [];
  for (let start = 0; start < lines.length; start += 6) {
    const i = start / 6;
    if (start + 6 > lines.length) {
      throw new UserError(
        `${file}:${start + 1}: item ${i + 1} has ${lines.length - start} of its 6 lines`,
        'Each item is six lines: "activity_label: ctx", the label (0-3), then four endings.',
      );
    }
    // The label line, read as a one-field row so the error names line and field.
    const row: Row = { where: `${file}:${start + 2}`, data: { label: lines[start + 1].trim() } };
    const gold = goldIndex(row, 'label', int(row, 'label'), 4);
    const endings = lines.slice(start + 2, start + 6).map(preprocess);
    items.push(multipleChoice(i, preprocess(lines[start]), endings, gold));
  }
  return items;
}
