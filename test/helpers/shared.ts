/**
 * The one place tests find the shared reference data: $ACTSPARSE_SHARED_DATA, else
 * `../shared/data` beside the project. Without it, tests that need it are skipped with a
 * visible reason naming the variable, except under CI=true, where a missing folder fails.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dataDir = resolve(process.env.ACTSPARSE_SHARED_DATA ?? join(root, '..', 'shared', 'data'));

/** `{ skip }` option for node:test: false when the data is there. */
export function needsShared(...relPaths: string[]): { skip: string | false } {
  const missing = [dataDir, ...relPaths.map((p) => join(dataDir, p))].find((p) => !existsSync(p));
  if (!missing) return { skip: false };
  if (process.env.CI === 'true') {
    throw new Error(`shared test data missing under CI: ${missing}`);
  }
  return {
    skip: `shared test data not found: ${missing} (set ACTSPARSE_SHARED_DATA to the folder holding it)`,
  };
}

/** Absolute path of a file under ../shared/data. */
export function shared(relPath: string): string {
  return join(dataDir, relPath);
}

/** A fresh temporary directory for a test's own fixtures. */
export function tmpDir(prefix = 'actsparse-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
