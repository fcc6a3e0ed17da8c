/**
 * Cutting a token stream (documents joined by end-of-document tokens) into the windows a
 * model is scored on. Two definitions, each used everywhere it applies:
 *
 * - `textWindows`, the one text loss (perplexity, eval --text, calibration's held-out
 *   loss, the trainer's held-out loss): windows of at most ctx + 1 tokens that overlap
 *   by one token, the tail kept, so that every token after the first is predicted
 *   exactly once, each window from a fresh state. This is lm-evaluation-harness's
 *   rolling log-likelihood with one token of context per window, over the stream.
 * - `tokenWindows`, the calibration set of METHOD.md §3: disjoint windows of exactly
 *   ctx + 1 tokens, the tail dropped, as the authors cut MiniPile (the token between two
 *   windows is not predicted).
 */

/** Windows of at most ctx + 1 tokens overlapping by one, the tail kept; at most `max`. */
export function textWindows(
  tokens: ArrayLike<number>,
  ctx: number,
  max = Number.POSITIVE_INFINITY,
): number[][] {
  if (!(Number.isInteger(ctx) && ctx >= 1)) throw new RangeError(`textWindows: ctx ${ctx}`);
  const out: number[][] = [];
  for (let s = 0; s + 1 < tokens.length && out.length < max; s += ctx) {
    const w: number[] = [];
    for (let t = s; t < Math.min(s + ctx + 1, tokens.length); t++) w.push(tokens[t]);
    out.push(w);
  }
  return out;
}

/** Disjoint windows of exactly `size` tokens (ctx + 1), the tail dropped; at most `max`. */
export function tokenWindows(tokens: readonly number[], size: number, max: number): number[][] {
  const out: number[][] = [];
  for (let s = 0; s + size <= tokens.length && out.length < max; s += size)
    out.push(tokens.slice(s, s + size));
  return out;
}
