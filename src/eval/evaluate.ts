/**
 * Evaluating a model as it is configured (dense, or with thresholds), one unit at a
 * time: a zero-shot task or a held-out text. Each unit also counts the zeros of every
 * site's input while it runs, so that units evaluated in different processes (a run
 * resumed after an interrupt) add up to exactly the figures of one uninterrupted run.
 */
import type { Tokenizer } from '../io/tokenizer.ts';
import { textLoss } from '../models/loss.ts';
import type { LanguageModel } from '../models/model.ts';
import { macWeighted, type ZeroCounts, zeroCounter, zeroFractions } from '../sparsity/plan.ts';
import { scoreRequests } from './scorer.ts';
import { computeMetrics } from './tasks/metrics.ts';
import type { Item, Metrics, Scored } from './tasks/task.ts';

export interface TaskInput {
  kind: 'task';
  name: string;
  items: Item[];
}

export interface TextInput {
  kind: 'text';
  name: string;
  /** Windows of the one text loss (data/windows.ts textWindows). */
  windows: number[][];
}

export type EvalUnit = TaskInput | TextInput;

export interface TaskResult {
  metrics: Metrics;
  items: number;
  scores: Scored[][];
}

export interface TextResult {
  meanNll: number;
  perplexity: number;
  tokens: number;
}

/** What one unit gave: its result, its time and the zeros it saw at every site. */
export interface UnitResult {
  name: string;
  task?: TaskResult;
  text?: TextResult;
  seconds: number;
  sites: ZeroCounts;
}

export async function evaluateUnit(
  model: LanguageModel,
  tokenizer: Tokenizer,
  unit: EvalUnit,
  onProgress?: (done: number, total: number) => void,
  /** Checked between batches of a task (util/cancel.ts); a text runs to its end. */
  signal?: AbortSignal,
): Promise<UnitResult> {
  const t0 = performance.now();
  const counter = zeroCounter(model);
  let task: TaskResult | undefined;
  let text: TextResult | undefined;
  if (unit.kind === 'task') {
    // All requests of the task at once: items sharing a context share its run.
    const flat = unit.items.flatMap((it) => it.requests);
    const scored = await scoreRequests(model, tokenizer, flat, {
      hook: counter.hook,
      onProgress,
      signal,
    });
    let o = 0;
    const scores = unit.items.map((it) => {
      const s = scored.slice(o, o + it.requests.length);
      o += it.requests.length;
      return s;
    });
    task = { metrics: computeMetrics(unit.items, scores), items: unit.items.length, scores };
  } else {
    text = await textLoss(model, unit.windows, counter.hook);
    onProgress?.(1, 1);
  }
  return {
    name: unit.name,
    ...(task ? { task } : { text }),
    seconds: (performance.now() - t0) / 1000,
    sites: await counter.read(),
  };
}

/** One pass (dense or sparse) over every unit, combined. */
export interface EvalRun {
  tasks: Record<string, TaskResult & { seconds: number }>;
  texts: Record<string, TextResult & { seconds: number }>;
  /** Fraction of zeros per site over everything this pass fed the model. */
  siteSparsity: number[];
  macWeightedSparsity: number;
}

/** The pass from its units' results (in any order of evaluation). */
export function combineUnits(model: LanguageModel, units: readonly UnitResult[]): EvalRun {
  const run: EvalRun = { tasks: {}, texts: {}, siteSparsity: [], macWeightedSparsity: 0 };
  const n = model.thresholds.length;
  const sites: ZeroCounts = { zeros: new Array(n).fill(0), total: new Array(n).fill(0) };
  for (const u of units) {
    if (u.task) run.tasks[u.name] = { ...u.task, seconds: u.seconds };
    if (u.text) run.texts[u.name] = { ...u.text, seconds: u.seconds };
    for (let g = 0; g < n; g++) {
      sites.zeros[g] += u.sites.zeros[g];
      sites.total[g] += u.sites.total[g];
    }
  }
  run.siteSparsity = Array.from(zeroFractions(sites));
  run.macWeightedSparsity = macWeighted(model, run.siteSparsity);
  return run;
}
