/**
 * A training run from text to a model directory:
 *
 *   checkpoint.safetensors  weights (f32)   ┐ every `saveEvery` steps, committed together:
 *   optimizer.safetensors   Adam moments    │ both are written as *.next, then
 *   train-state.json        step, rng state,│ train-state.json (the commit point), then the
 *                           config, loss log┘ *.next files are renamed into place
 *   loss.csv                a row per step: lr, train loss, grad norm, held-out loss
 *                           (every `evalEvery` steps), tokens/s
 *   model.safetensors       the final weights in the chosen dtype (loads with Rwkv4.load)
 *
 * Byte-level: tokens are UTF-8 bytes, each document followed by a 0 byte. Training windows
 * of ctx + 1 bytes start at seeded random offsets in the training documents; the held-out
 * documents (the corpus's last tenth, `splitDocuments`) are never trained on and give
 * the held-out loss on fixed windows (the text windows of data/windows.ts, as every
 * command scores a text). The products go through train/matmul.ts (which says why not
 * through the models' Backend).
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { loadCorpus, splitDocuments, tokenizeDocuments } from '../data/documents.ts';
import { textWindows } from '../data/windows.ts';
import { Interrupted, UserError } from '../errors.ts';
import { openSafetensors, writeAll, writeAtomically, writeSafetensors } from '../io/safetensors.ts';
import { ByteTokenizer } from '../io/tokenizer.ts';
import type { Rwkv4Config } from '../models/rwkv4.ts';
import { Stopped, stopPoint } from '../util/cancel.ts';
import { oneLine } from '../util/files.ts';
import { type AdamWConfig, adamwUpdate, clipGradNorm, learningRate } from './adamw.ts';
import type { Matmul } from './matmul.ts';
import { dataParallel, type GradEngine, sharedF32, singleThread } from './parallel.ts';
import { initRwkv4, ParamSet } from './params.ts';
import { Rng } from './rng.ts';

// ---------------------------------------------------------------- configuration

export const TrainConfig = z.object({
  /** `brown` or a .txt / .jsonl file. */
  data: z.string(),
  layers: z.number().int().min(1),
  embd: z.number().int().min(1),
  /** Channel-mix width (4·embd in every release). */
  ffn: z.number().int().min(1),
  ctx: z.number().int().min(1),
  batch: z.number().int().min(1),
  steps: z.number().int().min(1),
  lr: z.number().positive(),
  /** Floor of the cosine decay. */
  minLr: z.number().min(0),
  warmup: z.number().int().min(0),
  seed: z.number().int().min(0),
  beta1: z.number(),
  beta2: z.number(),
  eps: z.number(),
  weightDecay: z.number().min(0),
  /** Global-norm clipping threshold; 0 = none. */
  gradClip: z.number().min(0),
  saveEvery: z.number().int().min(1),
  evalEvery: z.number().int().min(1),
  /** Held-out windows per evaluation (spread evenly over the held-out text). */
  evalWindows: z.number().int().min(1),
  /** dtype of model.safetensors. */
  dtype: z.enum(['f32', 'f16', 'bf16']),
  /** 2: data parallel over two threads (parallel.ts). */
  threads: z.number().int().min(1).max(2),
});
export type TrainConfig = z.infer<typeof TrainConfig>;

export const TRAIN_DEFAULTS: TrainConfig = {
  data: 'brown',
  layers: 6,
  embd: 192,
  ffn: 768,
  ctx: 128,
  batch: 16,
  steps: 2000,
  lr: 6e-4,
  minLr: 6e-5,
  warmup: 100,
  seed: 1,
  beta1: 0.9,
  beta2: 0.99,
  eps: 1e-8,
  weightDecay: 0.1,
  gradClip: 1,
  saveEvery: 100,
  evalEvery: 100,
  evalWindows: 64,
  dtype: 'f16',
  threads: 1,
};

/** Options that change the numbers of a run: a resume must keep them. */
const FIXED: (keyof TrainConfig)[] = [
  'data',
  'layers',
  'embd',
  'ffn',
  'ctx',
  'batch',
  'steps',
  'lr',
  'minLr',
  'warmup',
  'seed',
  'beta1',
  'beta2',
  'eps',
  'weightDecay',
  'gradClip',
  'evalWindows',
  'threads',
];

