/**
 * RWKV-4 ("Dove"/"Raven"/Pile), as BlinkDL's RWKV_in_150_lines.py and rwkv.cpp
 * compute it, with the 7 threshold sites per block of METHOD.md §1.
 *
 * Sequence mode runs each linear layer as one matrix product over all tokens and only
 * the WKV recurrence token by token; step mode is the RNN form for one token. Both
 * give the same numbers (tested).
 */
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Linear } from '../tensor/backend.ts';
import {
  copyThresholds,
  type LanguageModel,
  type ModelState,
  type SiteObserver,
  type SiteTable,
  skipZeros,
} from './model.ts';
import { Fingerprint, readWeight, shapeOf } from './weights.ts';

// ---------------------------------------------------------------- Config

export interface Rwkv4Config {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Channel-mix hidden width (4·nEmbd in every release). */
  nFfn: number;
}

/** Site ids of one block, in the authors' search order (METHOD.md §1). */
export const RWKV4_SITES = [
  'att.key',
  'att.receptance',
  'att.value',
  'att.output',
  'ffn.receptance',
  'ffn.key',
  'ffn.value',
] as const;
export type Rwkv4Site = (typeof RWKV4_SITES)[number];
const S = Object.fromEntries(RWKV4_SITES.map((id, i) => [id, i])) as Record<Rwkv4Site, number>;

