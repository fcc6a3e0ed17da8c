/**
 * Random weights of any shape, with magnitudes like a trained model's (so that
 * activations are neither vanishing nor exploding): for tests and for benchmarks of
 * shapes too large to ship (e.g. 24×1024, the 430M layout).
 */
import type { NamedTensor } from '../io/memory.ts';
import { rng } from '../util/random.ts';

/** A tensor to make: its name and shape, and how to fill it (called in list order). */
export interface TensorSpec {
  name: string;
  shape: number[];
  generate(): Float32Array;
}

/** The tensors of a spec list, generated in order (each draws from the seeded stream). */
export function materialize(specs: readonly TensorSpec[]): NamedTensor[] {
  return specs.map((t) => ({ name: t.name, shape: t.shape, data: t.generate() }));
}

/** Adds tensors filled by a seeded generator; `lin` keeps unit-scale inputs unit-scale. */
function filler(seed: number) {
  const u = rng(seed);
  // Gaussian by Box–Muller.
  const gauss = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  const out: TensorSpec[] = [];
  const add = (name: string, s: number[], g: (i: number) => number) => {
    const n = s.reduce((a, b) => a * b, 1);
    out.push({ name, shape: s, generate: () => Float32Array.from({ length: n }, (_, i) => g(i)) });
  };
  // A linear layer [rows, cols] with std `gain/√cols`.
  const lin = (name: string, rows: number, cols: number, gain = 1) =>
    add(name, [rows, cols], () => (gain * gauss()) / Math.sqrt(cols));
  return { u, gauss, out, add, lin };
}

export interface RandomRwkv4Shape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  nFfn?: number;
  seed?: number;
}

export function randomRwkv4(shape: RandomRwkv4Shape): NamedTensor[] {
  return materialize(rwkv4Specs(shape));
}

/** The RWKV-4 tensors of a shape (BlinkDL names), to generate or only to size. */
export function rwkv4Specs(shape: RandomRwkv4Shape): TensorSpec[] {
  const { nLayer, nEmbd: d, nVocab: V, seed = 1 } = shape;
  const f = shape.nFfn ?? 4 * d;
  const { u, gauss, out, add, lin } = filler(seed);

  add('emb.weight', [V, d], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const p = `blocks.${b}`;
    if (b === 0) {
      add(`${p}.ln0.weight`, [d], () => 1 + 0.1 * gauss());
      add(`${p}.ln0.bias`, [d], () => 0.1 * gauss());
    }
    for (const ln of ['ln1', 'ln2']) {
      add(`${p}.${ln}.weight`, [d], () => 1 + 0.1 * gauss());
      add(`${p}.${ln}.bias`, [d], () => 0.1 * gauss());
    }
    // Decay rates spread over channels as in trained models: w from about −5 to 3.
    add(`${p}.att.time_decay`, [d], (i) => -5 + (8 * i) / Math.max(1, d - 1) + 0.3 * gauss());
    add(`${p}.att.time_first`, [d], () => Math.log(0.3) + 0.5 * gauss());
    for (const m of ['time_mix_k', 'time_mix_v', 'time_mix_r'])
      add(`${p}.att.${m}`, [1, 1, d], () => u());
    lin(`${p}.att.key.weight`, d, d);
    lin(`${p}.att.value.weight`, d, d);
    lin(`${p}.att.receptance.weight`, d, d);
    lin(`${p}.att.output.weight`, d, d, 0.5);
    for (const m of ['time_mix_k', 'time_mix_r']) add(`${p}.ffn.${m}`, [1, 1, d], () => u());
    lin(`${p}.ffn.key.weight`, f, d, 1.5);
    lin(`${p}.ffn.receptance.weight`, d, d);
    lin(`${p}.ffn.value.weight`, d, f, 0.5);
  }
  add('ln_out.weight', [d], () => 1 + 0.1 * gauss());
  add('ln_out.bias', [d], () => 0.1 * gauss());
  lin('head.weight', V, d);
  return out;
}

export interface RandomOptShape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  nHead?: number;
  nFfn?: number;
  nPositions?: number;
  /** word_embed_proj_dim (≠ nEmbd: project_in/out) */
  nProj?: number;
  /** do_layer_norm_before (default true) */
  preLN?: boolean;
  /** layer_norm_elementwise_affine (default true) */
  lnAffine?: boolean;
  /** enable_bias (default true) */
  bias?: boolean;
  /** tie_word_embeddings (default true) */
  tied?: boolean;
  seed?: number;
}

/** Random OPT weights (Hugging Face names) and the config.json that goes with them. */
export function randomOpt(shape: RandomOptShape): {
  tensors: NamedTensor[];
  config: Record<string, unknown>;
} {
  const { specs, config } = optSpecs(shape);
  return { tensors: materialize(specs), config };
}

