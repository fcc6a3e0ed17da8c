/**
 * Task metrics from scored requests, as lm-evaluation-harness 0.4.2 computes them
 * (`ConfigurableTask.process_results` per item, then the mean over items).
 */
import type { Item, Metrics, Scored } from './task.ts';

/** numpy's argmax: the first maximum; a NaN counts as the maximum (the first NaN wins). */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 0; i < xs.length; i++) {
    if (Number.isNaN(xs[i])) return i;
    if (xs[i] > xs[best]) best = i;
  }
  return best;
}

/**
 * Mean and its standard error, sample standard deviation (n − 1) / √n, as lm-eval's
 * `mean_stderr`. lm-eval bootstraps the error of non-mean metrics (perplexity); we report
 * only this simple estimate. NaN for n < 2, where lm-eval reports "N/A".
 */
export function meanAndStderr(xs: readonly number[]): { mean: number; stderr: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stderr: Number.NaN };
  const ss = xs.reduce((a, x) => a + (x - mean) ** 2, 0);
  return { mean, stderr: Math.sqrt(ss / (n - 1)) / Math.sqrt(n) };
}

/**
 * One item's per-sample values: multiple-choice → acc, acc_norm (0/1); partial → acc;
 * loglikelihood → acc (greedy, 0/1) and ll (the continuation's log-likelihood).
 */
export function scoreItem(item: Item, scores: readonly Scored[]): Record<string, number> {
  if (scores.length !== item.requests.length) {
    throw new Error(
      `item ${item.index}: ${scores.length} scores for ${item.requests.length} requests`,
    );
  }
  const lls = scores.map((s) => s.logLikelihood);
  switch (item.kind) {
    case 'multiple-choice': {
      // acc_norm divides by the choice's character length (lm-eval's completion_len).
      const lengths = item.choiceLengths ?? [];
      if (lengths.length !== lls.length)
        throw new Error(`item ${item.index}: choiceLengths missing`);
      const acc = argmax(lls) === item.gold ? 1 : 0;
      const accNorm = argmax(lls.map((ll, i) => ll / lengths[i])) === item.gold ? 1 : 0;
      return { acc, acc_norm: accNorm };
    }
    case 'partial':
      return { acc: argmax(lls) === item.gold ? 1 : 0 };
    case 'loglikelihood':
      return { acc: scores[0].greedy ? 1 : 0, ll: lls[0] };
  }
}

/**
 * A task's metrics over all its items (all of one kind): acc, acc_stderr, and acc_norm,
 * acc_norm_stderr (multiple-choice) or perplexity = exp(−mean ll) (loglikelihood).
 */
export function computeMetrics(
  items: readonly Item[],
  scores: readonly (readonly Scored[])[],
): Metrics {
  if (items.length === 0) throw new Error('computeMetrics: no items');
  if (scores.length !== items.length) {
    throw new Error(`computeMetrics: ${scores.length} score lists for ${items.length} items`);
  }
  const kind = items[0].kind;
  const perItem = items.map((item, i) => {
    if (item.kind !== kind)
      throw new Error(`computeMetrics: items of kinds ${kind} and ${item.kind}`);
    return scoreItem(item, scores[i]);
  });
  const column = (key: string) => perItem.map((v) => v[key]);
  const out: Metrics = {};
  const acc = meanAndStderr(column('acc'));
  out.acc = acc.mean;
  out.acc_stderr = acc.stderr;
  if (kind === 'multiple-choice') {
    const norm = meanAndStderr(column('acc_norm'));
    out.acc_norm = norm.mean;
    out.acc_norm_stderr = norm.stderr;
  } else if (kind === 'loglikelihood') {
    // lm-eval's `perplexity` aggregation: exp(−mean of per-item log-likelihoods).
    out.perplexity = Math.exp(-meanAndStderr(column('ll')).mean);
  }
  return out;
}
