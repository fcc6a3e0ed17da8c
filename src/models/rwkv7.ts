/**
 * RWKV-7 "Goose" (x070), as BlinkDL's RWKV-LM (RWKV-v7/rwkv_v7_demo.py, train_temp), the
 * `rwkv` pip package (ChatRWKV rwkv_pip_package, RWKV_x070) and rwkv.cpp compute it,
 * with 9 threshold sites per block.
 *
 * One path for a batch of whole sequences and for one token (T = 1): every linear layer
 * is one matrix product over all rows of the batch; only the WKV-7 recurrence runs token
 * by token (the wkv7 kernel family, per sequence and head).
 *
 * Decay. The official code writes the decay two ways: w = −softplus(−z) − 0.5 with the
 * kernel taking exp(−exp(w)) (RWKV-LM training and demo code, the pip package's CUDA
 * path), and the fused exp(−0.606531·σ(z)) (the pip package's one-token and CPU paths,
 * rwkv.cpp, RWKV-LM's clampw training kernel), z = w0 + tanh(xw·w1)·w2. They are the same
 * function, exp(−softplus(−z) − 0.5) = e^−0.5·σ(z), for every x070 checkpoint (rwkv.cpp's
 * tiny 7v0, the Pile and World releases, G1): there is nothing to choose per checkpoint.
 * This file uses the fused form with rwkv.cpp's and the pip package's constant 0.606531
 * (e^−0.5 = 0.60653066; the difference, 3e-7 relative in the exponent, is far below
 * float32 noise).
 *
 * v_first. Block 0's value v (before any residual) feeds the value residual of every later
 * block: it is per-token data flowing between blocks like the residual stream, so it
 * travels with it. The buffer that embed returns and every block reads and writes is
 * [x (rows·C) | v_first (rows·C)]: block 0 writes v_first, blocks b > 0 read it, so
 * block(b) can run on a cached copy of block b's input (block-by-block calibration)
 * whatever state it is given. Callers that read the residual stream read the first
 * rows·C values (model.ts `LanguageModel.embed`).
 *
 * Threshold sites (SiteTable, one list for every block, search order = the data flow of
 * the official code: the six token-shift mixes in their parameter order r, w, k, v, a, g
 * (x_rwkvag), then the output, then channel-mix key and value). C = n_embd, f = ffn
 * width, Dw/Da/Dv/Dg = the low-rank widths; MACs per token:
 *
 *   # site            thresholded input                 feeds                      MACs
 *   1 att.receptance  xr = xx + (sx − xx)·x_r (ln1)     receptance C→C             C²
 *   2 att.w1          xw = xx + (sx − xx)·x_w           w1 C→Dw (decay LoRA)       C·Dw
 *   3 att.key         xk = xx + (sx − xx)·x_k           key C→C                    C²
 *   4 att.value       xv = xx + (sx − xx)·x_v           value C→C and v1 C→Dv      C·(C + Dv)
 *   5 att.a1          xa = xx + (sx − xx)·x_a           a1 C→Da (in-context rate)  C·Da
 *   6 att.g1          xg = xx + (sx − xx)·x_g           g1 C→Dg (output gate)      C·Dg
 *   7 att.output      (GroupNorm(wkv) + bonus)·g        output C→C                 C²
 *   8 ffn.key         xx + (sx − xx)·x_k (ln2)          ffn.key C→f                C·f
 *   9 ffn.value       relu(ffn.key ·)²                  ffn.value f→C              f·C
 *
 * att.value's input feeds two products, so its `rows` is C + Dv (blocks ≥ 1). Block 0
 * has no value residual (its v1 is absent, or present and ignored as the official code
 * does), so the shared table over-counts block 0 by C·Dv MACs (1% of its site MACs at
 * C = 256, Dv = 32; 0.35% at C = 768): SiteTable has one row count per site for all
 * blocks.
 *
 * Not sites: the second low-rank matrices w2, a2, v2, g2 (their D-wide inputs are
 * tanh(xw·w1), xa·a1, xv·v1 and σ(xg·g1): dense bottleneck codes with no mass near zero
 * — σ outputs are never small, and an error in w2's output enters the decay exponent and
 * compounds in the state — and together they are C·(Dw + Da + Dv + Dg) MACs, 3–5% of a
 * block), the embedding, norms, the recurrence, the gates and the head. `hw` counts the
 * second LoRA products as dense linear layers of each block.
 */
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Buf, Linear } from '../tensor/backend.ts';
import { wkv7 } from '../tensor/families/wkv7.ts';
import {
  applySite,
  type Batch,
  copyThresholds,
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

export type Rwkv7Config = {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** N: channels per head (r_k is [H, N]). */
  headSize: number;
  /** Channel-mix hidden width (4·nEmbd in the releases). */
  nFfn: number;
  /** Widths of the low-rank projections of the decay (w), in-context rate (a), value residual (v), gate (g). */
  wLora: number;
  aLora: number;
  /** 0 for a one-block model (only blocks ≥ 1 have a value residual). */
  vLora: number;
  gLora: number;
};

/** GroupNorm eps of ln_x in every x070 code (64e-5 = 1e-5 · head_size_divisor²). */
const LN_X_EPS = 64e-5;
/** e^−0.5 as rwkv.cpp and the rwkv pip package write it: decay = exp(−0.606531·σ(z)). */
const DECAY_SCALE = 0.606531;
/** F.normalize's eps for κ̂ = k·k_k / ‖k·k_k‖ per head. */
const L2_EPS = 1e-12;

/** Site ids of one block, in search order (the data flow; see the table above). */
export const RWKV7_SITES = [
  'att.receptance',
  'att.w1',
  'att.key',
  'att.value',
  'att.a1',
  'att.g1',
  'att.output',
  'ffn.key',
  'ffn.value',
] as const;
export type Rwkv7Site = (typeof RWKV7_SITES)[number];
const S = Object.fromEntries(RWKV7_SITES.map((id, i) => [id, i])) as Record<Rwkv7Site, number>;

/** The site table for these dimensions: each site's inputs (cols) and outputs fed (rows). */
export function rwkv7SiteTable(c: Rwkv7Config): SiteTable {
  const { nEmbd: C, nFfn: f } = c;
  const rows: Record<Rwkv7Site, number> = {
    'att.receptance': C,
    'att.w1': c.wLora,
    'att.key': C,
    'att.value': C + c.vLora,
    'att.a1': c.aLora,
    'att.g1': c.gLora,
    'att.output': C,
    'ffn.key': f,
    'ffn.value': C,
  };
  return {
    comparison: 'gt',
    nBlocks: c.nLayer,
    perBlock: RWKV7_SITES.map((id) => ({
      id,
      rows: rows[id],
      cols: id === 'ffn.value' ? f : C,
      // relu²(ffn.key ·) is the ffn.value input
      ...(id === 'ffn.value' ? { fedBy: 'ffn.key' } : {}),
    })),
  };
}

/** Infers the configuration from tensor names and shapes (never from the file name). */
export function rwkv7Config(ckpt: Checkpoint): Rwkv7Config {
  const [nVocab, nEmbd] = shapeOf(ckpt, 'emb.weight', 'the embedding');
  let nLayer = 0;
  while (ckpt.tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  if (nLayer === 0)
    throw new FormatError(ckpt.path, 'no blocks.0.ln1.weight: not an RWKV checkpoint');
  const rk = shapeOf(ckpt, 'blocks.0.att.r_k', 'the head size');
  const [H, N] = rk.length === 2 ? rk : [0, 0];
  if (!(H > 0 && H * N === nEmbd)) {
    throw new FormatError(
      ckpt.path,
      `blocks.0.att.r_k has shape [${rk.join(', ')}]; expected [heads, head size] with heads · head size = n_embd ${nEmbd}`,
      'RWKV-7 checkpoints store r_k as [H, N]; this file does not fit that layout.',
    );
  }
  // A low-rank matrix is stored [n_embd, D]: its width is D.
  const lora = (name: string) => {
    const s = shapeOf(ckpt, name, 'a low-rank width');
    if (s.length !== 2 || s[0] !== nEmbd) {
      throw new FormatError(
        ckpt.path,
        `${name} has shape [${s.join(', ')}]; expected [${nEmbd}, D] (stored as x @ ${name.split('.').at(-1)})`,
      );
    }
    return s[1];
  };
  return {
    nLayer,
    nEmbd,
    nVocab,
    headSize: N,
    nFfn: shapeOf(ckpt, 'blocks.0.ffn.key.weight', 'the channel-mix width')[0],
    wLora: lora('blocks.0.att.w1'),
    aLora: lora('blocks.0.att.a1'),
    vLora: nLayer > 1 ? lora('blocks.1.att.v1') : 0,
    gLora: lora('blocks.0.att.g1'),
  };
}

// ---------------------------------------------------------------- Weights

/** A low-rank projection x → (x·m1)·m2 (+ bias): m1 [C, D] and m2 [D, C] as stored. */
interface Lora {
  first: Linear; // [D, C]: m1ᵀ, the site product
  second: Linear; // [C, D]: m2ᵀ, never thresholded
}

/** Time-mix weights under their checkpoint names (`blocks.N.att.*`). */
interface TimeMix {
  x_r: Buf; // [C] (stored [1, 1, C]; rwkv.cpp: row 0 of x_rwkvag)
  x_w: Buf; // [C]
  x_k: Buf; // [C]
  x_v: Buf; // [C]
  x_a: Buf; // [C]
  x_g: Buf; // [C]
  w0: Buf; // [C]
  w: Lora; // w1 [C, Dw], w2 [Dw, C]
  a0: Buf; // [C]
  a: Lora; // a1 [C, Da], a2 [Da, C]
  /** Absent in block 0 (which makes v_first). */
  v0: Buf | null; // [C]
  v: Lora | null; // v1 [C, Dv], v2 [Dv, C]
  g: Lora; // g1 [C, Dg], g2 [Dg, C]
  k_k: Buf; // [C]
  k_a: Buf; // [C]
  /** 1 − k_a, computed once at load: k·(1 + (a − 1)·k_a) = k·((1 − k_a) + a·k_a). */
  one_minus_k_a: Buf; // [C]
  r_k: Buf; // [C] (stored [H, N])
  receptance: Linear; // [C, C]
  key: Linear; // [C, C]
  value: Linear; // [C, C]
  output: Linear; // [C, C]
  ln_x: LayerNorm; // [C] each, GroupNorm over the H heads
}

/** Channel-mix weights (`blocks.N.ffn.*`): no receptance in RWKV-7. */
interface ChannelMix {
  x_k: Buf; // [C]
  key: Linear; // [f, C]
  value: Linear; // [C, f]
}

interface Block {
  ln1: LayerNorm;
  ln2: LayerNorm;
  att: TimeMix;
  ffn: ChannelMix;
}

// ---------------------------------------------------------------- State

/**
 * Per layer and sequence: the previous normed input of time-mix (`attX`, [C]) and of
 * channel-mix (`ffnX`, [C]) for the token shift, and the WKV state (`wkv`, [H, N, N],
 * S[h][i][j] with i the value index, j the key index: families/wkv7.ts).
 */
type StatePart = 'attX' | 'wkv' | 'ffnX';
export type Rwkv7State = RecurrentState<StatePart>;

// ---------------------------------------------------------------- Model

export class Rwkv7 implements LanguageModel<Rwkv7State> {
  readonly arch = 'rwkv7';
  readonly maxContext = Number.POSITIVE_INFINITY;
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;

  private constructor(
    readonly config: Rwkv7Config,
    readonly backend: Backend,
    private readonly emb: Buf, // [V, C]; ln0 already applied to every row
    private readonly blocks: Block[],
    private readonly ln_out: LayerNorm,
    private readonly head_: Linear, // [V, C] `head.weight`
    parameters: number,
    readonly fingerprint: string,
  ) {
    this.nVocab = config.nVocab;
    this.nEmbd = config.nEmbd;
    this.nLayer = config.nLayer;
    this.nHead = config.nEmbd / config.headSize;
    this.sites = rwkv7SiteTable(config);
    this.thresholds = new Float32Array(config.nLayer * RWKV7_SITES.length);
    let weightBytes = 4 * emb.length + head_.bytes;
    for (const { att, ffn } of blocks) {
      const loras = [att.w, att.a, att.g, ...(att.v ? [att.v] : [])];
      for (const l of [att.receptance, att.key, att.value, att.output, ffn.key, ffn.value])
        weightBytes += l.bytes;
      for (const l of loras) weightBytes += l.first.bytes + l.second.bytes;
    }
    this.stats = { parameters, weightBytes };
  }

  /**
   * Loads RWKV-7 weights from any checkpoint format onto a backend. `sparse` also
   * prepares the input-major copies that zero skipping reads for the site products.
   */
  static load(ckpt: Checkpoint, backend: Backend, opts: { sparse?: boolean } = {}): Rwkv7 {
    const cfg = rwkv7Config(ckpt);
    const { nEmbd: C, nFfn: f, nVocab: V, headSize: N } = cfg;
    const H = C / N;
    let parameters = 0;
    const fp = new Fingerprint(
      `rwkv7 ${cfg.nLayer}x${C} head ${N} ffn ${f} lora ${cfg.wLora},${cfg.aLora},${cfg.vLora},${cfg.gLora} vocab ${V}`,
    );
    const host = (name: string, shape: number[] = [C]) => {
      parameters += shape.reduce((a, b) => a * b, 1);
      return readWeight(ckpt, name, shape, fp);
    };
    const vec = (name: string, shape?: number[]) => backend.upload(host(name, shape));
    const norm = (name: string): LayerNorm => ({
      weight: vec(`${name}.weight`),
      bias: vec(`${name}.bias`),
    });
    const lin = (name: string, rows: number, cols: number, sparse = !!opts.sparse) => {
      const w = host(name, [rows, cols]);
      return backend.prepare(w, rows, cols, { sparse, dtype: storedDType(ckpt, name) });
    };
    // m1 [C, D] and m2 [D, C] are used as x @ m: the products take their transposes.
    const lora = (p: string, x: string, D: number): Lora => {
      const first = transpose(host(`${p}.${x}1`, [C, D]), C, D);
      const second = transpose(host(`${p}.${x}2`, [D, C]), D, C);
      return {
        first: backend.prepare(first, D, C, { sparse: !!opts.sparse }),
        second: backend.prepare(second, C, D),
      };
    };

    // x = LN(emb[tok]; ln0) depends on the token only: apply ln0 to the table once.
    const table = host('emb.weight', [V, C]);
    const emb = backend.upload(table);
    const ln0 = norm('blocks.0.ln0');
    backend.layerNorm(emb, emb, ln0.weight, ln0.bias, V, C, 1e-5);

    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const p = `blocks.${i}.att`;
      const k_a = host(`${p}.k_a`);
      blocks.push({
        ln1: norm(`blocks.${i}.ln1`),
        ln2: norm(`blocks.${i}.ln2`),
        att: {
          x_r: vec(`${p}.x_r`),
          x_w: vec(`${p}.x_w`),
          x_k: vec(`${p}.x_k`),
          x_v: vec(`${p}.x_v`),
          x_a: vec(`${p}.x_a`),
          x_g: vec(`${p}.x_g`),
          w0: vec(`${p}.w0`),
          w: lora(p, 'w', cfg.wLora),
          a0: vec(`${p}.a0`),
          a: lora(p, 'a', cfg.aLora),
          // Block 0's value residual, when a file has one, is never used (v_first = v).
          v0: i > 0 ? vec(`${p}.v0`) : null,
          v: i > 0 ? lora(p, 'v', cfg.vLora) : null,
          g: lora(p, 'g', cfg.gLora),
          k_k: vec(`${p}.k_k`),
          k_a: backend.upload(k_a),
          one_minus_k_a: backend.upload(k_a.map((x) => 1 - x)),
          r_k: vec(`${p}.r_k`, [H, N]),
          receptance: lin(`${p}.receptance.weight`, C, C),
          key: lin(`${p}.key.weight`, C, C),
          value: lin(`${p}.value.weight`, C, C),
          output: lin(`${p}.output.weight`, C, C),
          ln_x: norm(`${p}.ln_x`),
        },
        ffn: {
          x_k: vec(`blocks.${i}.ffn.x_k`),
          key: lin(`blocks.${i}.ffn.key.weight`, f, C),
          value: lin(`blocks.${i}.ffn.value.weight`, C, f),
        },
      });
    }
    const lnOut = norm('ln_out');
    const head = lin('head.weight', V, C, false); // the head is never thresholded
    return new Rwkv7(cfg, backend, emb, blocks, lnOut, head, parameters, fp.digest());
  }

  newState(batch = 1): Rwkv7State {
    const { nEmbd: C, headSize: N } = this.config;
    return RecurrentState.fresh(this.backend, batch, this.nLayer, {
      attX: { width: C, init: 0 },
      wkv: { width: C * N, init: 0 },
      ffnX: { width: C, init: 0 },
    });
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /**
   * [x | v_first], each [rows, C]: x = LN(emb[tok]; ln0) (ln0 is in the table); v_first
   * is filled by block 0.
   */
  embed(batch: Batch): Buf {
    const x = this.backend.alloc(2 * batch.seqs.rows * this.nEmbd);
    this.backend.gather(x, this.emb, batch.ids, this.nEmbd);
    return x;
  }

  /** logits [rows, V] = head · LN(x; ln_out), x the first rows·C values of the buffer. */
  head(x: Buf, rows: number): Buf {
    return layerNormHead(this.backend, this.ln_out, this.head_, x, rows, this.nEmbd, this.nVocab);
  }

  /** Thresholds x [rows, cols] at site `s` of block `b` and lets the hook see it; its global index. */
  private site(x: Buf, b: number, s: Rwkv7Site, rows: number, hook?: SiteHook): number {
    const g = b * RWKV7_SITES.length + S[s];
    applySite(this, g, x, rows, this.sites.perBlock[S[s]].cols, hook);
    return g;
  }

  /** y = W·x for a product that reads site g's (already thresholded) input. */

  /** y = W·x at site `s` of block `b`: thresholded, seen by the hook, then the product. */
  private linear(
    y: Buf,
    w: Linear,
    x: Buf,
    b: number,
    s: Rwkv7Site,
    rows: number,
    hook?: SiteHook,
  ): void {
    siteProduct(this, y, w, x, rows, this.site(x, b, s, rows, hook));
  }

  /**
   * Block `b` over [x | v_first] (2·rows·C values) in place:
   * x += att(LN(x; ln1), v_first); x += ffn(LN(x; ln2)). Block 0 writes v_first.
   */
  block(b: number, xv: Buf, batch: Batch, state: Rwkv7State, hook?: SiteHook): void {
    const { nEmbd: C, nFfn: f, headSize: N } = this.config;
    const H = this.nHead;
    const { att, ffn, ln1, ln2 } = this.blocks[b];
    const be = this.backend;
    const { seqs } = batch;
    const n = seqs.rows;
    if (xv.length !== 2 * n * C) {
      throw new RangeError(
        `rwkv7 block: expected [x | v_first] of 2·${n}·${C} values (from embed), got ${xv.length}`,
      );
    }
    const x = be.view(xv, 0, n * C);
    const vFirst = be.view(xv, n * C, n * C);
    const nc = () => be.alloc(n * C);
    const [xx, dx, xm, r, w, k, v, a, g, kk] = Array.from({ length: 10 }, nc);
    const dMax = Math.max(
      this.config.wLora,
      this.config.aLora,
      this.config.vLora,
      this.config.gLora,
    );
    const low = be.alloc(n * dMax); // a low-rank bottleneck [rows, D]

    // ---- time-mix
    be.layerNorm(xx, x, ln1.weight, ln1.bias, n, C, 1e-5);
    // dx = sx − xx, sx the previous token's xx (attX at the start of each sequence)
    const attX = state.part('attX', b);
    be.tokenShift(dx, xx, attX, seqs, C);
    be.binary('sub', dx, dx, xx);
    be.lastRows(attX, xx, seqs, C);

    // r = Wr·xr, xr = xx + dx·x_r
    be.addMul(xm, xx, dx, att.x_r);
    this.linear(r, att.receptance, xm, b, 'att.receptance', n, hook);

    // w = exp(−0.606531·σ(w0 + tanh(xw·w1)·w2)) (= exp(−exp(−softplus(−z) − 0.5)))
    be.addMul(xm, xx, dx, att.x_w);
    this.linear(low, att.w.first, xm, b, 'att.w1', n, hook);
    be.unary('tanh', low, low, n * this.config.wLora);
    be.matmul(w, att.w.second, low, n, { bias: att.w0 });
    be.unary('sigmoid', w, w);
    be.affine(w, w, -DECAY_SCALE, 0);
    be.unary('exp', w, w);

    // k = Wk·xk
    be.addMul(xm, xx, dx, att.x_k);
    this.linear(k, att.key, xm, b, 'att.key', n, hook);

    // v = Wv·xv; block 0: v_first = v; else v = v + (v_first − v)·σ(v0 + (xv·v1)·v2)
    be.addMul(xm, xx, dx, att.x_v);
    const gv = this.site(xm, b, 'att.value', n, hook);
    siteProduct(this, v, att.value, xm, n, gv);
    if (att.v && att.v0) {
      // (g and a serve as scratch here; they are computed below)
      siteProduct(this, low, att.v.first, xm, n, gv);
      be.matmul(g, att.v.second, low, n, { bias: att.v0 });
      be.unary('sigmoid', g, g);
      be.binary('sub', a, vFirst, v);
      be.addMul(v, v, a, g);
    } else be.copy(vFirst, v);

    // a = σ(a0 + (xa·a1)·a2), the in-context learning rate
    be.addMul(xm, xx, dx, att.x_a);
    this.linear(low, att.a.first, xm, b, 'att.a1', n, hook);
    be.matmul(a, att.a.second, low, n, { bias: att.a0 });
    be.unary('sigmoid', a, a);

    // g = σ(xg·g1)·g2, the output gate
    be.addMul(xm, xx, dx, att.x_g);
    this.linear(low, att.g.first, xm, b, 'att.g1', n, hook);
    be.unary('sigmoid', low, low, n * this.config.gLora);
    be.matmul(g, att.g.second, low, n);

    // κ̂ = normalize(k·k_k) per head; k = k·(1 + (a − 1)·k_a) = k·((1 − k_a) + a·k_a)
    be.binary('mul', kk, k, att.k_k);
    be.l2Normalize(kk, kk, n * H, N, L2_EPS);
    be.addMul(xm, att.one_minus_k_a, a, att.k_a);
    be.binary('mul', k, k, xm);

    // The recurrence with a = −κ̂, b = κ̂·a: out = S·r (into xx), bonus (into dx)
    be.unary('neg', xm, kk);
    be.binary('mul', kk, kk, a);
    be.run(wkv7, {
      out: xx,
      bonus: dx,
      r,
      w,
      k,
      v,
      a: xm,
      b: kk,
      u: att.r_k,
      state: state.part('wkv', b),
      seqs,
      heads: H,
      headSize: N,
    });
    // GroupNorm(out) over the H heads (eps 64e-5), + (Σ r·k·r_k)·v, then ·g
    be.layerNorm(xx, xx, att.ln_x.weight, att.ln_x.bias, n * H, N, LN_X_EPS);
    be.binary('add', xx, xx, dx);
    be.binary('mul', xx, xx, g);
    // x += Wo·(…)
    this.linear(r, att.output, xx, b, 'att.output', n, hook);
    be.binary('add', x, x, r);
    for (const t of [dx, xm, r, w, k, v, a, g, kk, low]) be.free(t);

    // ---- channel-mix: x += Wv·relu(Wk·xk)², xk = xx + (sx − xx)·x_k
    const hidden = be.alloc(n * f);
    const [dxf, xk] = [nc(), nc()];
    be.layerNorm(xx, x, ln2.weight, ln2.bias, n, C, 1e-5);
    const ffnX = state.part('ffnX', b);
    be.tokenShift(dxf, xx, ffnX, seqs, C);
    be.binary('sub', dxf, dxf, xx);
    be.lastRows(ffnX, xx, seqs, C);
    be.addMul(xk, xx, dxf, ffn.x_k);
    this.linear(hidden, ffn.key, xk, b, 'ffn.key', n, hook);
    be.unary('reluSquare', hidden, hidden);
    this.linear(xk, ffn.value, hidden, b, 'ffn.value', n, hook);
    be.binary('add', x, x, xk);
    for (const t of [xx, dxf, xk, hidden]) be.free(t);
  }
}

/** mᵀ [cols, rows] of m [rows, cols] (host data, at load). */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j];
  return t;
}
