/**
 * RWKV-4 ("Dove"/"Raven"/Pile), as BlinkDL's RWKV_in_150_lines.py and rwkv.cpp
 * compute it, with the 7 threshold sites per block of METHOD.md §1.
 *
 * One path for a batch of whole sequences and for one token (T = 1): every linear layer
 * is one matrix product over all rows of the batch, and only the WKV recurrence runs
 * token by token (the wkv4 kernel family, parallel over sequences × channels).
 */
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Buf, Linear } from '../tensor/backend.ts';
import { wkv4 } from '../tensor/families/wkv4.ts';
import {
  applySite,
  type Batch,
  copyThresholds,
  embedTokens,
  type LanguageModel,
  type LayerNorm,
  layerNormHead,
  type SiteHook,
  type SiteTable,
  siteProduct,
} from './model.ts';
import { RecurrentState } from './state.ts';
import { Fingerprint, readWeight, shapeOf, storedDType } from './weights.ts';

// ---------------------------------------------------------------- Config

export type Rwkv4Config = {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Channel-mix hidden width (4·nEmbd in every release). */
  nFfn: number;
};

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

/** The site table for these dimensions: each site's inputs (cols) and outputs (rows). */
export function rwkv4SiteTable(c: Rwkv4Config): SiteTable {
  const { nEmbd: d, nFfn: f } = c;
  return {
    comparison: 'gt',
    nBlocks: c.nLayer,
    perBlock: RWKV4_SITES.map((id) => ({
      id,
      rows: id === 'ffn.key' ? f : d,
      cols: id === 'ffn.value' ? f : d,
      // relu²(ffn.key ·) is the ffn.value input
      ...(id === 'ffn.value' ? { fedBy: 'ffn.key' } : {}),
    })),
  };
}

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

/** Time-mix weights under their checkpoint names (`blocks.N.att.*`). */
interface TimeMix {
  time_mix_k: Buf; // [d]  (stored [1, 1, d])
  time_mix_v: Buf; // [d]
  time_mix_r: Buf; // [d]
  /** Holds w = −exp(time_decay), computed once at load. */
  time_decay: Buf; // [d]
  time_first: Buf; // [d]  u
  key: Linear; // [d, d]
  value: Linear; // [d, d]
  receptance: Linear; // [d, d]
  output: Linear; // [d, d]
}

/** Channel-mix weights (`blocks.N.ffn.*`). */
interface ChannelMix {
  time_mix_k: Buf; // [d]
  time_mix_r: Buf; // [d]
  key: Linear; // [f, d]
  receptance: Linear; // [d, d]
  value: Linear; // [d, f]
}

interface Block {
  ln1: LayerNorm;
  ln2: LayerNorm;
  att: TimeMix;
  ffn: ChannelMix;
}

// ---------------------------------------------------------------- State

/**
 * Per layer and sequence: the previous normed input of time-mix (`attX`) and of
 * channel-mix (`ffnX`) for the token shift, and the WKV numerator `aa`, denominator
 * `bb` and their shared exponent `pp` (−1e30 at the start, so that the first token's
 * exponent wins).
 */
const STATE = {
  attX: { width: 1, init: 0 },
  aa: { width: 1, init: 0 },
  bb: { width: 1, init: 0 },
  pp: { width: 1, init: -1e30 },
  ffnX: { width: 1, init: 0 },
} as const;
export type Rwkv4State = RecurrentState<keyof typeof STATE>;

// ---------------------------------------------------------------- Model

export class Rwkv4 implements LanguageModel<Rwkv4State> {
  readonly arch = 'rwkv4';
  readonly maxContext = Number.POSITIVE_INFINITY;
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;

