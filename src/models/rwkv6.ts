/**
 * RWKV-6 ("Finch"), as ChatRWKV's rwkv pip package (`att_one_v6_0`, `att_seq_v6_0`,
 * `ffn_one_v6`) and rwkv.cpp (`rwkv_att_v6`, `rwkv_ffn_v6`) compute it, with the
 * threshold sites below. Recognised by `time_maa_x` (RWKV-6's data-dependent token shift).
 *
 * Dimensions: C = n_embd, A = dim_att = H·N (C in every release), F = the channel-mix
 * width (3.5·C), H heads of N channels (from time_faaaa [H, N]), D the token-shift LoRA
 * width (time_maa_w1 [C, 5·D]; 32, 64 from C = 4096 on), E the decay LoRA width
 * (time_decay_w1 [C, E]; 64, 128 from C = 4096 on).
 *
 * Time-mix, per token, with xx = LN(x; ln1), sx the previous token's xx, dx = sx − xx:
 *
 *   xxx = xx + dx·maa_x
 *   (mw, mk, mv, mr, mg) = tanh(xxx·time_maa_w1) · time_maa_w2    (5 products D → C)
 *   xw = xx + dx·(maa_w + mw)   (xk, xv, xr, xg alike)
 *   r = Wr xr; k = Wk xk; v = Wv xv; g = silu(Wg xg)
 *   w = exp(−exp(time_decay + tanh(xw·time_decay_w1)·time_decay_w2))
 *   out = Wo (GroupNorm(wkv6(r, k, v, w, u = time_faaaa); ln_x) · g)
 *
 * Channel-mix: xk = xx + dx·maa_k, xr = xx + dx·maa_r; σ(Wr xr) · (Wv relu(Wk xk)²).
 * GroupNorm eps 64e-5 (`lnXEps`), as in ChatRWKV, RWKV-LM and rwkv.cpp.
 *
 * Threshold sites (one per linear-layer input, the LoRA products included; METHOD.md
 * terms), in search order:
 *
 *   #   site                thresholded input              feeds             MACs
 *   1   att.time_maa_w1     xxx = xx + dx·maa_x            time_maa_w1       C·5D
 *   2   att.time_maa_w2     tanh(xxx·time_maa_w1)  [5D]    time_maa_w2 (×5)  5D·C
 *   3   att.key             xk                             key               C·A
 *   4   att.receptance      xr                             receptance        C·A
 *   5   att.value           xv                             value             C·A
 *   6   att.gate            xg                             gate              C·A
 *   7   att.time_decay_w1   xw                             time_decay_w1     C·E
 *   8   att.time_decay_w2   tanh(xw·time_decay_w1)  [E]    time_decay_w2     E·A
 *   9   att.output          GroupNorm(wkv; ln_x) · g       output            A·C
 *   10  ffn.receptance      xr = xx + dx·maa_r (ln2)       receptance        C²
 *   11  ffn.key             xk = xx + dx·maa_k             key               C·F
 *   12  ffn.value           relu(key·xk)²                  value             F·C
 *
 * Order: data flow, with RWKV-4's order (METHOD.md §1) among the layers that read the
 * same input stage: the token-shift LoRA first (its outputs make the inputs of every
 * later time-mix layer), then key, receptance, value, gate (RWKV-5's order), then the
 * decay LoRA (its output is the recurrence's decay, read beside k, v, r), then output.
 * Site 2's input feeds five products of D → C, one per group (w, k, v, r, g); a non-zero
 * value of group q costs the C outputs of its group, so `rows` is C and the site's MACs
 * are 5D·C. The second LoRA matrices are sites as well: their inputs are linear-layer
 * inputs like any other, with as many MACs as the first (5D·C, E·A), and an event-driven
 * chip skips their zeros the same way; the loss-guarded search gives a site its keep
 * fraction only if the loss allows, so a sensitive bottleneck stays dense. Sites 2, 8
 * and 12 read another site's layer output after an activation (tanh, relu²): `fedBy`.
 */
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Buf, IdBuf, Linear } from '../tensor/backend.ts';
import { wkv6 } from '../tensor/families/wkv6.ts';
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
import { LN_X_EPS } from './rwkv5.ts';
import { RecurrentState } from './state.ts';
import { Fingerprint, readWeight, shapeOf, storedDType } from './weights.ts';

