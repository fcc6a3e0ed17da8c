/**
 * `hw.json`, the cost estimate of `actsparse hw --json`: the profile and mapping used,
 * the input (model shape and per-site zeros), and per scenario (dense, natural, sparse)
 * energy and latency per token with breakdowns, each labelled with its weakest evidence.
 */
import { z } from 'zod';
import { writeJsonFile } from '../util/files.ts';
import { checked, readFormat } from './read.ts';

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
    byLayerTypeAndCategory: z.record(z.string(), z.record(z.string(), z.number())),
  })
  .nullable();

/** The `kind` of the file. */
export const HW_KIND = 'actsparse.hw' as const;

export const HwFile = z.object({
  formatVersion: z.literal(1),
  kind: z.literal(HW_KIND),
  tool: z.object({ name: z.string(), version: z.string() }),
  caveat: z.string(),
  profile: z.object({
    name: z.string(),
    title: z.string(),
    file: z.string(),
    costModel: z.string(),
    estimates: z.array(z.string()),
    /** Every constant with its value, unit, evidence and source. */
    constants: z.record(z.string(), z.unknown()),
  }),
  mapping: z.record(z.string(), z.unknown()),
  resolved: z.object({
    weightBits: z.number(),
    activationBits: z.number(),
    arithmetic: z.string(),
    cores: z.unknown(),
  }),
  input: z.object({
    source: z.string(),
    shape: z
      .object({
        architecture: z.string(),
        nLayer: z.number().int(),
        nEmbd: z.number().int(),
        nVocab: z.number().int(),
      })
      .loose(),
    notes: z.array(z.string()),
    sparsity: z.array(z.number()),
    naturalSparsity: z.array(z.number()).nullable(),
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
  /** energy.dense/sparse, latency.natural/sparse, … */
  ratios: z.record(z.string(), z.number().nullable()),
  notCosted: z.array(z.record(z.string(), z.unknown())),
  notModelled: z.array(z.record(z.string(), z.unknown())),
  /** The cpu profile's prediction beside a bench's measurement (`--bench`). */
  benchCheck: z.unknown(),
  evidenceOrder: z.array(z.string()),
});
export type HwFile = z.infer<typeof HwFile>;

export function readHw(path: string): HwFile {
  return readFormat(HwFile, path, 'a hardware estimate', 'actsparse hw --json FILE');
}

export function writeHw(path: string, h: HwFile): void {
  writeJsonFile(path, checked(HwFile, h, path));
}
