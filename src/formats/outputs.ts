/**
 * The `--json` results of the commands that write no run file: `info` (a checkpoint's
 * facts), `perplexity` (a text's loss) and `generate` (the text and its speed). Each is
 * plain data with a `formatVersion` and a `kind`, checked before it is written.
 */
import { z } from 'zod';
import { ShapeFacts } from './facts.ts';
import { formatText } from './read.ts';

export const InfoResult = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.info'),
  file: z.string(),
  /** The files read (a folder's chosen file or its shards) and their bytes. */
  files: z.array(z.string()),
  bytesOnDisk: z.number().int().min(0),
  format: z.string(),
  /** Null when the tensors fit no known architecture. */
  model: ShapeFacts.nullable(),
  tensors: z.number().int(),
  parameters: z.number().int(),
  /** Stored dtype → share of the parameters. */
  dtypes: z.record(z.string(), z.number()),
  backend: z.string(),
  meta: z.record(z.string(), z.unknown()),
});
export type InfoResult = z.infer<typeof InfoResult>;

export const PerplexityResult = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.perplexity'),
  model: z.string(),
  text: z.string(),
  tokenizer: z.string(),
  thresholds: z.string().nullable(),
  documents: z.number().int(),
  ctx: z.number().int(),
  windows: z.number().int(),
  tokens: z.number().int(),
  meanNll: z.number(),
  perplexity: z.number(),
  /** MAC-weighted zeros in the block-site inputs while scoring (with thresholds: reached). */
  sparsity: z.number().min(0).max(1),
  seconds: z.number(),
});
export type PerplexityResult = z.infer<typeof PerplexityResult>;

export const GenerateResult = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.generate'),
  model: z.string(),
  tokenizer: z.string(),
  thresholds: z.string().nullable(),
  prompt: z.string(),
  text: z.string(),
  ids: z.array(z.number().int()),
  temperature: z.number(),
  topP: z.number(),
  seed: z.number().int(),
  promptTokensPerSecond: z.number(),
  /** Generated tokens per second, sampling included. */
  tokensPerSecond: z.number(),
  /** The same without the time spent sampling (the model alone). */
  modelTokensPerSecond: z.number(),
  backend: z.string(),
});
export type GenerateResult = z.infer<typeof GenerateResult>;

export const infoText = (r: InfoResult) => formatText(InfoResult, r, 'info --json');
export const perplexityText = (r: PerplexityResult) =>
  formatText(PerplexityResult, r, 'perplexity --json');
export const generateText = (r: GenerateResult) => formatText(GenerateResult, r, 'generate --json');
