import { join, resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import type { EvalRun, TaskInput } from '../../eval/evaluate.ts';
import { chanceAccuracy, resolveTasks, resolveTexts, runEval } from '../../eval/run.ts';
import { BUILT_IN_TASKS, getTask, TASKS } from '../../eval/tasks/registry.ts';
import { formatText } from '../../formats/read.ts';
import { EvalResults } from '../../formats/results.ts';
import {
  backendOption,
  checkJson,
  contextLength,
  ctxOption,
  forceOption,
  jsonOption,
  MODEL,
  openModel,
  table,
  thresholdsOption,
  tokenizerOption,
} from '../common.ts';
import type { Command } from '../io.ts';
import { humanOut, prepareRunFolder, writeOutput } from '../output.ts';
import { progress } from '../progress.ts';

export const evalCommand: Command = {
  name: 'eval',
  summary:
    'zero-shot accuracy (lm-evaluation-harness scoring) and held-out loss, dense and with thresholds',
  description:
    'Scores zero-shot tasks as lm-evaluation-harness 0.4 does (log-likelihood of each choice; acc, acc_norm, perplexity) and the loss of held-out texts, with the thresholds and dense. Writes results.json (lm-eval’s layout) into --out, and each finished task as it goes (journal.jsonl): an interrupted run continues with --resume and ends with the same results.json.',
  stoppable: true,
  positionals: [MODEL],
  options: [
    {
      name: 'out',
      type: 'string',
      value: 'DIR',
      required: true,
      help: 'The run folder: results.json, journal.jsonl, samples_<task>.jsonl.',
    },
    thresholdsOption,
    {
      name: 'tasks',
      type: 'string',
      value: 'LIST|all',
      help: `Comma-separated tasks: ${[...Object.keys(TASKS), ...Object.keys(BUILT_IN_TASKS)].join(', ')} (the last ${Object.keys(BUILT_IN_TASKS).length} are built in and need no data). all: every lm-eval task whose data is in --task-dir.`,
      defaultText: 'all',
    },
    {
      name: 'task-dir',
      type: 'string',
      value: 'DIR',
      help: 'Folder with the task data files (the README lists the layouts accepted).',
      defaultText: '$ACTSPARSE_TASK_DIR',
    },
    {
      name: 'limit',
      type: 'number',
      above: 0,
      value: 'N|FRACTION',
      help: 'Only the first N items of each task, or a fraction below 1 of them (as lm-eval’s --limit).',
      defaultText: 'every item',
    },
    {
      name: 'text',
      type: 'string',
      value: 'FILE|brown',
      multiple: true,
      help: 'A held-out text to measure the loss on: a .txt / .jsonl file, or brown (the held-out Brown documents cn18…cr09).',
    },
    ctxOption('a held-out text'),
    {
      name: 'windows',
      type: 'integer',
      min: 1,
      default: 64,
      help: 'Windows scored per held-out text (the first ones).',
    },
    {
      name: 'log-samples',
      type: 'boolean',
      help: 'Also write samples_<task>.jsonl: every item’s requests and scores.',
    },
    {
      name: 'resume',
      type: 'boolean',
      help: 'Continue the interrupted run in --out (the same command otherwise).',
    },
    forceOption,
    tokenizerOption,
    backendOption,
    jsonOption('results.json'),
  ],
  examples: [
    'actsparse eval models/rwkv4-brown-3m.safetensors --tasks brown_next_word --text brown --thresholds runs/cal --out runs/cal/eval',
    'actsparse eval RWKV-4-Pile-430M.pth --task-dir tasks/ --tasks piqa,arc_easy --limit 0.1 --thresholds runs/430m --out runs/430m/eval',
  ],
  async run(a, io) {
    const [path] = a.positionals;
    const out = a.str('out')!;
    const limit = a.num('limit');
    if (limit !== undefined && limit > 1 && !Number.isInteger(limit))
      throw new UserError(`--limit ${limit}: a whole number of items, or a fraction below 1`);
    const taskDir = a.str('task-dir') ?? process.env.ACTSPARSE_TASK_DIR;
    const texts = a.list('text');
    // Without --tasks: every lm-eval task with data, unless only texts were asked for.
    const requested = a.str('tasks') ?? (texts.length ? '' : 'all');
    const names =
      requested === 'all'
        ? 'all'
        : requested
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
    if (names !== 'all') for (const n of names) getTask(n);
    if (names !== 'all' && names.length === 0 && texts.length === 0) {
      throw new UserError(
        'nothing to evaluate',
        'Give --tasks (a built-in one such as brown_next_word, or others with --task-dir), or --text FILE (or --text brown).',
      );
    }
    const json = checkJson(a, io);
    const say = humanOut(io, json);
    const start = prepareRunFolder(out, {
      option: '--out',
      what: 'an evaluation',
      files: ['journal.jsonl', 'results.json'],
      pattern: /^samples_.*\.jsonl$/,
      force: a.flag('force'),
      resume: a.flag('resume'),
    });
    if (start) io.err(`${start}\n`);
    const { tasks, skipped } = resolveTasks(names, taskDir, limit);
    if (skipped.length) {
      const where = taskDir ? `in ${taskDir}` : '(no --task-dir)';
      io.err(`skipping ${skipped.length} task(s) without data ${where}: ${skipped.join(', ')}\n`);
    }
    if (tasks.length === 0 && texts.length === 0) {
      throw new UserError(
        `no task has data${taskDir ? ` in ${taskDir}` : ' (no --task-dir)'}, and no --text`,
        'Give --task-dir with the task files, a built-in task (--tasks brown_next_word), or --text FILE.',
      );
    }

    const { model, tokenizer, ckpt } = await openModel(path, a, io);
    ckpt.close();
    const ctx = contextLength(a, model);
    const maxWindows = a.num('windows')!;
    const units = [...tasks, ...resolveTexts(texts, tokenizer, ctx, maxWindows)];
    const thresholds = a.str('thresholds');
    let report = progress(io, 'eval');
    let current = '';
    const outcome = await runEval(
      model,
      tokenizer,
      units,
      {
        model: resolve(path),
        thresholds: thresholds ? resolve(thresholds) : null,
        tasks: tasks.map((t) => t.name),
        taskDir: taskDir ? resolve(taskDir) : null,
        limit: limit ?? null,
        texts,
        ctx,
        windows: maxWindows,
        logSamples: a.flag('log-samples'),
      },
      out,
      {
        resume: a.flag('resume'),
        signal: io.signal,
        onUnit: (pass, unit, replayed) => {
          if (replayed) io.err(`${pass} ${unit}: from the journal\n`);
        },
        onProgress: (pass, unit, d, n) => {
          if (current !== `${pass} ${unit}`) {
            current = `${pass} ${unit}`;
            report = progress(io, current);
          }
          if (d === n || d % 50 === 0) report(d, n);
        },
      },
    );
    say(summary(tasks, outcome.dense, outcome.sparse));
    io.err(
      `wrote ${join(out, 'results.json')}${a.flag('log-samples') ? ' and samples_<task>.jsonl' : ''}\n`,
    );
    if (json) writeOutput(io, json, formatText(EvalResults, outcome.results, 'results.json'));
  },
};

/** The console table: every accuracy metric of each task (main one first), chance level, texts. */
function summary(tasks: readonly TaskInput[], dense: EvalRun, sparse: EvalRun | null): string {
  const pct = (x: number | undefined | null) =>
    x === undefined || x === null ? '-' : (100 * x).toFixed(2);
  const head = sparse
    ? ['task', 'metric', 'dense', 'sparse', 'Δ', '± (sparse)', 'chance', 'items']
    : ['task', 'metric', 'value', '±', 'chance', 'items'];
  const rows: string[][] = [head];
  for (const t of tasks) {
    const task = getTask(t.name);
    const order = [task.mainMetric, 'perplexity', 'acc', 'acc_norm'];
    const metrics = [...new Set(order)].filter((m) => dense.tasks[t.name].metrics[m] !== undefined);
    const chance = chanceAccuracy(t.items);
    for (const m of metrics) {
      const d = dense.tasks[t.name].metrics[m];
      const ppl = m === 'perplexity';
      const fmt = (x: number | undefined) => (ppl ? (x?.toFixed(3) ?? '-') : pct(x));
      const c = ppl ? '' : pct(chance);
      if (sparse) {
        const s = sparse.tasks[t.name].metrics[m];
        const se = sparse.tasks[t.name].metrics[`${m}_stderr`];
        rows.push([
          t.name,
          m,
          fmt(d),
          fmt(s),
          ppl ? (s - d).toFixed(3) : pct(s - d),
          se === undefined ? '' : pct(se),
          c,
          String(t.items.length),
        ]);
      } else {
        const se = dense.tasks[t.name].metrics[`${m}_stderr`];
        rows.push([t.name, m, fmt(d), se === undefined ? '' : pct(se), c, String(t.items.length)]);
      }
    }
  }
  for (const [name, d] of Object.entries(dense.texts)) {
    if (sparse) {
      const s = sparse.texts[name];
      rows.push([
        name,
        'loss (nats)',
        d.meanNll.toFixed(4),
        s.meanNll.toFixed(4),
        `×${(s.meanNll / d.meanNll).toFixed(4)}`,
        '',
        '',
        String(d.tokens),
      ]);
    } else rows.push([name, 'loss (nats)', d.meanNll.toFixed(4), '', '', String(d.tokens)]);
  }
  const sp = (r: EvalRun) => `${(100 * r.macWeightedSparsity).toFixed(1)}%`;
  return `${[
    ...table(rows, 2),
    '',
    sparse
      ? `MAC-weighted sparsity of block-site inputs during evaluation: sparse ${sp(sparse)}, dense (natural) ${sp(dense)}`
      : `MAC-weighted natural sparsity of block-site inputs during evaluation: ${sp(dense)}`,
    'Accuracies in %; ± is the standard error (sample sd / √n); chance: guessing uniformly among the choices; items: predicted tokens for a text.',
  ].join('\n')}\n`;
}
