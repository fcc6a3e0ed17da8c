/**
 * OPT, as Hugging Face's OPTForCausalLM computes it (modeling_opt.py), with the 3
 * threshold sites per decoder layer of METHOD.md §1 (`qkv`, `fc1`, `fc2`; compared
 * with ≥ as the authors' metaseq code does).
 *
 *   x = embed_tokens[tok]·project_inᵀ + embed_positions[pos + 2]
 *   pre-LN:  h = x + out_proj(attn(LN(x)));   x = h + fc2(relu(fc1(LN(h))))
 *   post-LN: h = LN(x + out_proj(attn(x)));   x = LN(h + fc2(relu(fc1(h))))
 *   logits = lm_head · project_out(final_layer_norm(x))   (final LN for pre-LN only)
 *
 * One path for a batch of whole sequences and for one token (T = 1) against the KV
 * cache: every linear layer is one matrix product over all rows of the batch; attention
 * is one backend op over each sequence's cache.
 */
import { FormatError, UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Buf, Linear } from '../tensor/backend.ts';
import { configJson } from './hf-config.ts';
import {
  applySite,
  type Batch,
  copyThresholds,
  type LanguageModel,
  type LayerNorm,
  type ModelState,
  type SiteHook,
  type SiteTable,
  siteProduct,
} from './model.ts';
import { Fingerprint, readWeight, shapeOf, storedDType } from './weights.ts';

// ---------------------------------------------------------------- Config

export type OptConfig = {
  nLayer: number;
  /** hidden_size */
  nEmbd: number;
  nHead: number;
  /** ffn_dim */
  nFfn: number;
  nVocab: number;
  /** max_position_embeddings (the position table has 2 more rows) */
  nPositions: number;
  /** word_embed_proj_dim: width of embed_tokens and lm_head (≠ nEmbd: project_in/out) */
  nProj: number;
  /** do_layer_norm_before: true = pre-LN, false = post-LN (opt-350m) */
  preLN: boolean;
  /** layer_norm_elementwise_affine */
  lnAffine: boolean;
  /** enable_bias: biases of q/k/v/out_proj, fc1, fc2 */
  bias: boolean;
  /** tie_word_embeddings: lm_head = embed_tokens */
  tied: boolean;
  /** Name prefix of the decoder: `model.decoder.` (OPTForCausalLM) or `decoder.` (OPTModel). */
  prefix: string;
};

/** Site ids of one decoder layer, in the authors' search order (METHOD.md §1). */
export const OPT_SITES = ['qkv', 'fc1', 'fc2'] as const;
export type OptSite = (typeof OPT_SITES)[number];
const S = Object.fromEntries(OPT_SITES.map((id, i) => [id, i])) as Record<OptSite, number>;

/** Learned positions start at row 2 (fairseq's padding offset, kept by Hugging Face). */
const POSITION_OFFSET = 2;

/** The dimensions tensor shapes tell (everything but the head count and the flags). */
export type OptShape = Pick<
  OptConfig,
  'nLayer' | 'nEmbd' | 'nFfn' | 'nVocab' | 'nPositions' | 'nProj' | 'prefix'
>;

export function optShape(ckpt: Checkpoint): OptShape {
  const prefix = ckpt.tensors.has('model.decoder.embed_tokens.weight')
    ? 'model.decoder.'
    : ckpt.tensors.has('decoder.embed_tokens.weight')
      ? 'decoder.'
      : null;
  if (prefix === null)
    throw new FormatError(ckpt.path, 'no model.decoder.embed_tokens.weight: not an OPT checkpoint');
  const dims = (name: string, what: string) => {
    const s = shapeOf(ckpt, prefix + name, what);
    if (s.length !== 2 || !s.every((n) => n > 0))
      throw new FormatError(ckpt.path, `tensor "${prefix}${name}" has shape [${s}], expected 2-D`);
    return s;
  };
  const [nVocab, nProj] = dims('embed_tokens.weight', 'the vocabulary');
  const [posRows, nEmbd] = dims('embed_positions.weight', 'the hidden size');
  if (posRows <= POSITION_OFFSET)
    throw new FormatError(ckpt.path, `${prefix}embed_positions.weight has only ${posRows} rows`);
  let nLayer = 0;
  while (ckpt.tensors.has(`${prefix}layers.${nLayer}.fc1.weight`)) nLayer++;
  if (nLayer === 0) throw new FormatError(ckpt.path, `no ${prefix}layers.0.fc1.weight`);
  const nFfn = dims('layers.0.fc1.weight', 'the ffn width')[0];
  return { nLayer, nEmbd, nFfn, nVocab, nPositions: posRows - POSITION_OFFSET, nProj, prefix };
}

