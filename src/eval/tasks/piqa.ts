/**
 * PIQA (validation, 1838): `Question: {goal}\nAnswer:` → sol1 | sol2. Official files
 * (`valid.jsonl` without labels + `valid-labels.lst`, one 0/1 per line) or a Hugging Face
 * export with a `label` field on every row.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UserError } from '../../errors.ts';
import { multipleChoice } from './requests.ts';
import {
  goldIndex,
  has,
  int,
  jsonRows,
  type Row,
  readText,
  resolveInput,
  str,
  textLines,
} from './source.ts';
import type { Item, Task } from './task.ts';

export const piqa: Task = {
  name: 'piqa',
  mainMetric: 'acc',
  defaultFiles: ['piqa/valid.jsonl', 'piqa/valid-labels.lst'],
  load(path: string): Item[] {
    const file = resolveInput(path, 'piqa/valid.jsonl');
    const rows = jsonRows(file, readText(file));
    const labels = rows.every((r) => has(r, 'label')) ? null : readLabels(labelsFileOf(file), rows);
    return rows.map((row, i) => {
      const choices = [str(row, 'sol1'), str(row, 'sol2')];
      const gold = labels ? labels[i] : goldIndex(row, 'label', int(row, 'label'), 2);
      return multipleChoice(i, `Question: ${str(row, 'goal')}\nAnswer:`, choices, gold);
    });
  },
};

/** `valid.jsonl` → `valid-labels.lst` beside it (the official naming). */
function labelsFileOf(file: string): string {
  return file.endsWith('.jsonl')
    ? `${file.slice(0, -'.jsonl'.length)}-labels.lst`
    : join(dirname(file), 'valid-labels.lst');
}

function readLabels(file: string, rows: readonly Row[]): number[] {
  if (!existsSync(file)) {
    const row = rows.find((r) => !has(r, 'label'))!;
    throw new UserError(
      `${row.where}: no field "label", and no labels file ${file}`,
      'Put the official valid-labels.lst beside valid.jsonl, or use an export with a "label" field.',
    );
  }
  const lines = textLines(readText(file));
  const labels = lines.map((line, i) => {
    const t = line.trim();
    if (t !== '0' && t !== '1') {
      throw new UserError(
        `${file}:${i + 1}: expected 0 or 1, got ${JSON.stringify(line)}`,
        'One label per line.',
      );
    }
    return Number(t);
  });
  if (labels.length !== rows.length) {
    throw new UserError(
      `${file}: ${labels.length} labels for ${rows.length} questions`,
      'The labels file must match the questions file line for line.',
    );
  }
  return labels;
}
