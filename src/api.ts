/**
 * Opening a model as every command does (the library's front door, beside the lower
 * layers it composes): the checkpoint, the backend, the tokenizer found next to the
 * model, and optionally the thresholds of a calibration made for these weights.
 */
import { readThresholds } from './formats/thresholds.ts';
import type { Checkpoint } from './io/checkpoint.ts';
import { openCheckpoint } from './io/open.ts';
import { type Tokenizer, tokenizerForModel } from './io/tokenizer.ts';
import type { LanguageModel } from './models/model.ts';
import { loadModel } from './models/registry.ts';
import { applyThresholds } from './sparsity/plan.ts';
import { selectBackend } from './tensor/select.ts';

export interface OpenOptions {
  /** `js`, `wasm`, `native` or `auto` (default: the fastest that loads). */
  backend?: string;
  /** A thresholds.json made for these weights: its λ are set, with zero-skipping copies. */
  thresholds?: string;
  /** A tokenizer file; by default the one next to the model (or the byte tokenizer). */
  tokenizer?: string;
}

export interface OpenedModel {
  model: LanguageModel;
  tokenizer: Tokenizer;
  /** The checkpoint, still open (close it when its metadata is no longer needed). */
  checkpoint: Checkpoint;
}

export function openModel(path: string, opts: OpenOptions = {}): OpenedModel {
  const backend = selectBackend(opts.backend);
  const plan = opts.thresholds ? readThresholds(opts.thresholds) : null;
  const checkpoint = openCheckpoint(path);
  try {
    const model = loadModel(checkpoint, backend, { sparse: !!plan });
    if (plan) applyThresholds(model, plan, opts.thresholds!);
    const tokenizer = tokenizerForModel({
      modelPath: path,
      vocabSize: model.nVocab,
      explicit: opts.tokenizer,
    });
    return { model, tokenizer, checkpoint };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}
