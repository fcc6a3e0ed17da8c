/**
 * `bench.json`, what `actsparse bench` measured on a machine: memory bandwidth, kernel
 * rates per backend and thread count, the zero-skipping speedups, and a model's decode
 * and sequence speed. Read by `hw --bench` (to fill the cpu profile) and `report`.
 */
import { z } from 'zod';
import { writeJsonFile } from '../util/files.ts';
import { ShapeFacts, SiteShape } from './facts.ts';
import { checked, readFormat } from './read.ts';

/** Median, min and max of repeated measurements. */
export const Stat = z.object({ median: z.number(), min: z.number(), max: z.number() });
export type Stat = z.infer<typeof Stat>;

export const ModelBench = z.object({
  source: z.string(),
  backend: z.string(),
  shape: z.string(),
  /** Bytes of weights one token reads densely (block layers + head). */
  weightBytesPerToken: z.number(),
  decodeDense: Stat,
  /** The bandwidth floor for dense decode: bandwidth ÷ bytes per token. */
  floorTokensPerSec: z.number().nullable(),
  /** The sparsity λ was chosen for, or null for calibrated thresholds or per-site targets. */
  targetZeros: z.number().nullable(),
  /** Where per-site target zeros came from (λ chosen per site to reach them). */
  zerosSource: z.string().optional(),
  /** Tokens per timed decode run. */
  decodeTokens: z.number().int().optional(),
  measuredZeros: z.number().min(0).max(1),
  decodeSparse: Stat,
  sequenceT: z.number(),
  sequence: Stat.nullable(),
  /** The model's shape, for cost models (bench files from before it was recorded lack it). */
  facts: ShapeFacts.extend({ siteShapes: z.array(SiteShape) }).optional(),
});
export type ModelBench = z.infer<typeof ModelBench>;

export const BenchResult = z.object({
  formatVersion: z.literal(1),
  machine: z.object({ cpu: z.string(), cores: z.number(), node: z.string() }),
  backends: z.array(z.string()),
  /** GB/s reading a ≥ 256 MiB buffer (native only: JS cannot stream at DRAM speed). */
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
      /** What the speedup is measured against (the fastest dense path). */
      baseline: z.string().optional(),
    }),
  ),
  model: ModelBench.optional(),
  /** Stopped early (Ctrl-C): what was measured before is kept. */
  interrupted: z.boolean().optional(),
});
export type BenchResult = z.infer<typeof BenchResult>;

export function readBench(path: string): BenchResult {
  return readFormat(BenchResult, path, 'a bench result', 'actsparse bench --json FILE');
}

export function writeBench(path: string, r: BenchResult): void {
  writeJsonFile(path, checked(BenchResult, r, path));
}