/** The OPT tensors of a shape and its config.json, to generate or only to size. */
export function optSpecs(shape: RandomOptShape): {
  specs: TensorSpec[];
  config: Record<string, unknown>;
} {
  const { nLayer, nEmbd: d, nVocab: V, seed = 1 } = shape;
  const f = shape.nFfn ?? 4 * d;
  const P = shape.nPositions ?? 2048;
  const nHead = shape.nHead ?? Math.max(1, Math.round(d / 64));
  const proj = shape.nProj ?? d;
  const { preLN = true, lnAffine = true, bias = true, tied = true } = shape;
  const { gauss, add, lin, out } = filler(seed);
  const p = 'model.decoder.';
  add(`${p}embed_tokens.weight`, [V, proj], () => 0.1 * gauss());
  add(`${p}embed_positions.weight`, [P + 2, d], () => 0.02 * gauss());
  if (proj !== d) lin(`${p}project_in.weight`, d, proj);
  const norm = (n: string) => {
    if (!lnAffine) return;
    add(`${n}.weight`, [d], () => 1 + 0.1 * gauss());
    add(`${n}.bias`, [d], () => 0.1 * gauss());
  };
  const withBias = (n: string, rows: number) => {
    if (bias) add(`${n}.bias`, [rows], () => 0.02 * gauss());
  };
  for (let b = 0; b < nLayer; b++) {
    const l = `${p}layers.${b}`;
    norm(`${l}.self_attn_layer_norm`);
    for (const c of ['q', 'k', 'v', 'out']) {
      lin(`${l}.self_attn.${c}_proj.weight`, d, d, c === 'out' ? 0.5 : 1);
      withBias(`${l}.self_attn.${c}_proj`, d);
    }
    norm(`${l}.final_layer_norm`);
    lin(`${l}.fc1.weight`, f, d);
    withBias(`${l}.fc1`, f);
    lin(`${l}.fc2.weight`, d, f, 0.5);
    withBias(`${l}.fc2`, d);
  }
  if (preLN) norm(`${p}final_layer_norm`);
  if (proj !== d) lin(`${p}project_out.weight`, proj, d);
  if (!tied) lin('lm_head.weight', V, proj);
  const config = {
    model_type: 'opt',
    vocab_size: V,
    hidden_size: d,
    num_hidden_layers: nLayer,
    num_attention_heads: nHead,
    ffn_dim: f,
    max_position_embeddings: P,
    word_embed_proj_dim: proj,
    do_layer_norm_before: preLN,
    layer_norm_elementwise_affine: lnAffine,
    enable_bias: bias,
    tie_word_embeddings: tied,
    activation_function: 'relu',
  };
  return { specs: out, config };
}

/** Δ drawn log-uniformly in [0.001, 0.1] and stored as softplus⁻¹(Δ), as Mamba initialises its time steps. */
function timeStepBias(u: () => number): number {
  const dt = Math.max(1e-4, Math.exp(Math.log(1e-3) + u() * (Math.log(0.1) - Math.log(1e-3))));
  return dt + Math.log(-Math.expm1(-dt));
}

export interface RandomMambaShape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** intermediate_size (default 2·nEmbd) */
  nInner?: number;
  /** state_size (default 16) */
  nState?: number;
  /** time_step_rank (default ⌈nEmbd/16⌉) */
  dtRank?: number;
  /** conv_kernel (default 4) */
  convKernel?: number;
  /** use_bias (default false) */
  bias?: boolean;
  /** use_conv_bias (default true) */
  convBias?: boolean;
  /** layer_norm_epsilon (default 1e-5) */
  eps?: number;
  /** tie_word_embeddings (default true) */
  tied?: boolean;
  seed?: number;
}

