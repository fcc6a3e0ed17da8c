/**
 * Opening a model as every command does (the library's front door, beside the lower
 * layers it composes): the checkpoint, the backend, the tokenizer found next to the
 * model, and optionally the thresholds of a calibration made for these weights.
 *
 * Opening is asynchronous (a WebGPU device opens by promise). A process that used the
 * webgpu backend calls `closeBackends()` when done: Dawn keeps Node alive until then.
 */
import { readThresholds, thresholdsPath } from './formats/thresholds.ts';
import type { Checkpoint } from './io/checkpoint.ts';
import { openCheckpoint } from './io/open.ts';
import { type Tokenizer, tokenizerForModel } from './io/tokenizer.ts';
import type { LanguageModel } from './models/model.ts';
import { detectEntry, loadModel } from './models/registry.ts';
import { applyThresholds } from './sparsity/plan.ts';
import { openBackend } from './tensor/select.ts';

export interface OpenOptions {
  /** `js`, `wasm`, `native`, `webgpu` or `auto` (default: a GPU, else the fastest CPU tier). */
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

export async function openModel(path: string, opts: OpenOptions = {}): Promise<OpenedModel> {
  const { model, checkpoint } = await openModelOnly(path, opts);
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
export async function openModelOnly(
  path: string,
  opts: Omit<OpenOptions, 'tokenizer'> = {},
): Promise<Omit<OpenedModel, 'tokenizer'>> {
  const file = opts.thresholds ? thresholdsPath(opts.thresholds) : null;
  const plan = file ? readThresholds(file) : null;
  const checkpoint = openCheckpoint(path);
  try {
    // The backend must have the kernel families of the checkpoint's architecture.
    const arch = detectEntry(checkpoint);
    const backend = await openBackend(opts.backend, {
      families: arch?.families,
      what: arch?.label,
    });
    const model = loadModel(checkpoint, backend, { sparse: !!plan });
    if (plan) applyThresholds(model, plan, file!);
    return { model, checkpoint };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}
