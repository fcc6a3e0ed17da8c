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

/** RWKV-5 (and RWKV-6) common dimensions; missing ones take the release defaults. */
export interface RandomRwkv5Shape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Channel-mix width (default 4·C for 5.0/5.1, 3.5·C rounded down to 32 for 5.2 and 6). */
  nFfn?: number;
  /** Time-mix width H·N (default nEmbd). */
  dimAtt?: number;
  /** Channels per head (default 64, or the whole width when it is not a multiple of 64). */
  headSize?: number;
  /** RWKV-5 only: the silu gate (default true). */
  gate?: boolean;
  /** RWKV-5 only: decay and bonus per channel, time_faaaa [H, N] (5.2, the default). */
  perChannel?: boolean;
  seed?: number;
}

/** The heads of a random RWKV-5/6 shape: A = H·N and N. */
function rwkvHeads(shape: RandomRwkv5Shape): { A: number; N: number; H: number } {
  const A = shape.dimAtt ?? shape.nEmbd;
  const N = shape.headSize ?? (A % 64 === 0 ? 64 : A);
  if (!(Number.isInteger(A / N) && A >= N))
    throw new RangeError(`head size ${N} does not divide ${A}`);
  return { A, N, H: A / N };
}

/**
 * The decay logit of channel (or head) i of n in layer b of L, as RWKV-LM initialises it
 * (−6 … −1, slower decays in later layers) plus noise: w = exp(−exp(·)) from 0.9975 to 0.7.
 */
function decaySpeed(i: number, n: number, b: number, L: number, noise: number): number {
  const ratio = L > 1 ? b / (L - 1) : 0;
  return -6 + 5 * (i / Math.max(1, n - 1)) ** (0.7 + 1.3 * ratio) + noise;
}

/** The RWKV-5 tensors of a shape (BlinkDL names; 5.0 without gate, 5.2 per channel). */
export function rwkv5Specs(shape: RandomRwkv5Shape): TensorSpec[] {
  const { nLayer, nEmbd: C, nVocab: V, seed = 1, gate = true, perChannel = true } = shape;
  const { A, N, H } = rwkvHeads(shape);
  const F = shape.nFfn ?? (perChannel ? Math.floor((3.5 * C) / 32) * 32 : 4 * C);
  const { u, gauss, out, add, lin } = filler(seed);
  const norm = (n: string, width = C) => {
    add(`${n}.weight`, [width], () => 1 + 0.1 * gauss());
    add(`${n}.bias`, [width], () => 0.1 * gauss());
  };
  add('emb.weight', [V, C], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const p = `blocks.${b}`;
    if (b === 0) norm(`${p}.ln0`);
    norm(`${p}.ln1`);
    norm(`${p}.ln2`);
    for (const m of gate ? ['k', 'v', 'r', 'g'] : ['k', 'v', 'r'])
      add(`${p}.att.time_mix_${m}`, [1, 1, C], () => u());
    // Per channel [H, N] (5.2: bonus as time_faaaa) or per head [H] (u = exp(time_first)).
    const per = perChannel ? [H, N] : [H];
    const n = perChannel ? A : H;
    add(`${p}.att.time_decay`, per, (i) => decaySpeed(i, n, b, nLayer, 0.3 * gauss()));
    if (perChannel)
      add(`${p}.att.time_faaaa`, per, (i) => 1 - i / Math.max(1, n - 1) + 0.3 * gauss());
    else add(`${p}.att.time_first`, per, () => Math.log(0.3) + 0.5 * gauss());
    norm(`${p}.att.ln_x`, A);
    lin(`${p}.att.key.weight`, A, C);
    lin(`${p}.att.value.weight`, A, C);
    lin(`${p}.att.receptance.weight`, A, C);
    if (gate) lin(`${p}.att.gate.weight`, A, C);
    lin(`${p}.att.output.weight`, C, A, 0.5);
    for (const m of ['k', 'r']) add(`${p}.ffn.time_mix_${m}`, [1, 1, C], () => u());
    lin(`${p}.ffn.key.weight`, F, C, 1.5);
    lin(`${p}.ffn.receptance.weight`, C, C);
    lin(`${p}.ffn.value.weight`, C, F, 0.5);
  }
  norm('ln_out');
  lin('head.weight', V, C);
  return out;
}

