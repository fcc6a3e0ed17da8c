/**
 * Mamba, as Hugging Face's MambaForCausalLM computes it (modeling_mamba.py, the PyTorch
 * path MambaMixer.slow_forward), with a threshold site before each of its four linear
 * layers (`in_proj`, `x_proj`, `dt_proj`, `out_proj`):
 *
 *   h = RMSNorm(x)                                 (norm, layer_norm_epsilon)
 *   [u; z] = in_proj · h                           E = intermediate_size each
 *   u = SiLU(causal depthwise conv1d(u))           conv_kernel taps, conv state
 *   [δ; B; C] = x_proj · u                         time_step_rank, state_size, state_size
 *   y = selective scan(u, softplus(dt_proj · δ + b), A = −exp(A_log), B, C) + D·u
 *   x = x + out_proj · (y · SiLU(z))
 *   logits = lm_head · RMSNorm(x; norm_f)          (lm_head = embeddings when tied)
 *
 * One path for a batch of whole sequences and for one token (T = 1): the products run on
 * all rows at once; the convolution and the scan are kernel families that carry each
 * sequence's conv state (its last conv_kernel − 1 inputs) and SSM state [E, N].
 *
 * The x_proj site thresholds a copy of u: the scan and the D skip read u itself, so the
 * threshold acts on the linear layer's input only, as at every other site.
 */
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend, Buf, Linear } from '../tensor/backend.ts';
import { conv1d } from '../tensor/families/conv1d.ts';
import { selectiveScan } from '../tensor/families/selective-scan.ts';
import { ConfigFields, configJson } from './hf-config.ts';
import {
  applySite,
  type Batch,
  copyThresholds,
  embedTokens,
  type LanguageModel,
  type SiteHook,
  type SiteTable,
  siteProduct,
} from './model.ts';
import { RecurrentState } from './state.ts';
import { Fingerprint, readWeight, shapeOf, storedDType } from './weights.ts';

// ---------------------------------------------------------------- Config

export type MambaConfig = {
  nLayer: number;
  /** hidden_size */
  nEmbd: number;
  nVocab: number;
  /** intermediate_size E (expand · hidden_size) */
  nInner: number;
  /** state_size N */
  nState: number;
  /** time_step_rank R ("auto" = ⌈hidden_size / 16⌉) */
  dtRank: number;
  /** conv_kernel K */
  convKernel: number;
  /** use_bias: biases of in_proj and out_proj */
  bias: boolean;
  /** use_conv_bias */
  convBias: boolean;
  /** layer_norm_epsilon of every RMSNorm */
  eps: number;
  /** tie_word_embeddings: lm_head = embeddings */
  tied: boolean;
};

/** Site ids of one block, in the order the block reads them. */
export const MAMBA_SITES = ['in_proj', 'x_proj', 'dt_proj', 'out_proj'] as const;
export type MambaSite = (typeof MAMBA_SITES)[number];
const S = Object.fromEntries(MAMBA_SITES.map((id, i) => [id, i])) as Record<MambaSite, number>;

/** The site table: each site's inputs (cols) and the outputs each input feeds (rows). */
export function mambaSiteTable(
  c: Pick<MambaConfig, 'nLayer' | 'nEmbd' | 'nInner' | 'nState' | 'dtRank'>,
): SiteTable {
  const { nEmbd: d, nInner: E, nState: N, dtRank: R } = c;
  return {
    comparison: 'gt',
    nBlocks: c.nLayer,
    perBlock: [
      { id: 'in_proj', cols: d, rows: 2 * E }, // u and z
      { id: 'x_proj', cols: E, rows: R + 2 * N }, // δ, B and C
      { id: 'dt_proj', cols: R, rows: E, fedBy: 'x_proj' }, // δ is x_proj's output as is
      { id: 'out_proj', cols: E, rows: d },
    ],
  };
}

const P = 'backbone.';
/** transformers renames `embedding.` to `embeddings.` on load (MambaModel.load_hook). */
function embeddingName(ckpt: Checkpoint): string {
  return ckpt.tensors.has(`${P}embedding.weight`)
    ? `${P}embedding.weight`
    : `${P}embeddings.weight`;
}