const LogRow = z.object({
  step: z.number().int(),
  lr: z.number(),
  loss: z.number(),
  gradNorm: z.number(),
  heldOut: z.number().nullable(),
  tokensPerSecond: z.number(),
  elapsedSeconds: z.number(),
});
export type LogRow = z.infer<typeof LogRow>;

const TrainState = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.train-state'),
  /** Optimizer steps done. */
  step: z.number().int().min(0),
  rngState: z.number().int().min(0).max(0xffffffff),
  config: TrainConfig,
  data: z.object({
    description: z.string(),
    trainTokens: z.number().int(),
    heldOutTokens: z.number().int(),
    sha256: z.string(),
  }),
  log: z.array(LogRow),
});
type TrainState = z.infer<typeof TrainState>;

// ---------------------------------------------------------------- data

export interface TrainData {
  description: string;
  /** Training bytes (documents in seeded order, each followed by 0). */
  train: Uint8Array;
  /** Held-out windows of ctx + 1 bytes. */
  heldOut: Uint8Array[];
  heldOutTokens: number;
  /** sha256 of the training bytes: a resume must see the same data. */
  sha256: string;
}

export function loadTrainData(cfg: TrainConfig): TrainData {
  const corpus = loadCorpus(cfg.data);
  const split = splitDocuments(corpus.docs, corpus.docs.length, cfg.seed);
  const tok = new ByteTokenizer();
  const train = Uint8Array.from(
    tokenizeDocuments(
      split.calibration.map((d) => d.text),
      tok,
    ),
  );
  if (train.length < cfg.ctx + 1) {
    throw new UserError(
      `${cfg.data}: ${train.length} training bytes, fewer than one window of ${cfg.ctx + 1}`,
      'Use more text or a smaller --ctx.',
    );
  }
  const held = tokenizeDocuments(
    split.heldOut.map((d) => d.text),
    tok,
  );
  // The text windows of the one text loss (data/windows.ts), full-length ones (the
  // trainer's batches are ctx wide), spread evenly over the held-out text.
  const all = textWindows(held, cfg.ctx).filter((w) => w.length === cfg.ctx + 1);
  const n = Math.min(cfg.evalWindows, all.length);
  const heldOut = Array.from({ length: n }, (_, i) =>
    Uint8Array.from(all[Math.floor((i * all.length) / n)]),
  );
  return {
    description: corpus.description,
    train,
    heldOut,
    heldOutTokens: held.length,
    sha256: createHash('sha256').update(train).digest('hex'),
  };
}

/** B windows of ctx + 1 bytes at random offsets into the training bytes. */
function sampleBatch(out: Int32Array, data: Uint8Array, B: number, size: number, rng: Rng): void {
  const starts = data.length - size + 1;
  for (let b = 0; b < B; b++) {
    const s = rng.int(starts);
    for (let i = 0; i < size; i++) out[b * size + i] = data[s + i];
  }
}

// ---------------------------------------------------------------- the run

export interface TrainProgress {
  step: number;
  steps: number;
  loss: number;
  heldOut: number | null;
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
}

export interface TrainOptions {
  resume?: boolean;
  /** Stop (after saving) once this many steps are done: for tests of resume. */
  stopAfter?: number;
  /** The products of a one-thread run (default: the fastest available). */
  matmul?: Matmul;
  onStep?: (p: TrainProgress) => void;
  /**
   * Checked after every step: when aborted, the run saves a checkpoint at that step and
   * throws `Interrupted` (`resume` continues from it, as after `stopAfter`).
   */
  signal?: AbortSignal;
}

export interface TrainResult {
  config: TrainConfig;
  parameters: number;
  step: number;
  /** Steps run by this call (the rest came from the checkpoint). */
  stepsNow: number;
  finalLoss: number;
  heldOut: number | null;
  tokensPerSecond: number;
  matmul: string;
  data: { description: string; trainTokens: number; heldOutTokens: number; heldOutWindows: number };
  /** model.safetensors, when the run reached its last step. */
  model: string | null;
  params: ParamSet;
}

