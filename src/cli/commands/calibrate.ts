import { resolve } from 'node:path';
import { formatText } from '../../formats/read.ts';
import { ThresholdsFile } from '../../formats/thresholds.ts';
import { sha256OfPath } from '../../io/hash.ts';
import { type CalibrationConfig, calibrate } from '../../sparsity/calibrate.ts';
import { toolVersion } from '../../version.ts';
import {
  backendOption,
  checkJson,
  contextLength,
  ctxOption,
  forceOption,
  jsonOption,
  MODEL,
  openModel,
  tokenizerOption,
} from '../common.ts';
import type { Command } from '../io.ts';
import { humanOut, prepareRunFolder, writeOutput } from '../output.ts';
import { progress } from '../progress.ts';

/** The files of a calibration run (src/sparsity/calibrate.ts). */
const CALIBRATION_FILES = ['journal.jsonl', 'thresholds.json', 'calibration.csv', 'config.json'];

export const calibrateCommand: Command = {
  name: 'calibrate',
  summary: 'choose a threshold per site on calibration data (the paper’s search, uniform, TEAL)',
  description:
    'Chooses the threshold λ of every site (the input of each linear layer) on calibration windows, block by block. The paper’s method tries keep-fractions K from --start-k down and keeps the smallest whose loss stays within --loss-inc of the loss before the site. Writes thresholds.json, calibration.csv (every candidate tried) and config.json into --out, journaling each decided site so that an interrupted run continues with --resume.',
  stoppable: true,
  positionals: [MODEL],
  options: [
    {
      name: 'out',
      type: 'string',
      value: 'DIR',
      required: true,
      help: 'The run folder: thresholds.json, calibration.csv, config.json, journal.jsonl.',
    },
    {
      name: 'data',
      type: 'string',
      value: 'brown|FILE',
      default: 'brown',
      help: 'Calibration text: the built-in Brown corpus, or a .txt / .jsonl file (its last tenth is held out).',
    },
    {
      name: 'method',
      type: 'choice',
      value: 'NAME',
      choices: ['paper', 'uniform', 'teal', 'none'],
      default: 'paper',
      help: 'paper: the loss-bounded search of arXiv 2501.16337; uniform: the same K at every site; teal: TEAL’s greedy block allocation; none: dense (natural zeros only).',
    },
    {
      name: 'loss-inc',
      type: 'number',
      min: 1,
      max: 10,
      default: 1.0005,
      help: 'paper: the largest loss ratio a site may add (1.0005 = +0.05%).',
    },
    {
      name: 'grid',
      type: 'choice',
      value: 'NAME',
      choices: ['linear', 'exp'],
      default: 'linear',
      help: 'paper: keep-fractions K tried, evenly spaced (linear) or geometric (exp).',
    },
    {
      name: 'start-k',
      type: 'number',
      min: 0.01,
      max: 1,
      default: 0.9,
      help: 'paper: the first (largest) keep-fraction tried.',
    },
    {
      name: 'k-num',
      type: 'integer',
      min: 1,
      max: 100,
      default: 10,
      help: 'paper: how many keep-fractions the grid has.',
    },
    {
      name: 'faithful',
      type: 'boolean',
      help: 'paper: reproduce the authors’ code exactly, quirks included (METHOD.md §3).',
    },
    {
      name: 'keep',
      type: 'number',
      min: 0,
      max: 1,
      default: 0.5,
      help: 'uniform: the keep-fraction K at every site.',
    },
    {
      name: 'target-sparsity',
      type: 'number',
      min: 0,
      max: 0.95,
      default: 0.5,
      help: 'teal: the MAC-weighted share of zeros to reach in every block.',
    },
    {
      name: 'statistic',
      type: 'choice',
      value: 'NAME',
      choices: ['per-token', 'pooled'],
      default: 'per-token',
      help: 'How λ is read from a keep-fraction: the mean of per-token quantiles of |x| (the authors’), or one quantile over all tokens.',
    },
    {
      name: 'docs',
      type: 'integer',
      min: 1,
      default: 64,
      help: 'Calibration documents drawn (seeded) from the data.',
    },
    ctxOption('calibration'),
    {
      name: 'windows',
      type: 'integer',
      min: 1,
      default: 64,
      help: 'Calibration windows of ctx + 1 tokens.',
    },
    {
      name: 'seed',
      type: 'integer',
      min: 0,
      max: 2 ** 32 - 1,
      default: 42,
      help: 'Seed of the document sample.',
    },
    {
      name: 'resume',
      type: 'boolean',
      help: 'Continue the interrupted run in --out (the same command otherwise).',
    },
    forceOption,
    tokenizerOption,
    backendOption,
    jsonOption('thresholds.json'),
  ],
  examples: [
    'actsparse calibrate models/rwkv4-brown-3m.safetensors --out runs/cal --docs 16 --ctx 512 --windows 16',
    'actsparse calibrate RWKV-4-Pile-430M.pth --data minipile.jsonl --loss-inc 1.001 --out runs/430m',
  ],
  async run(a, io) {
    const [path] = a.positionals;
    const out = a.str('out')!;
    const json = checkJson(a, io);
    const say = humanOut(io, json);
    const start = prepareRunFolder(out, {
      option: '--out',
      what: 'a calibration',
      files: CALIBRATION_FILES,
      force: a.flag('force'),
      resume: a.flag('resume'),
    });
    if (start) io.err(`${start}\n`);
    const { model, tokenizer, ckpt } = await openModel(path, a, io);
    ckpt.close();
    const cfg: CalibrationConfig = {
      method: a.str('method') as CalibrationConfig['method'],
      data: a.str('data')!,
      docs: a.num('docs')!,
      ctx: contextLength(a, model),
      windows: a.num('windows')!,
      seed: a.num('seed')!,
      statistic: a.str('statistic') as CalibrationConfig['statistic'],
      lossInc: a.num('loss-inc')!,
      grid: a.str('grid') as CalibrationConfig['grid'],
      startK: a.num('start-k')!,
      kNum: a.num('k-num')!,
      faithful: a.flag('faithful'),
      keep: a.num('keep')!,
      targetSparsity: a.num('target-sparsity')!,
    };
    const t0 = performance.now();
    const { plan, decidedNow } = await calibrate(
      model,
      tokenizer,
      { file: resolve(path), fileSha256: sha256OfPath(path), tool: toolVersion() },
      cfg,
      out,
      {
        resume: a.flag('resume'),
        onProgress: progress(io, `calibrate ${cfg.method}`),
        log: (line) => io.err(`calibrate: ${line}\n`),
        signal: io.signal,
      },
    );
    const s = (performance.now() - t0) / 1000;
    const r = plan.results;
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const lines = [
      `model ${plan.model.architecture} ${plan.model.nLayer}x${plan.model.nEmbd}, ${plan.data.windows} windows of ${plan.data.ctx} tokens from ${plan.data.documents.length} documents (${plan.data.description})`,
      `method ${cfg.method} ${JSON.stringify(plan.method.params)}`,
      `calibration loss: dense ${r.denseLoss.toFixed(5)} → ${r.finalLoss.toFixed(5)} (×${r.lossGrowth.toFixed(5)})`,
      r.heldOut
        ? `held-out loss (${r.heldOut.windows} windows): dense ${r.heldOut.denseLoss.toFixed(5)} → ${r.heldOut.sparseLoss.toFixed(5)} (×${(r.heldOut.sparseLoss / r.heldOut.denseLoss).toFixed(5)})`
        : 'held-out loss: no held-out window (too little held-out text)',
      `sparsity, MAC-weighted over block sites: ${pct(r.sparsity.macWeighted)} (natural ${pct(r.sparsity.naturalMacWeighted)}); head, never thresholded: ${pct(r.sparsity.headMacShare)} of MACs`,
      'per site (mean over blocks):',
    ];
    for (const id of plan.model.sitesPerBlock) {
      const rows = plan.sites.filter((x) => x.site === id);
      const mean = (f: (x: (typeof rows)[number]) => number) =>
        rows.reduce((acc, x) => acc + f(x), 0) / rows.length;
      lines.push(
        `  ${id.padEnd(16)} ${pct(mean((x) => x.sparsity)).padStart(6)}  (natural ${pct(mean((x) => x.naturalSparsity))}, K ${rows.map((x) => x.k).join(' ')})`,
      );
    }
    const w = r.work;
    lines.push(
      `work: ${(w.blockTokens / 1e6).toFixed(2)} M block-token forwards (${w.lossEvaluations} loss evaluations, ${w.statisticsPasses} statistics passes); ` +
        `the authors' way: ${(w.authorsBlockTokens / 1e6).toFixed(2)} M (${(w.authorsBlockTokens / w.blockTokens).toFixed(2)}×)`,
      `wrote ${out}/thresholds.json, calibration.csv, config.json (${decidedNow} sites decided in ${s.toFixed(1)} s${decidedNow < plan.sites.length ? `, ${plan.sites.length - decidedNow} from the journal` : ''})`,
    );
    say(`${lines.join('\n')}\n`);
    if (json) writeOutput(io, json, formatText(ThresholdsFile, plan, 'thresholds.json'));
  },
};
