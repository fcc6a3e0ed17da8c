/**
 * `bench.json`, what `actsparse bench` measured on a machine: memory bandwidth, kernel
 * rates per backend and thread count, the zero-skipping speedups, and a model's decode
 * and sequence speed. Read by `hw --bench` (to fill the cpu profile) and `report`.
 *
 * Version 2 added the GPU figures (`gpu`) and the model's calibration rate
 * (`model.calibration`); version 1 files (without them) are still read.
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
  /**
   * Calibration speed: loss passes over `windows` windows of `ctx` tokens (every block,
   * the head and the fused loss, as the search runs them), in block-token forwards/s.
   * Absent in version 1 files.
   */
  calibration: z
    .object({ windows: z.number().int(), ctx: z.number().int(), blockTokensPerSec: Stat })
    .optional(),
  /** The model's shape, for cost models (bench files from before it was recorded lack it). */
  facts: ShapeFacts.extend({ siteShapes: z.array(SiteShape) }).optional(),
});
export type ModelBench = z.infer<typeof ModelBench>;

/** A WebGPU device's figures: products in TFLOP/s, streams in GB/s. */
export const GpuBench = z.object({
  backend: z.string(),
  /** A CPU software adapter (lavapipe): its figures say nothing about a GPU. */
  software: z.boolean(),
  /** Adapter, limits and features used (WebGpuBackend.details). */
  device: z.record(z.string(), z.string()),
  /** Copy bandwidth: bytes read + written per second, GB/s. */
  copyGbps: Stat,
  gemm: z.array(z.object({ variant: z.string(), shape: z.string(), tflops: Stat })),
  gemv: z.array(z.object({ dtype: z.string(), shape: z.string(), gbps: Stat })),
  /** The zero-skipping GEMV over the fastest dense fp32 GEMV; ideal 1/(1 − zeros). */
  sparse: z.array(z.object({ zeros: z.number().min(0).max(1), speedup: Stat, ideal: z.number() })),
  /** What the subgroup-matrix GEMM's self-check said (or why it did not run). */
  matrix: z.string(),
});
export type GpuBench = z.infer<typeof GpuBench>;

/** The version written; older ones are read (fields they lack are optional). */
export const BENCH_FORMAT_VERSION = 2;

export const BenchResult = z.object({
  formatVersion: z.union([z.literal(1), z.literal(2)]),
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
  /** WebGPU devices measured (version 2). */
  gpu: z.array(GpuBench).optional(),
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
