/** Reading a JSON file with errors a user can act on (the file named, never a stack trace). */
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.ts';

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
    throw new UserError(`${label}: not valid JSON (${(e as Error).message})`);
  }
}