/**
 * The configuration: dimensions from tensor shapes, checked against config.json; the
 * head count and the flags from config.json (required: heads cannot be inferred).
 */
export function optConfig(ckpt: Checkpoint): OptConfig {
  const shape = optShape(ckpt);
  const json = configJson(ckpt);
  if (!json) {
    throw new UserError(
      `${ckpt.path}: an OPT checkpoint needs its config.json (num_attention_heads cannot be inferred from tensor shapes)`,
      'Put the model’s Hugging Face config.json in the same directory as the checkpoint.',
    );
  }
  const file = 'config.json';
  const refuse = (field: string, why: string): never => {
    throw new UserError(
      `${file}: ${field} = ${JSON.stringify(json[field])} ${why}`,
      'actsparse runs OPT as Hugging Face OPTForCausalLM with ReLU; fix config.json or use a supported model.',
    );
  };
  const flag = (field: string, dflt: boolean): boolean => {
    const v = json[field] === undefined ? dflt : json[field];
    if (typeof v !== 'boolean') refuse(field, 'is not true or false');
    return v as boolean;
  };
  // A dimension config.json gives must agree with the tensors.
  const dim = (field: string, fromShape: number) => {
    const v = json[field];
    if (v === undefined || v === null) return;
    if (v !== fromShape) refuse(field, `does not match the checkpoint's tensors (${fromShape})`);
  };

  if (json.model_type !== undefined && json.model_type !== 'opt')
    refuse('model_type', 'is not "opt"');
  dim('vocab_size', shape.nVocab);
  dim('hidden_size', shape.nEmbd);
  dim('num_hidden_layers', shape.nLayer);
  dim('ffn_dim', shape.nFfn);
  dim('max_position_embeddings', shape.nPositions);
  dim('word_embed_proj_dim', shape.nProj);
  const nHead = json.num_attention_heads;
  if (
    typeof nHead !== 'number' ||
    !Number.isInteger(nHead) ||
    nHead <= 0 ||
    shape.nEmbd % nHead !== 0
  )
    refuse('num_attention_heads', `is not a positive divisor of hidden_size ${shape.nEmbd}`);
  if ((json.activation_function ?? 'relu') !== 'relu')
    refuse('activation_function', 'is not supported (only "relu")');
  if (flag('_remove_final_layer_norm', false))
    refuse('_remove_final_layer_norm', 'is not supported (only false)');
  if (json.quantization_config !== undefined)
    refuse('quantization_config', 'is not supported (unquantized weights only)');
  return {
    ...shape,
    nHead: nHead as number,
    preLN: flag('do_layer_norm_before', true),
    lnAffine: flag('layer_norm_elementwise_affine', true),
    bias: flag('enable_bias', true),
    tied: flag('tie_word_embeddings', true),
  };
}

// ---------------------------------------------------------------- Weights

/** A layer norm's weight and bias [d] (ones and zeros when not elementwise-affine). */

/** A linear layer and its bias (null without `enable_bias`). */
interface Proj {
  weight: Linear;
  bias: Buf | null;
}

/** One decoder layer under Hugging Face's names (`model.decoder.layers.N.*`). */
interface Layer {
  self_attn_layer_norm: LayerNorm;
  // self_attn.{q,k,v,out}_proj: [d, d] each. q, k and v read the same (thresholded) input.
  q_proj: Proj;
  k_proj: Proj;
  v_proj: Proj;
  out_proj: Proj;
  final_layer_norm: LayerNorm;
  fc1: Proj; // [f, d]
  fc2: Proj; // [d, f]
}

