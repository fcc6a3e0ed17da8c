/**
 * Reading run directories for `actsparse report`: whatever subset of thresholds.json,
 * calibration.csv, config.json, eval results, hw.json and bench.json a folder holds,
 * each validated, every problem a UserError naming the file.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { TASKS } from '../eval/tasks/registry.ts';
import { readThresholds, type ThresholdsFile } from '../sparsity/plan.ts';
import { readJsonFile } from '../util/json.ts';

const Tool = z.object({ name: z.string(), version: z.string() });
const Metrics = z.record(z.string(), z.number().nullable());
const TextResult = z.object({ meanNll: z.number(), perplexity: z.number(), tokens: z.number() });

/** The parts of `actsparse eval`'s results.json a report reads. */
export const EvalFile = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.eval'),
  results: z.record(z.string(), Metrics),
  heldOut: z.record(z.string(), TextResult),
  sparsity: z.object({
    macWeighted: z.number().min(0).max(1),
    naturalMacWeighted: z.number().min(0).max(1),
    perSite: z.array(
      z.object({
        block: z.number().int().min(0),
        site: z.string(),
        sparsity: z.number().min(0).max(1),
        naturalSparsity: z.number().min(0).max(1),
      }),
    ),
  }),
  dense: z
    .object({
      results: z.record(z.string(), Metrics),
      heldOut: z.record(z.string(), TextResult),
    })
    .nullable(),
  model: z.object({
    file: z.string(),
    fingerprint: z.string(),
    architecture: z.string(),
    nLayer: z.number().int(),
    nEmbd: z.number().int(),
    nVocab: z.number().int(),
    sitesPerBlock: z.array(z.string()),
    siteShapes: z
      .array(z.object({ id: z.string(), rows: z.number().int(), cols: z.number().int() }))
      .optional(),
  }),
  config: z.record(z.string(), z.unknown()),
  tool: Tool,
});
export type EvalFile = z.infer<typeof EvalFile>;

const Breakdown = z.object({
  value: z.number(),
  evidence: z.string().nullable(),
  partial: z.boolean(),
});
const Quantity = z
  .object({
    unit: z.string(),
    total: Breakdown,
    byLayerType: z.record(z.string(), Breakdown),
    byCategory: z.record(z.string(), Breakdown),
  })
  .nullable();

/** The parts of `actsparse hw --json` a report reads. */
export const HwFile = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.hw'),
  tool: Tool,
  caveat: z.string(),
  profile: z.object({
    name: z.string(),
    title: z.string(),
    file: z.string(),
    costModel: z.string(),
  }),
  mapping: z.record(z.string(), z.unknown()),
  input: z.object({
    source: z.string(),
    shape: z.object({
      architecture: z.string(),
      nLayer: z.number().int(),
      nEmbd: z.number().int(),
      nVocab: z.number().int(),
    }),
  }),
  scenarios: z
    .array(
      z.object({
        scenario: z.enum(['dense', 'natural', 'sparse']),
        macWeightedZeros: z.number(),
        energy: Quantity,
        latency: Quantity,
      }),
    )
    .min(1),
  ratios: z.record(z.string(), z.number().nullable()),
});
export type HwFile = z.infer<typeof HwFile>;

const Stat = z.object({ median: z.number(), min: z.number(), max: z.number() });

/** `actsparse bench --json` (src/report/bench.ts BenchResult). */
export const BenchFile = z.object({
  formatVersion: z.literal(1),
  machine: z.object({ cpu: z.string(), cores: z.number(), node: z.string() }),
  backends: z.array(z.string()),
  bandwidth: z.array(z.object({ threads: z.number().int(), gbps: Stat })),
  gemm: z.array(
    z.object({ backend: z.string(), threads: z.number().int(), shape: z.string(), gflops: Stat }),
  ),
  gemv: z.array(
    z.object({ backend: z.string(), threads: z.number().int(), shape: z.string(), gbps: Stat }),
  ),
  sparse: z.array(
    z.object({
      backend: z.string(),
      threads: z.number().int(),
      zeros: z.number().min(0).max(1),
      speedup: Stat,
      ideal: z.number(),
    }),
  ),
  model: z
    .object({
      source: z.string(),
      backend: z.string(),
      shape: z.string(),
      weightBytesPerToken: z.number(),
      decodeDense: Stat,
      floorTokensPerSec: z.number().nullable(),
      targetZeros: z.number().nullable(),
      measuredZeros: z.number(),
      decodeSparse: Stat,
      sequenceT: z.number(),
      sequence: Stat.nullable(),
    })
    .optional(),
});
export type BenchFile = z.infer<typeof BenchFile>;

