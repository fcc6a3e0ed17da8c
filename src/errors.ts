/**
 * Errors a user can fix: a wrong path, a broken file, a bad option. The CLI prints
 * `message` and `hint` and exits with code 2; anything else is a bug (exit 1).
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(
    message: string,
    /** What to do about it, in one sentence. */
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** A file that is not what it claims to be (truncated, corrupted, hostile). */
export class FormatError extends UserError {
  override name = 'FormatError';
  constructor(
    readonly file: string,
    what: string,
    hint = 'The file may be truncated or corrupted; re-download or re-convert it.',
  ) {
    super(`${file}: ${what}`, hint);
  }
}

/** Throws a FormatError unless `cond` holds. */
export function check(cond: unknown, file: string, what: string, hint?: string): asserts cond {
  if (!cond) throw new FormatError(file, what, hint);
}

/**
 * Work stopped because the user asked (Ctrl-C, SIGTERM). `saved` says what was kept,
 * e.g. "3 of 8 units in runs/x/journal.jsonl"; `resumable` whether `--resume` continues
 * it. The CLI prints one line and exits with 130.
 */
export class Interrupted extends Error {
  override name = 'Interrupted';
  constructor(
    readonly saved: string,
    readonly resumable: boolean,
  ) {
    super(`interrupted: ${saved}`);
  }
}