/**
 * The configuration: dimensions from tensor shapes, checked against config.json when
 * there is one; the flags from config.json, else from the tensors present (biases, an
 * lm_head) and transformers' defaults.
 */
export function mambaConfig(ckpt: Checkpoint): MambaConfig {
  const has = (n: string) => ckpt.tensors.has(n);
  const l0 = `${P}layers.0.mixer.`;
  if (!has(`${l0}A_log`)) throw new FormatError(ckpt.path, `no ${l0}A_log: not a Mamba checkpoint`);
  const dims = (name: string, rank: number, what: string) => {
    const s = shapeOf(ckpt, name, what);
    if (s.length !== rank || !s.every((n) => n > 0))
      throw new FormatError(ckpt.path, `tensor "${name}" has shape [${s}], expected ${rank}-D`);
    return s;
  };
  const [nVocab, nEmbd] = dims(embeddingName(ckpt), 2, 'the vocabulary');
  const [nInner, nState] = dims(`${l0}A_log`, 2, 'the state size');
  const dtRank = dims(`${l0}dt_proj.weight`, 2, 'the time-step rank')[1];
  const convKernel = dims(`${l0}conv1d.weight`, 3, 'the convolution')[2];
  let nLayer = 0;
  while (has(`${P}layers.${nLayer}.mixer.A_log`)) nLayer++;

  const json = configJson(ckpt);
  const f = new ConfigFields(
    json ?? {},
    json ? 'config.json' : ckpt.path,
    'actsparse runs Mamba as transformers’ MambaForCausalLM; fix config.json or use a supported model.',
  );
  if (f.has('model_type') && f.json.model_type !== 'mamba')
    f.refuse('model_type', 'is not "mamba"');
  f.dim('vocab_size', nVocab);
  f.dim('hidden_size', nEmbd);
  f.dim('num_hidden_layers', nLayer);
  f.dim('state_size', nState);
  f.dim('conv_kernel', convKernel);
  f.dim('intermediate_size', nInner);
  if (
    f.has('expand') &&
    !f.has('intermediate_size') &&
    Math.trunc(f.number('expand', 2) * nEmbd) !== nInner
  )
    f.refuse(
      'expand',
      `× hidden_size ${nEmbd} does not match the checkpoint's inner width ${nInner}`,
    );
  // "auto" = ⌈hidden_size / 16⌉ (MambaConfig)
  const rank = f.json.time_step_rank;
  if (rank === 'auto') {
    if (Math.ceil(nEmbd / 16) !== dtRank)
      f.refuse(
        'time_step_rank',
        `(⌈${nEmbd}/16⌉) does not match the checkpoint's dt_proj (${dtRank})`,
      );
  } else f.dim('time_step_rank', dtRank);
  // ACT2FN: "silu" and "swish" are both SiLU, the activation of the conv and the gate.
  f.oneOf('hidden_act', ['silu', 'swish']);
  // residual_in_fp32 keeps the residual stream in float32: it always is here.
  // rescale_prenorm_residual, time_step_{scale,min,max,floor,init_scheme} and initializer_range
  // only initialise weights; use_mambapy / use_associative_scan choose how a scan is computed.
  if (f.has('quantization_config'))
    f.refuse('quantization_config', 'is not supported (unquantized weights only)');
  return {
    nLayer,
    nEmbd,
    nVocab,
    nInner,
    nState,
    dtRank,
    convKernel,
    bias: f.flag('use_bias', has(`${l0}in_proj.bias`)),
    convBias: f.flag('use_conv_bias', has(`${l0}conv1d.bias`)),
    eps: f.number('layer_norm_epsilon', 1e-5),
    tied: f.flag('tie_word_embeddings', !has('lm_head.weight')),
  };
}

// ---------------------------------------------------------------- Weights

/** A linear layer and its bias (null when the checkpoint has none). */
interface Proj {
  weight: Linear;
  bias: Buf | null;
}

