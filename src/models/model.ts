/**
 * What every architecture offers the rest of actsparse: a forward pass over a packed
 * batch of sequences, layer by layer (embed → blocks → head), a state per sequence
 * owned by the backend, and named threshold sites before its linear layers.
 *
 * One path serves a whole sequence and a single token (T = 1, the RNN form): the model
 * files hold no separate step code. `forward` and `step` below are the ways in.
 */
import { UserError } from '../errors.ts';
import type { Backend, Buf, IdBuf, Linear } from '../tensor/backend.ts';
import { Seqs } from '../tensor/backend.ts';

/** One threshold site of a block: the input of one linear layer [cols → rows]. */
export interface SiteSpec {
  /** Site id as METHOD.md names it, e.g. `att.key`. */
  readonly id: string;
  /** Inputs of the linear layer(s) it feeds (the thresholded width). */
  readonly cols: number;
  /** Outputs fed: each non-zero input costs `rows` multiply-accumulates. */
  readonly rows: number;
  /**
   * When the input is another site's layer output after only an activation (RWKV-4's
   * ffn.value reads relu²(ffn.key ·)): that site's id. An event-driven chip emits these
   * events from that layer's neurons, so `hw` costs them there.
   */
  readonly fedBy?: string;
}

/**
 * The sites of a model: the same list in every block, in search order. Global site
 * index g = block · perBlock.length + position in `perBlock`.
 */
export interface SiteTable {
  /** `gt` keeps |x| > λ (RWKV), `ge` keeps |x| ≥ λ (the authors' OPT code). */
  readonly comparison: 'gt' | 'ge';
  readonly perBlock: readonly SiteSpec[];
  readonly nBlocks: number;
}

/**
 * Sees the input of site g after its threshold (exactly what the linear layer reads):
 * x is [rows, cols] on the backend, valid during the call. Hooks queue backend ops
 * (zero counts, quantile sums into a Tally); nothing is read back per call.
 */
export type SiteHook = (g: number, x: Buf, rows: number, cols: number) => void;

/** The recurrent state (or KV cache) of a batch of sequences, owned by the backend. */
export interface ModelState {
  /** Sequences held. */
  readonly batch: number;
  clone(): this;
  /** A state of idx.length sequences: sequence i is a copy of this state's idx[i]. */
  select(idx: readonly number[]): this;
  /** Gives device memory back; the state must not be used afterwards. */
  free(): void;
}

/** A packed batch of token sequences: host ids, their device copy and where each starts. */
export interface Batch {
  readonly seqs: Seqs;
  /** All sequences' ids, packed. */
  readonly tokens: Int32Array;
  readonly ids: IdBuf;
}

export interface LanguageModel<S extends ModelState = ModelState> {
  readonly arch: string;
  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  /**
   * The dimensions and options that define the architecture (plain data: recorded in
   * thresholds and results files, and enough for the registry's `random` to rebuild
   * the same shapes for benchmarks and `hw`'s op counts).
   */
  readonly config: Readonly<Record<string, unknown>>;
  /** Longest sequence the model can take from a fresh state (∞ for RNNs). */
  readonly maxContext: number;
  readonly backend: Backend;
  readonly sites: SiteTable;
  /** λ per global site; 0 means pass-through. Use `setThresholds` to change. */
  readonly thresholds: Float32Array;
  setThresholds(lambda: ArrayLike<number>): void;
  /** A fresh state for `batch` sequences (default 1). */
  newState(batch?: number): S;
  /** Parameter count and the bytes held by the backend, for `info`. */
  readonly stats: { parameters: number; weightBytes: number };
  /**
   * A digest of the architecture and a sample of every weight tensor, the same whatever
   * the file format: thresholds files are checked against it.
   */
  readonly fingerprint: string;

  /**
   * x [rows, d] for the batch; `state` says where each sequence continues. An
   * architecture may carry more per-token data from block to block after the residual
   * stream (RWKV-7's v_first: [x | v_first], 2·rows·d values): callers copy the buffer
   * whole (its length) and read the residual stream as its first rows·d values.
   */
  embed(batch: Batch, state: S): Buf;
  /** Runs block b on x (as embed returns it) in place, advancing that block's part of `state`. */
  block(b: number, x: Buf, batch: Batch, state: S, hook?: SiteHook): void;
  /** logits [rows, vocab] of the last block's output x [rows, d] (x is left as it is). */
  head(x: Buf, rows: number): Buf;
}

/** The batch of these token sequences, uploaded to the model's backend. */
export function makeBatch(
  model: Pick<LanguageModel, 'backend' | 'nVocab'>,
  sequences: readonly ArrayLike<number>[],
): Batch {
  const seqs = new Seqs(sequences.map((s) => s.length));
  const tokens = new Int32Array(seqs.rows);
  let o = 0;
  for (const s of sequences) {
    for (let t = 0; t < s.length; t++) tokens[o + t] = s[t];
    o += s.length;
  }
  checkTokens(tokens, model.nVocab);
  return { seqs, tokens, ids: model.backend.uploadIds(tokens) };
}

/** The one error for a token the model has no embedding for, in every architecture. */
export function checkTokens(tokens: ArrayLike<number>, nVocab: number): void {
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= nVocab) {
      throw new UserError(
        `token ${id} at position ${t} is outside the vocabulary (0..${nVocab - 1})`,
        'The ids do not belong to this model: check the tokenizer (--tokenizer) or the --tokens you gave.',
      );
    }
  }
}