// ---------------------------------------------------------------- Config

export type Rwkv6Config = {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Channel-mix width F. */
  nFfn: number;
  /** Time-mix width A = H·N (dim_att). */
  dimAtt: number;
  /** Channels per head N (64 in every release). */
  headSize: number;
  /** Token-shift LoRA width D (time_maa_w1 is [C, 5·D]). */
  maaLora: number;
  /** Decay LoRA width E (time_decay_w1 is [C, E]). */
  decayLora: number;
  /** GroupNorm (ln_x) eps, 64e-5. */
  lnXEps: number;
};

export const RWKV6_SITES = [
  'att.time_maa_w1',
  'att.time_maa_w2',
  'att.key',
  'att.receptance',
  'att.value',
  'att.gate',
  'att.time_decay_w1',
  'att.time_decay_w2',
  'att.output',
  'ffn.receptance',
  'ffn.key',
  'ffn.value',
] as const;
export type Rwkv6Site = (typeof RWKV6_SITES)[number];
const S = Object.fromEntries(RWKV6_SITES.map((id, i) => [id, i])) as Record<Rwkv6Site, number>;

/** The five token-shift mixes time_maa_w2 makes, in its order. */
const MIXES = ['w', 'k', 'v', 'r', 'g'] as const;

/** The site table for a config: each site's inputs (cols) and the outputs they feed (rows). */
export function rwkv6SiteTable(c: Rwkv6Config): SiteTable {
  const { nEmbd: C, dimAtt: A, nFfn: F, maaLora: D, decayLora: E } = c;
  const shape: Record<Rwkv6Site, { rows: number; cols: number; fedBy?: string }> = {
    'att.time_maa_w1': { rows: 5 * D, cols: C },
    'att.time_maa_w2': { rows: C, cols: 5 * D, fedBy: 'att.time_maa_w1' },
    'att.key': { rows: A, cols: C },
    'att.receptance': { rows: A, cols: C },
    'att.value': { rows: A, cols: C },
    'att.gate': { rows: A, cols: C },
    'att.time_decay_w1': { rows: E, cols: C },
    'att.time_decay_w2': { rows: A, cols: E, fedBy: 'att.time_decay_w1' },
    'att.output': { rows: C, cols: A },
    'ffn.receptance': { rows: C, cols: C },
    'ffn.key': { rows: F, cols: C },
    'ffn.value': { rows: C, cols: F, fedBy: 'ffn.key' },
  };
  return {
    comparison: 'gt',
    nBlocks: c.nLayer,
    perBlock: RWKV6_SITES.map((id) => ({ id, ...shape[id] })),
  };
}

