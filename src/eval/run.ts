/**
 * An evaluation run from task and text names to a run directory:
 *
 *   journal.jsonl          the configuration, then one line per finished unit (a task or
 *                          a text, in the sparse pass and then the dense one), written as
 *                          it goes, so that `resume` after an interrupt finishes with the
 *                          same results.json (the units' timings aside)
 *   results.json           lm-eval-shaped results (formats/results.ts)
 *   samples_<task>.jsonl   per item: requests and their scores (with --log-samples)
 *
 * With thresholds, the model is evaluated with them (the "sparse" pass) and dense.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brownDocuments } from '../data/brown.ts';
import { readDocuments, splitDocuments, tokenizeDocuments } from '../data/documents.ts';
import { textWindows } from '../data/windows.ts';
import { Interrupted, UserError } from '../errors.ts';
import { modelFacts } from '../formats/facts.ts';
import { EVAL_KIND, type EvalResults, writeEvalResults } from '../formats/results.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import { type LanguageModel, withThresholds } from '../models/model.ts';
import { Stopped } from '../util/cancel.ts';
import { writeFileAtomic } from '../util/files.ts';
import { toolVersion } from '../version.ts';
import {
  combineUnits,
  type EvalRun,
  type EvalUnit,
  evaluateUnit,
  type TaskInput,
  type TextInput,
  type UnitResult,
} from './evaluate.ts';
import { getTask, resolveTaskPath, TASKS } from './tasks/registry.ts';
import type { Item } from './tasks/task.ts';

/**
 * lm-eval's `--limit`: a whole number of items (the first ones), or a fraction in
 * (0, 1) of each task's items, rounded up.
 */
export function limitItems<T>(items: readonly T[], limit: number | undefined): T[] {
  if (limit === undefined) return [...items];
  const n = limit < 1 ? Math.ceil(items.length * limit) : Math.floor(limit);
  return items.slice(0, n);
}

/**
 * The tasks to run: the named ones (their data must be found in `taskDir`), or for
 * `all`, every lm-eval task whose data is there (the names of the others are returned
 * as skipped).
 */
export function resolveTasks(
  names: readonly string[] | 'all',
  taskDir: string | undefined,
  limit: number | undefined,
): { tasks: TaskInput[]; skipped: string[] } {
  const all = names === 'all';
  const list = all ? Object.keys(TASKS) : names;
  const tasks: TaskInput[] = [];
  const skipped: string[] = [];
  for (const name of list) {
    const task = getTask(name);
    if (task.builtIn) {
      tasks.push({ kind: 'task', name: task.name, items: limitItems(task.load(''), limit) });
      continue;
    }
    const file = taskDir ? resolveTaskPath(task, taskDir) : null;
    if (!file || !existsSync(file)) {
      if (!all) {
        throw new UserError(
          `no data for task ${name}${taskDir ? ` in ${taskDir}` : ' (no --task-dir given)'}`,
          'Give --task-dir with the task files (the README lists the layouts accepted).',
        );
      }
      skipped.push(task.name);
      continue;
    }
    tasks.push({ kind: 'task', name: task.name, items: limitItems(task.load(file), limit) });
  }
  return { tasks, skipped };
}

/**
 * Held-out texts, each cut by the one text loss (data/windows.ts `textWindows`): `brown`
 * (the held-out Brown documents cn18…cr09) or a .txt / .jsonl file.
 */
export function resolveTexts(
  specs: readonly string[],
  tokenizer: Tokenizer,
  ctx: number,
  maxWindows: number,
): TextInput[] {
  return specs.map((t) => {
    const docs =
      t === 'brown'
        ? splitDocuments(brownDocuments(), 0, 0).heldOut.map((d) => d.text)
        : readDocuments(t);
    const windows = textWindows(tokenizeDocuments(docs, tokenizer), ctx, maxWindows);
    if (windows.length === 0)
      throw new UserError(`${t}: too little text to score (fewer than 2 tokens)`);
    return { kind: 'text', name: t === 'brown' ? 'brown (held-out cn18…cr09)' : t, windows };
  });
}

