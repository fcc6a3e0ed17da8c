/**
 * What the cost model is fed: the model's shape and the measured fraction of zeros at
 * every site, from a calibration run (thresholds.json), an evaluation run
 * (results.json), or given explicitly for a what-if.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import type { ModelFacts } from '../formats/facts.ts';
import { type EvalResults, parseEvalResults, type SiteSparsity } from '../formats/results.ts';
import { readRunFile } from '../formats/run-file.ts';
import { parseThresholds, type ThresholdsFile } from '../formats/thresholds.ts';
import { readJsonFile } from '../util/files.ts';
import { type ModelShape, shapeFromFacts } from './ops.ts';

export interface CostInput {
  /** Where the numbers come from, for the report. */
  source: string;
  shape: ModelShape;
  /** Fraction of zeros per global site (block-major), with thresholds. */
  sparse: Float64Array;
  /** The dense model's natural zeros, when known. */
  natural: Float64Array | null;
  notes: string[];
}

/** The model's shape from the file's facts (site ids checked against sitesPerBlock). */
function shapeOf(m: ModelFacts, file: string, notes: string[]): ModelShape {
  if (m.siteShapes && m.siteShapes.map((s) => s.id).join() !== m.sitesPerBlock.join()) {
    throw new UserError(`${file}: model.siteShapes does not list the sites of model.sitesPerBlock`);
  }
  const shape = shapeFromFacts(m, file, notes);
  if (shape.sites.map((s) => s.id).join() !== m.sitesPerBlock.join()) {
    throw new UserError(
      `${file}: model.sitesPerBlock (${m.sitesPerBlock.join(', ')}) are not the sites of ${m.architecture} (${shape.sites.map((s) => s.id).join(', ')})`,
    );
  }
  return shape;
}

/** Per-site rows → block-major arrays, every (block, site) exactly once. */
function siteArrays(
  rows: readonly SiteSparsity[],
  shape: ModelShape,
  file: string,
): { sparse: Float64Array; natural: Float64Array } {
  const k = shape.sites.length;
  const n = shape.nLayer * k;
  if (rows.length !== n) {
    throw new UserError(
      `${file}: ${rows.length} per-site rows for ${shape.nLayer} blocks × ${k} sites = ${n}`,
    );
  }
  const sparse = new Float64Array(n).fill(Number.NaN);
  const natural = new Float64Array(n);
  const index = new Map(shape.sites.map((s, i) => [s.id, i]));
  for (const r of rows) {
    const i = index.get(r.site);
    if (i === undefined || r.block >= shape.nLayer) {
      throw new UserError(`${file}: site ${r.site} of block ${r.block} is not in the model`);
    }
    const g = r.block * k + i;
    if (!Number.isNaN(sparse[g])) {
      throw new UserError(`${file}: site ${r.site} of block ${r.block} appears twice`);
    }
    sparse[g] = r.sparsity;
    natural[g] = r.naturalSparsity;
  }
  return { sparse, natural };
}

/** From a parsed thresholds.json (calibration). */
export function inputFromThresholds(raw: unknown, file: string): CostInput {
  return fromThresholds(parseThresholds(raw, file), file);
}

function fromThresholds(t: ThresholdsFile, file: string): CostInput {
  const notes: string[] = [];
  const shape = shapeOf(t.model, file, notes);
  return { source: file, shape, ...siteArrays(t.sites, shape, file), notes };
}

/** From a parsed results.json (evaluation); `shape` stands in for an older file without model facts. */
export function inputFromResults(raw: unknown, file: string, shape?: ModelShape): CostInput {
  return fromResults(parseEvalResults(raw, file), file, shape);
}

function fromResults(r: EvalResults, file: string, shape?: ModelShape): CostInput {
  const notes: string[] = [];
  let s: ModelShape;
  if (r.model) s = shapeOf(r.model, file, notes);
  else if (shape) {
    s = shape;
    notes.push(`${file} has no model facts: shape from --shape`);
  } else {
    throw new UserError(
      `${file}: no model facts (an older eval result)`,
      'Give the model shape with --shape LAYERSxEMBD --vocab N, or re-run actsparse eval.',
    );
  }
  return { source: file, shape: s, ...siteArrays(r.sparsity.perSite, s, file), notes };
}