/** Site ids of one decoder layer, in the authors' search order (METHOD.md §1). */
export function optSiteTable(c: Pick<OptConfig, 'nLayer' | 'nEmbd' | 'nFfn'>): SiteTable {
  const { nEmbd: d, nFfn: f } = c;
  return {
    comparison: 'ge',
    nBlocks: c.nLayer,
    perBlock: [
      { id: 'qkv', cols: d, rows: 3 * d }, // one input, three d×d products
      { id: 'fc1', cols: d, rows: f },
      { id: 'fc2', cols: f, rows: d, fedBy: 'fc1' }, // relu(fc1 ·)
    ],
  };
}

// ---------------------------------------------------------------- State

/**
 * Per layer the keys and values of every token so far, [batch, capacity, d] each (heads
 * side by side), and per layer and sequence the number of tokens cached. The capacity
 * grows on demand up to max_position_embeddings. The position of a sequence's next
 * token is its layer-0 length: a whole forward and block-by-block runs advance it alike.
 */
export class OptState implements ModelState {
  private constructor(
    private readonly backend: Backend,
    readonly batch: number,
    readonly nEmbd: number,
    readonly nPositions: number,
    readonly keys: Buf[],
    readonly values: Buf[],
    readonly capacity: number[],
    readonly lengths: Int32Array[],
  ) {}

  static fresh(
    backend: Backend,
    batch: number,
    nLayer: number,
    d: number,
    nPositions: number,
  ): OptState {
    const empty = () => Array.from({ length: nLayer }, () => backend.alloc(0));
    return new OptState(
      backend,
      batch,
      d,
      nPositions,
      empty(),
      empty(),
      new Array<number>(nLayer).fill(0),
      Array.from({ length: nLayer }, () => new Int32Array(batch)),
    );
  }

  /** Position of sequence `seq`'s next token. */
  position(seq = 0): number {
    return this.lengths[0][seq];
  }

  /** Makes room for `rows` cached tokens per sequence in layer l (doubling, capped). */
  reserve(l: number, rows: number): void {
    if (this.capacity[l] >= rows) return;
    const be = this.backend;
    const d = this.nEmbd;
    const old = this.capacity[l];
    const cap = Math.min(this.nPositions, Math.max(rows, 2 * old, 16));
    for (const kv of [this.keys, this.values]) {
      const grown = be.alloc(this.batch * cap * d);
      for (let b = 0; b < this.batch; b++) {
        const n = this.lengths[l][b] * d;
        if (n) be.copy(be.view(grown, b * cap * d, n), be.view(kv[l], b * old * d, n));
      }
      be.free(kv[l]);
      kv[l] = grown;
    }
    this.capacity[l] = cap;
  }

  clone(): this {
    const be = this.backend;
    const copy = (b: Buf) => {
      const c = be.alloc(b.length);
      be.copy(c, b);
      return c;
    };
    return new OptState(
      be,
      this.batch,
      this.nEmbd,
      this.nPositions,
      this.keys.map(copy),
      this.values.map(copy),
      [...this.capacity],
      this.lengths.map((l) => l.slice()),
    ) as this;
  }

  select(idx: readonly number[]): this {
    const be = this.backend;
    for (const i of idx) {
      if (!(Number.isInteger(i) && i >= 0 && i < this.batch))
        throw new RangeError(`select: sequence ${i} of a state of ${this.batch}`);
    }
    const ids = be.uploadIds(Int32Array.from(idx));
    const pick = (b: Buf, l: number) => {
      const c = be.alloc(idx.length * this.capacity[l] * this.nEmbd);
      if (this.capacity[l]) be.gather(c, b, ids, this.capacity[l] * this.nEmbd);
      return c;
    };
    const s = new OptState(
      be,
      idx.length,
      this.nEmbd,
      this.nPositions,
      this.keys.map(pick),
      this.values.map(pick),
      [...this.capacity],
      this.lengths.map((l) => Int32Array.from(idx, (i) => l[i])),
    ) as this;
    be.free(ids);
    return s;
  }

  free(): void {
    for (const b of [...this.keys, ...this.values]) this.backend.free(b);
  }
}

// ---------------------------------------------------------------- Model