  private constructor(
    readonly config: Rwkv4Config,
    readonly backend: Backend,
    private readonly emb: Buf, // [V, d]; ln0 already applied to every row
    private readonly blocks: Block[],
    private readonly ln_out: LayerNorm,
    private readonly head_: Linear, // [V, d] `head.weight`
    parameters: number,
    readonly fingerprint: string,
  ) {
    this.nVocab = config.nVocab;
    this.nEmbd = config.nEmbd;
    this.nLayer = config.nLayer;
    this.sites = rwkv4SiteTable(config);
    this.thresholds = new Float32Array(config.nLayer * RWKV4_SITES.length);
    let weightBytes = 4 * emb.length + head_.bytes;
    for (const b of blocks) {
      for (const l of [b.att.key, b.att.value, b.att.receptance, b.att.output])
        weightBytes += l.bytes;
      for (const l of [b.ffn.key, b.ffn.receptance, b.ffn.value]) weightBytes += l.bytes;
    }
    this.stats = { parameters, weightBytes };
  }

  /**
   * Loads RWKV-4 weights from any checkpoint format onto a backend. `sparse` also
   * prepares the input-major weight copies that zero skipping reads (twice the weight
   * memory of the block layers).
   */
  static load(ckpt: Checkpoint, backend: Backend, opts: { sparse?: boolean } = {}): Rwkv4 {
    const cfg = rwkv4Config(ckpt);
    const { nEmbd: d, nFfn: f, nVocab: V } = cfg;
    let parameters = 0;
    const fp = new Fingerprint(`rwkv4 ${cfg.nLayer}x${d} ffn ${f} vocab ${V}`);
    const host = (name: string) => {
      parameters += d;
      return readWeight(ckpt, name, [d], fp);
    };
    const vec = (name: string) => backend.upload(host(name));
    const norm = (name: string): LayerNorm => ({
      weight: vec(`${name}.weight`),
      bias: vec(`${name}.bias`),
    });
    const lin = (name: string, rows: number, cols: number, sparse = !!opts.sparse) => {
      parameters += rows * cols;
      const w = readWeight(ckpt, name, [rows, cols], fp);
      return backend.prepare(w, rows, cols, { sparse, dtype: storedDType(ckpt, name) });
    };

    // x = LN(emb[tok]; ln0) depends on the token only: apply ln0 to the table once.
    const table = readWeight(ckpt, 'emb.weight', [V, d], fp);
    parameters += V * d;
    const emb = backend.upload(table);
    const ln0 = norm('blocks.0.ln0');
    backend.layerNorm(emb, emb, ln0.weight, ln0.bias, V, d, 1e-5);

    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const p = `blocks.${i}`;
      blocks.push({
        ln1: norm(`${p}.ln1`),
        ln2: norm(`${p}.ln2`),
        att: {
          time_mix_k: vec(`${p}.att.time_mix_k`),
          time_mix_v: vec(`${p}.att.time_mix_v`),
          time_mix_r: vec(`${p}.att.time_mix_r`),
          time_decay: backend.upload(host(`${p}.att.time_decay`).map((w) => -Math.exp(w))),
          time_first: vec(`${p}.att.time_first`),
          key: lin(`${p}.att.key.weight`, d, d),
          value: lin(`${p}.att.value.weight`, d, d),
          receptance: lin(`${p}.att.receptance.weight`, d, d),
          output: lin(`${p}.att.output.weight`, d, d),
        },
        ffn: {
          time_mix_k: vec(`${p}.ffn.time_mix_k`),
          time_mix_r: vec(`${p}.ffn.time_mix_r`),
          key: lin(`${p}.ffn.key.weight`, f, d),
          receptance: lin(`${p}.ffn.receptance.weight`, d, d),
          value: lin(`${p}.ffn.value.weight`, d, f),
        },
      });
    }
    const lnOut = norm('ln_out');
    const head = lin('head.weight', V, d, false); // the head is never thresholded
    return new Rwkv4(cfg, backend, emb, blocks, lnOut, head, parameters, fp.digest());
  }

  newState(batch = 1): Rwkv4State {
    const d = this.nEmbd;
    const spec = Object.fromEntries(
      Object.entries(STATE).map(([k, v]) => [k, { width: d, init: v.init }]),
    ) as Record<keyof typeof STATE, { width: number; init: number }>;
    return RecurrentState.fresh(this.backend, batch, this.nLayer, spec);
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /** x [rows, d] = LN(emb[tok]; ln0) for each token (ln0 is in the table). */
  embed(batch: Batch): Buf {
    return embedTokens(this.backend, this.emb, batch, this.nEmbd);
  }

  /** logits [rows, V] = head · LN(x; ln_out) */
  head(x: Buf, rows: number): Buf {
    return layerNormHead(this.backend, this.ln_out, this.head_, x, rows, this.nEmbd, this.nVocab);
  }

  /** y = W·x at site `s` of block `b`: thresholded, seen by the hook, then the product. */
  private linear(
    y: Buf,
    w: Linear,
    x: Buf,
    b: number,
    s: Rwkv4Site,
    rows: number,
    hook: SiteHook | undefined,
  ): void {
    const g = b * RWKV4_SITES.length + S[s];
    applySite(this, g, x, rows, w.cols, hook);
    siteProduct(this, y, w, x, rows, g);
  }

  /** Block `b` over x [rows, d] in place: x += att(LN(x; ln1)); x += ffn(LN(x; ln2)). */
  block(b: number, x: Buf, batch: Batch, state: Rwkv4State, hook?: SiteHook): void {
    const { nEmbd: d, nFfn: f } = this.config;
    const { att, ffn, ln1, ln2 } = this.blocks[b];
    const be = this.backend;
    const { seqs } = batch;
    const n = seqs.rows;
    const [xx, xm, k, v, r] = [0, 0, 0, 0, 0].map(() => be.alloc(n * d));
    const hidden = be.alloc(n * f);

    // ---- time-mix
    be.layerNorm(xx, x, ln1.weight, ln1.bias, n, d, 1e-5);
    const attX = state.part('attX', b);
    // xk = xx·mix_k + sx·(1−mix_k), sx the previous token's xx (attX at the start)
    be.timeShiftMix(xm, xx, attX, att.time_mix_k, seqs, d);
    this.linear(k, att.key, xm, b, 'att.key', n, hook);
    // r = σ(Wr xr)
    be.timeShiftMix(xm, xx, attX, att.time_mix_r, seqs, d);
    this.linear(r, att.receptance, xm, b, 'att.receptance', n, hook);
    be.unary('sigmoid', r, r);
    be.timeShiftMix(xm, xx, attX, att.time_mix_v, seqs, d);
    this.linear(v, att.value, xm, b, 'att.value', n, hook);
    be.lastRows(attX, xx, seqs, d);
    // wkv = (e1·aa + e2·v) / (e1·bb + e2), token by token; xm ← σ(r)·wkv
    be.run(wkv4, {
      out: xm,
      k,
      v,
      r,
      w: att.time_decay,
      u: att.time_first,
      aa: state.part('aa', b),
      bb: state.part('bb', b),
      pp: state.part('pp', b),
      seqs,
      d,
    });
    // x += Wo (σ(r)·wkv)
    this.linear(k, att.output, xm, b, 'att.output', n, hook);
    be.binary('add', x, x, k);

    // ---- channel-mix: x += σ(Wr xr) · (Wv relu(Wk xk)²)
    be.layerNorm(xx, x, ln2.weight, ln2.bias, n, d, 1e-5);
    const ffnX = state.part('ffnX', b);
    be.timeShiftMix(xm, xx, ffnX, ffn.time_mix_r, seqs, d);
    this.linear(r, ffn.receptance, xm, b, 'ffn.receptance', n, hook);
    be.unary('sigmoid', r, r);
    be.timeShiftMix(xm, xx, ffnX, ffn.time_mix_k, seqs, d);
    this.linear(hidden, ffn.key, xm, b, 'ffn.key', n, hook);
    be.lastRows(ffnX, xx, seqs, d);
    be.unary('reluSquare', hidden, hidden);
    this.linear(v, ffn.value, hidden, b, 'ffn.value', n, hook);
    be.addMul(x, x, r, v);

    for (const t of [xx, xm, k, v, r, hidden]) be.free(t);
  }
}
