/**
 * RWKV-5 ("Eagle"), as ChatRWKV's rwkv pip package (`att_one_v5`, `att_one_v5_1`,
 * `att_seq_v5_2`) and rwkv.cpp (`rwkv_att_v5`) compute it, with the threshold sites below.
 *
 * Versions, told from tensor names and shapes (never a file name), in ChatRWKV's numbering:
 *   5.0  no gate; time_decay and time_first per head [H]     (rwkv.cpp calls it "5.1")
 *   5.1  gate;    time_decay and time_first per head [H]
 *   5.2  gate;    time_decay and time_faaaa per channel [H, N] (rwkv.cpp "5.2")
 * Config fields `gate` and `perChannel` say which; u = exp(time_first), or time_faaaa as
 * stored. GroupNorm (`ln_x`) eps is 64e-5 in the official code for every version (RWKV-LM
 * trains GroupNorm(x / 8) with eps 1e-5, the same thing; ChatRWKV before Nov 2023 and
 * rwkv.cpp use 1e-5): `lnXEps`, 64e-5 unless the loader is told otherwise.
 *
 * Dimensions: C = n_embd, A = dim_att = H·N (C in every release), F = the channel-mix
 * width, H heads of N channels.
 *
 * Threshold sites (one per linear-layer input; METHOD.md terms), in search order:
 *
 *   #  site            thresholded input                       feeds        MACs
 *   1  att.key         xx·mix_k + sx·(1−mix_k), xx = LN(x; ln1)  key          C·A
 *   2  att.receptance  xx·mix_r + sx·(1−mix_r)                  receptance   C·A
 *   3  att.value       xx·mix_v + sx·(1−mix_v)                  value        C·A
 *   4  att.gate        xx·mix_g + sx·(1−mix_g)   (5.1, 5.2)     gate         C·A
 *   5  att.output      GroupNorm(wkv; ln_x) [· silu(gate)]      output       A·C
 *   6  ffn.receptance  xx·mix_r + sx·(1−mix_r), xx = LN(x; ln2)  receptance   C²
 *   7  ffn.key         xx·mix_k + sx·(1−mix_k)                  key          C·F
 *   8  ffn.value       relu(key·xk)²                            value        F·C
 *
 * Order: RWKV-4's (the authors' search order, METHOD.md §1) for the sites RWKV-4 has, so
 * that results compare site by site across versions; the gate, computed beside key,
 * receptance and value from the same shifted input and applied after the recurrence,
 * comes after value and before output, which reads its product. Not thresholded: the
 * embedding, layer norms, GroupNorm, the recurrence, the gates, the residual, the head.
 *
 * One path for a batch of whole sequences and for one token (T = 1): every linear layer
 * is one matrix product over all rows of the batch; the state update runs token by
 * token per head (the wkv5 kernel family, parallel over sequences × heads). ChatRWKV's
 * sequence mode for 5.0/5.1 rewrites the recurrence as one chunk of matrix products
 * (powers of w); it is the same sum, and the token loop is exact and, for T ≫ N, cheaper
 * on a CPU (T·N² instead of T²·N per head), so it is not used.
 */
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Buf, Linear } from '../tensor/backend.ts';
import { wkv5 } from '../tensor/families/wkv5.ts';
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

export type Rwkv5Config = {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Channel-mix width F. */
  nFfn: number;
  /** Time-mix width A = H·N (dim_att). */
  dimAtt: number;
  /** Channels per head N (64 in every release). */
  headSize: number;
  /** silu(gate · xg) multiplies the GroupNorm output (5.1, 5.2). */
  gate: boolean;
  /** Decay and bonus per channel [H, N] (5.2) rather than per head [H] (5.0, 5.1). */
  perChannel: boolean;
  /** GroupNorm (ln_x) eps: 64e-5 officially; rwkv.cpp's expected logits use 1e-5. */
  lnXEps: number;
};