export interface RandomRwkv6Shape extends Omit<RandomRwkv5Shape, 'gate' | 'perChannel'> {
  /** Token-shift LoRA width D (default 32; 64 from C = 4096). */
  maaLora?: number;
  /** Decay LoRA width E (default 64; 128 from C = 4096). */
  decayLora?: number;
}

/**
 * The RWKV-6 tensors of a shape (BlinkDL names and layouts: the LoRA matrices [in, out]).
 * The LoRAs make token-shift mixes of about ±0.2 and decay offsets of about ±0.5, as in
 * trained models (at initialisation w1 is zero).
 */
export function rwkv6Specs(shape: RandomRwkv6Shape): TensorSpec[] {
  const { nLayer, nEmbd: C, nVocab: V, seed = 1 } = shape;
  const { A, N, H } = rwkvHeads(shape);
  const F = shape.nFfn ?? Math.floor((3.5 * C) / 32) * 32;
  const D = shape.maaLora ?? (C >= 4096 ? 64 : 32);
  const E = shape.decayLora ?? (C >= 4096 ? 128 : 64);
  const { u, gauss, out, add, lin } = filler(seed);
  const norm = (n: string, width = C) => {
    add(`${n}.weight`, [width], () => 1 + 0.1 * gauss());
    add(`${n}.bias`, [width], () => 0.1 * gauss());
  };
  add('emb.weight', [V, C], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const p = `blocks.${b}`;
    if (b === 0) norm(`${p}.ln0`);
    norm(`${p}.ln1`);
    norm(`${p}.ln2`);
    for (const m of ['x', 'w', 'k', 'v', 'r', 'g'])
      add(`${p}.att.time_maa_${m}`, [1, 1, C], () => u());
    // x·w1 of unit scale before tanh; w2 turns tanh outputs into mixes of ~±0.2.
    add(`${p}.att.time_maa_w1`, [C, 5 * D], () => gauss() / Math.sqrt(C));
    add(`${p}.att.time_maa_w2`, [5, D, C], () => (0.3 * gauss()) / Math.sqrt(D));
    add(`${p}.att.time_decay`, [1, 1, A], (i) => decaySpeed(i, A, b, nLayer, 0.3 * gauss()));
    add(`${p}.att.time_decay_w1`, [C, E], () => gauss() / Math.sqrt(C));
    add(`${p}.att.time_decay_w2`, [E, A], () => (0.8 * gauss()) / Math.sqrt(E));
    add(`${p}.att.time_faaaa`, [H, N], (i) => 1 - i / Math.max(1, A - 1) + 0.3 * gauss());
    norm(`${p}.att.ln_x`, A);
    lin(`${p}.att.receptance.weight`, A, C);
    lin(`${p}.att.key.weight`, A, C);
    lin(`${p}.att.value.weight`, A, C);
    lin(`${p}.att.gate.weight`, A, C);
    lin(`${p}.att.output.weight`, C, A, 0.5);
    for (const m of ['k', 'r']) add(`${p}.ffn.time_maa_${m}`, [1, 1, C], () => u());
    lin(`${p}.ffn.key.weight`, F, C, 1.5);
    lin(`${p}.ffn.receptance.weight`, C, C);
    lin(`${p}.ffn.value.weight`, C, F, 0.5);
  }
  norm('ln_out');
  lin('head.weight', V, C);
  return out;
}

export interface RandomRwkv7Shape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** N of the heads (default 64, or nEmbd when smaller); must divide nEmbd. */
  headSize?: number;
  nFfn?: number;
  /** Widths of the w, a, v and g low-rank projections (defaults: RWKV-LM's suggestions). */
  wLora?: number;
  aLora?: number;
  vLora?: number;
  gLora?: number;
  seed?: number;
}