/** One block under transformers' names (`backbone.layers.N.*`), split at load. */
interface Layer {
  norm: Buf; // [d]  norm.weight
  // mixer.in_proj.weight [2E, d] as its two halves: u (rows 0…E−1) and the gate z.
  in_proj_u: Proj; // [E, d]
  in_proj_z: Proj; // [E, d]
  conv_weight: Buf; // [E, K]  mixer.conv1d.weight [E, 1, K]
  conv_bias: Buf; // [E], empty without use_conv_bias
  // mixer.x_proj.weight [R + 2N, E] as δ, B and C
  x_proj_dt: Linear; // [R, E]
  x_proj_B: Linear; // [N, E]
  x_proj_C: Linear; // [N, E]
  dt_proj: Linear; // [E, R]  (its bias goes to the scan)
  dt_bias: Buf; // [E]  mixer.dt_proj.bias
  A: Buf; // [E, N]  −exp(mixer.A_log), computed once at load
  D: Buf; // [E]
  out_proj: Proj; // [d, E]
}

// ---------------------------------------------------------------- State

/**
 * Per layer and sequence: the conv state (the last K − 1 inputs of the convolution,
 * [K−1, E], oldest first) and the SSM state h [E, N]; both start at zero.
 */
export type MambaState = RecurrentState<'conv' | 'ssm'>;

// ---------------------------------------------------------------- Model

export class Mamba implements LanguageModel<MambaState> {
  readonly arch = 'mamba';
  readonly maxContext = Number.POSITIVE_INFINITY;
  readonly sites: SiteTable;
  readonly thresholds: Float32Array;
  readonly stats: { parameters: number; weightBytes: number };

  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;

  private constructor(
    readonly config: MambaConfig,
    readonly backend: Backend,
    private readonly embeddings: Buf, // [V, d]
    private readonly layers: Layer[],
    private readonly norm_f: Buf, // [d]
    private readonly lm_head: Linear, // [V, d]
    parameters: number,
    readonly fingerprint: string,
  ) {
    this.nVocab = config.nVocab;
    this.nEmbd = config.nEmbd;
    this.nLayer = config.nLayer;
    this.sites = mambaSiteTable(config);
    this.thresholds = new Float32Array(config.nLayer * MAMBA_SITES.length);
    let weightBytes = 4 * embeddings.length + lm_head.bytes;
    for (const l of layers) {
      for (const w of [l.in_proj_u.weight, l.in_proj_z.weight, l.x_proj_dt, l.x_proj_B])
        weightBytes += w.bytes;
      for (const w of [l.x_proj_C, l.dt_proj, l.out_proj.weight]) weightBytes += w.bytes;
    }
    this.stats = { parameters, weightBytes };
  }

