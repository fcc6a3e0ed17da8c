/** Language-model loss: mean next-token negative log-likelihood over token windows. */
import type { LanguageModel } from '../models/model.ts';
import { textLoss } from '../sparsity/evaluator.ts';

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
export async function windowLoss(
  model: LanguageModel,
  windows: readonly (readonly number[])[],
): Promise<LossResult> {
  const scored = windows.filter((w) => w.length >= 2);
  const tokens = scored.reduce((a, w) => a + w.length - 1, 0);
  const meanNll = tokens ? await textLoss(model, scored) : Number.NaN;
  return { meanNll, perplexity: Math.exp(meanNll), tokens };
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