/** Infers the configuration from tensor names and shapes (never from the file name). */
export function rwkv4Config(ckpt: Checkpoint): Rwkv4Config {
  const [nVocab, nEmbd] = shapeOf(ckpt, 'emb.weight', 'the embedding');
  let nLayer = 0;
  while (ckpt.tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  if (nLayer === 0)
    throw new FormatError(ckpt.path, 'no blocks.0.ln1.weight: not an RWKV checkpoint');
  const nFfn = shapeOf(ckpt, 'blocks.0.ffn.key.weight', 'the channel-mix width')[0];
  return { nLayer, nEmbd, nVocab, nFfn };
}

// ---------------------------------------------------------------- Weights

interface TimeMix {
  mixK: Float32Array; // [d]  (stored [1, 1, d])
  mixV: Float32Array; // [d]
  mixR: Float32Array; // [d]
  /** w = −exp(time_decay), precomputed */
  decay: Float32Array; // [d]
  /** u = time_first */
  first: Float32Array; // [d]
  key: Linear; // [d, d]
  value: Linear; // [d, d]
  receptance: Linear; // [d, d]
  output: Linear; // [d, d]
}

interface ChannelMix {
  mixK: Float32Array; // [d]
  mixR: Float32Array; // [d]
  key: Linear; // [f, d]
  receptance: Linear; // [d, d]
  value: Linear; // [d, f]
}

interface Block {
  ln1: [Float32Array, Float32Array]; // weight, bias [d]
  ln2: [Float32Array, Float32Array];
  att: TimeMix;
  ffn: ChannelMix;
}

// ---------------------------------------------------------------- State

/**
 * Per layer 5 vectors of width d: the previous normed input of time-mix and of
 * channel-mix (token shift), and the WKV numerator aa, denominator bb and their
 * shared exponent pp.
 */
export class Rwkv4State implements ModelState {
  constructor(
    readonly nLayer: number,
    readonly nEmbd: number,
    /** [nLayer, 5, d]: attX, aa, bb, pp, ffnX */
    readonly data = Rwkv4State.zero(nLayer, nEmbd),
  ) {}

  static zero(nLayer: number, d: number): Float32Array {
    const s = new Float32Array(nLayer * 5 * d);
    // pp starts at −1e30 so that the first token's exponent wins.
    for (let l = 0; l < nLayer; l++) s.fill(-1e30, (l * 5 + 3) * d, (l * 5 + 4) * d);
    return s;
  }

  /** A view of vector `k` (0 attX, 1 aa, 2 bb, 3 pp, 4 ffnX) of layer `l`. */
  vec(l: number, k: number): Float32Array {
    const d = this.nEmbd;
    return this.data.subarray((l * 5 + k) * d, (l * 5 + k + 1) * d);
  }

  clone(): Rwkv4State {
    return new Rwkv4State(this.nLayer, this.nEmbd, this.data.slice());
  }
}

// ---------------------------------------------------------------- Model

export class Rwkv4 implements LanguageModel<Rwkv4State> {
  readonly arch = 'rwkv4';
  readonly maxContext = Number.POSITIVE_INFINITY;
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  observer: SiteObserver | null = null;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;

  private constructor(
    readonly config: Rwkv4Config,
    readonly backend: Backend,
    private readonly emb: Float32Array, // [V, d]; ln0 already applied to every row
    private readonly blocks: Block[],
    private readonly lnOut: [Float32Array, Float32Array],
    private readonly head: Linear, // [V, d]
    parameters: number,
    readonly fingerprint: string,
  ) {
    const { nEmbd: d, nFfn: f, nLayer, nVocab } = config;
    this.nVocab = nVocab;
    this.nEmbd = d;
    this.nLayer = nLayer;
    this.sites = {
      comparison: 'gt',
      nBlocks: nLayer,
      perBlock: [
        { id: 'att.key', cols: d, rows: d },
        { id: 'att.receptance', cols: d, rows: d },
        { id: 'att.value', cols: d, rows: d },
        { id: 'att.output', cols: d, rows: d },
        { id: 'ffn.receptance', cols: d, rows: d },
        { id: 'ffn.key', cols: d, rows: f },
        { id: 'ffn.value', cols: f, rows: d },
      ],
    };
    this.thresholds = new Float32Array(nLayer * RWKV4_SITES.length);
    let weightBytes = emb.byteLength + head.bytes;
    for (const b of blocks) {
      for (const l of [
        b.att.key,
        b.att.value,
        b.att.receptance,
        b.att.output,
        b.ffn.key,
        b.ffn.receptance,
        b.ffn.value,
      ])
        weightBytes += l.bytes;
    }
    this.stats = { parameters, weightBytes };
    this.scratch = new StepScratch(d, f, nVocab);
  }

  /**
   * Loads RWKV-4 weights from any checkpoint format onto a backend. `sparse` also
   * prepares the input-major weight copies that step mode's zero-skipping kernel reads
   * (twice the weight memory of the block layers).
   */
  static load(ckpt: Checkpoint, backend: Backend, opts: { sparse?: boolean } = {}): Rwkv4 {
    const cfg = rwkv4Config(ckpt);
    const { nEmbd: d, nFfn: f, nVocab: V } = cfg;
    let parameters = 0;
    const fp = new Fingerprint(`rwkv4 ${cfg.nLayer}x${d} ffn ${f} vocab ${V}`);
    const vec = (name: string) => {
      parameters += d;
      return readWeight(ckpt, name, [d], fp);
    };
    const lin = (name: string, rows: number, cols: number, sparse = !!opts.sparse) => {
      parameters += rows * cols;
      return backend.prepare(readWeight(ckpt, name, [rows, cols], fp), rows, cols, { sparse });
    };

    // x = LN(emb[tok]; ln0) depends on the token only: apply ln0 to the table once.
    const emb = readWeight(ckpt, 'emb.weight', [V, d], fp);
    parameters += V * d;
    backend.ops.layerNorm(emb, emb, vec('blocks.0.ln0.weight'), vec('blocks.0.ln0.bias'), V, d);

    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const p = `blocks.${i}`;
      const decay = vec(`${p}.att.time_decay`).map((w) => -Math.exp(w));
      blocks.push({
        ln1: [vec(`${p}.ln1.weight`), vec(`${p}.ln1.bias`)],
        ln2: [vec(`${p}.ln2.weight`), vec(`${p}.ln2.bias`)],
        att: {
          mixK: vec(`${p}.att.time_mix_k`),
          mixV: vec(`${p}.att.time_mix_v`),
          mixR: vec(`${p}.att.time_mix_r`),
          decay,
          first: vec(`${p}.att.time_first`),
          key: lin(`${p}.att.key.weight`, d, d),
          value: lin(`${p}.att.value.weight`, d, d),
          receptance: lin(`${p}.att.receptance.weight`, d, d),
          output: lin(`${p}.att.output.weight`, d, d),
        },
        ffn: {
          mixK: vec(`${p}.ffn.time_mix_k`),
          mixR: vec(`${p}.ffn.time_mix_r`),
          key: lin(`${p}.ffn.key.weight`, f, d),
          receptance: lin(`${p}.ffn.receptance.weight`, d, d),
          value: lin(`${p}.ffn.value.weight`, d, f),
        },
      });
    }
    const lnOut: [Float32Array, Float32Array] = [vec('ln_out.weight'), vec('ln_out.bias')];
    const head = lin('head.weight', V, d, false); // the head is never thresholded
    return new Rwkv4(cfg, backend, emb, blocks, lnOut, head, parameters, fp.digest());
  }

  newState(): Rwkv4State {
    return new Rwkv4State(this.nLayer, this.nEmbd);
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /** The threshold site before a linear layer: threshold in place, then let an observer look. */
  private site(block: number, s: number, x: Float32Array, tokens: number): void {
    const g = block * RWKV4_SITES.length + s;
    const lambda = this.thresholds[g];
    // x is [tokens, cols]; λ = 0 (dense) needs no call at all.
    const n = tokens * this.sites.perBlock[s].cols;
    if (lambda > 0) this.backend.ops.threshold(x, lambda, 'gt', n);
    this.observer?.(g, x, tokens);
  }

  // ---------------------------------------------------------- sequence mode

  forward(
    tokens: ArrayLike<number>,
    state: Rwkv4State,
    opts: { logits?: 'all' | 'last' } = {},
  ): Float32Array {
    const T = tokens.length;
    if (T === 0) return new Float32Array(0);
    const x = this.embed(tokens);
    for (let b = 0; b < this.nLayer; b++) this.block(b, x, T, state);
    if (opts.logits === 'last') return this.logits(x.subarray((T - 1) * this.nEmbd), 1);
    return this.logits(x, T);
  }

  /** x [T, d] = LN(emb[tok]; ln0) for each token. */
  embed(tokens: ArrayLike<number>): Float32Array {
    const d = this.nEmbd;
    const x = new Float32Array(tokens.length * d);
    for (let t = 0; t < tokens.length; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.nVocab) {
        throw new RangeError(
          `token ${id} at position ${t} is outside the vocabulary (0..${this.nVocab - 1})`,
        );
      }
      x.set(this.emb.subarray(id * d, (id + 1) * d), t * d);
    }
    return x;
  }

  /** logits [T, V] = head · LN(x; ln_out) */
  logits(x: Float32Array, T: number): Float32Array {
    const d = this.nEmbd;
    const xn = new Float32Array(T * d);
    this.backend.ops.layerNorm(xn, x, this.lnOut[0], this.lnOut[1], T, d);
    const out = new Float32Array(T * this.nVocab);
    if (T === 1) this.backend.gemv(out, this.head, xn);
    else this.backend.gemm(out, this.head, xn, T);
    return out;
  }

  /** Block `b` over x [T, d] in place: x += att(LN(x)); x += ffn(LN(x)). */
  block(b: number, x: Float32Array, T: number, state: Rwkv4State): void {
    const { nEmbd: d, nFfn: f } = this.config;
    const blk = this.blocks[b];
    const be = this.backend;
    const ops = be.ops;
    const att = blk.att;
    const xx = new Float32Array(T * d);
    const xm = new Float32Array(T * d);
    const k = new Float32Array(T * d);
    const v = new Float32Array(T * d);
    const r = new Float32Array(T * d);

    // ---- time-mix
    ops.layerNorm(xx, x, blk.ln1[0], blk.ln1[1], T, d);
    const attX = state.vec(b, 0);
    // xk = xx·mix_k + sx·(1−mix_k), and alike for r and v
    ops.timeShiftMix(xm, xx, attX, att.mixK, T, d);
    this.site(b, S['att.key'], xm, T);
    be.gemm(k, att.key, xm, T);
    ops.timeShiftMix(xm, xx, attX, att.mixR, T, d);
    this.site(b, S['att.receptance'], xm, T);
    be.gemm(r, att.receptance, xm, T);
    ops.sigmoid(r, r);
    ops.timeShiftMix(xm, xx, attX, att.mixV, T, d);
    this.site(b, S['att.value'], xm, T);
    be.gemm(v, att.value, xm, T);
    attX.set(xx.subarray((T - 1) * d));

    // The WKV recurrence, token by token; xm becomes σ(r)·wkv.
    ops.wkv4(
      xm,
      k,
      v,
      r,
      att.decay,
      att.first,
      state.vec(b, 1),
      state.vec(b, 2),
      state.vec(b, 3),
      T,
      d,
    );
    this.site(b, S['att.output'], xm, T);
    be.gemm(k, att.output, xm, T);
    for (let i = 0; i < T * d; i++) x[i] += k[i];

    // ---- channel-mix: σ(Wr xr) · (Wv relu(Wk xk)²)
    const ffn = blk.ffn;
    ops.layerNorm(xx, x, blk.ln2[0], blk.ln2[1], T, d);
    const ffnX = state.vec(b, 4);
    ops.timeShiftMix(xm, xx, ffnX, ffn.mixR, T, d);
    this.site(b, S['ffn.receptance'], xm, T);
    be.gemm(r, ffn.receptance, xm, T);
    ops.sigmoid(r, r);
    ops.timeShiftMix(xm, xx, ffnX, ffn.mixK, T, d);
    this.site(b, S['ffn.key'], xm, T);
    ffnX.set(xx.subarray((T - 1) * d));
    const hidden = new Float32Array(T * f);
    be.gemm(hidden, ffn.key, xm, T);
    ops.reluSquare(hidden, hidden);
    this.site(b, S['ffn.value'], hidden, T);
    be.gemm(v, ffn.value, hidden, T);
    for (let i = 0; i < T * d; i++) x[i] += r[i] * v[i];
  }

  // ---------------------------------------------------------- step mode

  private readonly scratch: StepScratch;

  step(token: number, state: Rwkv4State): Float32Array {
    const { nEmbd: d } = this.config;
    const s = this.scratch;
    const x = s.x;
    const ops = this.backend.ops;
    if (!Number.isInteger(token) || token < 0 || token >= this.nVocab) {
      throw new RangeError(`token ${token} is outside the vocabulary (0..${this.nVocab - 1})`);
    }
    x.set(this.emb.subarray(token * d, (token + 1) * d));
    for (let b = 0; b < this.nLayer; b++) this.stepBlock(b, state);
    ops.layerNorm(s.xx, x, this.lnOut[0], this.lnOut[1], 1, d);
    this.backend.gemv(s.logits, this.head, s.xx);
    return s.logits;
  }

  /** y = W·x at a site: the zero-skipping kernel when a threshold makes x sparse. */
  private linear(y: Float32Array, w: Linear, x: Float32Array, g: number): void {
    if (skipZeros(w, this.thresholds[g])) this.backend.sparseGemv(y, w, x);
    else this.backend.gemv(y, w, x);
  }

  private stepBlock(b: number, state: Rwkv4State): void {
    const { nEmbd: d } = this.config;
    const { x, xx, xm, k, v, r, hidden } = this.scratch;
    const blk = this.blocks[b];
    const att = blk.att;
    const g0 = b * RWKV4_SITES.length;
    const ops = this.backend.ops;

    ops.layerNorm(xx, x, blk.ln1[0], blk.ln1[1], 1, d);
    const attX = state.vec(b, 0);
    ops.timeShiftMix(xm, xx, attX, att.mixK, 1, d);
    this.site(b, S['att.key'], xm, 1);
    this.linear(k, att.key, xm, g0 + S['att.key']);
    ops.timeShiftMix(xm, xx, attX, att.mixR, 1, d);
    this.site(b, S['att.receptance'], xm, 1);
    this.linear(r, att.receptance, xm, g0 + S['att.receptance']);
    ops.sigmoid(r, r);
    ops.timeShiftMix(xm, xx, attX, att.mixV, 1, d);
    this.site(b, S['att.value'], xm, 1);
    this.linear(v, att.value, xm, g0 + S['att.value']);
    attX.set(xx);
    ops.wkv4(
      xm,
      k,
      v,
      r,
      att.decay,
      att.first,
      state.vec(b, 1),
      state.vec(b, 2),
      state.vec(b, 3),
      1,
      d,
    );
    this.site(b, S['att.output'], xm, 1);
    this.linear(k, att.output, xm, g0 + S['att.output']);
    for (let i = 0; i < d; i++) x[i] += k[i];

    const ffn = blk.ffn;
    ops.layerNorm(xx, x, blk.ln2[0], blk.ln2[1], 1, d);
    const ffnX = state.vec(b, 4);
    ops.timeShiftMix(xm, xx, ffnX, ffn.mixR, 1, d);
    this.site(b, S['ffn.receptance'], xm, 1);
    this.linear(r, ffn.receptance, xm, g0 + S['ffn.receptance']);
    ops.sigmoid(r, r);
    ops.timeShiftMix(xm, xx, ffnX, ffn.mixK, 1, d);
    this.site(b, S['ffn.key'], xm, 1);
    this.linear(hidden, ffn.key, xm, g0 + S['ffn.key']);
    ffnX.set(xx);
    ops.reluSquare(hidden, hidden);
    this.site(b, S['ffn.value'], hidden, 1);
    this.linear(v, ffn.value, hidden, g0 + S['ffn.value']);
    for (let i = 0; i < d; i++) x[i] += r[i] * v[i];
  }
}

/** Preallocated vectors for step mode: no allocation per token. */
class StepScratch {
  readonly x: Float32Array;
  readonly xx: Float32Array;
  readonly xm: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly r: Float32Array;
  readonly hidden: Float32Array;
  readonly logits: Float32Array;
  constructor(d: number, f: number, V: number) {
    this.x = new Float32Array(d);
    this.xx = new Float32Array(d);
    this.xm = new Float32Array(d);
    this.k = new Float32Array(d);
    this.v = new Float32Array(d);
    this.r = new Float32Array(d);
    this.hidden = new Float32Array(f);
    this.logits = new Float32Array(V);
  }
}
