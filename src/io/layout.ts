/**
 * Re-layouts that converters apply to RWKV weights, and their inverses. A reader keeps,
 * per canonical tensor, the stored tensor's shape (PyTorch order) and one `Relayout`;
 * `relayout` turns the stored values into the canonical ones:
 *
 *   none         same values in the same order (squeeze, unsqueeze, flatten, reshape)
 *   transpose    stored (a, b)       → canonical (b, a)
 *   transpose12  stored (n, a, b)    → canonical (n, b, a)   (each of n matrices)
 *   slice        part `index` of `count` equal parts of the stored values (dim 0)
 *
 * and an optional `scale` multiplies the result (undoing a converter's division).
 */
import { numel } from '../tensor/tensor.ts';

export type Relayout =
  | { readonly kind: 'none' }
  | { readonly kind: 'transpose' }
  | { readonly kind: 'transpose12' }
  | { readonly kind: 'slice'; readonly index: number; readonly count: number };

export const NONE: Relayout = { kind: 'none' };
export const TRANSPOSE: Relayout = { kind: 'transpose' };
export const TRANSPOSE12: Relayout = { kind: 'transpose12' };

/** Canonical values from stored ones; `stored` is the stored tensor's PyTorch shape. */
export function relayout(
  r: Relayout,
  stored: readonly number[],
  x: Float32Array,
  scale = 1,
): Float32Array {
  let out: Float32Array;
  switch (r.kind) {
    case 'none':
      out = x;
      break;
    case 'transpose': {
      const [a, b] = stored;
      out = transpose(x, a, b);
      break;
    }
    case 'transpose12': {
      const [n, a, b] = stored;
      out = new Float32Array(x.length);
      for (let t = 0; t < n; t++)
        out.set(transpose(x.subarray(t * a * b, (t + 1) * a * b), a, b), t * a * b);
      break;
    }
    case 'slice': {
      const part = x.length / r.count;
      out = x.slice(r.index * part, (r.index + 1) * part);
      break;
    }
  }
  if (scale !== 1) for (let i = 0; i < out.length; i++) out[i] *= scale;
  return out;
}

/** Row-major (a, b) → (b, a). */
export function transpose(x: Float32Array, a: number, b: number): Float32Array {
  const out = new Float32Array(a * b);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[j * a + i] = x[i * b + j];
  return out;
}

/** The canonical shape a relayout produces from `stored` (slice: dim 0 divided). */
export function relayoutShape(r: Relayout, stored: readonly number[]): number[] {
  switch (r.kind) {
    case 'none':
      return [...stored];
    case 'transpose':
      return [stored[1], stored[0]];
    case 'transpose12':
      return [stored[0], stored[2], stored[1]];
    case 'slice':
      return [numel(stored) / r.count];
  }
}