export interface EvalConfig {
  /** The model file, as recorded. */
  model: string;
  /** The thresholds file applied, or null for a dense evaluation. */
  thresholds: string | null;
  tasks: string[];
  taskDir: string | null;
  limit: number | null;
  texts: string[];
  ctx: number;
  windows: number;
  logSamples: boolean;
}

export interface EvalRunOptions {
  resume: boolean;
  /**
   * Stops between batches when aborted, throwing `Interrupted`: every finished unit is
   * in the journal, and `resume` continues from there.
   */
  signal?: AbortSignal;
  /** Progress within a unit: pass, unit name, done, total. */
  onProgress?: (pass: 'sparse' | 'dense', unit: string, done: number, total: number) => void;
  /** After each finished (or replayed) unit. */
  onUnit?: (pass: 'sparse' | 'dense', unit: string, replayed: boolean) => void;
}

export interface EvalOutcome {
  results: EvalResults;
  dense: EvalRun;
  sparse: EvalRun | null;
  /** Units evaluated in this process (the rest came from the journal). */
  evaluatedNow: number;
}

interface JournalLine extends UnitResult {
  pass: 'sparse' | 'dense';
}

const stable = (x: unknown) => JSON.stringify(x);

/** Evaluates the units (dense, and with the model's thresholds when it has any) into `outDir`. */
export async function runEval(
  model: LanguageModel,
  tokenizer: Tokenizer,
  units: readonly EvalUnit[],
  cfg: EvalConfig,
  outDir: string,
  opts: EvalRunOptions,
): Promise<EvalOutcome> {
  const lambda = Float32Array.from(model.thresholds);
  const sparse = lambda.some((l) => l > 0);
  const header = {
    config: cfg,
    model: model.fingerprint,
    thresholds: createHash('sha256').update(new Uint8Array(lambda.buffer)).digest('hex'),
    units: units.map((u) => u.name),
  };
  const journalPath = join(outDir, 'journal.jsonl');
  const done = openJournal(journalPath, outDir, stable(header), opts.resume);
  let evaluatedNow = 0;
  const passes = sparse ? 2 : 1;

  const pass = async (name: 'sparse' | 'dense'): Promise<EvalRun> => {
    const results: UnitResult[] = [];
    for (const unit of units) {
      const replay = done.find((l) => l.pass === name && l.name === unit.name);
      if (replay) {
        const { pass: _, ...r } = replay;
        results.push(r);
        opts.onUnit?.(name, unit.name, true);
        continue;
      }
      const r = await evaluateUnit(
        model,
        tokenizer,
        unit,
        (d, n) => opts.onProgress?.(name, unit.name, d, n),
        opts.signal,
      );
      appendFileSync(journalPath, `${stable({ pass: name, ...r })}\n`);
      evaluatedNow++;
      results.push(r);
      opts.onUnit?.(name, unit.name, false);
    }
    return combineUnits(model, results);
  };
  let sparseRun: EvalRun | null = null;
  let dense: EvalRun;
  try {
    sparseRun = sparse ? await pass('sparse') : null;
    dense = sparse
      ? await withThresholds(model, new Float32Array(lambda.length), () => pass('dense'))
      : await pass('dense');
  } catch (e) {
    if (!(e instanceof Stopped)) throw e;
    const saved = done.length + evaluatedNow;
    throw new Interrupted(
      `${saved} of ${passes * units.length} units (${sparse ? 'tasks and texts, sparse and dense' : 'tasks and texts'}) saved in ${journalPath}`,
      true,
    );
  }

  const results = assemble(model, units, cfg, dense, sparseRun);
  writeEvalResults(join(outDir, 'results.json'), results);
  if (cfg.logSamples) writeSamples(outDir, units, dense, sparseRun);
  return { results, dense, sparse: sparseRun, evaluatedNow };
}

/**
 * Nothing a user made is overwritten: a finished run, or an unfinished one without
 * `resume`, is refused. Returns the units already done (a line cut short by a kill is
 * dropped, and that unit is evaluated again).
 */
