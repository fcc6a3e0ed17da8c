import { UserError } from '../../errors.ts';
import { defaultThreads } from '../../train/parallel.ts';
import { storedTrainConfig, TRAIN_DEFAULTS, type TrainConfig, train } from '../../train/trainer.ts';
import { num, parse, positionals, str } from '../args.ts';
import type { Command } from '../io.ts';

const usage =
  'actsparse train --out DIR [--data brown|FILE] [--layers 6] [--embd 192] [--ffn 4·embd] ' +
  '[--ctx 128] [--batch 16] [--steps 2000] [--lr 6e-4] [--min-lr lr/10] [--warmup 100] ' +
  '[--weight-decay 0.1] [--grad-clip 1] [--seed 1] [--save-every 100] [--eval-every 100] ' +
  '[--eval-windows 64] [--dtype f16|bf16|f32] [--threads 1|2] [--resume]';

function fmt(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train a small byte-level RWKV-4 from text (AdamW, checkpoints, --resume)',
  usage,
  run(args, io) {
    const p = parse(
      'train',
      args,
      {
        out: { type: 'string' },
        data: { type: 'string' },
        layers: { type: 'string' },
        embd: { type: 'string' },
        ffn: { type: 'string' },
        ctx: { type: 'string' },
        batch: { type: 'string' },
        steps: { type: 'string' },
        lr: { type: 'string' },
        'min-lr': { type: 'string' },
        warmup: { type: 'string' },
        'weight-decay': { type: 'string' },
        'grad-clip': { type: 'string' },
        seed: { type: 'string' },
        'save-every': { type: 'string' },
        'eval-every': { type: 'string' },
        'eval-windows': { type: 'string' },
        dtype: { type: 'string' },
        threads: { type: 'string' },
        resume: { type: 'boolean' },
      },
      usage,
    );
    positionals(p, 0, usage);
    const out = str(p, 'out');
    if (!out) throw new UserError('train: --out DIR is required', `Usage: ${usage}`);
    // A resumed run keeps its configuration: options not given come from it.
    const resume = !!p.values.resume;
    const stored = resume ? storedTrainConfig(out) : null;
    const d: TrainConfig = stored ?? { ...TRAIN_DEFAULTS, threads: defaultThreads() };
    const int = (name: string, def: number, min = 1, max = 1 << 20) =>
      num(p, name, def, { min, max, integer: true });
    const embd = int('embd', d.embd, 1, 8192);
    const lr = num(p, 'lr', d.lr, { min: 1e-8, max: 1 });
    const dtype = str(p, 'dtype') ?? d.dtype;
    if (dtype !== 'f16' && dtype !== 'bf16' && dtype !== 'f32')
      throw new UserError(`--dtype ${dtype}: expected one of f16, bf16, f32`);
    const cfg: TrainConfig = {
      ...d,
      data: str(p, 'data') ?? d.data,
      layers: int('layers', d.layers, 1, 256),
      embd,
      ffn: int('ffn', stored ? d.ffn : 4 * embd, 1, 65536),
      ctx: int('ctx', d.ctx, 1, 65536),
      batch: int('batch', d.batch, 1, 4096),
      steps: int('steps', d.steps, 1, 1e9),
      lr,
      minLr: num(p, 'min-lr', stored ? d.minLr : lr / 10, { min: 0, max: lr }),
      warmup: int('warmup', d.warmup, 0, 1e9),
      weightDecay: num(p, 'weight-decay', d.weightDecay, { min: 0, max: 10 }),
      gradClip: num(p, 'grad-clip', d.gradClip, { min: 0 }),
      seed: int('seed', d.seed, 0, 2 ** 32 - 1),
      saveEvery: int('save-every', d.saveEvery, 1, 1e9),
      evalEvery: int('eval-every', d.evalEvery, 1, 1e9),
      evalWindows: int('eval-windows', d.evalWindows, 1, 1e6),
      dtype,
      threads: int('threads', d.threads, 1, 2) as 1 | 2,
    };
    // A line per evaluation (and the first step), with the rate and the ETA.
    const r = train(cfg, out, {
      resume,
      onStep(s) {
        if (s.step !== 1 && s.heldOut === null && s.step !== s.steps) return;
        const held = s.heldOut === null ? '' : `, held-out ${s.heldOut.toFixed(4)}`;
        io.err(
          `train step ${s.step}/${s.steps}: loss ${s.loss.toFixed(4)}${held}; ` +
            `${(s.tokensPerSecond / 1000).toFixed(2)}k tokens/s, ${fmt(s.elapsedSeconds)} elapsed, ETA ${fmt(s.etaSeconds)}\n`,
        );
      },
    });
    const bpb = (x: number) => (x / Math.LN2).toFixed(3);
    const lines = [
      `model rwkv4 ${cfg.layers}x${cfg.embd} (ffn ${cfg.ffn}, vocab 256 bytes): ${(r.parameters / 1e6).toFixed(2)} M parameters`,
      `data ${r.data.description}: ${r.data.trainTokens} training bytes; held-out ${r.data.heldOutTokens} bytes, ${r.data.heldOutWindows} windows of ${cfg.ctx + 1}`,
      `steps ${r.step}/${cfg.steps} (${r.stepsNow} now), batch ${cfg.batch}×${cfg.ctx}, lr ${cfg.lr} (warmup ${cfg.warmup}, cosine to ${Number(cfg.minLr.toPrecision(3))})`,
      `final train loss ${r.finalLoss.toFixed(4)} (${bpb(r.finalLoss)} bits/byte)` +
        (r.heldOut === null
          ? '; no held-out window'
          : `; held-out ${r.heldOut.toFixed(4)} (${bpb(r.heldOut)} bits/byte)`),
      `throughput ${(r.tokensPerSecond / 1000).toFixed(2)}k tokens/s (${r.matmul})`,
      r.model
        ? `wrote ${r.model} (${cfg.dtype}), checkpoint, optimizer state, train-state.json, loss.csv`
        : `stopped at step ${r.step}; continue with --resume`,
    ];
    io.out(`${lines.join('\n')}\n`);
  },
};
