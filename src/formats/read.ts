/** Reading a versioned result file: JSON, validated against its schema, errors naming the file. */
import type { z } from 'zod';
import { UserError } from '../errors.ts';
import { jsonText, oneLine, readJsonFile } from '../util/files.ts';

/** The first problem zod found, as `path.to.field: message`. */
export function firstIssue(error: z.ZodError): string {
  const i = error.issues[0];
  return `${i.path.join('.') || '(top)'}: ${oneLine(i.message)}`;
}

/**
 * Reads `path` as `schema`; `what` says what the file should be ("a thresholds file"),
 * `made` which command writes it (for the hint).
 */
export function readFormat<T>(schema: z.ZodType<T>, path: string, what: string, made: string): T {
  return parseFormat(schema, readJsonFile(path, path), path, what, made);
}

/** `readFormat` for JSON already parsed (`path` names it in errors). */
export function parseFormat<T>(
  schema: z.ZodType<T>,
  raw: unknown,
  path: string,
  what: string,
  made: string,
): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new UserError(
    `${path}: not ${what} actsparse can use: ${firstIssue(r.error)}`,
    `Give the file written by \`${made}\`.`,
  );
}

/** Checks a value against its schema before it is written (a mismatch is a bug here). */
export function checked<T>(schema: z.ZodType<T>, value: T, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`writing ${what}: ${firstIssue(r.error)}`);
  return r.data;
}

/** The JSON text of a value checked against its schema: what a writer writes, what `--json -` prints. */
export function formatText<T>(schema: z.ZodType<T>, value: T, what: string): string {
  return jsonText(checked(schema, value, what));
}
