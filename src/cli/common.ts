/** Opening a model the way every command does: checkpoint, backend, tokenizer. */
import { openModel as openModelFile } from '../api.ts';
import { UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { LanguageModel } from '../models/model.ts';
import { type Parsed, str } from './args.ts';

export interface Loaded {
  ckpt: Checkpoint;
  model: LanguageModel;
  tokenizer: Tokenizer;
}

/** The library's openModel with the command's --backend, --thresholds and --tokenizer. */
export function openModel(path: string, p: Parsed): Loaded {
  const o = openModelFile(path, {
    backend: str(p, 'backend'),
    thresholds: str(p, 'thresholds'),
    tokenizer: str(p, 'tokenizer'),
  });
  return { ckpt: o.checkpoint, model: o.model, tokenizer: o.tokenizer };
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
