/**
 * What every architecture offers the rest of actsparse: sequence and step forwards,
 * a cloneable state, and named threshold sites before its linear layers.
 */
import type { Backend, Linear } from '../tensor/backend.ts';

/** One threshold site of a block: the input of one linear layer [cols → rows]. */
export interface SiteSpec {
  /** Site id as METHOD.md names it, e.g. `att.key`. */
  readonly id: string;
  /** Inputs of the linear layer it feeds (the thresholded width). */
  readonly cols: number;
  /** Outputs of that layer: each non-zero input costs `rows` multiply-accumulates. */
  readonly rows: number;
}

/**
 * The sites of a model: the same list in every block, in search order. Global site
 * index = block · perBlock.length + position in `perBlock`.
 */
export interface SiteTable {
  /** `gt` keeps |x| > λ (RWKV), `ge` keeps |x| ≥ λ (the authors' OPT code). */
  readonly comparison: 'gt' | 'ge';
  readonly perBlock: readonly SiteSpec[];
  readonly nBlocks: number;
}

/**
 * Receives the input of a site after its threshold (exactly what the linear layer
 * sees): `x` is [tokens, cols] and is only valid during the call.
 */
export type SiteObserver = (site: number, x: Float32Array, tokens: number) => void;

export interface ModelState {
  clone(): ModelState;
}

export interface LanguageModel<S extends ModelState = ModelState> {
  readonly arch: string;
  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  /** Longest sequence the model can take from a fresh state (∞ for RNNs). */
  readonly maxContext: number;
  readonly backend: Backend;
  readonly sites: SiteTable;
  /** λ per global site; 0 means pass-through. Use `setThresholds` to change. */
  readonly thresholds: Float32Array;
  observer: SiteObserver | null;
  setThresholds(lambda: ArrayLike<number>): void;
  newState(): S;
  /**
   * Runs tokens through the model from `state` (advanced in place) with one matrix
   * product per linear layer. Returns logits [T, vocab] (or the last row only).
   */
  forward(tokens: ArrayLike<number>, state: S, opts?: { logits?: 'all' | 'last' }): Float32Array;
  /** One token in RNN form; returns the logits (a view valid until the next call). */
  step(token: number, state: S): Float32Array;
  /** Parameter count and the bytes held by the backend, for `info`. */
  readonly stats: { parameters: number; weightBytes: number };
  /**
   * A digest of the architecture and a sample of every weight tensor, the same whatever
   * the file format: thresholds files are checked against it.
   */
  readonly fingerprint: string;

  // Layer by layer, for calibration: forward = logits(block(…block(embed(tokens)))).
  /**
   * x [T, d] for the tokens; `state` says where they continue (positions, for models
   * with learned positions); without it they start a sequence.
   */
  embed(tokens: ArrayLike<number>, state?: S): Float32Array;
  /** Runs block `b` on x [T, d] in place, advancing that block's part of `state`. */
  block(b: number, x: Float32Array, T: number, state: S): void;
  /** logits [T, vocab] from the last block's output x [T, d]. */
  logits(x: Float32Array, T: number): Float32Array;
}

/**
 * Applies a threshold in place: zero every value whose magnitude does not pass λ. The
 * reference kernel itself (reference.ts `threshold`); models call their backend's
 * `ops.threshold`, the same function or a faster one.
 */
export { threshold as applyThreshold } from '../tensor/reference.ts';

/** Checks λ (one finite value ≥ 0 per site) and copies it into a model's thresholds. */
export function copyThresholds(into: Float32Array, lambda: ArrayLike<number>): void {
  if (lambda.length !== into.length) {
    throw new Error(`setThresholds: ${lambda.length} values for ${into.length} sites`);
  }
  for (let i = 0; i < lambda.length; i++) {
    const v = lambda[i];
    if (!(v >= 0) || !Number.isFinite(v))
      throw new Error(`setThresholds: λ[${i}] = ${v} is not a finite value ≥ 0`);
  }
  into.set(lambda);
}

/**
 * Whether step mode reads a weight through the zero-skipping kernel at a site with λ.
 * A weight under 1 MiB stays in the caches, where the dense kernel's streaming beats
 * reading scattered rows (measured: 0.9× dense at 60% zeros for d = 192); larger ones
 * are read from memory, where skipping rows saves their bytes.
 */
export function skipZeros(w: Linear, lambda: number): boolean {
  return lambda > 0 && w.sparse && w.rows * w.cols * 4 >= 1 << 20;
}
