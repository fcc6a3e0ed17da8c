import { join, resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import type { EvalRun, TaskInput } from '../../eval/evaluate.ts';
import { resolveTasks, resolveTexts, runEval } from '../../eval/run.ts';
import { getTask } from '../../eval/tasks/registry.ts';
import { modelOptions, num, parse, positionals, str } from '../args.ts';
import { openModel } from '../common.ts';
import type { Command } from '../io.ts';
import { progress } from '../progress.ts';

const usage =
  'actsparse eval <model> --out DIR [--thresholds FILE] [--tasks piqa,arc_easy,…|all] [--task-dir DIR] [--limit N] ' +
  '[--text FILE|brown …] [--ctx 1024] [--windows 64] [--log-samples] [--resume]';

export const evalCommand: Command = {
  name: 'eval',
  summary:
    'zero-shot accuracy (lm-evaluation-harness scoring) and held-out loss, dense and with thresholds',
  usage,
  async run(args, io) {
    const p = parse(
      'eval',
      args,
      {
        ...modelOptions,
        out: { type: 'string' },
        tasks: { type: 'string' },
        'task-dir': { type: 'string' },
        limit: { type: 'string' },
        text: { type: 'string', multiple: true },
        ctx: { type: 'string' },
        windows: { type: 'string' },
        'log-samples': { type: 'boolean' },
        resume: { type: 'boolean' },
      },
      usage,
    );
    const [path] = positionals(p, 1, usage);
    const out = str(p, 'out');
    if (!out) throw new UserError('eval: --out DIR is required', `Usage: ${usage}`);
    const limitArg = str(p, 'limit');
    const limit =
      limitArg === undefined ? undefined : num(p, 'limit', 0, { min: Number.MIN_VALUE });
    if (limit !== undefined && limit > 1 && !Number.isInteger(limit))
      throw new UserError(
        `eval: --limit ${limitArg}: a whole number of items, or a fraction below 1`,
      );
    const ctx = num(p, 'ctx', 1024, { min: 1, integer: true });
    const maxWindows = num(p, 'windows', 64, { min: 1, integer: true });
    const taskDir = str(p, 'task-dir') ?? process.env.ACTSPARSE_TASK_DIR;
    const texts = (p.values.text as string[] | undefined) ?? [];
    const requested = str(p, 'tasks');
    const names =
      !requested || requested === 'all' ? 'all' : requested.split(',').map((s) => s.trim());
    const { tasks, skipped } = resolveTasks(names, taskDir, limit);
    for (const s of skipped) io.err(`skipping ${s}\n`);
    if (tasks.length === 0 && texts.length === 0) {
      throw new UserError(
        'eval: nothing to evaluate',
        'Give --tasks with --task-dir, or --text FILE (or --text brown).',
      );
    }

    const { model, tokenizer, ckpt } = openModel(path, p);
    ckpt.close();
    const units = [...tasks, ...resolveTexts(texts, tokenizer, ctx, maxWindows)];
    const thresholds = str(p, 'thresholds');
    let report = progress(io, 'eval');
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
        logSamples: !!p.values['log-samples'],
      },
      out,
      {
        resume: !!p.values.resume,
        onUnit: (pass, unit, replayed) => {
          if (replayed) io.err(`${pass} ${unit}: from the journal\n`);
          report = progress(io, `${pass} ${unit}`);
        },
        onProgress: (_pass, _unit, d, n) => {
          if (d === n || d % 50 === 0) report(d, n);
        },
      },
    );
    io.out(summary(tasks, outcome.dense, outcome.sparse));
    io.err(
      `wrote ${join(out, 'results.json')}${p.values['log-samples'] ? ' and samples_<task>.jsonl' : ''}\n`,
    );
  },
};

function summary(tasks: readonly TaskInput[], dense: EvalRun, sparse: EvalRun | null): string {
  const pct = (x: number | undefined) => (x === undefined ? '-' : (100 * x).toFixed(2));
  const lines: string[] = [];
  const head = sparse
    ? ['task', 'metric', 'dense', 'sparse', 'Δ', '± (sparse)', 'items']
    : ['task', 'metric', 'value', '±', 'items'];
  const rows: string[][] = [head];
  for (const t of tasks) {
    const task = getTask(t.name);
    const metrics =
      task.mainMetric === 'perplexity'
        ? ['perplexity', 'acc']
        : task.mainMetric === 'acc_norm'
          ? ['acc_norm', 'acc']
          : ['acc'];
    for (const m of metrics) {
      const d = dense.tasks[t.name].metrics[m];
      const fmt = (x: number | undefined) => (m === 'perplexity' ? (x?.toFixed(3) ?? '-') : pct(x));
      if (sparse) {
        const s = sparse.tasks[t.name].metrics[m];
        const se = sparse.tasks[t.name].metrics[`${m}_stderr`];
        rows.push([
          t.name,
          m,
          fmt(d),
          fmt(s),
          m === 'perplexity' ? (s - d).toFixed(3) : pct(s - d),
          se === undefined ? '' : pct(se),
          String(t.items.length),
        ]);
      } else {
        const se = dense.tasks[t.name].metrics[`${m}_stderr`];
        rows.push([t.name, m, fmt(d), se === undefined ? '' : pct(se), String(t.items.length)]);
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
        String(d.tokens),
      ]);
    } else rows.push([name, 'loss (nats)', d.meanNll.toFixed(4), '', String(d.tokens)]);
  }
  const w = head.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows)
    lines.push(r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '));
  const sp = (r: EvalRun) => `${(100 * r.macWeightedSparsity).toFixed(1)}%`;
  lines.push(
    '',
    sparse
      ? `MAC-weighted sparsity of block-site inputs during evaluation: sparse ${sp(sparse)}, dense (natural) ${sp(dense)}`
      : `MAC-weighted natural sparsity of block-site inputs during evaluation: ${sp(dense)}`,
    'Accuracies in %; ± is the standard error (sample sd / √n).',
  );
  return `${lines.join('\n')}\n`;
}