const FILES = {
  weights: 'checkpoint.safetensors',
  optimizer: 'optimizer.safetensors',
  state: 'train-state.json',
  csv: 'loss.csv',
  model: 'model.safetensors',
};
const CSV_HEADER = 'step,lr,train_loss,grad_norm,heldout_loss,tokens_per_s,elapsed_s\n';

export function modelConfig(cfg: TrainConfig): Rwkv4Config {
  return { nLayer: cfg.layers, nEmbd: cfg.embd, nVocab: 256, nFfn: cfg.ffn };
}

export async function train(
  cfgIn: TrainConfig,
  out: string,
  opts: TrainOptions = {},
): Promise<TrainResult> {
  const cfg = TrainConfig.parse(cfgIn);
  mkdirSync(out, { recursive: true });
  const statePath = join(out, FILES.state);
  if (!opts.resume && existsSync(statePath)) {
    throw new UserError(
      `${out} already holds a training run (${FILES.state})`,
      'Pass --resume to continue it, or choose another --out.',
    );
  }
  const data = loadTrainData(cfg);
  const mcfg = modelConfig(cfg);
  const f32 = (n: number) => new Float32Array(n);
  const params = new ParamSet(mcfg, sharedF32);
  const m1 = new ParamSet(mcfg, f32);
  const m2 = new ParamSet(mcfg, f32);
  const run: RunState = {
    cfg,
    out,
    data,
    params,
    m1,
    m2,
    rng: new Rng(cfg.seed),
    log: [],
    step: 0,
  };
  if (opts.resume && existsSync(statePath)) {
    const st = readState(statePath, cfg, data);
    restoreCheckpoint(out, st.step, params, m1, m2);
    run.step = st.step;
    run.rng.state = st.rngState;
    run.log = st.log;
  } else {
    initRwkv4(params, cfg.seed);
    // The batch stream has its own generator, seeded apart from the weights'.
    run.rng.state = (cfg.seed ^ 0x9e3779b9) >>> 0;
  }
  // The CSV always matches the log of the state it continues from.
  writeAtomically(join(out, FILES.csv), (fd) =>
    writeAll(fd, Buffer.from(CSV_HEADER + run.log.map(csvRow).join(''))),
  );

  const engine =
    cfg.threads === 2 && cfg.batch > 1
      ? dataParallel(params, cfg.batch, cfg.ctx)
      : singleThread(params, opts.matmul);
  try {
    return await loop(run, engine, opts);
  } finally {
    engine.close();
  }
}

/** Everything a run carries from step to step (what a checkpoint restores). */
interface RunState {
  cfg: TrainConfig;
  out: string;
  data: TrainData;
  params: ParamSet;
  /** Adam's first and second moments. */
  m1: ParamSet;
  m2: ParamSet;
  rng: Rng;
  log: LogRow[];
  step: number;
}

