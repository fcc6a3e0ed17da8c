/**
 * File-provided text in error messages: every message this package produces is one
 * line (the CLI prints `message` then `hint`), so names, keys and library errors that
 * come from a file are cut short and have their control characters replaced.
 */

/** Keeps file-provided text short and printable in messages. */
export function printable(s: string, max = 80): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing control characters is the point
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** The message of an error thrown by a library (JSON.parse, the tokenizer), on one line. */
export function errorText(e: unknown, max = 120): string {
  const msg = e instanceof Error ? e.message : String(e);
  return printable(msg.replace(/\s*\n\s*/g, ' '), max);
}

/** "a, b, c and 7 more": a list in a message, cut after `max` items. */
export function listText(items: readonly string[], max = 5): string {
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}