  /**
   * Loads a Mamba checkpoint (safetensors or pytorch_model.bin with its config.json).
   * `sparse` also prepares the input-major copies that zero skipping reads.
   */
  static load(ckpt: Checkpoint, backend: Backend, opts: { sparse?: boolean } = {}): Mamba {
    const cfg = mambaConfig(ckpt);
    const { nEmbd: d, nInner: E, nState: N, dtRank: R, convKernel: K, nVocab: V } = cfg;
    const sparse = !!opts.sparse;
    const used = new Set<string>();
    let parameters = 0;
    const fp = new Fingerprint(
      `mamba ${cfg.nLayer}x${d} inner ${E} state ${N} rank ${R} conv ${K} vocab ${V} ` +
        `bias ${cfg.bias} conv-bias ${cfg.convBias} eps ${cfg.eps} tied ${cfg.tied}`,
    );
    const read = (name: string, shape: number[]) => {
      used.add(name);
      const data = readWeight(ckpt, name, shape, fp);
      parameters += data.length;
      return data;
    };
    // Rows r0 … r0+rows−1 of a weight [*, cols], as its own Linear.
    const lin = (
      name: string,
      w: Float32Array,
      r0: number,
      rows: number,
      cols: number,
      sp = sparse,
    ) =>
      backend.prepare(w.subarray(r0 * cols, (r0 + rows) * cols), rows, cols, {
        sparse: sp,
        dtype: storedDType(ckpt, name),
      });
    const bias = (name: string, rows: number, on: boolean) => (on ? read(name, [rows]) : null);
    const up = (b: Float32Array | null, r0: number, n: number) =>
      b ? backend.upload(b.slice(r0, r0 + n)) : null;

    const embName = embeddingName(ckpt);
    const emb = read(embName, [V, d]);
    const layers: Layer[] = [];
    for (let i = 0; i < cfg.nLayer; i++) {
      const m = `${P}layers.${i}.mixer.`;
      const inW = read(`${m}in_proj.weight`, [2 * E, d]);
      const inB = bias(`${m}in_proj.bias`, 2 * E, cfg.bias);
      const xW = read(`${m}x_proj.weight`, [R + 2 * N, E]);
      const outB = bias(`${m}out_proj.bias`, d, cfg.bias);
      layers.push({
        norm: backend.upload(read(`${P}layers.${i}.norm.weight`, [d])),
        in_proj_u: { weight: lin(`${m}in_proj.weight`, inW, 0, E, d), bias: up(inB, 0, E) },
        in_proj_z: { weight: lin(`${m}in_proj.weight`, inW, E, E, d), bias: up(inB, E, E) },
        conv_weight: backend.upload(read(`${m}conv1d.weight`, [E, 1, K])),
        conv_bias: backend.upload(bias(`${m}conv1d.bias`, E, cfg.convBias) ?? new Float32Array(0)),
        x_proj_dt: lin(`${m}x_proj.weight`, xW, 0, R, E),
        x_proj_B: lin(`${m}x_proj.weight`, xW, R, N, E),
        x_proj_C: lin(`${m}x_proj.weight`, xW, R + N, N, E),
        dt_proj: lin(`${m}dt_proj.weight`, read(`${m}dt_proj.weight`, [E, R]), 0, E, R),
        dt_bias: backend.upload(read(`${m}dt_proj.bias`, [E])),
        // A = −exp(A_log)
        A: backend.upload(read(`${m}A_log`, [E, N]).map((a) => -Math.exp(a))),
        D: backend.upload(read(`${m}D`, [E])),
        out_proj: {
          weight: lin(`${m}out_proj.weight`, read(`${m}out_proj.weight`, [d, E]), 0, d, E),
          bias: outB ? backend.upload(outB) : null,
        },
      });
    }
    const normF = backend.upload(read(`${P}norm_f.weight`, [d]));
    // lm_head [V, d]: the embedding when tied (a stored lm_head.weight is then ignored, as HF does).
    if (cfg.tied) used.add('lm_head.weight');
    const head = cfg.tied
      ? backend.prepare(emb, V, d, { dtype: storedDType(ckpt, embName) })
      : lin('lm_head.weight', read('lm_head.weight', [V, d]), 0, V, d, false);

    // A tensor the configuration does not use means config.json and the weights disagree.
    for (const name of ckpt.tensors.keys()) {
      if (!used.has(name)) {
        throw new FormatError(
          ckpt.path,
          `tensor "${name}" is not part of the Mamba model its config describes`,
          'Check config.json (use_bias, use_conv_bias, num_hidden_layers) against the weights.',
        );
      }
    }
    return new Mamba(
      cfg,
      backend,
      backend.upload(emb),
      layers,
      normF,
      head,
      parameters,
      fp.digest(),
    );
  }

  newState(batch = 1): MambaState {
    const { nInner: E, nState: N, convKernel: K } = this.config;
    return RecurrentState.fresh(this.backend, batch, this.nLayer, {
      conv: { width: (K - 1) * E, init: 0 },
      ssm: { width: E * N, init: 0 },
    });
  }

  setThresholds(lambda: ArrayLike<number>): void {
    copyThresholds(this.thresholds, lambda);
  }

  /** x [rows, d] = embeddings[tok] */
  embed(batch: Batch): Buf {
    return embedTokens(this.backend, this.embeddings, batch, this.nEmbd);
  }