/** One line of calibration.csv: a candidate K tried at a site. */
export interface Candidate {
  block: number;
  site: string;
  k: number;
  lambda: number;
  loss: number;
  ratio: number;
  accepted: boolean;
}

export interface Run {
  /** Absolute path of the folder. */
  dir: string;
  /** Its name, unique among the runs of one report. */
  label: string;
  /** Files read, relative to dir. */
  files: string[];
  thresholds: ThresholdsFile | null;
  calibration: Candidate[] | null;
  config: Record<string, unknown> | null;
  evalResults: EvalFile | null;
  hw: HwFile | null;
  bench: BenchFile | null;
  /** Inconsistencies between the files, shown in the report. */
  notes: string[];
}

export const RUN_FILES = [
  'thresholds.json',
  'calibration.csv',
  'config.json',
  'eval/results.json',
  'results.json',
  'hw.json',
  'bench.json',
];

function validate<T>(schema: z.ZodType<T>, path: string, what: string, made: string): T {
  const r = schema.safeParse(readJsonFile(path));
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new UserError(
    `${path}: not ${what} a report can use: ${issue.path.join('.') || '(top)'}: ${issue.message}`,
    `Give the file written by \`${made}\`.`,
  );
}

const CSV_HEADER = 'block,site,k,lambda,loss,ratio,accepted';

/** calibration.csv, every field checked. */
export function readCalibrationCsv(path: string): Candidate[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const lines = text.split(/\r?\n/);
  if (lines[0] !== CSV_HEADER) {
    throw new UserError(
      `${path}: header is not "${CSV_HEADER}"`,
      'Give the calibration.csv written by `actsparse calibrate`.',
    );
  }
  const rows: Candidate[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i] === '') continue;
    const f = lines[i].split(',');
    const bad = (what: string) =>
      new UserError(`${path}: line ${i + 1}: ${what}`, 'The file may be truncated or edited.');
    if (f.length !== 7) throw bad(`${f.length} fields, expected 7`);
    const [block, k, lambda, loss, ratio] = [f[0], f[2], f[3], f[4], f[5]].map(Number);
    if (!Number.isInteger(block) || block < 0) throw bad(`block "${f[0]}" is not an index`);
    if (f[1] === '') throw bad('empty site id');
    if (!(k >= 0 && k <= 1)) throw bad(`k "${f[2]}" is not in [0, 1]`);
    for (const [v, name] of [
      [lambda, 'lambda'],
      [loss, 'loss'],
      [ratio, 'ratio'],
    ] as const) {
      if (!Number.isFinite(v)) throw bad(`${name} is not a number`);
    }
    if (f[6] !== 'true' && f[6] !== 'false') throw bad(`accepted "${f[6]}" is not true/false`);
    rows.push({ block, site: f[1], k, lambda, loss, ratio, accepted: f[6] === 'true' });
  }
  return rows;
}

/** Reads one run folder; a folder holding none of the files is an error. */
export function loadRun(dir: string): Run {
  const abs = resolve(dir);
  let isDir = false;
  try {
    isDir = statSync(abs).isDirectory();
  } catch {
    throw new UserError(
      `${dir}: no such directory`,
      'Give the folders written by `actsparse calibrate --out` (and eval, hw, bench).',
    );
  }
  if (!isDir) {
    throw new UserError(
      `${dir}: not a directory`,
      'Give the run folder, not a file in it (`actsparse report RUN_DIR --out report.html`).',
    );
  }
  const at = (f: string) => join(abs, f);
  const has = (f: string) => existsSync(at(f));
  const files = RUN_FILES.filter(has);
  const evalName = has('eval/results.json') ? 'eval/results.json' : 'results.json';
  const usedFiles = files.filter(
    (f) => f !== (evalName === 'eval/results.json' ? 'results.json' : 'eval/results.json'),
  );
  if (usedFiles.length === 0) {
    throw new UserError(
      `${dir}: holds none of the files a report reads (${RUN_FILES.join(', ')})`,
      'Give a folder written by `actsparse calibrate --out`, or one with eval results, hw.json or bench.json.',
    );
  }
  const config = has('config.json') ? readJsonFile(at('config.json')) : null;
  if (config !== null && (typeof config !== 'object' || Array.isArray(config))) {
    throw new UserError(`${at('config.json')}: not a JSON object`);
  }
  const run: Run = {
    dir: abs,
    label: basename(abs),
    files: usedFiles,
    thresholds: has('thresholds.json') ? readThresholds(at('thresholds.json')) : null,
    calibration: has('calibration.csv') ? readCalibrationCsv(at('calibration.csv')) : null,
    config: config as Record<string, unknown> | null,
    evalResults: has(evalName)
      ? validate(EvalFile, at(evalName), 'eval results', 'actsparse eval --out DIR')
      : null,
    hw: has('hw.json')
      ? validate(HwFile, at('hw.json'), 'a hardware estimate', 'actsparse hw --json FILE')
      : null,
    bench: has('bench.json')
      ? validate(BenchFile, at('bench.json'), 'a bench result', 'actsparse bench --json FILE')
      : null,
    notes: [],
  };
  crossCheck(run, evalName);
  return run;
}