/** RWKV-LM's suggested low-rank widths for n_embd C (train_temp/src/model.py). */
export function rwkv7LoraDefaults(C: number): { w: number; a: number; v: number; g: number } {
  const dim = (f: number) => Math.max(32, Math.round((f * Math.sqrt(C)) / 32) * 32);
  return { w: dim(2.5), a: dim(2.5), v: dim(1.7), g: dim(5) };
}

export function randomRwkv7(shape: RandomRwkv7Shape): NamedTensor[] {
  return materialize(rwkv7Specs(shape));
}

/**
 * The RWKV-7 tensors of a shape (BlinkDL names and shapes: mixes [1, 1, C], LoRA matrices
 * stored [in, out], r_k [H, N]; block 0 without v0/v1/v2), to generate or only to size.
 * Magnitudes follow a trained model's: decays exp(−0.61·σ(w0 + …)) spread from slow to
 * fast over the channels, in-context rates σ(a0 + …) around 0.5, value-residual gates
 * mixed, unit-scale products.
 */
export function rwkv7Specs(shape: RandomRwkv7Shape): TensorSpec[] {
  const { nLayer, nEmbd: C, nVocab: V, seed = 1 } = shape;
  const N = shape.headSize ?? Math.min(64, C);
  const H = C / N;
  const f = shape.nFfn ?? 4 * C;
  const dflt = rwkv7LoraDefaults(C);
  const [dw, da, dv, dg] = [
    shape.wLora ?? dflt.w,
    shape.aLora ?? dflt.a,
    shape.vLora ?? dflt.v,
    shape.gLora ?? dflt.g,
  ];
  const { u, gauss, out, add, lin } = filler(seed);
  // A low-rank matrix stored [inputs, outputs] (used as x @ m), std gain/√inputs.
  const lora = (name: string, inputs: number, outputs: number, gain: number) =>
    add(name, [inputs, outputs], () => (gain * gauss()) / Math.sqrt(inputs));
  const norm = (name: string, scale = 1) => {
    add(`${name}.weight`, [C], () => scale * (1 + 0.1 * gauss()));
    add(`${name}.bias`, [C], () => 0.1 * gauss());
  };

  add('emb.weight', [V, C], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const p = `blocks.${b}`;
    if (b === 0) norm(`${p}.ln0`);
    norm(`${p}.ln1`);
    norm(`${p}.ln2`);
    for (const m of ['x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g'])
      add(`${p}.att.${m}`, [1, 1, C], () => u());
    // w0 from −6 (slow decay) to 1 (fast) over the channels of each head.
    add(`${p}.att.w0`, [1, 1, C], (i) => -6 + (7 * (i % N)) / Math.max(1, N - 1) + 0.3 * gauss());
    lora(`${p}.att.w1`, C, dw, 1);
    lora(`${p}.att.w2`, dw, C, 0.5);
    add(`${p}.att.a0`, [1, 1, C], () => 0.5 * gauss());
    lora(`${p}.att.a1`, C, da, 1);
    lora(`${p}.att.a2`, da, C, 0.5);
    if (b > 0) {
      add(`${p}.att.v0`, [1, 1, C], () => 0.5 * gauss());
      lora(`${p}.att.v1`, C, dv, 1);
      lora(`${p}.att.v2`, dv, C, 0.5);
    }
    lora(`${p}.att.g1`, C, dg, 1);
    lora(`${p}.att.g2`, dg, C, 1);
    add(`${p}.att.k_k`, [1, 1, C], () => 0.85 + 0.1 * gauss());
    add(`${p}.att.k_a`, [1, 1, C], () => 1 + 0.1 * gauss());
    add(`${p}.att.r_k`, [H, N], () => 0.3 * gauss());
    lin(`${p}.att.receptance.weight`, C, C);
    lin(`${p}.att.key.weight`, C, C);
    lin(`${p}.att.value.weight`, C, C);
    lin(`${p}.att.output.weight`, C, C, 0.5);
    norm(`${p}.att.ln_x`, 0.6);
    add(`${p}.ffn.x_k`, [1, 1, C], () => u());
    lin(`${p}.ffn.key.weight`, f, C, 1.5);
    lin(`${p}.ffn.value.weight`, C, f, 0.5);
  }
  norm('ln_out');
  lin('head.weight', V, C);
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