/** A run directory (thresholds.json, else results.json) or one of those files. */
export function readRun(path: string, shape?: ModelShape): CostInput {
  let file = path;
  if (existsSync(path) && statSync(path).isDirectory()) {
    const cands = ['thresholds.json', 'results.json'].map((f) => join(path, f));
    const found = cands.find((f) => existsSync(f));
    if (!found) {
      throw new UserError(
        `${path}: no thresholds.json or results.json in this directory`,
        'Give the --out directory of `actsparse calibrate` or `actsparse eval`.',
      );
    }
    file = found;
  }
  const r = readRunFile(file);
  if (shape && (r.kind !== 'eval' || r.file.model)) {
    throw new UserError(
      `--shape: ${file} has its own model facts`,
      '--shape stands in only for an older results.json without them, or goes with --sparsity.',
    );
  }
  return r.kind === 'thresholds' ? fromThresholds(r.file, file) : fromResults(r.file, file, shape);
}

// ------------------------------------------------------------------ what-ifs

/** `24x1024` → the shape of that architecture (ffn defaults to 4·nEmbd, its other defaults). */
export function parseShape(
  spec: string,
  nVocab: number,
  arch = 'rwkv4',
  nFfn?: number,
): ModelShape {
  const m = /^(\d+)x(\d+)$/.exec(spec.trim());
  if (!m) throw new UserError(`--shape ${spec}: expected LAYERSxEMBD, e.g. 24x1024`);
  const nLayer = Number(m[1]);
  const nEmbd = Number(m[2]);
  if (nLayer < 1 || nEmbd < 1 || nLayer > 100_000 || nEmbd > 1 << 24) {
    throw new UserError(`--shape ${spec}: layers and width must be positive (and plausible)`);
  }
  const config = nFfn === undefined ? {} : { nFfn };
  return shapeFromFacts({ architecture: arch, nLayer, nEmbd, nVocab, config }, '--shape', []);
}

function fraction(text: string, what: string): number {
  const t = text.trim();
  const pct = t.endsWith('%');
  const v = Number(pct ? t.slice(0, -1) : t);
  const x = pct ? v / 100 : v;
  if (t === '' || !Number.isFinite(x) || x < 0 || x > 1) {
    throw new UserError(`${what}: ${text} is not a fraction of zeros in [0, 1] (or a percentage)`);
  }
  return x;
}

/**
 * Zeros per global site from a what-if: one number for every site (`0.6`), a list by
 * site id applied to every block (`att.key=0.616,ffn.value=93.7%,…`), or a JSON file of
 * `{ "att.key": 0.616 | [one per block], … }`. Every site must be given.
 */
export function parseSiteValues(spec: string, shape: ModelShape, what: string): Float64Array {
  const k = shape.sites.length;
  const out = new Float64Array(shape.nLayer * k);
  const trimmed = spec.trim();
  if (/^[\d.]+%?$/.test(trimmed)) return out.fill(fraction(trimmed, what));
  let table: Record<string, unknown>;
  if (trimmed.includes('=')) {
    table = {};
    for (const part of trimmed.split(',')) {
      const [id, v, extra] = part.split('=');
      if (v === undefined || extra !== undefined) {
        throw new UserError(`${what}: ${part} is not SITE=VALUE`);
      }
      table[id.trim()] = v;
    }
  } else {
    const raw = readJsonFile(trimmed, `${what} ${trimmed}`);
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new UserError(`${what} ${trimmed}: expected an object {"site id": value, …}`);
    }
    table = raw as Record<string, unknown>;
  }
  const ids = shape.sites.map((s) => s.id);
  const unknown = Object.keys(table).filter((id) => !ids.includes(id));
  if (unknown.length) {
    throw new UserError(`${what}: unknown site ${unknown[0]} (sites: ${ids.join(', ')})`);
  }
  shape.sites.forEach((s, i) => {
    const v = table[s.id];
    if (v === undefined) {
      throw new UserError(`${what}: no value for ${s.id}`, `Give every site: ${ids.join(', ')}.`);
    }
    for (let b = 0; b < shape.nLayer; b++) {
      let x: unknown = v;
      if (Array.isArray(v)) {
        if (v.length !== shape.nLayer) {
          throw new UserError(`${what}: ${s.id} has ${v.length} values for ${shape.nLayer} blocks`);
        }
        x = v[b];
      }
      if (typeof x !== 'number' && typeof x !== 'string') {
        throw new UserError(`${what}: ${s.id}: expected a number`);
      }
      out[b * k + i] = fraction(String(x), `${what} ${s.id}`);
    }
  });
  return out;
}

/** A what-if input: shape and per-site zeros given explicitly. */
export function whatIf(
  shape: ModelShape,
  sparsity: string,
  natural: string | undefined,
): CostInput {
  return {
    source: `what-if: --sparsity ${sparsity}`,
    shape,
    sparse: parseSiteValues(sparsity, shape, '--sparsity'),
    natural: natural === undefined ? null : parseSiteValues(natural, shape, '--natural'),
    notes: [],
  };
}