export class Opt implements LanguageModel<OptState> {
  readonly arch = 'opt';
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly maxContext: number;

  private constructor(
    readonly config: OptConfig,
    readonly backend: Backend,
    private readonly embed_tokens: Buf, // [V, p]
    private readonly embed_positions: Buf, // [P + 2, d]
    private readonly project_in: Linear | null, // [d, p]
    private readonly layers: Layer[],
    private readonly final_layer_norm: LayerNorm | null, // model.decoder.final_layer_norm (pre-LN only)
    private readonly project_out: Linear | null, // [p, d]
    private readonly lm_head: Linear, // [V, p]
    parameters: number,
    readonly fingerprint: string,
  ) {
    this.nVocab = config.nVocab;
    this.nEmbd = config.nEmbd;
    this.nLayer = config.nLayer;
    this.maxContext = config.nPositions;
    this.sites = optSiteTable(config);
    this.thresholds = new Float32Array(config.nLayer * OPT_SITES.length);
    let weightBytes = 4 * (embed_tokens.length + embed_positions.length) + lm_head.bytes;
    for (const l of [project_in, project_out]) weightBytes += l?.bytes ?? 0;
    for (const l of layers) {
      for (const p of [l.q_proj, l.k_proj, l.v_proj, l.out_proj, l.fc1, l.fc2])
        weightBytes += p.weight.bytes;
    }
    this.stats = { parameters, weightBytes };
  }

  /**
   * Loads OPT weights from safetensors or pytorch_model.bin onto a backend. `sparse`
   * also prepares the input-major copies that zero skipping reads for the thresholded
   * layers (q/k/v, fc1, fc2).
   */
  static load(ckpt: Checkpoint, backend: Backend, opts: { sparse?: boolean } = {}): Opt {
    const cfg = optConfig(ckpt);
    const { nEmbd: d, nFfn: f, nVocab: V, nProj: p, prefix } = cfg;
    const used = new Set<string>();
    let parameters = 0;
    const fp = new Fingerprint(
      `opt ${cfg.nLayer}x${d} heads ${cfg.nHead} ffn ${f} vocab ${V} positions ${cfg.nPositions} ` +
        `proj ${p} ${cfg.preLN ? 'pre' : 'post'}-LN affine ${cfg.lnAffine} bias ${cfg.bias} tied ${cfg.tied}`,
    );
    // Weights are fingerprinted under their OPTForCausalLM names whatever the prefix.
    const read = (name: string, shape: number[]) => {
      used.add(name);
      const data = readWeight(ckpt, name, shape);
      fp.add(
        name.startsWith('lm_head.') ? name : `model.decoder.${name.slice(prefix.length)}`,
        shape,
        data,
      );
      parameters += data.length;
      return data;
    };
    const lin = (name: string, rows: number, cols: number, sparse = false) =>
      backend.prepare(read(name, [rows, cols]), rows, cols, {
        sparse,
        dtype: storedDType(ckpt, name),
      });
    const proj = (name: string, rows: number, cols: number, sparse = false): Proj => ({
      weight: lin(`${name}.weight`, rows, cols, sparse),
      bias: cfg.bias ? backend.upload(read(`${name}.bias`, [rows])) : null,
    });
    const norm = (name: string): LayerNorm =>
      cfg.lnAffine
        ? {
            weight: backend.upload(read(`${name}.weight`, [d])),
            bias: backend.upload(read(`${name}.bias`, [d])),
          }
        : { weight: backend.upload(new Float32Array(d).fill(1)), bias: backend.alloc(d) };
    const sparse = !!opts.sparse;

    const embTokens = read(`${prefix}embed_tokens.weight`, [V, p]);
    const embPositions = read(`${prefix}embed_positions.weight`, [
      cfg.nPositions + POSITION_OFFSET,
      d,
    ]);
    const projectIn = p !== d ? lin(`${prefix}project_in.weight`, d, p) : null;
    const layers: Layer[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const n = `${prefix}layers.${i}`;
      const a = `${n}.self_attn`;
      layers.push({
        self_attn_layer_norm: norm(`${n}.self_attn_layer_norm`),
        q_proj: proj(`${a}.q_proj`, d, d, sparse),
        k_proj: proj(`${a}.k_proj`, d, d, sparse),
        v_proj: proj(`${a}.v_proj`, d, d, sparse),
        out_proj: proj(`${a}.out_proj`, d, d), // not a site: never sparse
        final_layer_norm: norm(`${n}.final_layer_norm`),
        fc1: proj(`${n}.fc1`, f, d, sparse),
        fc2: proj(`${n}.fc2`, d, f, sparse),
      });
    }
    const finalNorm = cfg.preLN ? norm(`${prefix}final_layer_norm`) : null;
    const projectOut = p !== d ? lin(`${prefix}project_out.weight`, p, d) : null;
    // lm_head [V, p]: the embedding when tied (a stored lm_head.weight is then ignored, as HF does).
    if (cfg.tied) used.add('lm_head.weight');
    const head = cfg.tied
      ? backend.prepare(embTokens, V, p, {
          dtype: storedDType(ckpt, `${prefix}embed_tokens.weight`),
        })
      : lin('lm_head.weight', V, p);

    // A tensor the configuration does not use means config.json and weights disagree.
    for (const name of ckpt.tensors.keys()) {
      if (!used.has(name)) {
        throw new FormatError(
          ckpt.path,
          `tensor "${name}" is not part of the OPT model config.json describes`,
          'Check config.json (enable_bias, do_layer_norm_before, layer_norm_elementwise_affine, word_embed_proj_dim, num_hidden_layers) against the weights.',
        );
      }
    }
    return new Opt(
      cfg,
      backend,
      backend.upload(embTokens),
      backend.upload(embPositions),
      projectIn,
      layers,
      finalNorm,
      projectOut,
      head,
      parameters,
      fp.digest(),
    );
  }