/** Files of one folder made for different weights are reported, not refused. */
function crossCheck(run: Run, evalName: string): void {
  const t = run.thresholds;
  const e = run.evalResults;
  if (t && e) {
    if (e.model.fingerprint !== t.model.fingerprint) {
      run.notes.push(
        `${evalName} was measured on other weights (${e.model.file}, fingerprint ${e.model.fingerprint}) than thresholds.json was made for (${t.model.file}, ${t.model.fingerprint}).`,
      );
    }
    if (e.dense === null) {
      run.notes.push(`${evalName} is a dense evaluation (no thresholds were applied).`);
    }
  }
  if (t && run.calibration) {
    const known = new Set(t.sites.map((s) => `${s.block}/${s.site}`));
    const stray = run.calibration.find((c) => !known.has(`${c.block}/${c.site}`));
    if (stray) {
      run.notes.push(
        `calibration.csv names site ${stray.block}/${stray.site}, which thresholds.json does not have.`,
      );
    }
  }
  const h = run.hw;
  const arch = t?.model ?? e?.model;
  if (h && arch) {
    const s = h.input.shape;
    if (s.architecture !== arch.architecture || s.nLayer !== arch.nLayer || s.nEmbd !== arch.nEmbd)
      run.notes.push(
        `hw.json describes ${s.architecture} ${s.nLayer}x${s.nEmbd}, not this run's ${arch.architecture} ${arch.nLayer}x${arch.nEmbd}.`,
      );
  }
}

/** Loads every folder; labels made unique (a repeated name gets " (2)", " (3)", …). */
export function loadRuns(dirs: readonly string[]): Run[] {
  if (dirs.length === 0) throw new UserError('report: give at least one run directory');
  const runs = dirs.map(loadRun);
  const seen = new Map<string, number>();
  for (const r of runs) {
    const n = (seen.get(r.label) ?? 0) + 1;
    seen.set(r.label, n);
    if (n > 1) r.label = `${r.label} (${n})`;
  }
  return runs;
}

/** One site's zeros, from thresholds.json (calibration tokens) or eval results. */
export interface SiteZeros {
  block: number;
  site: string;
  sparsity: number;
  naturalSparsity: number;
}

/** Per-site zeros and the data they were measured on; null when neither file is there. */
export function siteZeros(run: Run): {
  sites: SiteZeros[];
  shapes: { id: string; rows: number; cols: number }[] | null;
  source: string;
} | null {
  const t = run.thresholds;
  if (t) return { sites: t.sites, shapes: t.model.siteShapes, source: 'the calibration tokens' };
  const e = run.evalResults;
  if (e) {
    return {
      sites: e.sparsity.perSite,
      shapes: e.model.siteShapes ?? null,
      source: 'the evaluation inputs',
    };
  }
  return null;
}

/** The accuracy metric of a task (lm-eval's main one, acc for perplexity tasks). */
function accuracyMetric(task: string): 'acc' | 'acc_norm' {
  return Object.hasOwn(TASKS, task) && TASKS[task].mainMetric === 'acc_norm' ? 'acc_norm' : 'acc';
}

export interface TaskRow {
  task: string;
  metric: string;
  dense: number | null;
  sparse: number | null;
  stderr: number | null;
}

