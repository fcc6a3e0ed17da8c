/**
 * Reading run directories for `actsparse report`: whatever subset of thresholds.json,
 * calibration.csv, config.json, eval results, hw.json, bench.json (and any hw-*.json,
 * bench-*.json beside them) a folder holds, each validated, every problem a UserError
 * naming the file.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { TASKS } from '../eval/tasks/registry.ts';
import { type BenchResult, readBench } from '../formats/bench.ts';
import {
  type CalibrationConfig,
  type Candidate,
  readCalibrationConfig,
  readCalibrationCsv,
} from '../formats/calibration.ts';
import { type HwFile, readHw } from '../formats/hw.ts';
import { type EvalResults, readEvalResults } from '../formats/results.ts';
import { readThresholds, type ThresholdsFile } from '../formats/thresholds.ts';

export interface Run {
  /** Absolute path of the folder. */
  dir: string;
  /** Its name, unique among the runs of one report. */
  label: string;
  /** Files read, relative to dir. */
  files: string[];
  thresholds: ThresholdsFile | null;
  calibration: Candidate[] | null;
  config: CalibrationConfig | null;
  evalResults: EvalResults | null;
  hw: HwFile | null;
  bench: BenchResult | null;
  /** Further estimates and measurements in the folder: hw-<name>.json, bench-<name>.json. */
  moreHw: { file: string; hw: HwFile }[];
  moreBench: { file: string; bench: BenchResult }[];
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
  const extra = (re: RegExp) =>
    readdirSync(abs)
      .filter((n) => re.test(n))
      .sort();
  const hwMore = extra(/^hw-.+\.json$/);
  const benchMore = extra(/^bench-.+\.json$/);
  const files = [...RUN_FILES.filter(has), ...hwMore, ...benchMore];
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
  const run: Run = {
    dir: abs,
    label: basename(abs),
    files: usedFiles,
    thresholds: has('thresholds.json') ? readThresholds(at('thresholds.json')) : null,
    calibration: has('calibration.csv') ? readCalibrationCsv(at('calibration.csv')) : null,
    config: has('config.json') ? readCalibrationConfig(at('config.json')) : null,
    evalResults: has(evalName) ? readEvalResults(at(evalName)) : null,
    hw: has('hw.json') ? readHw(at('hw.json')) : null,
    bench: has('bench.json') ? readBench(at('bench.json')) : null,
    moreHw: hwMore.map((file) => ({ file, hw: readHw(at(file)) })),
    moreBench: benchMore.map((file) => ({ file, bench: readBench(at(file)) })),
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
    if (e.model && e.model.fingerprint !== t.model.fingerprint) {
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
  if (dirs.length === 0)
    throw new UserError(
      'no run folder given',
      'Give the folders written by `actsparse calibrate --out` (and eval, hw, bench).',
    );
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
  if (t)
    return { sites: t.sites, shapes: t.model.siteShapes ?? null, source: 'the calibration tokens' };
  const e = run.evalResults;
  if (e) {
    return {
      sites: e.sparsity.perSite,
      shapes: e.model?.siteShapes ?? null,
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
export function taskRows(e: EvalResults): TaskRow[] {
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