  newState(batch = 1): OptState {
    return OptState.fresh(this.backend, batch, this.nLayer, this.nEmbd, this.config.nPositions);
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /** Checks that every sequence's rows fit after `starts` (its tokens so far). */
  private checkPositions(batch: Batch, starts: Int32Array, where: string): void {
    const P = this.config.nPositions;
    for (let s = 0; s < batch.seqs.count; s++) {
      const end = starts[s] + batch.seqs.length(s);
      if (end > P) {
        throw new UserError(
          `OPT input too long${where}: positions ${starts[s]}..${end - 1} go beyond max_position_embeddings ${P}`,
          'Use a shorter context (--ctx), prompt or generation length.',
        );
      }
    }
  }

  /** x [rows, d] = embed_tokens[tok]·project_inᵀ + embed_positions[position + 2]. */
  embed(batch: Batch, state: OptState): Buf {
    const be = this.backend;
    const { nEmbd: d, nProj: p } = this.config;
    const { seqs } = batch;
    const n = seqs.rows;
    const starts = state.lengths[0];
    this.checkPositions(batch, starts, '');
    const x = be.alloc(n * d);
    if (this.project_in) {
      const e = be.alloc(n * p);
      be.gather(e, this.embed_tokens, batch.ids, p);
      be.matmul(x, this.project_in, e, n);
      be.free(e);
    } else be.gather(x, this.embed_tokens, batch.ids, d);
    // + embed_positions[position + 2], row by row of each sequence
    const rows = new Int32Array(n);
    for (let s = 0; s < seqs.count; s++) {
      for (let t = 0; t < seqs.length(s); t++)
        rows[seqs.offsets[s] + t] = starts[s] + t + POSITION_OFFSET;
    }
    const ids = be.uploadIds(rows);
    const pos = be.alloc(n * d);
    be.gather(pos, this.embed_positions, ids, d);
    be.binary('add', x, x, pos);
    be.free(pos);
    be.free(ids);
    return x;
  }

  /** logits [rows, V] = lm_head · project_out(final_layer_norm(x)); x is left as it is. */
  head(x: Buf, rows: number): Buf {
    const be = this.backend;
    const { nEmbd: d, nProj: p } = this.config;
    const temps: Buf[] = [];
    let h = x;
    if (this.final_layer_norm) {
      const xn = be.alloc(rows * d);
      be.layerNorm(xn, x, this.final_layer_norm.weight, this.final_layer_norm.bias, rows, d, 1e-5);
      temps.push(xn);
      h = xn;
    }
    if (this.project_out) {
      const y = be.alloc(rows * p);
      be.matmul(y, this.project_out, h, rows);
      temps.push(y);
      h = y;
    }
    const out = be.alloc(rows * this.nVocab);
    be.matmul(out, this.lm_head, h, rows);
    for (const t of temps) be.free(t);
    return out;
  }

  /** y = W·x + bias for `rows` rows; zero skipping when site g has a threshold. */
  private linear(y: Buf, w: Proj, x: Buf, rows: number, g = -1): void {
    if (g >= 0) siteProduct(this, y, w.weight, x, rows, g, w.bias);
    else this.backend.matmul(y, w.weight, x, rows, { bias: w.bias ?? undefined });
  }

  /** One decoder layer over x [rows, d] in place (HF OPTDecoderLayer.forward). */
  block(b: number, x: Buf, batch: Batch, state: OptState, hook?: SiteHook): void {
    const { nEmbd: d, nFfn: f, nHead, preLN } = this.config;
    const L = this.layers[b];
    const be = this.backend;
    const { seqs } = batch;
    const n = seqs.rows;
    const g0 = b * OPT_SITES.length;
    const starts = state.lengths[b].slice();
    this.checkPositions(batch, starts, ` (layer ${b})`);
    let longest = 0;
    for (let s = 0; s < seqs.count; s++) longest = Math.max(longest, starts[s] + seqs.length(s));
    state.reserve(b, longest);
    const [xn, q, k, v, att, out] = [0, 0, 0, 0, 0, 0].map(() => be.alloc(n * d));
    const hidden = be.alloc(n * f);

    // ---- self-attention; the site input is LN(x) (pre-LN) or a copy of x (post-LN),
    // so that thresholding never touches the residual stream.
    const ln1 = L.self_attn_layer_norm;
    if (preLN) be.layerNorm(xn, x, ln1.weight, ln1.bias, n, d, 1e-5);
    else be.copy(xn, x);
    applySite(this, g0 + S.qkv, xn, n, d, hook);
    // q, k, v = W·xn + b (q is scaled by 1/√head_dim inside attention, after the bias, as HF does)
    this.linear(q, L.q_proj, xn, n, g0 + S.qkv);
    this.linear(k, L.k_proj, xn, n, g0 + S.qkv);
    this.linear(v, L.v_proj, xn, n, g0 + S.qkv);
    // Append k and v to each sequence's cache: rows start … start+T−1.
    const cap = state.capacity[b];
    be.appendRows(state.keys[b], k, seqs, starts, cap, d);
    be.appendRows(state.values[b], v, seqs, starts, cap, d);
    for (let s = 0; s < seqs.count; s++) state.lengths[b][s] = starts[s] + seqs.length(s);
    const hd = d / nHead;
    be.attention(att, q, state.keys[b], state.values[b], seqs, starts, cap, nHead, hd, hd ** -0.5);
    // x = x + out_proj(att)  (post-LN: then LN)
    this.linear(out, L.out_proj, att, n);
    be.binary('add', x, x, out);
    if (!preLN) be.layerNorm(x, x, ln1.weight, ln1.bias, n, d, 1e-5);

    // ---- MLP: x = x + fc2(relu(fc1(LN(x))))  (post-LN: LN after the sum, none before)
    const ln2 = L.final_layer_norm;
    if (preLN) be.layerNorm(xn, x, ln2.weight, ln2.bias, n, d, 1e-5);
    else be.copy(xn, x);
    applySite(this, g0 + S.fc1, xn, n, d, hook);
    this.linear(hidden, L.fc1, xn, n, g0 + S.fc1);
    be.unary('relu', hidden, hidden);
    applySite(this, g0 + S.fc2, hidden, n, f, hook);
    this.linear(out, L.fc2, hidden, n, g0 + S.fc2);
    be.binary('add', x, x, out);
    if (!preLN) be.layerNorm(x, x, ln2.weight, ln2.bias, n, d, 1e-5);

    for (const t of [xn, q, k, v, att, out, hidden]) be.free(t);
  }
}
