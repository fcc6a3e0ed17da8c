/**
 * `results.json`, the result of `actsparse eval`, shaped like lm-evaluation-harness's
 * (`results: {task: {acc, acc_stderr, …}}`, `versions`, `config`) with actsparse's
 * additions: held-out text loss, the sparsity measured while evaluating, the dense
 * baseline beside a sparse run, the model facts and timing. One schema, writer, reader.
 */
import { z } from 'zod';
import { writeJsonFile } from '../util/files.ts';
import { ModelFacts } from './facts.ts';
import { checked, parseFormat, readFormat } from './read.ts';

const Metrics = z.record(z.string(), z.number().nullable());
const TextResult = z.object({ meanNll: z.number(), perplexity: z.number(), tokens: z.number() });

/** The `kind` of the file. */
export const EVAL_KIND = 'actsparse.eval' as const;

export const SiteSparsity = z.object({
  block: z.number().int().min(0),
  site: z.string(),
  sparsity: z.number().min(0).max(1),
  naturalSparsity: z.number().min(0).max(1),
});
export type SiteSparsity = z.infer<typeof SiteSparsity>;

export const EvalResults = z.object({
  formatVersion: z.literal(1),
  kind: z.literal(EVAL_KIND),
  /** Metrics of the model as evaluated (with thresholds when given), per task. */
  results: z.record(z.string(), Metrics),
  versions: z.record(z.string(), z.number()),
  /** Mean NLL of each held-out text. */
  heldOut: z.record(z.string(), TextResult),
  sparsity: z.object({
    macWeighted: z.number().min(0).max(1),
    naturalMacWeighted: z.number().min(0).max(1),
    perSite: z.array(SiteSparsity),
  }),
  /** The dense baseline, when the run had thresholds. */
  dense: z
    .object({
      results: z.record(z.string(), Metrics),
      heldOut: z.record(z.string(), TextResult),
    })
    .nullable(),
  /** The model evaluated (absent in files from before it was recorded). */
  model: ModelFacts.extend({ file: z.string() }).optional(),
  config: z.record(z.string(), z.unknown()),
  timing: z.record(z.string(), z.object({ seconds: z.number() })),
  tool: z.object({ name: z.string(), version: z.string() }),
});
export type EvalResults = z.infer<typeof EvalResults>;

export function readEvalResults(path: string): EvalResults {
  return readFormat(EvalResults, path, 'eval results', 'actsparse eval --out DIR');
}

export function writeEvalResults(path: string, r: EvalResults): void {
  writeJsonFile(path, checked(EvalResults, r, path));
}

/** The same for JSON already read (`path` names it in errors). */
export function parseEvalResults(raw: unknown, path: string): EvalResults {
  return parseFormat(EvalResults, raw, path, 'eval results', 'actsparse eval --out DIR');
}
