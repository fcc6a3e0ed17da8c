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
 * Sequence mode runs every linear layer as one matrix product over all tokens and the
 * attention per head over the sequence; step mode is one token against a KV cache.
 * Both give the same numbers (tested).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FormatError, UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { readJsonFile } from '../io/tokenizers/utf8.ts';
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

export interface OptConfig {
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
}

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
 * The Hugging Face config.json of a checkpoint: the safetensors reader puts it in
 * `meta.config`; beside a pytorch_model.bin we read it ourselves.
 */
function configJson(ckpt: Checkpoint): { json: Record<string, unknown>; file: string } | null {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(ckpt.meta.config)) return { json: ckpt.meta.config, file: 'config.json' };
  if (ckpt.format !== 'pth') return null;
  const file = join(dirname(ckpt.path), 'config.json');
  if (!existsSync(file)) return null;
  const json = readJsonFile(file, 'config.json');
  if (!isObj(json)) throw new FormatError(file, 'config.json is not a JSON object');
  return { json, file };
}

/**
 * The configuration: dimensions from tensor shapes, checked against config.json; the
 * head count and the flags from config.json (required: heads cannot be inferred).
 */
export function optConfig(ckpt: Checkpoint): OptConfig {
  const shape = optShape(ckpt);
  const cfg = configJson(ckpt);
  if (!cfg) {
    throw new UserError(
      `${ckpt.path}: an OPT checkpoint needs its config.json (num_attention_heads cannot be inferred from tensor shapes)`,
      'Put the model’s Hugging Face config.json in the same directory as the checkpoint.',
    );
  }
  const { json, file } = cfg;
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

type Norm = [Float32Array, Float32Array]; // weight, bias [d] (ones, zeros when not affine)

interface Layer {
  attnNorm: Norm; // self_attn_layer_norm
  qkv: Linear; // [3d, d]: q_proj, k_proj, v_proj stacked
  qkvBias: Float32Array | null; // [3d]
  outProj: Linear; // [d, d]
  outBias: Float32Array | null; // [d]
  ffnNorm: Norm; // final_layer_norm of the layer
  fc1: Linear; // [f, d]
  fc1Bias: Float32Array | null; // [f]
  fc2: Linear; // [d, f]
  fc2Bias: Float32Array | null; // [d]
}

// ---------------------------------------------------------------- State

/**
 * Per layer the keys and values of every token so far ([len, d] each, heads side by
 * side), grown on demand up to max_position_embeddings rows. The position of the next
 * token is layer 0's length: `forward`, `step` and `embed`+`block` advance it alike.
 */
export class OptState implements ModelState {
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  readonly lengths: number[];

  constructor(
    readonly nLayer: number,
    readonly nEmbd: number,
    readonly nPositions: number,
  ) {
    this.keys = Array.from({ length: nLayer }, () => new Float32Array(0));
    this.values = Array.from({ length: nLayer }, () => new Float32Array(0));
    this.lengths = new Array<number>(nLayer).fill(0);
  }

  /** Position of the next token. */
  get position(): number {
    return this.lengths[0];
  }

  /** Makes room for `rows` cached tokens in layer `l` (doubling, capped at the positions). */
  reserve(l: number, rows: number): void {
    const d = this.nEmbd;
    if (this.keys[l].length >= rows * d) return;
    const cap = Math.min(this.nPositions, Math.max(rows, 2 * (this.keys[l].length / d), 16));
    for (const kv of [this.keys, this.values]) {
      const grown = new Float32Array(cap * d);
      grown.set(kv[l].subarray(0, this.lengths[l] * d));
      kv[l] = grown;
    }
  }

  clone(): OptState {
    const c = new OptState(this.nLayer, this.nEmbd, this.nPositions);
    for (let l = 0; l < this.nLayer; l++) {
      const n = this.lengths[l] * this.nEmbd;
      c.keys[l] = this.keys[l].slice(0, n);
      c.values[l] = this.values[l].slice(0, n);
      c.lengths[l] = this.lengths[l];
    }
    return c;
  }
}

// ---------------------------------------------------------------- Model

export class Opt implements LanguageModel<OptState> {
  readonly arch = 'opt';
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  observer: SiteObserver | null = null;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly maxContext: number;
  private readonly scratch: Buffers;

  private constructor(
    readonly config: OptConfig,
    readonly backend: Backend,
    private readonly embTokens: Float32Array, // [V, p]
    private readonly embPositions: Float32Array, // [P + 2, d]
    private readonly projectIn: Linear | null, // [d, p]
    private readonly layers: Layer[],
    private readonly finalNorm: Norm | null, // model.decoder.final_layer_norm (pre-LN only)
    private readonly projectOut: Linear | null, // [p, d]
    private readonly head: Linear, // [V, p]
    parameters: number,
    readonly fingerprint: string,
  ) {
    const { nEmbd: d, nFfn: f, nLayer, nVocab } = config;
    this.nVocab = nVocab;
    this.nEmbd = d;
    this.nLayer = nLayer;
    this.maxContext = config.nPositions;
    this.sites = {
      comparison: 'ge',
      nBlocks: nLayer,
      perBlock: [
        { id: 'qkv', cols: d, rows: 3 * d }, // one input, three d×d products
        { id: 'fc1', cols: d, rows: f },
        { id: 'fc2', cols: f, rows: d },
      ],
    };
    this.thresholds = new Float32Array(nLayer * OPT_SITES.length);
    let weightBytes = embTokens.byteLength + embPositions.byteLength + head.bytes;
    for (const l of [projectIn, projectOut]) weightBytes += l?.bytes ?? 0;
    for (const l of layers)
      weightBytes += l.qkv.bytes + l.outProj.bytes + l.fc1.bytes + l.fc2.bytes;
    this.stats = { parameters, weightBytes };
    this.scratch = new Buffers(config, 1, config.nPositions, true);
  }

  /**
   * Loads OPT weights from safetensors or pytorch_model.bin onto a backend. `sparse`
   * also prepares the input-major copies that step mode's zero-skipping kernel reads
   * for the thresholded layers (q/k/v, fc1, fc2).
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
      backend.prepare(read(name, [rows, cols]), rows, cols, { sparse });
    const bias = (name: string, n: number) => (cfg.bias ? read(name, [n]) : null);
    const norm = (name: string): Norm =>
      cfg.lnAffine
        ? [read(`${name}.weight`, [d]), read(`${name}.bias`, [d])]
        : [new Float32Array(d).fill(1), new Float32Array(d)];
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
      // q, k, v read the same (thresholded) input: one [3d, d] matrix, one product.
      const qkv = new Float32Array(3 * d * d);
      ['q', 'k', 'v'].forEach((c, j) => {
        qkv.set(read(`${a}.${c}_proj.weight`, [d, d]), j * d * d);
      });
      const qkvBias = cfg.bias ? new Float32Array(3 * d) : null;
      if (qkvBias) {
        ['q', 'k', 'v'].forEach((c, j) => {
          qkvBias.set(read(`${a}.${c}_proj.bias`, [d]), j * d);
        });
      }
      layers.push({
        attnNorm: norm(`${n}.self_attn_layer_norm`),
        qkv: backend.prepare(qkv, 3 * d, d, { sparse }),
        qkvBias,
        outProj: lin(`${a}.out_proj.weight`, d, d), // not a site: never sparse
        outBias: bias(`${a}.out_proj.bias`, d),
        ffnNorm: norm(`${n}.final_layer_norm`),
        fc1: lin(`${n}.fc1.weight`, f, d, sparse),
        fc1Bias: bias(`${n}.fc1.bias`, f),
        fc2: lin(`${n}.fc2.weight`, d, f, sparse),
        fc2Bias: bias(`${n}.fc2.bias`, d),
      });
    }
    const finalNorm = cfg.preLN ? norm(`${prefix}final_layer_norm`) : null;
    const projectOut = p !== d ? lin(`${prefix}project_out.weight`, p, d) : null;
    // lm_head [V, p]: the embedding when tied (a stored lm_head.weight is then ignored, as HF does).
    if (cfg.tied) used.add('lm_head.weight');
    const head = cfg.tied
      ? backend.prepare(embTokens, V, p, { sparse: false })
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
      embTokens,
      embPositions,
      projectIn,
      layers,
      finalNorm,
      projectOut,
      head,
      parameters,
      fp.digest(),
    );
  }

  newState(): OptState {
    return new OptState(this.nLayer, this.nEmbd, this.config.nPositions);
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /** The threshold site before a linear layer: keep |x| ≥ λ in place, then let an observer look. */
  private site(layer: number, s: number, x: Float32Array, tokens: number): void {
    const g = layer * OPT_SITES.length + s;
    const lambda = this.thresholds[g];
    // x is [tokens, cols]; λ = 0 (dense) needs no call at all.
    const n = tokens * this.sites.perBlock[s].cols;
    if (lambda > 0) this.backend.ops.threshold(x, lambda, 'ge', n);
    this.observer?.(g, x, tokens);
  }

  /**
   * y = W·x for T tokens: one matrix product in sequence mode; in step mode the
   * zero-skipping kernel when site `g` has a threshold and W a sparse copy.
   */
  private linear(y: Float32Array, w: Linear, x: Float32Array, T: number, step: boolean, g = -1) {
    if (!step) this.backend.gemm(y, w, x, T);
    else if (g >= 0 && skipZeros(w, this.thresholds[g])) this.backend.sparseGemv(y, w, x);
    else this.backend.gemv(y, w, x);
  }

  // ---------------------------------------------------------- the calibration API

  forward(
    tokens: ArrayLike<number>,
    state: OptState,
    opts: { logits?: 'all' | 'last' } = {},
  ): Float32Array {
    const T = tokens.length;
    if (T === 0) return new Float32Array(0);
    const x = this.embed(tokens, state);
    for (let b = 0; b < this.nLayer; b++) this.block(b, x, T, state);
    if (opts.logits === 'last') return this.logits(x.subarray((T - 1) * this.nEmbd), 1);
    return this.logits(x, T);
  }

  /** x [T, d] = embed_tokens[tok]·project_inᵀ + embed_positions[position + 2]. */
  embed(tokens: ArrayLike<number>, state?: OptState): Float32Array {
    const x = new Float32Array(tokens.length * this.nEmbd);
    const e = new Float32Array(tokens.length * this.config.nProj);
    this.embedInto(x, e, tokens, state?.position ?? 0, false);
    return x;
  }

  /** Runs decoder layer `b` on x [T, d] in place, appending to its KV cache in `state`. */
  block(b: number, x: Float32Array, T: number, state: OptState): void {
    this.layer(b, x, T, state, new Buffers(this.config, T, state.lengths[b] + T), false);
  }

  /** logits [T, V] = lm_head · project_out(final_layer_norm(x)); x is left as it is. */
  logits(x: Float32Array, T: number): Float32Array {
    const { nEmbd: d, nProj: p } = this.config;
    const out = new Float32Array(T * this.nVocab);
    const xn = this.finalNorm ? new Float32Array(T * d) : x;
    const y = this.projectOut ? new Float32Array(T * p) : xn;
    this.headInto(out, x, xn, y, T, false);
    return out;
  }

  // ---------------------------------------------------------- step mode

  /** One token against the KV cache; returns the logits (a view valid until the next call). */
  step(token: number, state: OptState): Float32Array {
    const s = this.scratch;
    this.embedInto(s.x, s.e, [token], state.position, true);
    for (let b = 0; b < this.nLayer; b++) this.layer(b, s.x, 1, state, s, true);
    this.headInto(s.logits, s.x, s.xn, this.projectOut ? s.e : s.xn, 1, true);
    return s.logits;
  }

  // ---------------------------------------------------------- shared by both modes

  private embedInto(
    x: Float32Array,
    e: Float32Array,
    tokens: ArrayLike<number>,
    position: number,
    step: boolean,
  ): void {
    const { nEmbd: d, nProj: p, nPositions } = this.config;
    const T = tokens.length;
    if (position + T > nPositions) {
      throw new UserError(
        `OPT input too long: positions ${position}..${position + T - 1} go beyond max_position_embeddings ${nPositions}`,
        'Use a shorter context (--ctx), prompt or generation length.',
      );
    }
    const dst = this.projectIn ? e : x; // [T, p]
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.nVocab) {
        throw new UserError(
          `token ${id} at position ${t} is outside the vocabulary (0..${this.nVocab - 1})`,
        );
      }
      dst.set(this.embTokens.subarray(id * p, (id + 1) * p), t * p);
    }
    if (this.projectIn) this.linear(x, this.projectIn, e, T, step);
    // + embed_positions[position + t + 2]
    const pos = this.embPositions.subarray((position + POSITION_OFFSET) * d);
    for (let i = 0; i < T * d; i++) x[i] += pos[i];
  }

  /** One decoder layer over x [T, d] in place (HF OPTDecoderLayer.forward). */
  private layer(b: number, x: Float32Array, T: number, state: OptState, u: Buffers, step: boolean) {
    const { nEmbd: d, nFfn: f, nHead, preLN } = this.config;
    const L = this.layers[b];
    const ops = this.backend.ops;
    const g0 = b * OPT_SITES.length;
    const start = state.lengths[b];
    if (start + T > this.config.nPositions) {
      throw new UserError(
        `OPT layer ${b}: ${start + T} tokens exceed max_position_embeddings ${this.config.nPositions}`,
      );
    }

    // ---- self-attention; the site input is LN(x) (pre-LN) or a copy of x (post-LN),
    // so that thresholding never touches the residual stream.
    if (preLN) ops.layerNorm(u.xn, x, L.attnNorm[0], L.attnNorm[1], T, d);
    else u.xn.set(x.subarray(0, T * d));
    this.site(b, S.qkv, u.xn, T);
    // [q k v] = W_qkv·xn + b_qkv; q ·= 1/√head_dim (after the bias, as HF does)
    this.linear(u.qkv, L.qkv, u.xn, T, step, g0 + S.qkv);
    if (L.qkvBias) addBias(u.qkv, L.qkvBias, T, 3 * d);
    const hd = d / nHead;
    const scaling = hd ** -0.5;
    for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) u.qkv[t * 3 * d + i] *= scaling;
    // Append k and v to the cache: rows start … start+T−1.
    state.reserve(b, start + T);
    const K = state.keys[b];
    const V = state.values[b];
    for (let t = 0; t < T; t++) {
      K.set(u.qkv.subarray(t * 3 * d + d, t * 3 * d + 2 * d), (start + t) * d);
      V.set(u.qkv.subarray(t * 3 * d + 2 * d, (t + 1) * 3 * d), (start + t) * d);
    }
    state.lengths[b] = start + T;
    if (step) causalAttention(u.att, u.qkv, K, V, start, T, d, nHead, u.scores);
    else this.attention(u.att, u.qkv, K, V, start, T, u);
    // x = x + out_proj(att)  (post-LN: then LN)
    this.linear(u.out, L.outProj, u.att, T, step);
    if (L.outBias) addBias(u.out, L.outBias, T, d);
    for (let i = 0; i < T * d; i++) x[i] += u.out[i];
    if (!preLN) ops.layerNorm(x, x, L.attnNorm[0], L.attnNorm[1], T, d);

    // ---- MLP: x = x + fc2(relu(fc1(LN(x))))  (post-LN: LN after the sum, none before)
    if (preLN) ops.layerNorm(u.xn, x, L.ffnNorm[0], L.ffnNorm[1], T, d);
    else u.xn.set(x.subarray(0, T * d));
    this.site(b, S.fc1, u.xn, T);
    this.linear(u.hidden, L.fc1, u.xn, T, step, g0 + S.fc1);
    if (L.fc1Bias) addBias(u.hidden, L.fc1Bias, T, f);
    for (let i = 0; i < T * f; i++) if (!(u.hidden[i] > 0)) u.hidden[i] = 0; // relu
    this.site(b, S.fc2, u.hidden, T);
    this.linear(u.out, L.fc2, u.hidden, T, step, g0 + S.fc2);
    if (L.fc2Bias) addBias(u.out, L.fc2Bias, T, d);
    for (let i = 0; i < T * d; i++) x[i] += u.out[i];
    if (!preLN) ops.layerNorm(x, x, L.ffnNorm[0], L.ffnNorm[1], T, d);
  }

  /**
   * Sequence-mode attention with the backend's matrix products, head by head:
   * S = Q_h·K_hᵀ [T, n] over all n = start+T cached keys, causal softmax row by row
   * (row t sees keys 0 … start+t), O_h = P·V_h. Equals `causalAttention` up to rounding;
   * the masked half of S is computed and discarded, still far faster than loops.
   */
  private attention(
    out: Float32Array,
    qkv: Float32Array,
    K: Float32Array,
    V: Float32Array,
    start: number,
    T: number,
    u: Buffers,
  ): void {
    const { nEmbd: d, nHead } = this.config;
    const be = this.backend;
    const hd = d / nHead;
    const n = start + T;
    const { qh, kh, vt, oh, probs } = u;
    for (let h = 0; h < nHead; h++) {
      // Gather Q_h [T, hd], K_h [n, hd] and V_hᵀ [hd, n] from the interleaved heads.
      for (let t = 0; t < T; t++)
        qh.set(qkv.subarray(t * 3 * d + h * hd, t * 3 * d + (h + 1) * hd), t * hd);
      for (let j = 0; j < n; j++) {
        kh.set(K.subarray(j * d + h * hd, j * d + (h + 1) * hd), j * hd);
        for (let i = 0; i < hd; i++) vt[i * n + j] = V[j * d + h * hd + i];
      }
      const kLin = be.prepare(kh.subarray(0, n * hd), n, hd);
      const vLin = be.prepare(vt.subarray(0, hd * n), hd, n);
      try {
        be.gemm(probs, kLin, qh, T); // S [T, n]
        for (let t = 0; t < T; t++) softmaxRow(probs, t * n, start + t + 1, n);
        be.gemm(oh, vLin, probs, T); // O_h [T, hd]
      } finally {
        be.release(kLin);
        be.release(vLin);
      }
      for (let t = 0; t < T; t++) out.set(oh.subarray(t * hd, (t + 1) * hd), t * d + h * hd);
    }
  }

  /** out [T, V] = head · project_out(final LN(x)), through the buffers xn [T, d] and y [T, p]. */
  private headInto(
    out: Float32Array,
    x: Float32Array,
    xn: Float32Array,
    y: Float32Array,
    T: number,
    step: boolean,
  ): void {
    const d = this.nEmbd;
    let h = x;
    if (this.finalNorm) {
      this.backend.ops.layerNorm(xn, x, this.finalNorm[0], this.finalNorm[1], T, d);
      h = xn;
    }
    if (this.projectOut) {
      this.linear(y, this.projectOut, h, T, step);
      h = y;
    }
    if (T === 1) this.backend.gemv(out, this.head, h);
    else this.backend.gemm(out, this.head, h, T);
  }
}

