/**
 * Where commands write, checked before any work starts, with one rule for every
 * command: `-` is standard output (for files); a character device, FIFO or socket is
 * written through; an existing file or run is refused unless `--force` (start over) or
 * `--resume` (continue) says otherwise, and the command says so when it starts.
 */
import {
  accessSync,
  constants,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../util/files.ts';
import type { Io } from './io.ts';

/** `-`: standard output. */
export const STDOUT = '-';

function statOrNull(path: string): ReturnType<typeof statSync> | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** The nearest existing folder at or above `path`, which must be writable. */
function checkWritableFolder(path: string, what: string): void {
  let dir = resolve(path);
  let st = statOrNull(dir);
  while (!st) {
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
    st = statOrNull(dir);
  }
  if (!st?.isDirectory()) {
    throw new UserError(`${what}: ${dir} is a file, not a folder`, 'Choose another path.');
  }
  // access() says yes to root on a read-only mount; a probe file tells the truth.
  const probe = join(dir, `.actsparse-write-test-${process.pid}`);
  try {
    accessSync(dir, constants.W_OK);
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (e) {
    throw new UserError(
      `${what}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? e})`,
      'Choose a folder you can write to.',
    );
  }
}

/**
 * Checks an output file named by `option` ("--json", "--out", "OUT"): `-`, a device or
 * FIFO, or a new file in a writable folder; an existing regular file needs `force`.
 * Returns a line to show at the start when `force` replaces a file, else null.
 */
export function checkOutputFile(path: string, option: string, force: boolean): string | null {
  if (path === STDOUT) return null;
  // /dev/stdout, /dev/fd/3, /proc/self/fd/1: the process's own streams, whatever they
  // point at (a file the shell just created for `> out.json` included), written through.
  if (/^\/(dev|proc)\//.test(resolve(path))) return null;
  const what = `${option} ${path}`;
  const st = statOrNull(path);
  if (st?.isDirectory()) {
    throw new UserError(`${what} is a folder; ${option} names a file`, 'Give a file name.');
  }
  if (st && !st.isFile()) return null; // /dev/stdout, a FIFO: written through
  if (st && !force) {
    throw new UserError(`${what} exists`, 'Pass --force to replace it, or choose another name.');
  }
  checkWritableFolder(dirname(resolve(path)), what);
  return st ? `replacing ${path} (--force)` : null;
}

export interface RunFolder {
  /** Option naming the folder, for messages ("--out"). */
  option: string;
  /** What a finished or started run is called ("a calibration"). */
  what: string;
  /** Files (or folders) that make up a run; any of them present means a run is there. */
  files: readonly string[];
  /** Matches further run files (eval's samples_<task>.jsonl). */
  pattern?: RegExp;
  force: boolean;
  /** Undefined for commands that cannot resume. */
  resume?: boolean;
}

/**
 * Checks (and creates) an output folder. A folder that already holds a run is refused
 * unless `resume` (continue it) or `force` (its run files are deleted to start over).
 * Returns a line to show at the start, or null.
 */
export function prepareRunFolder(path: string, f: RunFolder): string | null {
  const what = `${f.option} ${path}`;
  if (path === STDOUT) {
    throw new UserError(`${what}: ${f.option} names a folder; - (standard output) is for files`);
  }
  const st = statOrNull(path);
  if (st && !st.isDirectory()) {
    throw new UserError(`${what} is a file; ${f.option} needs a folder`, 'Choose another path.');
  }
  const present = st
    ? readdirSync(path).filter((n) => f.files.includes(n) || f.pattern?.test(n))
    : [];
  let line: string | null = null;
  if (present.length) {
    if (f.resume) line = `continuing ${f.what} in ${path} (--resume)`;
    else if (f.force) {
      line = `starting over in ${path}: deleting ${present.join(', ')} (--force)`;
    } else {
      throw new UserError(
        `${path} already holds ${f.what} (${present.join(', ')})`,
        f.resume === undefined
          ? 'Pass --force to replace it, or choose another folder.'
          : 'Pass --resume to continue it, --force to start over, or choose another folder.',
      );
    }
  } else if (f.resume) {
    line = `${path} holds no ${f.what} to resume; starting one`;
  }
  checkWritableFolder(path, what);
  try {
    mkdirSync(path, { recursive: true });
  } catch (e) {
    throw new UserError(`${what}: cannot create (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  checkWritableFolder(path, what);
  if (present.length && !f.resume && f.force) {
    for (const n of present) rmSync(join(path, n), { recursive: true, force: true });
  }
  return line;
}

/** Writes an output checked by `checkOutputFile`: to standard output for `-`. */
export function writeOutput(io: Io, path: string, data: string | Uint8Array): void {
  if (path === STDOUT) io.out(data);
  else writeFileAtomic(path, data);
}

/** Where a command's human-readable results go: stderr when --json - holds stdout. */
export function humanOut(io: Io, json: string | undefined): (text: string) => void {
  return json === STDOUT ? io.err : io.out;
}
