/**
 * The other files of a calibration run directory: `config.json` (the effective
 * configuration, nanoGPT-style "for logging") and `calibration.csv` (a row per evaluated
 * candidate, as TEAL logs its greedy steps), each with its writer and reader.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { writeFileAtomic, writeJsonFile } from '../util/files.ts';
import { checked, readFormat } from './read.ts';

export const CalibrationConfig = z.object({
  method: z.enum(['paper', 'uniform', 'teal', 'none']),
  /** `brown` or a .txt / .jsonl path. */
  data: z.string(),
  docs: z.number().int().min(1),
  ctx: z.number().int().min(1),
  windows: z.number().int().min(1),
  seed: z.number().int().min(0),
  statistic: z.enum(['per-token', 'pooled']),
  lossInc: z.number(),
  grid: z.enum(['linear', 'exp']),
  startK: z.number(),
  kNum: z.number().int(),
  faithful: z.boolean(),
  /** uniform: K at every site. */
  keep: z.number(),
  /** teal: MAC-weighted sparsity to reach in every block. */
  targetSparsity: z.number(),
});
export type CalibrationConfig = z.infer<typeof CalibrationConfig>;

const ConfigFile = CalibrationConfig.extend({ formatVersion: z.literal(1) });

export function writeCalibrationConfig(path: string, cfg: CalibrationConfig): void {
  writeJsonFile(path, checked(ConfigFile, { formatVersion: 1, ...cfg }, path));
}

export function readCalibrationConfig(path: string): CalibrationConfig {
  const { formatVersion: _, ...cfg } = readFormat(
    ConfigFile,
    path,
    'a calibration config.json',
    'actsparse calibrate',
  );
  return cfg;
}

/** One line of calibration.csv: a candidate K tried at a site. */
export interface Candidate {
  block: number;
  site: string;
  k: number;
  lambda: number;
  loss: number;
  /** loss / base of the site's search (block error for TEAL). */
  ratio: number;
  accepted: boolean;
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

export function writeCalibrationCsv(path: string, rows: readonly Candidate[]): void {
  const lines = [CSV_HEADER];
  for (const c of rows)
    lines.push([c.block, c.site, c.k, c.lambda, c.loss, c.ratio, c.accepted].join(','));
  writeFileAtomic(path, `${lines.join('\n')}\n`);
}
