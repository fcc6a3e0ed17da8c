/**
 * The one JSON reader and the one file writer of the project. Reading names the file in
 * every error (one line, never a stack trace); writing never leaves a half-written file
 * behind (a temporary file renamed over the path) and never replaces what is not a
 * regular file: a character device (/dev/stdout), a FIFO or a symbolic link is written
 * through, as a shell redirection would.
 */
import { lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.ts';

/** One line, at most `max` characters, for quoting file content in an error. */
export function oneLine(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function readJsonFile(path: string | URL, label = String(path)): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`${label}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${label}: not valid JSON (${oneLine((e as Error).message)})`);
  }
}

/** Whether `path` exists and is something to write through rather than replace. */
function isSpecial(path: string): boolean {
  try {
    const st = lstatSync(path);
    return st.isSymbolicLink() || st.isCharacterDevice() || st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

/**
 * Writes `data` to `path`: through a temporary file renamed over it for a regular file
 * (a crash never leaves a truncated file), directly for a device, FIFO or link.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  try {
    if (isSpecial(path)) {
      writeFileSync(path, data);
      return;
    }
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    throw new UserError(
      `cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? e})`,
      'Check the directory and permissions.',
    );
  }
}

/** The project's JSON text: pretty-printed, one final newline. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** A JSON file, pretty-printed, written as writeFileAtomic does. */
export function writeJsonFile(path: string, value: unknown): void {
  writeFileAtomic(path, jsonText(value));
}
