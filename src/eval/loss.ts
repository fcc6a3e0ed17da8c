/** Language-model loss: mean next-token negative log-likelihood over token windows. */
import type { LanguageModel } from '../models/model.ts';
import { logSoftmax } from '../tensor/reference.ts';

export interface LossResult {
  /** Mean NLL in nats per token over every predicted position. */
  meanNll: number;
  perplexity: number;
  /** Number of predictions scored. */
  tokens: number;
}

/**
 * Each window of n tokens is run from the zero state and scores its n − 1 next-token
 * predictions (METHOD.md §3: every position of every window counts once).
 */
export function windowLoss(
  model: LanguageModel,
  windows: readonly ArrayLike<number>[],
  onWindow?: (done: number, total: number) => void,
): LossResult {
  let sum = 0;
  let count = 0;
  windows.forEach((w, i) => {
    const n = w.length;
    if (n < 2) return;
    const input = Array.from({ length: n - 1 }, (_, t) => w[t]);
    const logits = model.forward(input, model.newState());
    const V = model.nVocab;
    for (let t = 0; t < n - 1; t++) {
      const lp = logSoftmax(logits.subarray(t * V, (t + 1) * V));
      sum -= lp[w[t + 1]];
      count++;
    }
    onWindow?.(i + 1, windows.length);
  });
  const meanNll = count ? sum / count : Number.NaN;
  return { meanNll, perplexity: Math.exp(meanNll), tokens: count };
}

/** Cuts a token stream into windows of `size` tokens that overlap by one (ctx + 1 each). */
export function cutWindows(tokens: ArrayLike<number>, size: number): number[][] {
  const out: number[][] = [];
  for (let s = 0; s + 1 < tokens.length; s += size - 1) {
    const w: number[] = [];
    for (let t = s; t < Math.min(s + size, tokens.length); t++) w.push(tokens[t]);
    if (w.length >= 2) out.push(w);
  }
  return out;
}