/** y[t, :] += bias for each of T rows of width n. */
function addBias(y: Float32Array, bias: Float32Array, T: number, n: number): void {
  for (let t = 0; t < T; t++) for (let i = 0; i < n; i++) y[t * n + i] += bias[i];
}

/** Row [off, off+n) of width `width`: softmax over the first `n`, zeros after (the causal mask). */
function softmaxRow(s: Float32Array, off: number, n: number, width: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) if (s[off + j] > max) max = s[off + j];
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp(s[off + j] - max);
    s[off + j] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let j = 0; j < n; j++) s[off + j] *= inv;
  s.fill(0, off + n, off + width);
}

/**
 * Step-mode attention (and the plain definition): out [T, d]: per head, softmax(q·Kᵀ) over the cached rows 0 … start+t (causal), times
 * V. q sits in qkv [T, 3d] (columns 0…d, already scaled); K, V are [rows, d]. The
 * scores and sums are kept in double precision (fp32 or better, as HF upcasts).
 */
function causalAttention(
  out: Float32Array,
  qkv: Float32Array,
  K: Float32Array,
  V: Float32Array,
  start: number,
  T: number,
  d: number,
  nHead: number,
  scores: Float64Array,
): void {
  const hd = d / nHead;
  for (let t = 0; t < T; t++) {
    const n = start + t + 1; // keys this token sees
    for (let h = 0; h < nHead; h++) {
      const q = t * 3 * d + h * hd;
      // s_j = q · k_j
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < n; j++) {
        const k = j * d + h * hd;
        let s = 0;
        for (let i = 0; i < hd; i++) s += qkv[q + i] * K[k + i];
        scores[j] = s;
        if (s > max) max = s;
      }
      // p_j = exp(s_j − max) / Σ exp(…)
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      // out_h = Σ_j p_j v_j
      const o = t * d + h * hd;
      for (let i = 0; i < hd; i++) out[o + i] = 0;
      const acc = out.subarray(o, o + hd);
      for (let j = 0; j < n; j++) {
        const w = scores[j] / sum;
        const v = j * d + h * hd;
        for (let i = 0; i < hd; i++) acc[i] += w * V[v + i];
      }
    }
  }
}

