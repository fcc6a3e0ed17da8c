import { UserError } from '../../errors.ts';

/** Throws unless `id` is an integer in [0, limit): decoding an unknown id is never silent. */
export function checkId(id: number, limit: number, tokenizer: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= limit) {
    throw new UserError(
      `token id ${id} is not in the ${tokenizer} tokenizer's vocabulary (ids 0..${limit - 1})`,
      'Check that the tokenizer matches the model (pass --tokenizer).',
    );
  }
}

/** Concatenates byte pieces into one array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
