/** Writing result files without ever leaving a half-written one behind. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.ts';

/** Writes to `path.tmp-<pid>` and renames, so a crash never leaves a truncated file. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  try {
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