/** Work arrays of one layer for T tokens (allocated once for step mode). */
class Buffers {
  readonly x: Float32Array; // [T, d] the residual stream (step mode)
  readonly e: Float32Array; // [T, p] embedding before project_in / after project_out
  readonly xn: Float32Array; // [T, d] site input (qkv, fc1); final LN
  readonly qkv: Float32Array; // [T, 3d]
  readonly att: Float32Array; // [T, d]
  readonly out: Float32Array; // [T, d] out_proj and fc2 outputs
  readonly hidden: Float32Array; // [T, f]
  readonly scores: Float64Array; // [keys] (step mode)
  readonly logits: Float32Array; // [T, V] (step mode)
  // Sequence-mode attention, one head at a time (n = keys):
  readonly qh: Float32Array; // [T, hd]
  readonly kh: Float32Array; // [n, hd]
  readonly vt: Float32Array; // [hd, n]
  readonly oh: Float32Array; // [T, hd]
  readonly probs: Float32Array; // [T, n]
  constructor(c: OptConfig, T: number, keys: number, step = false) {
    const hd = c.nEmbd / c.nHead;
    const seq = step ? 0 : 1;
    this.qh = new Float32Array(seq * T * hd);
    this.kh = new Float32Array(seq * keys * hd);
    this.vt = new Float32Array(seq * hd * keys);
    this.oh = new Float32Array(seq * T * hd);
    this.probs = new Float32Array(seq * T * keys);
    this.x = new Float32Array(step ? c.nEmbd : 0);
    this.e = new Float32Array(step ? c.nProj : 0);
    this.xn = new Float32Array(T * c.nEmbd);
    this.qkv = new Float32Array(T * 3 * c.nEmbd);
    this.att = new Float32Array(T * c.nEmbd);
    this.out = new Float32Array(T * c.nEmbd);
    this.hidden = new Float32Array(T * c.nFfn);
    this.scores = new Float64Array(step ? keys : 0);
    this.logits = new Float32Array(step ? c.nVocab : 0);
  }
}