async function loop(run: RunState, engine: GradEngine, opts: TrainOptions): Promise<TrainResult> {
  const { cfg, out, data, params, m1, m2, rng, log } = run;
  const grads = new ParamSet(params.config, (n) => new Float32Array(n));
  const adam: AdamWConfig = {
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    eps: cfg.eps,
    weightDecay: cfg.weightDecay,
  };
  const schedule = { lr: cfg.lr, minLr: cfg.minLr, warmup: cfg.warmup, steps: cfg.steps };
  const size = cfg.ctx + 1;
  const batch = new Int32Array(cfg.batch * size);
  const stopAt = Math.min(cfg.steps, opts.stopAfter ?? cfg.steps);
  const t0 = performance.now();
  const elapsedBefore = log.length ? log[log.length - 1].elapsedSeconds : 0;
  const stepsBefore = run.step;
  let tokensNow = 0;
  let trainSeconds = 0;

  while (run.step < stopAt) {
    const ts = performance.now();
    const lr = learningRate(run.step, schedule);
    sampleBatch(batch, data.train, cfg.batch, size, rng);
    const loss = engine.lossAndGrad(batch, cfg.batch, cfg.ctx, grads);
    const gradNorm = clipGradNorm(grads.tensors, cfg.gradClip);
    for (let i = 0; i < params.tensors.length; i++) {
      const [p, g] = [params.tensors[i], grads.tensors[i]];
      adamwUpdate(
        p,
        g,
        m1.tensors[i],
        m2.tensors[i],
        run.step + 1,
        lr,
        params.specs[i].decay,
        adam,
      );
    }
    engine.weightsChanged();
    const step = ++run.step;
    const dt = (performance.now() - ts) / 1000;
    trainSeconds += dt;
    tokensNow += cfg.batch * cfg.ctx;
    const heldOut =
      step % cfg.evalEvery === 0 || step === cfg.steps ? heldOutLoss(engine, data, cfg) : null;
    const row: LogRow = {
      step,
      lr,
      loss,
      gradNorm,
      heldOut,
      tokensPerSecond: (cfg.batch * cfg.ctx) / dt,
      elapsedSeconds: elapsedBefore + (performance.now() - t0) / 1000,
    };
    log.push(row);
    appendFileSync(join(out, FILES.csv), csvRow(row));
    if (step % cfg.saveEvery === 0 || step === stopAt) saveCheckpoint(run);
    const rate = (step - stepsBefore) / ((performance.now() - t0) / 1000);
    opts.onStep?.({
      step,
      steps: cfg.steps,
      loss,
      heldOut,
      tokensPerSecond: tokensNow / trainSeconds,
      elapsedSeconds: row.elapsedSeconds,
      etaSeconds: (cfg.steps - step) / rate,
    });
    try {
      await stopPoint(opts.signal);
    } catch (e) {
      if (!(e instanceof Stopped)) throw e;
      if (step % cfg.saveEvery !== 0 && step !== stopAt) saveCheckpoint(run);
      throw new Interrupted(
        `checkpoint at step ${step} of ${cfg.steps} saved in ${out} (weights, optimizer, loss.csv)`,
        true,
      );
    }
  }

  const step = run.step;
  let modelPath: string | null = null;
  if (step === cfg.steps) {
    modelPath = join(out, FILES.model);
    writeSafetensors(modelPath, params.toNamed(), {
      dtype: cfg.dtype,
      metadata: {
        format: 'pt',
        architecture: 'rwkv4',
        tokenizer: 'bytes',
        trainedBy: 'actsparse train',
        config: JSON.stringify(cfg),
      },
    });
  }
  const last = log[log.length - 1];
  const lastHeld = [...log].reverse().find((r) => r.heldOut !== null);
  return {
    config: cfg,
    parameters: params.count(),
    step,
    stepsNow: step - stepsBefore,
    finalLoss: last ? last.loss : Number.NaN,
    heldOut: lastHeld?.heldOut ?? null,
    tokensPerSecond: trainSeconds > 0 ? tokensNow / trainSeconds : 0,
    matmul: engine.description,
    data: {
      description: data.description,
      trainTokens: data.train.length,
      heldOutTokens: data.heldOutTokens,
      heldOutWindows: data.heldOut.length,
    },
    model: modelPath,
    params,
  };
}

/** Mean loss over the held-out windows (forward only, in batches of the training size). */
export function heldOutLoss(engine: GradEngine, data: TrainData, cfg: TrainConfig) {
  if (data.heldOut.length === 0) return null;
  const size = cfg.ctx + 1;
  let sum = 0;
  for (let i = 0; i < data.heldOut.length; i += cfg.batch) {
    const group = data.heldOut.slice(i, i + cfg.batch);
    const toks = new Int32Array(group.length * size);
    for (const [b, w] of group.entries()) toks.set(w, b * size);
    sum += engine.loss(toks, group.length, cfg.ctx) * group.length;
  }
  return sum / data.heldOut.length;
}

function csvRow(r: LogRow): string {
  const held = r.heldOut === null ? '' : r.heldOut.toFixed(6);
  return `${r.step},${r.lr.toExponential(4)},${r.loss.toFixed(6)},${r.gradNorm.toFixed(4)},${held},${r.tokensPerSecond.toFixed(0)},${r.elapsedSeconds.toFixed(1)}\n`;
}

// ---------------------------------------------------------------- checkpoints

/** The configuration of the run in `out`, or null when there is none yet. */
export function storedTrainConfig(out: string): TrainConfig | null {
  const path = join(out, FILES.state);
  return existsSync(path) ? parseState(path).config : null;
}

