/**
 * Reading task files: a path or a directory (the task's default file inside it), gzip
 * by extension, JSON lines or a JSON array (the official SciQ files), and typed field
 * access whose errors name the file, the 1-based line and the field.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { UserError } from '../../errors.ts';
import { decodeUtf8Strict } from '../../io/tokenizers/utf8.ts';
import { oneLine } from '../../util/files.ts';

/** Task files are megabytes; anything larger than this (also once unzipped) is the wrong file. */
const MAX_BYTES = 512 * 1024 * 1024;

/** The file a task path names: itself, or for a directory the default file inside it. */
export function resolveInput(path: string, defaultFile: string): string {
  if (!isDirectory(path)) return path;
  // `dir/piqa` (the task's folder) or `dir` (a folder laid out like shared/data/tasks).
  const candidates = [join(path, basename(defaultFile)), join(path, defaultFile)];
  const found = candidates.find((p) => existsSync(p) && !isDirectory(p));
  if (found) return found;
  throw new UserError(
    `${path} is a directory without ${basename(defaultFile)}`,
    `Name the task file itself, or a folder holding ${basename(defaultFile)}.`,
  );
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The file's bytes (gunzipped when it ends in .gz), with errors a user can act on. */
export function readBytes(file: string): Buffer {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${file}: no such file`, 'Check the path.');
    throw new UserError(`${file}: cannot read (${code ?? String(e)})`, 'Check permissions.');
  }
  if (size > MAX_BYTES) {
    throw new UserError(
      `${file}: ${size} bytes is far too large for a task file`,
      'Check the path.',
    );
  }
  const raw = readFileSync(file);
  if (!file.toLowerCase().endsWith('.gz')) return raw;
  try {
    return gunzipSync(raw, { maxOutputLength: MAX_BYTES });
  } catch (e) {
    throw new UserError(
      `${file}: not a readable gzip file (${oneLine((e as Error).message)})`,
      'The file may be truncated or corrupted; re-download it, or unzip it and give the plain file.',
    );
  }
}

/** The file as UTF-8 text (strict), with an error if it holds nothing. */
export function readText(file: string): string {
  const text = decodeUtf8Strict(readBytes(file), file);
  if (text.trim() === '') throw new UserError(`${file}: the file is empty`, 'Check the path.');
  return text;
}

/** One JSON object of a task file and where it came from, for error messages. */
export interface Row {
  /** `file:line` (JSON lines) or `file: item n` (JSON array), both 1-based. */
  where: string;
  data: Record<string, unknown>;
}

/** Lines of a text file with their 1-based numbers (CRLF tolerated). */
export function textLines(text: string): string[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Rows of a JSON-lines file (blank lines skipped) or of a JSON array of objects. */
export function jsonRows(file: string, text: string): Row[] {
  if (text.trimStart().startsWith('[')) return jsonArrayRows(file, text);
  const rows: Row[] = [];
  textLines(text).forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new UserError(
        `${where}: not valid JSON (${oneLine((e as Error).message)})`,
        'Each line must be one JSON object (JSON lines, as Hugging Face `to_json` writes).',
      );
    }
    rows.push({ where, data: asObject(value, where) });
  });
  if (rows.length === 0)
    throw new UserError(`${file}: no items found`, 'The file has only blank lines.');
  return rows;
}

function jsonArrayRows(file: string, text: string): Row[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UserError(
      `${file}: not valid JSON (${oneLine((e as Error).message)})`,
      'Give a JSON array of objects or JSON lines (one object per line).',
    );
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw new UserError(`${file}: expected a non-empty JSON array of items`, 'Check the file.');
  }
  return value.map((v, i) => {
    const where = `${file}: item ${i + 1}`;
    return { where, data: asObject(v, where) };
  });
}

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UserError(`${where}: expected a JSON object`, 'Each item must be one JSON object.');
  }
  return value as Record<string, unknown>;
}

/** An error about one field of one row. */
export function fieldError(row: Row, field: string, what: string, hint?: string): UserError {
  return new UserError(
    `${row.where}: field "${field}": ${what}`,
    hint ?? 'Check the file against the layouts in the README.',
  );
}

export function has(row: Row, field: string): boolean {
  return row.data[field] !== undefined;
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  const s = JSON.stringify(v);
  return `got ${s.length > 40 ? `${s.slice(0, 40)}…` : s}`;
}

export function str(row: Row, field: string): string {
  const v = row.data[field];
  if (typeof v !== 'string') throw fieldError(row, field, `expected a string, ${describe(v)}`);
  return v;
}

/** A non-empty list of strings; the object form `{text: [...]}` is read by the caller. */
export function strList(row: Row, field: string, v: unknown = row.data[field]): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string')) {
    throw fieldError(row, field, `expected a non-empty list of strings, ${describe(v)}`);
  }
  return v as string[];
}

/** An integer, also written as a string of digits ("3", as Hugging Face labels are). */
export function int(row: Row, field: string): number {
  const v = row.data[field];
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw fieldError(row, field, `expected an integer, ${describe(v)}`);
  }
  return n;
}

/** A 0-based answer index, checked against the number of choices. */
export function goldIndex(
  row: Row,
  field: string,
  value: number,
  choices: number,
  offset = 0,
): number {
  const gold = value - offset;
  if (!Number.isInteger(gold) || gold < 0 || gold >= choices) {
    throw fieldError(
      row,
      field,
      `${value} is out of range for ${choices} choices`,
      offset === 0
        ? `It must be the 0-based index of the right choice (0…${choices - 1}).`
        : `It must be ${offset}…${choices - 1 + offset}.`,
    );
  }
  return gold;
}

/**
 * Hugging Face `choices: {text: [...], label: [...]}` (ARC, OpenBookQA) and the index of
 * `key` among the labels, as lm-eval's `choices.label.index(answerKey)`.
 */
export function labeledChoices(
  row: Row,
  keyField: string,
  key: string,
): { texts: string[]; gold: number } {
  const c = row.data.choices;
  if (typeof c !== 'object' || c === null || Array.isArray(c)) {
    throw fieldError(row, 'choices', `expected {"text": [...], "label": [...]}, ${describe(c)}`);
  }
  const { text, label } = c as { text?: unknown; label?: unknown };
  const texts = strList(row, 'choices.text', text);
  const labels = strList(row, 'choices.label', label);
  if (labels.length !== texts.length) {
    throw fieldError(row, 'choices', `${texts.length} texts but ${labels.length} labels`);
  }
  const gold = labels.indexOf(key);
  if (gold < 0) {
    throw fieldError(
      row,
      keyField,
      `${JSON.stringify(key)} is not one of the labels ${JSON.stringify(labels)}`,
      'The answer key must be one of choices.label.',
    );
  }
  return { texts, gold };
}
