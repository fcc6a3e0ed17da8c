import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../../errors.ts';
import { brownDocuments } from '../../eval/brown.ts';
import {
  readDocuments,
  splitDocuments,
  tokenizeDocuments,
  tokenWindows,
} from '../../eval/documents.ts';
import { type EvalRun, evaluate, type TaskInput, type TextInput } from '../../eval/evaluate.ts';
import { getTask, resolveTaskPath, TASKS } from '../../eval/tasks/registry.ts';
import { withThresholds } from '../../models/model.ts';
import { modelFacts } from '../../sparsity/plan.ts';
import { modelOptions, num, parse, positionals, str } from '../args.ts';
import { openModel } from '../common.ts';
import type { Command } from '../io.ts';
import { writeFileAtomic } from '../output.ts';
import { progress } from '../progress.ts';
import { toolVersion } from '../version.ts';

const usage =
  'actsparse eval <model> --out DIR [--thresholds FILE] [--tasks piqa,arc_easy,…|all] [--task-dir DIR] [--limit N] ' +
  '[--text FILE|brown …] [--ctx 1024] [--windows 64] [--log-samples]';

/** The shared task folder of the development layout (../shared/data/tasks beside the project). */
function defaultTaskDir(): string | undefined {
  if (process.env.ACTSPARSE_TASK_DIR) return process.env.ACTSPARSE_TASK_DIR;
  const dir = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../shared/data/tasks');
  return existsSync(dir) ? dir : undefined;
}

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
      },
      usage,
    );
    const [path] = positionals(p, 1, usage);
    const out = str(p, 'out');
    if (!out) throw new UserError('eval: --out DIR is required', `Usage: ${usage}`);
    const limit = num(p, 'limit', Number.POSITIVE_INFINITY, { min: 1, integer: true });
    const ctx = num(p, 'ctx', 1024, { min: 1, integer: true });
    const maxWindows = num(p, 'windows', 64, { min: 1, integer: true });
    const taskDir = str(p, 'task-dir') ?? defaultTaskDir();
    const texts = (p.values.text as string[] | undefined) ?? [];

    // Tasks: the named ones (their data must be found), or every task whose data is there.
    const requested = str(p, 'tasks');
    const names =
      !requested || requested === 'all'
        ? Object.keys(TASKS)
        : requested.split(',').map((s) => s.trim());
    const tasks: TaskInput[] = [];
    for (const name of names) {
      const task = getTask(name);
      if (task.builtIn) {
        tasks.push({ name, items: task.load('').slice(0, limit) });
        continue;
      }
      const file = taskDir ? resolveTaskPath(task, taskDir) : null;
      if (!file || !existsSync(file)) {
        if (requested && requested !== 'all') {
          throw new UserError(
            `no data for task ${name}${taskDir ? ` in ${taskDir}` : ''}`,
            'Give --task-dir with the task files (see the README for the layouts accepted).',
          );
        }
        io.err(`skipping ${name}: no data${taskDir ? ` in ${taskDir}` : ' (no --task-dir)'}\n`);
        continue;
      }
      tasks.push({ name, items: task.load(file).slice(0, limit) });
    }
    if (tasks.length === 0 && texts.length === 0) {
      throw new UserError(
        'eval: nothing to evaluate',
        'Give --tasks with --task-dir, or --text FILE (or --text brown).',
      );
    }

    const { model, tokenizer, ckpt } = await openModel(path, p);
    ckpt.close();
    const textInputs: TextInput[] = texts.map((t) => {
      const docs =
        t === 'brown'
          ? splitDocuments(brownDocuments(), 0, 0).heldOut.map((d) => d.text)
          : readDocuments(t);
      const windows = tokenWindows(tokenizeDocuments(docs, tokenizer), ctx + 1, maxWindows);
      if (windows.length === 0)
        throw new UserError(
          `${t}: shorter than one window of ${ctx + 1} tokens`,
          'Use a smaller --ctx.',
        );
      return { name: t === 'brown' ? 'brown (held-out cn18…cr09)' : t, windows };
    });

    const bar = (label: string) => progress(io, label);
    const runOnce = (label: string): Promise<EvalRun> => {
      let current = '';
      let report = bar(label);
      return evaluate(model, tokenizer, tasks, textInputs, (name, d, n) => {
        if (name !== current) {
          current = name;
          report = bar(`${label} ${name}`);
        }
        if (d === n || d % 50 === 0) report(d, n);
      });
    };
    const sparseLambda = Float32Array.from(model.thresholds);
    const hasThresholds = sparseLambda.some((l) => l > 0);
    let dense: EvalRun;
    let sparse: EvalRun | null = null;
    if (hasThresholds) {
      sparse = await runOnce('sparse');
      dense = await withThresholds(model, new Float32Array(sparseLambda.length), () =>
        runOnce('dense'),
      );
    } else {
      dense = await runOnce('dense');
    }

    mkdirSync(out, { recursive: true });
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
    const result = {
      formatVersion: 1,
      kind: 'actsparse.eval',
      // lm-eval's layout: results of the model as evaluated (with thresholds when given).
      results: metricsOf(sparse ?? dense),
      versions: Object.fromEntries(tasks.map((t) => [t.name, 0])),
      heldOut: textOf(sparse ?? dense),
      sparsity: {
        macWeighted: (sparse ?? dense).macWeightedSparsity,
        naturalMacWeighted: dense.macWeightedSparsity,
        perSite: (sparse ?? dense).siteSparsity.map((z, g) => ({
          block: Math.floor(g / sites.length),
          site: sites[g % sites.length].id,
          sparsity: z,
          naturalSparsity: dense.siteSparsity[g],
        })),
      },
      dense: sparse ? { results: metricsOf(dense), heldOut: textOf(dense) } : null,
      model: { file: resolve(path), ...modelFacts(model) },
      config: {
        model: resolve(path),
        thresholds: str(p, 'thresholds') ? resolve(str(p, 'thresholds')!) : null,
        tasks: tasks.map((t) => t.name),
        taskDir: taskDir ? resolve(taskDir) : null,
        limit: Number.isFinite(limit) ? limit : null,
        items: Object.fromEntries(tasks.map((t) => [t.name, t.items.length])),
        texts,
        ctx,
        windows: maxWindows,
        tokenizer: `${tokenizer.kind} (${tokenizer.source})`,
        backend: model.backend.description,
        stderr:
          'sample standard deviation / sqrt(n) (lm-eval bootstraps some metrics; this is the simple estimate)',
      },
      timing: Object.fromEntries(
        [
          ...Object.entries((sparse ?? dense).tasks),
          ...Object.entries((sparse ?? dense).texts),
        ].map(([k, v]) => [k, { seconds: v.seconds }]),
      ),
      tool: toolVersion(),
    };
    writeFileAtomic(join(out, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
    if (p.values['log-samples']) {
      for (const t of tasks) {
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
        writeFileAtomic(join(out, `samples_${t.name}.jsonl`), `${lines.join('\n')}\n`);
      }
    }
    io.out(summary(tasks, dense, sparse));
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