/** Per task: the accuracy metric, dense and with thresholds (sparse null for a dense-only eval). */
export function taskRows(e: EvalFile): TaskRow[] {
  const rows: TaskRow[] = [];
  const dense = e.dense?.results ?? e.results;
  for (const task of Object.keys(e.results)) {
    const m = accuracyMetric(task);
    const s = e.results[task][m];
    if (s === undefined) continue;
    rows.push({
      task,
      metric: m,
      dense: dense[task]?.[m] ?? null,
      sparse: e.dense ? s : null,
      stderr: e.results[task][`${m}_stderr`] ?? null,
    });
  }
  return rows;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

/** The figures the summary and the trade-off plot show for one run. */
export interface RunFacts {
  modelFile: string | null;
  shape: string | null;
  method: string | null;
  lossInc: number | null;
  /** What labels the run in a sweep: loss_inc, else the folder name. */
  sweepLabel: string;
  sparsity: { value: number; natural: number; source: 'calibration' | 'evaluation' } | null;
  calibrationGrowth: number | null;
  heldOutGrowth: { value: number; source: 'calibration' | 'evaluation' } | null;
  /** Mean accuracy over tasks (fractions); sparse null for a dense-only eval. */
  accuracy: { dense: number | null; sparse: number | null; tasks: number } | null;
  hw: { profile: string; energy: number | null; latency: number | null; vs: string } | null;
  decodeSpeedup: { value: number; zeros: number } | null;
}

export function runFacts(run: Run): RunFacts {
  const t = run.thresholds;
  const e = run.evalResults;
  const m = t?.model ?? e?.model ?? null;
  const shape = m ?? run.hw?.input.shape ?? null;
  const params = t?.method.params ?? {};
  const configInc = run.config?.lossInc;
  const lossInc =
    typeof params.lossInc === 'number'
      ? params.lossInc
      : typeof configInc === 'number'
        ? configInc
        : null;
  const facts: RunFacts = {
    modelFile: m?.file ?? null,
    shape: shape
      ? `${shape.architecture} ${shape.nLayer}x${shape.nEmbd}, vocab ${shape.nVocab}`
      : null,
    method: t ? t.method.name : null,
    lossInc: t?.method.name === 'paper' || !t ? lossInc : null,
    sweepLabel: run.label,
    sparsity: null,
    calibrationGrowth: t?.results.lossGrowth ?? null,
    heldOutGrowth: null,
    accuracy: null,
    hw: null,
    decodeSpeedup: null,
  };
  if (facts.lossInc !== null) facts.sweepLabel = String(facts.lossInc);
  else if (t && t.method.name !== 'paper') {
    const p = t.method.params;
    const knob =
      typeof p.targetSparsity === 'number'
        ? `${p.targetSparsity}`
        : typeof p.keep === 'number'
          ? `${p.keep}`
          : '';
    facts.sweepLabel = `${t.method.name}${knob ? ` ${knob}` : ''}`;
  }
  if (t) {
    const s = t.results.sparsity;
    facts.sparsity = { value: s.macWeighted, natural: s.naturalMacWeighted, source: 'calibration' };
  } else if (e) {
    const s = e.sparsity;
    facts.sparsity = { value: s.macWeighted, natural: s.naturalMacWeighted, source: 'evaluation' };
  }
  const h = t?.results.heldOut;
  if (h) facts.heldOutGrowth = { value: h.sparseLoss / h.denseLoss, source: 'calibration' };
  else if (e?.dense) {
    const name = Object.keys(e.heldOut).find((k) => e.dense?.heldOut[k]);
    if (name) {
      const value = e.heldOut[name].meanNll / e.dense.heldOut[name].meanNll;
      facts.heldOutGrowth = { value, source: 'evaluation' };
    }
  }
  if (e) {
    const rows = taskRows(e);
    const dense = rows.flatMap((r) => (r.dense === null ? [] : [r.dense]));
    const sparse = rows.flatMap((r) => (r.sparse === null ? [] : [r.sparse]));
    if (rows.length)
      facts.accuracy = { dense: mean(dense), sparse: mean(sparse), tasks: rows.length };
  }
  const hw = run.hw;
  if (hw) {
    // The sparse scenario against natural zeros when there, else against dense.
    const vs = hw.scenarios.some((s) => s.scenario === 'natural') ? 'natural' : 'dense';
    facts.hw = {
      profile: hw.profile.title,
      energy: hw.ratios[`energy.${vs}/sparse`] ?? null,
      latency: hw.ratios[`latency.${vs}/sparse`] ?? null,
      vs,
    };
  }
  const b = run.bench?.model;
  if (b && b.decodeDense.median > 0) {
    facts.decodeSpeedup = {
      value: b.decodeSparse.median / b.decodeDense.median,
      zeros: b.measuredZeros,
    };
  }
  return facts;
}