/** The GroupNorm eps of the official code for RWKV-5 and 6 (ChatRWKV, RWKV-LM). */
export const LN_X_EPS = 64e-5;

const SITE_IDS = [
  'att.key',
  'att.receptance',
  'att.value',
  'att.gate',
  'att.output',
  'ffn.receptance',
  'ffn.key',
  'ffn.value',
] as const;
export type Rwkv5Site = (typeof SITE_IDS)[number];

/** Site ids of one block in search order (without `att.gate` for 5.0). */
export function rwkv5Sites(gate: boolean): Rwkv5Site[] {
  return SITE_IDS.filter((s) => gate || s !== 'att.gate');
}

/** The site table for a config: each site's inputs (cols) and the outputs they feed (rows). */
export function rwkv5SiteTable(c: Rwkv5Config): SiteTable {
  const { nEmbd: C, dimAtt: A, nFfn: F } = c;
  const shape: Record<Rwkv5Site, { rows: number; cols: number; fedBy?: string }> = {
    'att.key': { rows: A, cols: C },
    'att.receptance': { rows: A, cols: C },
    'att.value': { rows: A, cols: C },
    'att.gate': { rows: A, cols: C },
    'att.output': { rows: C, cols: A },
    'ffn.receptance': { rows: C, cols: C },
    'ffn.key': { rows: F, cols: C },
    // relu²(ffn.key ·) is the ffn.value input
    'ffn.value': { rows: C, cols: F, fedBy: 'ffn.key' },
  };
  return {
    comparison: 'gt',
    nBlocks: c.nLayer,
    perBlock: rwkv5Sites(c.gate).map((id) => ({ id, ...shape[id] })),
  };
}

