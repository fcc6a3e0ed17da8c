/** Opening a model the way every command does: checkpoint, backend, tokenizer. */
import { UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { openCheckpoint } from '../io/open.ts';
import { type Tokenizer, tokenizerForModel } from '../io/tokenizer.ts';
import type { LanguageModel } from '../models/model.ts';
import { loadModel } from '../models/registry.ts';
import { applyThresholds, readThresholds } from '../sparsity/plan.ts';
import { openBackend } from '../tensor/select.ts';
import { type Parsed, str } from './args.ts';

export interface Loaded {
  ckpt: Checkpoint;
  model: LanguageModel;
  tokenizer: Tokenizer;
}

/**
 * Opens checkpoint, backend and tokenizer; with --thresholds, also the zero-skipping
 * weight copies and the λ of a thresholds file made for this model.
 */
export async function openModel(path: string, p: Parsed): Promise<Loaded> {
  const backend = await openBackend(str(p, 'backend'));
  const thresholds = str(p, 'thresholds');
  const plan = thresholds ? readThresholds(thresholds) : null;
  const ckpt = openCheckpoint(path);
  try {
    const model = loadModel(ckpt, backend, { sparse: !!plan });
    if (plan) applyThresholds(model, plan, thresholds!);
    const tokenizer = tokenizerForModel({
      modelPath: path,
      vocabSize: model.nVocab,
      explicit: str(p, 'tokenizer'),
    });
    return { ckpt, model, tokenizer };
  } catch (e) {
    ckpt.close();
    throw e;
  }
}

/** "1,2,3" → [1, 2, 3], each checked against the vocabulary. */
export function parseTokenList(s: string, vocab: number): number[] {
  const ids = s.split(',').map((t) => t.trim());
  return ids.map((t, i) => {
    const v = Number(t);
    if (t === '' || !Number.isInteger(v) || v < 0 || v >= vocab) {
      throw new UserError(`--tokens: item ${i + 1} ("${t}") is not a token id in 0..${vocab - 1}`);
    }
    return v;
  });
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