export interface ForwardOptions {
  hook?: SiteHook;
  /**
   * `all`: logits for every row [rows, vocab]; `last`: for the last row of each sequence
   * [B, vocab]; `none`: only the state advances (returns null).
   */
  logits?: 'all' | 'last' | 'none';
}

/** Runs the batch through the model from `state` (advanced in place). */
export function forward(
  model: LanguageModel,
  batch: Batch,
  state: ModelState,
  opts: ForwardOptions = {},
): Buf | null {
  const be = model.backend;
  const { seqs } = batch;
  const x = model.embed(batch, state);
  for (let b = 0; b < model.nLayer; b++) model.block(b, x, batch, state, opts.hook);
  const mode = opts.logits ?? 'all';
  let out: Buf | null = null;
  if (mode === 'all') out = model.head(x, seqs.rows);
  else if (mode === 'last') {
    const last = be.alloc(seqs.count * model.nEmbd);
    be.lastRows(last, x, seqs, model.nEmbd);
    out = model.head(last, seqs.count);
    be.free(last);
  }
  be.free(x);
  return out;
}

/** Logits [T, vocab] of one sequence from `state`, read back. */
export async function sequenceLogits(
  model: LanguageModel,
  tokens: ArrayLike<number>,
  state: ModelState,
  logits: 'all' | 'last' = 'all',
): Promise<Float32Array> {
  if (tokens.length === 0) return new Float32Array(0);
  const batch = makeBatch(model, [tokens]);
  const out = forward(model, batch, state, { logits }) as Buf;
  const host = await model.backend.read(out);
  model.backend.free(out);
  model.backend.free(batch.ids);
  return host;
}

/** One token in RNN form (T = 1): its logits [vocab], read back. */
export function step(
  model: LanguageModel,
  token: number,
  state: ModelState,
): Promise<Float32Array> {
  return sequenceLogits(model, [token], state, 'all');
}

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
 * Runs `fn` with the thresholds λ (a Float32Array of zeros for dense), then restores the
 * model's own, whatever happens.
 */
export async function withThresholds<T>(
  model: LanguageModel,
  lambda: ArrayLike<number>,
  fn: () => Promise<T> | T,
): Promise<T> {
  const saved = Float32Array.from(model.thresholds);
  model.setThresholds(lambda);
  try {
    return await fn();
  } finally {
    model.setThresholds(saved);
  }
}

/**
 * Whether a product reads its weight through the zero-skipping kernel at a site with λ:
 * only for one input row, a weight with its input-major copy, and at least 1 MiB. A
 * weight under 1 MiB stays in the caches, where the dense kernel's streaming beats
 * reading scattered rows (measured: 0.9× dense at 60% zeros for d = 192); larger ones
 * are read from memory, where skipping rows saves their bytes.
 */
export function skipZeros(w: Linear, lambda: number, rows: number): boolean {
  return rows === 1 && lambda > 0 && w.sparse && w.rows * w.cols * 4 >= 1 << 20;
}

/**
 * The threshold site before a linear layer, shared by every model: threshold x
 * [rows, cols] in place when λ > 0, then let the hook see it.
 */
/** A LayerNorm's parameters, [width] each. */
export interface LayerNorm {
  weight: Buf;
  bias: Buf;
}

/** x [rows, width] = table[token] for every token of the batch (the embedding lookup). */
export function embedTokens(be: Backend, table: Buf, batch: Batch, width: number): Buf {
  const x = be.alloc(batch.seqs.rows * width);
  be.gather(x, table, batch.ids, width);
  return x;
}

/** logits [rows, vocab] = head · LN(x; ln), eps 1e-5 (RWKV's ln_out); x is left as it is. */
export function layerNormHead(
  be: Backend,
  ln: LayerNorm,
  head: Linear,
  x: Buf,
  rows: number,
  width: number,
  vocab: number,
): Buf {
  const xn = be.alloc(rows * width);
  be.layerNorm(xn, x, ln.weight, ln.bias, rows, width, 1e-5);
  const out = be.alloc(rows * vocab);
  be.matmul(out, head, xn, rows);
  be.free(xn);
  return out;
}

/**
 * y = W·x (+ bias) reading site g's input x (thresholded by `applySite`): the product is
 * tallied for site g, and in step mode it skips the zero inputs where that pays
 * (`skipZeros`). Every model's thresholded products go through here.
 */
export function siteProduct(
  model: Pick<LanguageModel, 'backend' | 'thresholds'>,
  y: Buf,
  w: Linear,
  x: Buf,
  rows: number,
  g: number,
  bias?: Buf | null,
): void {
  model.backend.matmul(y, w, x, rows, {
    bias: bias ?? undefined,
    site: g,
    skipZeros: skipZeros(w, model.thresholds[g], rows),
  });
}

export function applySite(
  model: Pick<LanguageModel, 'backend' | 'thresholds' | 'sites'>,
  g: number,
  x: Buf,
  rows: number,
  cols: number,
  hook: SiteHook | undefined,
): void {
  const lambda = model.thresholds[g];
  if (lambda > 0) model.backend.threshold(x, lambda, model.sites.comparison, rows * cols);
  hook?.(g, x, rows, cols);
}