  /** logits [rows, V] = lm_head · RMSNorm(x; norm_f); x is left as it is. */
  head(x: Buf, rows: number): Buf {
    const be = this.backend;
    const d = this.nEmbd;
    const xn = be.alloc(rows * d);
    be.rmsNorm(xn, x, this.norm_f, rows, d, this.config.eps);
    const out = be.alloc(rows * this.nVocab);
    be.matmul(out, this.lm_head, xn, rows);
    be.free(xn);
    return out;
  }

  /** One block over x [rows, d] in place: x += mixer(RMSNorm(x)) (MambaBlock.forward). */
  block(b: number, x: Buf, batch: Batch, state: MambaState, hook?: SiteHook): void {
    const { nEmbd: d, nInner: E, nState: N, dtRank: R, convKernel: K, eps } = this.config;
    const L = this.layers[b];
    const be = this.backend;
    const { seqs } = batch;
    const n = seqs.rows;
    const g0 = b * MAMBA_SITES.length;
    const h = be.alloc(n * d);
    const [xs, z, u] = [0, 0, 0].map(() => be.alloc(n * E));
    const dt = be.alloc(n * R);
    const [Bm, Cm] = [0, 0].map(() => be.alloc(n * N));

    // h = RMSNorm(x); [u; z] = in_proj · h (+ b)
    be.rmsNorm(h, x, L.norm, n, d, eps);
    applySite(this, g0 + S.in_proj, h, n, d, hook);
    siteProduct(this, xs, L.in_proj_u.weight, h, n, g0 + S.in_proj, L.in_proj_u.bias);
    siteProduct(this, z, L.in_proj_z.weight, h, n, g0 + S.in_proj, L.in_proj_z.bias);

    // u = SiLU(conv1d(u) + conv_bias), continuing each sequence's conv state
    be.run(conv1d, {
      out: u,
      x: xs,
      weight: L.conv_weight,
      bias: L.conv_bias,
      state: state.part('conv', b),
      seqs,
      channels: E,
      kernel: K,
    });
    be.unary('silu', u, u);

    // [δ; B; C] = x_proj · u, the site thresholding a copy (the scan reads u itself)
    const lambda = this.thresholds[g0 + S.x_proj];
    const ux = lambda > 0 ? be.alloc(n * E) : u;
    if (ux !== u) be.copy(ux, u);
    applySite(this, g0 + S.x_proj, ux, n, E, hook);
    siteProduct(this, dt, L.x_proj_dt, ux, n, g0 + S.x_proj);
    siteProduct(this, Bm, L.x_proj_B, ux, n, g0 + S.x_proj);
    siteProduct(this, Cm, L.x_proj_C, ux, n, g0 + S.x_proj);
    if (ux !== u) be.free(ux);

    // δ = dt_proj · δ (its bias and the softplus are applied in the scan)
    applySite(this, g0 + S.dt_proj, dt, n, R, hook);
    siteProduct(this, xs, L.dt_proj, dt, n, g0 + S.dt_proj);

    // y = Σ_n h·C + D·u with h = exp(Δ·A)·h + Δ·B·u, Δ = softplus(δ + dt_bias); y into xs
    be.run(selectiveScan, {
      y: xs,
      u,
      delta: xs,
      deltaBias: L.dt_bias,
      A: L.A,
      B: Bm,
      C: Cm,
      D: L.D,
      state: state.part('ssm', b),
      seqs,
      inner: E,
      stateSize: N,
    });

    // x += out_proj · (y · SiLU(z)) (+ b)
    be.unary('silu', z, z);
    be.binary('mul', xs, xs, z);
    applySite(this, g0 + S.out_proj, xs, n, E, hook);
    siteProduct(this, h, L.out_proj.weight, xs, n, g0 + S.out_proj, L.out_proj.bias);
    be.binary('add', x, x, h);

    for (const t of [h, xs, z, u, dt, Bm, Cm]) be.free(t);
  }
}
