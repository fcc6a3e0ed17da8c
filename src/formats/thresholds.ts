/**
 * `thresholds.json`, the result of a calibration: λ per site with provenance (model,
 * data, method and every parameter) and the measured sparsity and losses. One schema,
 * one writer, one reader.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { writeJsonFile } from '../util/files.ts';
import { ModelFacts } from './facts.ts';
import { checked, parseFormat, readFormat } from './read.ts';

const Site = z.object({
  block: z.number().int().min(0),
  site: z.string(),
  /** Chosen keep-fraction (1 = dense). */
  k: z.number().min(0).max(1),
  lambda: z.number().min(0),
  /** Measured fraction of zeros in the site's input on the calibration tokens. */
  sparsity: z.number().min(0).max(1),
  /** Natural sparsity of the same input in the dense model. */
  naturalSparsity: z.number().min(0).max(1),
  /** Calibration loss after this site (null for methods without loss feedback). */
  loss: z.number().nullable(),
});

/** The `kind` of the file. */
export const THRESHOLDS_KIND = 'actsparse.thresholds' as const;

export const ThresholdsFile = z.object({
  formatVersion: z.literal(1),
  kind: z.literal(THRESHOLDS_KIND),
  tool: z.object({ name: z.string(), version: z.string() }),
  model: ModelFacts.extend({ file: z.string(), fileSha256: z.string() }),
  data: z.object({
    description: z.string(),
    sha256: z.string(),
    documents: z.array(z.string()),
    windows: z.number().int(),
    ctx: z.number().int(),
    tokens: z.number().int(),
    seed: z.number().int(),
    tokenizer: z.string(),
  }),
  method: z.object({
    name: z.enum(['paper', 'uniform', 'teal', 'none']),
    params: z.record(z.string(), z.unknown()),
  }),
  results: z.object({
    denseLoss: z.number(),
    finalLoss: z.number(),
    /** finalLoss / denseLoss */
    lossGrowth: z.number(),
    /** The same on windows of the held-out documents (null when there were none). */
    heldOut: z
      .object({ windows: z.number().int(), denseLoss: z.number(), sparseLoss: z.number() })
      .nullable(),
    sparsity: z.object({
      /** MAC-weighted zeros over all block sites (METHOD.md §4). */
      macWeighted: z.number(),
      naturalMacWeighted: z.number(),
      /** The head is never thresholded: its share of the per-token MACs, reported apart. */
      headMacShare: z.number(),
    }),
    work: z.object({
      blockTokens: z.number(),
      authorsBlockTokens: z.number(),
      lossEvaluations: z.number().int(),
      statisticsPasses: z.number().int(),
    }),
  }),
  sites: z.array(Site),
});
export type ThresholdsFile = z.infer<typeof ThresholdsFile>;
export type SiteResult = z.infer<typeof Site>;

/** A thresholds.json, or the calibration run folder that holds one (as `hw` takes either). */
export function thresholdsPath(path: string): string {
  let dir = false;
  try {
    dir = statSync(path).isDirectory();
  } catch {
    return path; // the reader names the missing file
  }
  if (!dir) return path;
  const file = join(path, 'thresholds.json');
  if (!existsSync(file)) {
    throw new UserError(
      `${path}: no thresholds.json in this folder`,
      'Give the --out folder of `actsparse calibrate`, or its thresholds.json.',
    );
  }
  return file;
}

export function readThresholds(path: string): ThresholdsFile {
  return readFormat(ThresholdsFile, path, 'a thresholds file', 'actsparse calibrate');
}

export function writeThresholds(path: string, plan: ThresholdsFile): void {
  writeJsonFile(path, checked(ThresholdsFile, plan, path));
}

/** The same for JSON already read (`path` names it in errors). */
export function parseThresholds(raw: unknown, path: string): ThresholdsFile {
  return parseFormat(ThresholdsFile, raw, path, 'a thresholds file', 'actsparse calibrate');
}