function openJournal(path: string, outDir: string, header: string, resume: boolean): JournalLine[] {
  if (existsSync(join(outDir, 'results.json')) && !resume) {
    throw new UserError(
      `${outDir} already holds a finished evaluation (results.json)`,
      'Choose another --out directory.',
    );
  }
  if (!existsSync(path)) {
    try {
      mkdirSync(outDir, { recursive: true });
      writeFileSync(path, `${header}\n`);
    } catch (e) {
      throw new UserError(
        `cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? e})`,
        'Choose an --out directory you can write to.',
      );
    }
    return [];
  }
  if (!resume) {
    throw new UserError(
      `${outDir} holds an unfinished evaluation (journal.jsonl)`,
      'Pass --resume to finish it, or choose another --out directory.',
    );
  }
  const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
  if (lines[0] !== header) {
    throw new UserError(
      `${path} was written for another model, thresholds, data or configuration`,
      'Resume with exactly the same command, or start a new --out directory.',
    );
  }
  const done: JournalLine[] = [];
  for (const l of lines.slice(1)) {
    try {
      done.push(JSON.parse(l) as JournalLine);
    } catch {
      break;
    }
  }
  writeFileSync(path, `${[header, ...done.map(stable)].join('\n')}\n`);
  return done;
}

/** results.json from the passes: lm-eval's layout, with the dense baseline beside. */
function assemble(
  model: LanguageModel,
  units: readonly EvalUnit[],
  cfg: EvalConfig,
  dense: EvalRun,
  sparse: EvalRun | null,
): EvalResults {
  const run = sparse ?? dense;
  const metricsOf = (r: EvalRun) =>
    Object.fromEntries(Object.entries(r.tasks).map(([k, v]) => [k, v.metrics]));
  const textOf = (r: EvalRun) =>
    Object.fromEntries(
      Object.entries(r.texts).map(([k, v]) => [
        k,
        { meanNll: v.meanNll, perplexity: v.perplexity, tokens: v.tokens },
      ]),
    );
  const sites = model.sites.perBlock;
  const tasks = units.filter((u): u is TaskInput => u.kind === 'task');
  return {
    formatVersion: 1,
    kind: EVAL_KIND,
    results: metricsOf(run),
    versions: Object.fromEntries(tasks.map((t) => [t.name, 0])),
    heldOut: textOf(run),
    sparsity: {
      macWeighted: run.macWeightedSparsity,
      naturalMacWeighted: dense.macWeightedSparsity,
      perSite: run.siteSparsity.map((z, g) => ({
        block: Math.floor(g / sites.length),
        site: sites[g % sites.length].id,
        sparsity: z,
        naturalSparsity: dense.siteSparsity[g],
      })),
    },
    dense: sparse ? { results: metricsOf(dense), heldOut: textOf(dense) } : null,
    model: { file: cfg.model, ...modelFacts(model) },
    config: {
      ...cfg,
      items: Object.fromEntries(tasks.map((t) => [t.name, t.items.length])),
      chance: Object.fromEntries(tasks.map((t) => [t.name, chanceAccuracy(t.items)])),
      stderr:
        'sample standard deviation / sqrt(n) (lm-eval bootstraps some metrics; this is the simple estimate)',
    },
    timing: Object.fromEntries(
      [...Object.entries(run.tasks), ...Object.entries(run.texts)].map(([k, v]) => [
        k,
        { seconds: v.seconds },
      ]),
    ),
    tool: toolVersion(),
  };
}

/**
 * The accuracy of guessing uniformly: the mean of 1 / choices over the items of a
 * multiple-choice or partial task; null for a task scored by greedy match (LAMBADA).
 */
export function chanceAccuracy(items: readonly Item[]): number | null {
  if (items.length === 0 || items[0].kind === 'loglikelihood') return null;
  return items.reduce((a, it) => a + 1 / it.requests.length, 0) / items.length;
}

function writeSamples(
  outDir: string,
  units: readonly EvalUnit[],
  dense: EvalRun,
  sparse: EvalRun | null,
): void {
  for (const t of units) {
    if (t.kind !== 'task') continue;
    const r = (sparse ?? dense).tasks[t.name];
    const lines = t.items.map((it, i) =>
      JSON.stringify({
        index: it.index,
        kind: it.kind,
        gold: it.gold,
        requests: it.requests,
        scores: r.scores[i],
        ...(sparse ? { denseScores: dense.tasks[t.name].scores[i] } : {}),
      }),
    );
    writeFileAtomic(join(outDir, `samples_${t.name}.jsonl`), `${lines.join('\n')}\n`);
  }
}
