/**
 * One evaluation of a model as it is configured (dense, or with thresholds): zero-shot
 * tasks and held-out text loss, with the per-site sparsity measured while it ran.
 */
import type { Tokenizer } from '../io/tokenizer.ts';
import type { LanguageModel } from '../models/model.ts';
import { textLoss } from '../sparsity/evaluator.ts';
import { macWeighted, zeroCounter } from '../sparsity/plan.ts';
import { scoreRequests } from './scorer.ts';
import { computeMetrics } from './tasks/metrics.ts';
import type { Item, Metrics, Scored } from './tasks/task.ts';

export interface TaskInput {
  name: string;
  items: Item[];
}

export interface TextInput {
  name: string;
  windows: number[][];
}

export interface EvalRun {
  tasks: Record<string, { metrics: Metrics; items: number; seconds: number; scores: Scored[][] }>;
  texts: Record<string, { meanNll: number; perplexity: number; tokens: number; seconds: number }>;
  /** Fraction of zeros per site over everything this run fed the model. */
  siteSparsity: number[];
  macWeightedSparsity: number;
}

export async function evaluate(
  model: LanguageModel,
  tokenizer: Tokenizer,
  tasks: readonly TaskInput[],
  texts: readonly TextInput[],
  onProgress?: (label: string, done: number, total: number) => void,
): Promise<EvalRun> {
  // Zeros of every site's input, counted on the backend while everything runs.
  const counter = zeroCounter(model);
  const hook = counter.hook;
  const run: EvalRun = { tasks: {}, texts: {}, siteSparsity: [], macWeightedSparsity: 0 };
  for (const { name, items } of tasks) {
    const t0 = performance.now();
    // All requests of the task at once: items sharing a context share its run.
    const flat = items.flatMap((it) => it.requests);
    const scored = await scoreRequests(model, tokenizer, flat, {
      hook,
      onProgress: (d, n) => onProgress?.(name, d, n),
    });
    let o = 0;
    const scores = items.map((it) => {
      const s = scored.slice(o, o + it.requests.length);
      o += it.requests.length;
      return s;
    });
    run.tasks[name] = {
      metrics: computeMetrics(items, scores),
      items: items.length,
      seconds: (performance.now() - t0) / 1000,
      scores,
    };
  }
  for (const { name, windows } of texts) {
    const t0 = performance.now();
    const meanNll = await textLoss(model, windows, hook);
    run.texts[name] = {
      meanNll,
      perplexity: Math.exp(meanNll),
      tokens: windows.reduce((a, w) => a + w.length - 1, 0),
      seconds: (performance.now() - t0) / 1000,
    };
    onProgress?.(name, 1, 1);
  }
  run.siteSparsity = Array.from(await counter.read());
  run.macWeightedSparsity = macWeighted(model, run.siteSparsity);
  return run;
}