function parseState(path: string): TrainState {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not readable JSON (${oneLine((e as Error).message)})`);
  }
  const parsed = TrainState.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError(
      `${path}: not a train-state file (${issue.path.join('.')}: ${issue.message})`,
    );
  }
  return parsed.data;
}

/** The state to resume from, checked against the configuration and data of this call. */
function readState(path: string, cfg: TrainConfig, data: TrainData): TrainState {
  const st = parseState(path);
  const differ = FIXED.filter((k) => st.config[k] !== cfg[k]);
  if (differ.length) {
    throw new UserError(
      `${path}: the run was started with ${differ.map((k) => `${k} ${st.config[k]}`).join(', ')}; now ${differ.map((k) => `${k} ${cfg[k]}`).join(', ')}`,
      'A resumed run must keep its configuration; start a new --out for a different one.',
    );
  }
  if (st.data.sha256 !== data.sha256) {
    throw new UserError(
      `${path}: the training data changed since the run started (${cfg.data})`,
      'Resume with the same data.',
    );
  }
  if (st.log.length !== st.step) {
    throw new UserError(`${path}: the loss log has ${st.log.length} rows for ${st.step} steps`);
  }
  return st;
}

/** Writes the *.next files, commits the state, then renames the *.next files into place. */
function saveCheckpoint(run: RunState): void {
  const { out, data, step } = run;
  const st: TrainState = {
    formatVersion: 1,
    kind: 'actsparse.train-state',
    step,
    rngState: run.rng.state,
    config: run.cfg,
    data: {
      description: data.description,
      trainTokens: data.train.length,
      heldOutTokens: data.heldOutTokens,
      sha256: data.sha256,
    },
    log: run.log,
  };
  const metadata = { step: String(step) };
  const w = join(out, FILES.weights);
  const o = join(out, FILES.optimizer);
  writeSafetensors(`${w}.next`, run.params.toNamed(), { dtype: 'f32', metadata });
  writeSafetensors(`${o}.next`, [...run.m1.toNamed('exp_avg.'), ...run.m2.toNamed('exp_avg_sq.')], {
    dtype: 'f32',
    metadata,
  });
  const json = Buffer.from(`${JSON.stringify(st, null, 1)}\n`);
  writeAtomically(join(out, FILES.state), (fd) => writeAll(fd, json));
  renameSync(`${w}.next`, w);
  renameSync(`${o}.next`, o);
}

/** Step recorded in a checkpoint file's metadata, or null if the file cannot tell. */
function fileStep(path: string): number | null {
  const ck = openSafetensors(path);
  try {
    const meta = ck.meta.metadata as Record<string, unknown> | undefined;
    const s = Number(meta?.step);
    return Number.isInteger(s) ? s : null;
  } finally {
    ck.close();
  }
}

function restoreCheckpoint(
  out: string,
  step: number,
  params: ParamSet,
  m1: ParamSet,
  m2: ParamSet,
): void {
  for (const f of [FILES.weights, FILES.optimizer]) {
    const path = join(out, f);
    // A save that stopped after its commit point: finish it. Before: drop its files.
    if (existsSync(`${path}.next`)) {
      if (fileStep(`${path}.next`) === step) renameSync(`${path}.next`, path);
      else rmSync(`${path}.next`);
    }
    if (!existsSync(path) || fileStep(path) !== step) {
      throw new UserError(
        `${path}: missing, or not the checkpoint of step ${step} that ${FILES.state} records`,
        'The run directory is inconsistent; start a new run.',
      );
    }
  }
  const load = (path: string, into: ParamSet, prefix: string) => {
    const ck = openSafetensors(path);
    try {
      into.assign(
        into.specs.map((s) => {
          const t = ck.read(prefix + s.name);
          return { name: s.name, shape: t.shape, data: t.data };
        }),
      );
    } catch (e) {
      throw new UserError(
        `${path}: ${(e as Error).message}`,
        'The checkpoint does not fit this run.',
      );
    } finally {
      ck.close();
    }
  };
  load(join(out, FILES.weights), params, '');
  load(join(out, FILES.optimizer), m1, 'exp_avg.');
  load(join(out, FILES.optimizer), m2, 'exp_avg_sq.');
}
