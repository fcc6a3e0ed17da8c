/**
 * Request building shared by every task, and the few Python string functions the
 * harness's templates use, reproduced exactly (Python's whitespace set, code-point
 * lengths), so that contexts and choice lengths match lm-evaluation-harness 0.4.2.
 */
import type { Item, Request } from './task.ts';

/** lm-eval's `target_delimiter`: one space between the context and each choice. */
export const SEPARATOR = ' ';

// Python's str.isspace() set; JS `\s` differs (it has U+FEFF, lacks U+001C–U+001F and U+0085).
const WS =
  '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const LEADING_WS = new RegExp(`^[${WS}]+`);
const TRAILING_WS = new RegExp(`[${WS}]+$`);

/** Python `s.lstrip()`. */
export function pyLstrip(s: string): string {
  return s.replace(LEADING_WS, '');
}

/** Python `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(TRAILING_WS, '');
}

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  return pyRstrip(pyLstrip(s));
}

/** Python `len(s)`: code points, not UTF-16 units (acc_norm divides by it). */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * Python `s.capitalize()`: first character upper, the rest lower ("he saw Bob" →
 * "He saw bob"). Python title-cases the first character; the two differ only for
 * characters whose title case is not their upper case (ß → Ss vs SS, ǆ → ǅ vs Ǆ),
 * which do not start a HellaSwag ctx_b.
 */
export function pyCapitalize(s: string): string {
  const first = s.codePointAt(0);
  if (first === undefined) return s;
  const head = String.fromCodePoint(first);
  return head.toUpperCase() + s.slice(head.length).toLowerCase();
}

/**
 * One log-likelihood request. Trailing whitespace of the context moves to the front of
 * the continuation (lm-eval's `_encode_pair`), so the context's tokens are a prefix of
 * the whole string's tokens for BPE tokenizers that attach spaces to the next word.
 */
export function makeRequest(context: string, continuation: string): Request {
  const kept = pyRstrip(context);
  return { context: kept, continuation: context.slice(kept.length) + continuation };
}

/** A multiple-choice item: one request `(context, " " + choice)` per choice. */
export function multipleChoice(
  index: number,
  context: string,
  choices: readonly string[],
  gold: number,
): Item {
  return {
    index,
    kind: 'multiple-choice',
    requests: choices.map((c) => makeRequest(context, SEPARATOR + c)),
    gold,
    choiceLengths: choices.map(charLength),
  };
}

/**
 * A partial-scoring item (WinoGrande): the same continuation `" " + target` scored
 * after each context; the right context is `gold`.
 */
export function partialItem(
  index: number,
  contexts: readonly string[],
  target: string,
  gold: number,
): Item {
  return {
    index,
    kind: 'partial',
    requests: contexts.map((c) => makeRequest(c, SEPARATOR + target)),
    gold,
  };
}

/** A single-continuation item (LAMBADA): perplexity and greedy accuracy. */
export function loglikelihoodItem(index: number, context: string, continuation: string): Item {
  return { index, kind: 'loglikelihood', requests: [makeRequest(context, continuation)], gold: 0 };
}
