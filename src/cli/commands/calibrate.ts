import { resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import { sha256OfPath } from '../../io/hash.ts';
import { type CalibrationConfig, calibrate } from '../../sparsity/calibrate.ts';
import { modelOptions, num, parse, positionals, str } from '../args.ts';
import { openModel } from '../common.ts';
import type { Command } from '../io.ts';
import { progress } from '../progress.ts';
import { toolVersion } from '../version.ts';

const usage =
  'actsparse calibrate <model> --out DIR [--data brown|FILE] [--method paper|uniform|teal|none] [--loss-inc 1.0005] ' +
  '[--grid linear|exp] [--start-k 0.9] [--k-num 10] [--faithful] [--keep 0.5] [--target-sparsity 0.5] ' +
  '[--statistic per-token|pooled] [--docs 64] [--ctx 1024] [--windows 64] [--seed 42] [--resume]';

function choice<T extends string>(
  p: ReturnType<typeof parse>,
  name: string,
  values: readonly T[],
  def: T,
): T {
  const v = str(p, name) ?? def;
  if (!values.includes(v as T))
    throw new UserError(`--${name} ${v}: expected one of ${values.join(', ')}`);
  return v as T;
}

export const calibrateCommand: Command = {
  name: 'calibrate',
  summary: 'choose a threshold per site on calibration data (the paper’s search, uniform, TEAL)',
  usage,
  async run(args, io) {
    const p = parse(
      'calibrate',
      args,
      {
        ...modelOptions,
        out: { type: 'string' },
        data: { type: 'string' },
        method: { type: 'string' },
        'loss-inc': { type: 'string' },
        grid: { type: 'string' },
        'start-k': { type: 'string' },
        'k-num': { type: 'string' },
        faithful: { type: 'boolean' },
        keep: { type: 'string' },
        'target-sparsity': { type: 'string' },
        statistic: { type: 'string' },
        docs: { type: 'string' },
        ctx: { type: 'string' },
        windows: { type: 'string' },
        seed: { type: 'string' },
        resume: { type: 'boolean' },
      },
      usage,
    );
    const [path] = positionals(p, 1, usage);
    if (str(p, 'thresholds'))
      throw new UserError('calibrate starts from the dense model; --thresholds does not apply');
    const out = str(p, 'out');
    if (!out) throw new UserError('calibrate: --out DIR is required', `Usage: ${usage}`);
    const cfg: CalibrationConfig = {
      method: choice(p, 'method', ['paper', 'uniform', 'teal', 'none'] as const, 'paper'),
      data: str(p, 'data') ?? 'brown',
      docs: num(p, 'docs', 64, { min: 1, integer: true }),
      ctx: num(p, 'ctx', 1024, { min: 1, max: 1 << 20, integer: true }),
      windows: num(p, 'windows', 64, { min: 1, integer: true }),
      seed: num(p, 'seed', 42, { min: 0, max: 2 ** 32 - 1, integer: true }),
      statistic: choice(p, 'statistic', ['per-token', 'pooled'] as const, 'per-token'),
      lossInc: num(p, 'loss-inc', 1.0005, { min: 1, max: 10 }),
      grid: choice(p, 'grid', ['linear', 'exp'] as const, 'linear'),
      startK: num(p, 'start-k', 0.9, { min: 0.01, max: 1 }),
      kNum: num(p, 'k-num', 10, { min: 1, max: 100, integer: true }),
      faithful: !!p.values.faithful,
      keep: num(p, 'keep', 0.5, { min: 0, max: 1 }),
      targetSparsity: num(p, 'target-sparsity', 0.5, { min: 0, max: 0.95 }),
    };
    const { model, tokenizer, ckpt } = await openModel(path, p);
    ckpt.close();
    const t0 = performance.now();
    const { plan, decidedNow } = await calibrate(
      model,
      tokenizer,
      { file: resolve(path), fileSha256: sha256OfPath(path), tool: toolVersion() },
      cfg,
      out,
      { resume: !!p.values.resume, onProgress: progress(io, `calibrate ${cfg.method}`) },
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
        rows.reduce((a, x) => a + f(x), 0) / rows.length;
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
    io.out(`${lines.join('\n')}\n`);
  },
};
