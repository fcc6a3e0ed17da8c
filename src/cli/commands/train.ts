import { UserError } from '../../errors.ts';
import { defaultThreads } from '../../train/parallel.ts';
import { storedTrainConfig, TRAIN_DEFAULTS, type TrainConfig, train } from '../../train/trainer.ts';
import { forceOption, formatDuration } from '../common.ts';
import type { Command } from '../io.ts';
import type { OptionSpec } from '../options.ts';
import { prepareRunFolder } from '../output.ts';

const D = TRAIN_DEFAULTS;
/** A whole-number option whose default is the trainer's (or, with --resume, the run's). */
const int = (
  name: string,
  help: string,
  min: number,
  max: number,
  def: number | string,
): OptionSpec => ({
  name,
  type: 'integer',
  min,
  max,
  help,
  defaultText: `${def}; with --resume, the run's`,
});

export const trainCommand: Command = {
  name: 'train',
  summary: 'train a small byte-level RWKV-4 from text (AdamW, checkpoints, --resume)',
  description:
    'Trains a byte-level RWKV-4 from scratch (AdamW, warm-up then cosine learning rate, gradient clipping), saving a checkpoint every --save-every steps and when interrupted; --resume continues a run exactly (the same batches), taking every option not given from the run. The embedded model was made this way (models/README.md).',
  stoppable: true,
  positionals: [],
  options: [
    {
      name: 'out',
      type: 'string',
      value: 'DIR',
      required: true,
      help: 'The run folder: model.safetensors at the end; checkpoint, optimizer state, train-state.json and loss.csv as it goes.',
    },
    {
      name: 'data',
      type: 'string',
      value: 'brown|FILE',
      help: 'Training text: the Brown corpus without its held-out tenth, or a .txt / .jsonl file.',
      defaultText: `${D.data}; with --resume, the run's`,
    },
    int('layers', 'Blocks.', 1, 256, D.layers),
    int('embd', 'Embedding width n_embd.', 1, 8192, D.embd),
    int('ffn', 'Channel-mix width.', 1, 65536, '4 × embd'),
    int('ctx', 'Bytes per training window.', 1, 65536, D.ctx),
    int('batch', 'Windows per step.', 1, 4096, D.batch),
    int('steps', 'Optimizer steps in all.', 1, 1e9, D.steps),
    {
      name: 'lr',
      type: 'number',
      min: 1e-8,
      max: 1,
      help: 'Peak learning rate.',
      defaultText: `${D.lr}; with --resume, the run's`,
    },
    {
      name: 'min-lr',
      type: 'number',
      min: 0,
      max: 1,
      help: 'Learning rate at the end of the cosine decay (at most --lr).',
      defaultText: 'lr / 10',
    },
    int('warmup', 'Steps of linear warm-up.', 0, 1e9, D.warmup),
    {
      name: 'weight-decay',
      type: 'number',
      min: 0,
      max: 10,
      help: 'AdamW weight decay on matrices.',
      defaultText: String(D.weightDecay),
    },
    {
      name: 'grad-clip',
      type: 'number',
      min: 0,
      help: 'Clip the gradient norm to this (0: no clipping).',
      defaultText: String(D.gradClip),
    },
    int('seed', 'Seed of the initial weights and the batches.', 0, 2 ** 32 - 1, D.seed),
    int('save-every', 'Steps between checkpoints.', 1, 1e9, D.saveEvery),
    int('eval-every', 'Steps between held-out losses.', 1, 1e9, D.evalEvery),
    int('eval-windows', 'Held-out windows per held-out loss.', 1, 1e6, D.evalWindows),
    {
      name: 'dtype',
      type: 'choice',
      value: 'TYPE',
      choices: ['f16', 'bf16', 'f32'],
      help: 'dtype of model.safetensors (training is in f32).',
      defaultText: `${D.dtype}; with --resume, the run's`,
    },
    int('threads', 'Threads: 2 splits each batch over two workers.', 1, 2, 'all cores, up to 2'),
    {
      name: 'resume',
      type: 'boolean',
      help: 'Continue the run in --out from its last checkpoint.',
    },
    forceOption,
  ],
  examples: [
    'actsparse train --out runs/embed --ctx 256 --batch 8 --steps 3000 --threads 2 --seed 1',
    'actsparse train --out runs/embed --resume',
  ],
  async run(a, io) {
    const out = a.str('out')!;
    const resume = a.flag('resume');
    const start = prepareRunFolder(out, {
      option: '--out',
      what: 'a training run',
      files: [
        'train-state.json',
        'checkpoint.safetensors',
        'optimizer.safetensors',
        'loss.csv',
        'model.safetensors',
      ],
      force: a.flag('force'),
      resume,
    });
    if (start) io.err(`${start}\n`);
    // A resumed run keeps its configuration: options not given come from it.
    const stored = resume ? storedTrainConfig(out) : null;
    const d: TrainConfig = stored ?? { ...D, threads: defaultThreads() };
    const num = (name: string, def: number) => a.num(name) ?? def;
    const embd = num('embd', d.embd);
    const lr = num('lr', d.lr);
    const minLr = num('min-lr', stored ? d.minLr : lr / 10);
    if (minLr > lr) throw new UserError(`--min-lr ${minLr} must be ≤ --lr ${lr}`);
    const cfg: TrainConfig = {
      ...d,
      data: a.str('data') ?? d.data,
      layers: num('layers', d.layers),
      embd,
      ffn: num('ffn', stored ? d.ffn : 4 * embd),
      ctx: num('ctx', d.ctx),
      batch: num('batch', d.batch),
      steps: num('steps', d.steps),
      lr,
      minLr,
      warmup: num('warmup', d.warmup),
      weightDecay: num('weight-decay', d.weightDecay),
      gradClip: num('grad-clip', d.gradClip),
      seed: num('seed', d.seed),
      saveEvery: num('save-every', d.saveEvery),
      evalEvery: num('eval-every', d.evalEvery),
      evalWindows: num('eval-windows', d.evalWindows),
      dtype: (a.str('dtype') as TrainConfig['dtype'] | undefined) ?? d.dtype,
      threads: num('threads', d.threads),
    };
    // A line per evaluation (and the first step), with the rate and the ETA.
    const r = await train(cfg, out, {
      resume,
      signal: io.signal,
      onStep(s) {
        if (s.step !== 1 && s.heldOut === null && s.step !== s.steps) return;
        const held = s.heldOut === null ? '' : `, held-out ${s.heldOut.toFixed(4)}`;
        io.err(
          `train step ${s.step}/${s.steps}: loss ${s.loss.toFixed(4)}${held}; ` +
            `${(s.tokensPerSecond / 1000).toFixed(2)}k tokens/s, ${formatDuration(s.elapsedSeconds)} elapsed, ETA ${formatDuration(s.etaSeconds)}\n`,
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
