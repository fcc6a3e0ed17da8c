/** A calibration or an evaluation result, told apart by its `kind`. */
import { UserError } from '../errors.ts';
import { readJsonFile } from '../util/files.ts';
import { EVAL_KIND, type EvalResults, parseEvalResults } from './results.ts';
import { parseThresholds, THRESHOLDS_KIND, type ThresholdsFile } from './thresholds.ts';

export type RunFile =
  | { kind: 'thresholds'; file: ThresholdsFile }
  | { kind: 'eval'; file: EvalResults };

/** thresholds.json (calibrate) or results.json (eval), validated. */
export function readRunFile(path: string): RunFile {
  const raw = readJsonFile(path);
  const kind = (raw as { kind?: unknown } | null)?.kind;
  if (kind === THRESHOLDS_KIND) return { kind: 'thresholds', file: parseThresholds(raw, path) };
  if (kind === EVAL_KIND) return { kind: 'eval', file: parseEvalResults(raw, path) };
  throw new UserError(
    `${path}: kind ${JSON.stringify(kind)} is neither ${THRESHOLDS_KIND} nor ${EVAL_KIND}`,
    'Give a thresholds.json (calibrate) or results.json (eval), or a what-if with --sparsity.',
  );
}