/** Infers the configuration from tensor names and shapes (never from the file name). */
export function rwkv6Config(ckpt: Checkpoint, lnXEps = LN_X_EPS): Rwkv6Config {
  const [nVocab, nEmbd] = shapeOf(ckpt, 'emb.weight', 'the embedding');
  let nLayer = 0;
  while (ckpt.tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  if (nLayer === 0)
    throw new FormatError(ckpt.path, 'no blocks.0.ln1.weight: not an RWKV checkpoint');
  const dimAtt = shapeOf(ckpt, 'blocks.0.att.key.weight', 'the time-mix width')[0];
  const nFfn = shapeOf(ckpt, 'blocks.0.ffn.key.weight', 'the channel-mix width')[0];
  // ChatRWKV: n_head = time_faaaa.shape[0]
  const [H, N] = shapeOf(ckpt, 'blocks.0.att.time_faaaa', 'the heads');
  if (!(H * N === dimAtt)) {
    throw new FormatError(
      ckpt.path,
      `blocks.0.att.time_faaaa is [${H}, ${N}], which is not [heads, head size] of the time-mix width ${dimAtt}`,
    );
  }
  const maa = shapeOf(ckpt, 'blocks.0.att.time_maa_w1', 'the token-shift LoRA width');
  if (!(maa.length === 2 && maa[1] % 5 === 0)) {
    throw new FormatError(
      ckpt.path,
      `blocks.0.att.time_maa_w1 has shape [${maa.join(', ')}]; expected [${nEmbd}, 5·D]`,
    );
  }
  const decayLora = shapeOf(ckpt, 'blocks.0.att.time_decay_w1', 'the decay LoRA width')[1];
  return {
    nLayer,
    nEmbd,
    nVocab,
    nFfn,
    dimAtt,
    headSize: N,
    maaLora: maa[1] / 5,
    decayLora,
    lnXEps,
  };
}

// ---------------------------------------------------------------- Weights

/** Time-mix weights under their checkpoint names (`blocks.N.att.*`). */
interface TimeMix {
  time_maa_x: Buf; // [C]  (stored [1, 1, C])
  /** maa_w, maa_k, maa_v, maa_r, maa_g in time_maa_w2's order. */
  time_maa: Record<(typeof MIXES)[number], Buf>; // [C] each
  /** time_maa_w1ᵀ: the checkpoint holds [C, 5D] (x·W); products take [out, in]. */
  time_maa_w1: Linear; // [5D, C]
  /** time_maa_w2[q]ᵀ for each group q. */
  time_maa_w2: Linear[]; // 5 × [C, D]  (stored [5, D, C])
  time_decay: Buf; // [A]  (stored [1, 1, A]), the decay logit before the LoRA
  time_decay_w1: Linear; // [E, C]  (stored [C, E])
  time_decay_w2: Linear; // [A, E]  (stored [E, A])
  time_faaaa: Buf; // [A]  u (stored [H, N])
  ln_x: LayerNorm; // [A]: GroupNorm over H groups of N
  key: Linear; // [A, C]
  value: Linear; // [A, C]
  receptance: Linear; // [A, C]
  gate: Linear; // [A, C]
  output: Linear; // [C, A]
}

/** Channel-mix weights (`blocks.N.ffn.*`). */
interface ChannelMix {
  time_maa_k: Buf; // [C]
  time_maa_r: Buf; // [C]
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
export type Rwkv6State = RecurrentState<(typeof STATE_PARTS)[number]>;

// ---------------------------------------------------------------- Model

export class Rwkv6 implements LanguageModel<Rwkv6State> {
  readonly arch = 'rwkv6';
  readonly maxContext = Number.POSITIVE_INFINITY;
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;

  private constructor(
    readonly config: Rwkv6Config,
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
    this.sites = rwkv6SiteTable(config);
    this.thresholds = new Float32Array(config.nLayer * RWKV6_SITES.length);
    let weightBytes = 4 * emb.length + head_.bytes;
    for (const { att, ffn } of blocks) {
      const lins = [att.time_maa_w1, ...att.time_maa_w2, att.time_decay_w1, att.time_decay_w2];
      lins.push(att.key, att.value, att.receptance, att.gate, att.output);
      lins.push(ffn.key, ffn.receptance, ffn.value);
      for (const l of lins) weightBytes += l.bytes;
    }
    this.stats = { parameters, weightBytes };
  }

  /**
   * Loads RWKV-6 weights from any checkpoint format onto a backend. `sparse` also
   * prepares the input-major weight copies that zero skipping reads; `lnXEps` replaces
   * the GroupNorm eps (64e-5).
   */
  static load(
    ckpt: Checkpoint,
    backend: Backend,
    opts: { sparse?: boolean; lnXEps?: number } = {},
  ): Rwkv6 {
    const cfg = rwkv6Config(ckpt, opts.lnXEps);
    const { nEmbd: C, dimAtt: A, nFfn: F, nVocab: V, headSize: N, maaLora: D } = cfg;
    const E = cfg.decayLora;
    const H = A / N;
    let parameters = 0;
    const fp = new Fingerprint(
      `rwkv6 ${cfg.nLayer}x${C} att ${H}x${N} ffn ${F} lora ${D},${E} vocab ${V}`,
    );
    const host = (name: string, shape: number[]) => {
      parameters += shape.reduce((a, b) => a * b, 1);
      return readWeight(ckpt, name, shape, fp);
    };
    const vec = (name: string, n = C) => backend.upload(host(name, [n]));
    const norm = (name: string, n = C): LayerNorm => ({
      weight: vec(`${name}.weight`, n),
      bias: vec(`${name}.bias`, n),
    });
    const prepare = (name: string, w: Float32Array, rows: number, cols: number, sparse: boolean) =>
      backend.prepare(w, rows, cols, { sparse, dtype: storedDType(ckpt, name) });
    const lin = (name: string, rows: number, cols: number, sparse = !!opts.sparse) =>
      prepare(name, host(name, [rows, cols]), rows, cols, sparse);
    // The LoRA matrices are stored [in, out] (used as x·W): transposed to [out, in].
    const linT = (
      name: string,
      inputs: number,
      outputs: number,
      w = host(name, [inputs, outputs]),
    ) => prepare(name, transpose(w, inputs, outputs), outputs, inputs, !!opts.sparse);

    // x = LN(emb[tok]; ln0) depends on the token only: apply ln0 to the table once.
    const emb = backend.upload(host('emb.weight', [V, C]));
    const ln0 = norm('blocks.0.ln0');
    backend.layerNorm(emb, emb, ln0.weight, ln0.bias, V, C, 1e-5);

    const blocks: Block[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const p = `blocks.${i}.att`;
      // time_maa_w2 [5, D, C]: group q's [D, C] slice is x·W for mix q.
      const maaW2 = host(`${p}.time_maa_w2`, [5, D, C]);
      blocks.push({
        ln1: norm(`blocks.${i}.ln1`),
        ln2: norm(`blocks.${i}.ln2`),
        att: {
          time_maa_x: vec(`${p}.time_maa_x`),
          time_maa: {
            w: vec(`${p}.time_maa_w`),
            k: vec(`${p}.time_maa_k`),
            v: vec(`${p}.time_maa_v`),
            r: vec(`${p}.time_maa_r`),
            g: vec(`${p}.time_maa_g`),
          },
          time_maa_w1: linT(`${p}.time_maa_w1`, C, 5 * D),
          time_maa_w2: MIXES.map((_, q) =>
            linT(`${p}.time_maa_w2`, D, C, maaW2.subarray(q * D * C, (q + 1) * D * C)),
          ),
          time_decay: vec(`${p}.time_decay`, A),
          time_decay_w1: linT(`${p}.time_decay_w1`, C, E),
          time_decay_w2: linT(`${p}.time_decay_w2`, E, A),
          time_faaaa: backend.upload(host(`${p}.time_faaaa`, [H, N])),
          ln_x: norm(`${p}.ln_x`, A),
          key: lin(`${p}.key.weight`, A, C),
          value: lin(`${p}.value.weight`, A, C),
          receptance: lin(`${p}.receptance.weight`, A, C),
          gate: lin(`${p}.gate.weight`, A, C),
          output: lin(`${p}.output.weight`, C, A),
        },
        ffn: {
          time_maa_k: vec(`blocks.${i}.ffn.time_maa_k`),
          time_maa_r: vec(`blocks.${i}.ffn.time_maa_r`),
          key: lin(`blocks.${i}.ffn.key.weight`, F, C),
          receptance: lin(`blocks.${i}.ffn.receptance.weight`, C, C),
          value: lin(`blocks.${i}.ffn.value.weight`, C, F),
        },
      });
    }
    const lnOut = norm('ln_out');
    const head = lin('head.weight', V, C, false); // the head is never thresholded
    return new Rwkv6(cfg, backend, emb, blocks, lnOut, head, parameters, fp.digest());
  }

  newState(batch = 1): Rwkv6State {
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

  /** The global index of site `s` in block `b`; thresholds x [rows, cols] there, then the hook. */
  private site(b: number, s: Rwkv6Site, x: Buf, rows: number, cols: number, hook?: SiteHook) {
    const g = b * RWKV6_SITES.length + S[s];
    applySite(this, g, x, rows, cols, hook);
    return g;
  }

  /** y = W·x at site `s` of block `b`: thresholded, seen by the hook, then the product. */
  private linear(
    y: Buf,
    w: Linear,
    x: Buf,
    b: number,
    s: Rwkv6Site,
    rows: number,
    hook?: SiteHook,
  ) {
    siteProduct(this, y, w, x, rows, this.site(b, s, x, rows, w.cols, hook));
  }

  /** The gather order for n rows: row q·n + t takes row t·5 + q (kept for the last n). */
  private groupOrder(n: number): IdBuf {
    if (this.order?.n !== n) {
      if (this.order) this.backend.free(this.order.ids);
      const order = new Int32Array(5 * n);
      for (let q = 0; q < 5; q++) for (let t = 0; t < n; t++) order[q * n + t] = t * 5 + q;
      // Every block of a forward has the same n: one upload per forward, not per block.
      this.order = { n, ids: this.backend.uploadIds(order) };
    }
    return this.order.ids;
  }
  private order: { n: number; ids: IdBuf } | undefined;

  /** Block `b` over x [rows, C] in place: x += att(LN(x; ln1)); x += ffn(LN(x; ln2)). */
  block(b: number, x: Buf, batch: Batch, state: Rwkv6State, hook?: SiteHook): void {
    const { nEmbd: C, dimAtt: A, nFfn: F, headSize: N, maaLora: D, decayLora: E } = this.config;
    const H = A / N;
    const { att, ffn, ln1, ln2 } = this.blocks[b];
    const be = this.backend;
    const { seqs } = batch;
    const n = seqs.rows;
    const [xx, dx, xm, y] = [0, 0, 0, 0].map(() => be.alloc(n * C));
    const [r, k, v, g, w, wkv] = [0, 0, 0, 0, 0, 0].map(() => be.alloc(n * A));
    const lora = be.alloc(n * 5 * D);
    const groups = be.alloc(n * 5 * D);
    const mixes = be.alloc(5 * n * C); // [5, n, C]: mw, mk, mv, mr, mg
    const decayLora = be.alloc(n * E);
    const hidden = be.alloc(n * F);

    // ---- time-mix
    be.layerNorm(xx, x, ln1.weight, ln1.bias, n, C, 1e-5);
    const attX = state.part('attX', b);
    // dx = sx − xx, sx the previous token's xx (attX at the start)
    be.tokenShift(dx, xx, attX, seqs, C);
    be.binary('sub', dx, dx, xx);
    be.lastRows(attX, xx, seqs, C);
    // xxx = xx + dx·maa_x; lora = tanh(xxx·time_maa_w1) [n, 5D]
    be.addMul(xm, xx, dx, att.time_maa_x);
    this.linear(lora, att.time_maa_w1, xm, b, 'att.time_maa_w1', n, hook);
    be.unary('tanh', lora, lora);
    // m_q = lora[:, q·D:(q+1)·D] · time_maa_w2[q] for q = w, k, v, r, g: group-major
    // [5, n, D] first (row t·5 + q of lora as [n·5, D] goes to row q·n + t), one product each.
    const g0 = this.site(b, 'att.time_maa_w2', lora, n, 5 * D, hook);
    be.gather(groups, lora, this.groupOrder(n), D);
    for (let q = 0; q < 5; q++) {
      const wq = att.time_maa_w2[q];
      siteProduct(
        this,
        be.view(mixes, q * n * C, n * C),
        wq,
        be.view(groups, q * n * D, n * D),
        n,
        g0,
      );
    }
    // x_q = xx + dx·(maa_q + m_q) for q = w, k, v, r, g (m_q replaced by maa_q + m_q)
    const mixed = MIXES.map((q, i) => {
      const m = be.view(mixes, i * n * C, n * C);
      be.binary('add', m, m, att.time_maa[q]);
      be.addMul(m, xx, dx, m);
      return m;
    });
    const [xw, xk, xv, xr, xg] = mixed;
    this.linear(k, att.key, xk, b, 'att.key', n, hook);
    this.linear(r, att.receptance, xr, b, 'att.receptance', n, hook);
    this.linear(v, att.value, xv, b, 'att.value', n, hook);
    // g = silu(Wg xg)
    this.linear(g, att.gate, xg, b, 'att.gate', n, hook);
    be.unary('silu', g, g);
    // w = exp(−exp(time_decay + tanh(xw·time_decay_w1)·time_decay_w2))
    this.linear(decayLora, att.time_decay_w1, xw, b, 'att.time_decay_w1', n, hook);
    be.unary('tanh', decayLora, decayLora);
    this.linear(w, att.time_decay_w2, decayLora, b, 'att.time_decay_w2', n, hook);
    be.binary('add', w, w, att.time_decay);
    be.unary('exp', w, w);
    be.unary('neg', w, w);
    be.unary('exp', w, w);
    // out_j = Σ_i r_i·(u_i·k_i·v_j + S_ij); S_ij ← w_{t,i}·S_ij + k_i·v_j, per head
    be.run(wkv6, {
      out: wkv,
      r,
      k,
      v,
      w,
      u: att.time_faaaa,
      state: state.part('wkv', b),
      seqs,
      heads: H,
      headSize: N,
    });
    // GroupNorm: each head's N values normalized, then ·ln_x.weight + ln_x.bias per channel
    be.layerNorm(wkv, wkv, att.ln_x.weight, att.ln_x.bias, n * H, N, this.config.lnXEps);
    be.binary('mul', wkv, wkv, g);
    // x += Wo (GroupNorm(wkv) · g)
    this.linear(y, att.output, wkv, b, 'att.output', n, hook);
    be.binary('add', x, x, y);

    // ---- channel-mix: x += σ(Wr xr) · (Wv relu(Wk xk)²), xr = xx + dx·maa_r, xk alike
    be.layerNorm(xx, x, ln2.weight, ln2.bias, n, C, 1e-5);
    const ffnX = state.part('ffnX', b);
    be.tokenShift(dx, xx, ffnX, seqs, C);
    be.binary('sub', dx, dx, xx);
    be.lastRows(ffnX, xx, seqs, C);
    be.addMul(xm, xx, dx, ffn.time_maa_r);
    this.linear(y, ffn.receptance, xm, b, 'ffn.receptance', n, hook);
    be.unary('sigmoid', y, y);
    be.addMul(xm, xx, dx, ffn.time_maa_k);
    this.linear(hidden, ffn.key, xm, b, 'ffn.key', n, hook);
    be.unary('reluSquare', hidden, hidden);
    this.linear(xm, ffn.value, hidden, b, 'ffn.value', n, hook);
    be.addMul(x, x, y, xm);

    for (const t of [xx, dx, xm, y, r, k, v, g, w, wkv, lora, groups, mixes, decayLora, hidden])
      be.free(t);
  }
}

/** wt [cols, rows] = w [rows, cols]ᵀ */
function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = w[i * cols + j];
  return out;
}
