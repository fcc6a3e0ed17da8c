/**
 * Opening a model as every command does (the library's front door, beside the lower
 * layers it composes): the checkpoint, the backend, the tokenizer found next to the
 * model, and optionally the thresholds of a calibration made for these weights.
 */
import { readThresholds, thresholdsPath } from './formats/thresholds.ts';
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
  /**
   * A thresholds.json made for these weights, or the calibration folder holding it: its
   * λ are set, with zero-skipping copies.
   */
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
  const { model, checkpoint } = openModelOnly(path, opts);
  try {
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

/** The model without a tokenizer, for work on token ids only (`logits --tokens`). */
export function openModelOnly(
  path: string,
  opts: Omit<OpenOptions, 'tokenizer'> = {},
): Omit<OpenedModel, 'tokenizer'> {
  const backend = selectBackend(opts.backend);
  const file = opts.thresholds ? thresholdsPath(opts.thresholds) : null;
  const plan = file ? readThresholds(file) : null;
  const checkpoint = openCheckpoint(path);
  try {
    const model = loadModel(checkpoint, backend, { sparse: !!plan });
    if (plan) applyThresholds(model, plan, file!);
    return { model, checkpoint };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}