/** The Mamba tensors of a shape (transformers' names) and its config.json, to generate or only to size. */
export function mambaSpecs(shape: RandomMambaShape): {
  specs: TensorSpec[];
  config: Record<string, unknown>;
} {
  const { nLayer, nEmbd: d, nVocab: V, seed = 1 } = shape;
  const E = shape.nInner ?? 2 * d;
  const N = shape.nState ?? 16;
  const R = shape.dtRank ?? Math.ceil(d / 16);
  const K = shape.convKernel ?? 4;
  const { bias = false, convBias = true, eps = 1e-5, tied = true } = shape;
  const { u, gauss, add, lin, out } = filler(seed);
  add('backbone.embeddings.weight', [V, d], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const l = `backbone.layers.${b}`;
    const m = `${l}.mixer`;
    add(`${l}.norm.weight`, [d], () => 1 + 0.1 * gauss());
    lin(`${m}.in_proj.weight`, 2 * E, d);
    if (bias) add(`${m}.in_proj.bias`, [2 * E], () => 0.02 * gauss());
    add(`${m}.conv1d.weight`, [E, 1, K], () => gauss() / Math.sqrt(K));
    if (convBias) add(`${m}.conv1d.bias`, [E], () => 0.1 * gauss());
    lin(`${m}.x_proj.weight`, R + 2 * N, E);
    add(`${m}.dt_proj.weight`, [E, R], () => (2 * u() - 1) / Math.sqrt(R));
    add(`${m}.dt_proj.bias`, [E], () => timeStepBias(u));
    // S4D-real: A = −(1 … N) in every channel, spread a little as training leaves it.
    add(`${m}.A_log`, [E, N], (i) => Math.log(1 + (i % N)) + 0.1 * gauss());
    add(`${m}.D`, [E], () => 1 + 0.1 * gauss());
    lin(`${m}.out_proj.weight`, d, E, 0.5);
    if (bias) add(`${m}.out_proj.bias`, [d], () => 0.02 * gauss());
  }
  add('backbone.norm_f.weight', [d], () => 1 + 0.1 * gauss());
  if (!tied) lin('lm_head.weight', V, d);
  const config = {
    model_type: 'mamba',
    vocab_size: V,
    hidden_size: d,
    intermediate_size: E,
    state_size: N,
    num_hidden_layers: nLayer,
    time_step_rank: R,
    conv_kernel: K,
    use_bias: bias,
    use_conv_bias: convBias,
    layer_norm_epsilon: eps,
    tie_word_embeddings: tied,
    hidden_act: 'silu',
  };
  return { specs: out, config };
}

export interface RandomMamba2Shape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** num_heads · head_dim (default 2·nEmbd) */
  nInner?: number;
  /** head_dim (default 64, or nInner when smaller) */
  headDim?: number;
  /** num_heads (default nInner / headDim) */
  nHead?: number;
  /** n_groups (default 1) */
  nGroups?: number;
  /** state_size (default 128) */
  nState?: number;
  convKernel?: number;
  bias?: boolean;
  convBias?: boolean;
  eps?: number;
  /** time_step_limit (default [0, ∞)) */
  dtMin?: number;
  dtMax?: number;
  tied?: boolean;
  seed?: number;
}

/** The Mamba-2 tensors of a shape (transformers' names) and its config.json, to generate or only to size. */
export function mamba2Specs(shape: RandomMamba2Shape): {
  specs: TensorSpec[];
  config: Record<string, unknown>;
} {
  const { nLayer, nEmbd: d, nVocab: V, seed = 1 } = shape;
  const E = shape.nInner ?? 2 * d;
  const P = shape.headDim ?? (shape.nHead ? E / shape.nHead : Math.min(64, E));
  const H = shape.nHead ?? E / P;
  const G = shape.nGroups ?? 1;
  const N = shape.nState ?? 128;
  const K = shape.convKernel ?? 4;
  const { bias = false, convBias = true, eps = 1e-5, tied = true } = shape;
  const { dtMin = 0, dtMax = Number.POSITIVE_INFINITY } = shape;
  const conv = E + 2 * G * N;
  const { u, gauss, add, lin, out } = filler(seed);
  add('backbone.embeddings.weight', [V, d], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const l = `backbone.layers.${b}`;
    const m = `${l}.mixer`;
    add(`${l}.norm.weight`, [d], () => 1 + 0.1 * gauss());
    lin(`${m}.in_proj.weight`, E + conv + H, d);
    if (bias) add(`${m}.in_proj.bias`, [E + conv + H], () => 0.02 * gauss());
    add(`${m}.conv1d.weight`, [conv, 1, K], () => gauss() / Math.sqrt(K));
    if (convBias) add(`${m}.conv1d.bias`, [conv], () => 0.1 * gauss());
    add(`${m}.dt_bias`, [H], () => timeStepBias(u));
    // A = −U(1, 16) per head
    add(`${m}.A_log`, [H], () => Math.log(1 + 15 * u()));
    add(`${m}.D`, [H], () => 1 + 0.1 * gauss());
    add(`${m}.norm.weight`, [E], () => 1 + 0.1 * gauss());
    lin(`${m}.out_proj.weight`, d, E, 0.5);
    if (bias) add(`${m}.out_proj.bias`, [d], () => 0.02 * gauss());
  }
  add('backbone.norm_f.weight', [d], () => 1 + 0.1 * gauss());
  if (!tied) lin('lm_head.weight', V, d);
  const config = {
    model_type: 'mamba2',
    vocab_size: V,
    hidden_size: d,
    num_hidden_layers: nLayer,
    num_heads: H,
    head_dim: P,
    n_groups: G,
    state_size: N,
    expand: E / d,
    conv_kernel: K,
    use_bias: bias,
    use_conv_bias: convBias,
    layer_norm_epsilon: eps,
    // transformers ≥ 5 writes the infinite bound as {"__float__": "Infinity"}
    time_step_limit: [dtMin, Number.isFinite(dtMax) ? dtMax : { __float__: 'Infinity' }],
    tie_word_embeddings: tied,
    hidden_act: 'silu',
    rms_norm: true,
  };
  return { specs: out, config };
}