/** Infers the configuration from tensor names and shapes, as ChatRWKV does. */
export function rwkv5Config(ckpt: Checkpoint, lnXEps = LN_X_EPS): Rwkv5Config {
  const [nVocab, nEmbd] = shapeOf(ckpt, 'emb.weight', 'the embedding');
  let nLayer = 0;
  while (ckpt.tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  if (nLayer === 0)
    throw new FormatError(ckpt.path, 'no blocks.0.ln1.weight: not an RWKV checkpoint');
  const dimAtt = shapeOf(ckpt, 'blocks.0.att.key.weight', 'the time-mix width')[0];
  const nFfn = shapeOf(ckpt, 'blocks.0.ffn.key.weight', 'the channel-mix width')[0];
  // ChatRWKV: n_head = time_decay.shape[0]; a second dimension > 1 makes it per channel.
  const decay = shapeOf(ckpt, 'blocks.0.att.time_decay', 'the head count');
  const H = decay[0];
  const perChannel = decay.length > 1 && decay[1] > 1;
  if (!(H > 0 && dimAtt % H === 0) || (perChannel && decay[1] * H !== dimAtt)) {
    throw new FormatError(
      ckpt.path,
      `blocks.0.att.time_decay has shape [${decay.join(', ')}], which does not split the time-mix width ${dimAtt} into heads`,
      'RWKV-5 stores time_decay as [heads] (5.0, 5.1) or [heads, head size] (5.2).',
    );
  }
  const gate = ckpt.tensors.has('blocks.0.att.gate.weight');
  return {
    nLayer,
    nEmbd,
    nVocab,
    nFfn,
    dimAtt,
    headSize: dimAtt / H,
    gate,
    perChannel,
    lnXEps,
  };
}

/** ChatRWKV's version number of a config: 5.0 (no gate), 5.1 (gate), 5.2 (per channel). */
export function rwkv5Version(c: Pick<Rwkv5Config, 'gate' | 'perChannel'>): string {
  return c.perChannel ? '5.2' : c.gate ? '5.1' : '5.0';
}

// ---------------------------------------------------------------- Weights

/** Time-mix weights under their checkpoint names (`blocks.N.att.*`). */
interface TimeMix {
  time_mix_k: Buf; // [C]  (stored [1, 1, C])
  time_mix_v: Buf; // [C]
  time_mix_r: Buf; // [C]
  /** Holds w = exp(−exp(time_decay)) per channel, computed once at load. */
  time_decay: Buf; // [A]  (stored [H] or [H, N])
  /** Holds u per channel: time_faaaa, or exp(time_first) for 5.0/5.1 checkpoints. */
  time_first: Buf; // [A]  (stored [H] or [H, N])
  ln_x: LayerNorm; // [A]: GroupNorm over H groups of N
  key: Linear; // [A, C]
  value: Linear; // [A, C]
  receptance: Linear; // [A, C]
  /** 5.1 and 5.2: `time_mix_g` and `gate.weight`. */
  gate: { time_mix_g: Buf; weight: Linear } | null; // [C], [A, C]
  output: Linear; // [C, A]
}

/** Channel-mix weights (`blocks.N.ffn.*`), as RWKV-4's. */
interface ChannelMix {
  time_mix_k: Buf; // [C]
  time_mix_r: Buf; // [C]
  key: Linear; // [F, C]
  receptance: Linear; // [C, C]
  value: Linear; // [C, F]
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
 * channel-mix (`ffnX`, [C]) for the token shift, and the heads' state `wkv` [H, N, N]
 * (S[h, i, j]: key channel i, value channel j). All zero at the start.
 */
const STATE_PARTS = ['attX', 'wkv', 'ffnX'] as const;
export type Rwkv5State = RecurrentState<(typeof STATE_PARTS)[number]>;

// ---------------------------------------------------------------- Model

export class Rwkv5 implements LanguageModel<Rwkv5State> {
  readonly arch = 'rwkv5';
  readonly maxContext = Number.POSITIVE_INFINITY;
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  /** Position of each site id in a block's list. */
  private readonly siteIndex: ReadonlyMap<Rwkv5Site, number>;

  private constructor(
    readonly config: Rwkv5Config,
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
    this.sites = rwkv5SiteTable(config);
    this.siteIndex = new Map(rwkv5Sites(config.gate).map((id, i) => [id, i]));
    this.thresholds = new Float32Array(config.nLayer * this.sites.perBlock.length);
    let weightBytes = 4 * emb.length + head_.bytes;
    for (const { att, ffn } of blocks) {
      for (const l of [att.key, att.value, att.receptance, att.gate?.weight, att.output])
        weightBytes += l?.bytes ?? 0;
      for (const l of [ffn.key, ffn.receptance, ffn.value]) weightBytes += l.bytes;
    }
    this.stats = { parameters, weightBytes };
  }

  /**
   * Loads RWKV-5 weights from any checkpoint format onto a backend. `sparse` also
   * prepares the input-major weight copies that zero skipping reads; `lnXEps` replaces
   * the official GroupNorm eps (64e-5), e.g. by rwkv.cpp's 1e-5.
   */
  static load(
    ckpt: Checkpoint,
    backend: Backend,
    opts: { sparse?: boolean; lnXEps?: number } = {},
  ): Rwkv5 {
    const cfg = rwkv5Config(ckpt, opts.lnXEps);
    const { nEmbd: C, dimAtt: A, nFfn: F, nVocab: V, headSize: N, gate } = cfg;
    const H = A / N;
    let parameters = 0;
    const fp = new Fingerprint(
      `rwkv5 ${cfg.nLayer}x${C} att ${H}x${N} ffn ${F} vocab ${V} gate ${gate} perChannel ${cfg.perChannel}`,
    );
    const host = (name: string, n: number) => {
      parameters += n;
      return readWeight(ckpt, name, [n], fp);
    };
    const vec = (name: string, n = C) => backend.upload(host(name, n));
    const norm = (name: string, n = C): LayerNorm => ({
      weight: vec(`${name}.weight`, n),
      bias: vec(`${name}.bias`, n),
    });
    const lin = (name: string, rows: number, cols: number, sparse = !!opts.sparse) => {
      parameters += rows * cols;
      const w = readWeight(ckpt, name, [rows, cols], fp);
      return backend.prepare(w, rows, cols, { sparse, dtype: storedDType(ckpt, name) });
    };
    // A per-head [H] or per-channel [H, N] vector, f applied, repeated to [A] channels.
    const headwise = (name: string, f: (x: number) => number): Buf => {
      const shape = cfg.perChannel ? [H, N] : [H];
      parameters += cfg.perChannel ? A : H;
      const src = readWeight(ckpt, name, shape, fp);
      const per = cfg.perChannel ? 1 : N;
      return backend.upload(
        Float32Array.from({ length: A }, (_, c) => f(src[Math.floor(c / per)])),
      );
    };

    // x = LN(emb[tok]; ln0) depends on the token only: apply ln0 to the table once.
    const table = readWeight(ckpt, 'emb.weight', [V, C], fp);
    parameters += V * C;
    const emb = backend.upload(table);
    const ln0 = norm('blocks.0.ln0');
    backend.layerNorm(emb, emb, ln0.weight, ln0.bias, V, C, 1e-5);

    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const p = `blocks.${i}.att`;
      // u as stored (time_faaaa) or exp(time_first) (ChatRWKV's REAL_TIME_FIRST).
      const faaaa = ckpt.tensors.has(`${p}.time_faaaa`);
      blocks.push({
        ln1: norm(`blocks.${i}.ln1`),
        ln2: norm(`blocks.${i}.ln2`),
        att: {
          time_mix_k: vec(`${p}.time_mix_k`),
          time_mix_v: vec(`${p}.time_mix_v`),
          time_mix_r: vec(`${p}.time_mix_r`),
          // w = exp(−exp(time_decay))
          time_decay: headwise(`${p}.time_decay`, (w) => Math.exp(-Math.exp(w))),
          time_first: faaaa
            ? headwise(`${p}.time_faaaa`, (u) => u)
            : headwise(`${p}.time_first`, (u) => Math.exp(u)),
          ln_x: norm(`${p}.ln_x`, A),
          key: lin(`${p}.key.weight`, A, C),
          value: lin(`${p}.value.weight`, A, C),
          receptance: lin(`${p}.receptance.weight`, A, C),
          gate: gate
            ? { time_mix_g: vec(`${p}.time_mix_g`), weight: lin(`${p}.gate.weight`, A, C) }
            : null,
          output: lin(`${p}.output.weight`, C, A),
        },
        ffn: {
          time_mix_k: vec(`blocks.${i}.ffn.time_mix_k`),
          time_mix_r: vec(`blocks.${i}.ffn.time_mix_r`),
          key: lin(`blocks.${i}.ffn.key.weight`, F, C),
          receptance: lin(`blocks.${i}.ffn.receptance.weight`, C, C),
          value: lin(`blocks.${i}.ffn.value.weight`, C, F),
        },
      });
    }
    const lnOut = norm('ln_out');
    const head = lin('head.weight', V, C, false); // the head is never thresholded
    return new Rwkv5(cfg, backend, emb, blocks, lnOut, head, parameters, fp.digest());
  }

  newState(batch = 1): Rwkv5State {
    const { nEmbd: C, dimAtt: A, headSize: N } = this.config;
    return RecurrentState.fresh(this.backend, batch, this.nLayer, {
      attX: { width: C, init: 0 },
      wkv: { width: A * N, init: 0 },
      ffnX: { width: C, init: 0 },
    });
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /** x [rows, C] = LN(emb[tok]; ln0) for each token (ln0 is in the table). */
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
    s: Rwkv5Site,
    rows: number,
    hook: SiteHook | undefined,
  ): void {
    const g = b * this.sites.perBlock.length + (this.siteIndex.get(s) as number);
    applySite(this, g, x, rows, w.cols, hook);
    siteProduct(this, y, w, x, rows, g);
  }

  /** Block `b` over x [rows, C] in place: x += att(LN(x; ln1)); x += ffn(LN(x; ln2)). */
  block(b: number, x: Buf, batch: Batch, state: Rwkv5State, hook?: SiteHook): void {
    const { nEmbd: C, dimAtt: A, nFfn: F, headSize: N } = this.config;
    const { att, ffn, ln1, ln2 } = this.blocks[b];
    const be = this.backend;
    const { seqs } = batch;
    const n = seqs.rows;
    const [xx, xm, y] = [0, 0, 0].map(() => be.alloc(n * C));
    const [r, k, v, wkv] = [0, 0, 0, 0].map(() => be.alloc(n * A));
    const g = att.gate ? be.alloc(n * A) : null;
    const hidden = be.alloc(n * F);

    // ---- time-mix
    be.layerNorm(xx, x, ln1.weight, ln1.bias, n, C, 1e-5);
    const attX = state.part('attX', b);
    // xk = xx·mix_k + sx·(1−mix_k), sx the previous token's xx (attX at the start); k = Wk xk
    be.timeShiftMix(xm, xx, attX, att.time_mix_k, seqs, C);
    this.linear(k, att.key, xm, b, 'att.key', n, hook);
    be.timeShiftMix(xm, xx, attX, att.time_mix_r, seqs, C);
    this.linear(r, att.receptance, xm, b, 'att.receptance', n, hook);
    be.timeShiftMix(xm, xx, attX, att.time_mix_v, seqs, C);
    this.linear(v, att.value, xm, b, 'att.value', n, hook);
    if (g && att.gate) {
      // g = silu(Wg xg)
      be.timeShiftMix(xm, xx, attX, att.gate.time_mix_g, seqs, C);
      this.linear(g, att.gate.weight, xm, b, 'att.gate', n, hook);
      be.unary('silu', g, g);
    }
    be.lastRows(attX, xx, seqs, C);
    // out_j = Σ_i r_i·(u_i·k_i·v_j + S_ij); S_ij ← w_i·S_ij + k_i·v_j, per head, token by token
    be.run(wkv5, {
      out: wkv,
      r,
      k,
      v,
      w: att.time_decay,
      u: att.time_first,
      state: state.part('wkv', b),
      seqs,
      heads: A / N,
      headSize: N,
    });
    // GroupNorm: each head's N values normalized, then ·ln_x.weight + ln_x.bias per channel
    be.layerNorm(wkv, wkv, att.ln_x.weight, att.ln_x.bias, n * (A / N), N, this.config.lnXEps);
    if (g) be.binary('mul', wkv, wkv, g);
    // x += Wo (GroupNorm(wkv) [· g])
    this.linear(y, att.output, wkv, b, 'att.output', n, hook);
    be.binary('add', x, x, y);

    // ---- channel-mix: x += σ(Wr xr) · (Wv relu(Wk xk)²)
    be.layerNorm(xx, x, ln2.weight, ln2.bias, n, C, 1e-5);
    const ffnX = state.part('ffnX', b);
    be.timeShiftMix(xm, xx, ffnX, ffn.time_mix_r, seqs, C);
    this.linear(y, ffn.receptance, xm, b, 'ffn.receptance', n, hook);
    be.unary('sigmoid', y, y);
    be.timeShiftMix(xm, xx, ffnX, ffn.time_mix_k, seqs, C);
    this.linear(hidden, ffn.key, xm, b, 'ffn.key', n, hook);
    be.lastRows(ffnX, xx, seqs, C);
    be.unary('reluSquare', hidden, hidden);
    this.linear(xm, ffn.value, hidden, b, 'ffn.value', n, hook);
    be.addMul(x, x, y, xm);

    for (const t of [xx, xm, y, r, k, v, wkv, hidden]) be.free(t);
    if (g) be.free(g);
  }
}
