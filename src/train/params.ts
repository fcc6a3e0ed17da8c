/**
 * The trainable parameters of an RWKV-4 model under BlinkDL's names and shapes (the
 * order of `randomRwkv4` and of released checkpoints), and a BlinkDL-like initialization.
 */
import type { NamedTensor } from '../io/memory.ts';
import type { Rwkv4Config } from '../models/rwkv4.ts';
import type { Vec } from './matmul.ts';
import { Rng } from './rng.ts';

export interface ParamSpec {
  name: string;
  shape: number[];
  /** AdamW decays it: the 2-D matrices (embedding, linear layers, head). */
  decay: boolean;
}

/** Every parameter tensor of the configuration, in checkpoint order. */
export function rwkv4ParamSpecs(cfg: Rwkv4Config): ParamSpec[] {
  const { nLayer, nEmbd: d, nVocab: V, nFfn: f } = cfg;
  const out: ParamSpec[] = [];
  const vec = (name: string, shape = [d]) => out.push({ name, shape, decay: false });
  const mat = (name: string, rows: number, cols: number) =>
    out.push({ name, shape: [rows, cols], decay: true });
  mat('emb.weight', V, d);
  for (let b = 0; b < nLayer; b++) {
    const p = `blocks.${b}`;
    if (b === 0) {
      vec(`${p}.ln0.weight`);
      vec(`${p}.ln0.bias`);
    }
    for (const ln of ['ln1', 'ln2']) {
      vec(`${p}.${ln}.weight`);
      vec(`${p}.${ln}.bias`);
    }
    vec(`${p}.att.time_decay`);
    vec(`${p}.att.time_first`);
    for (const m of ['time_mix_k', 'time_mix_v', 'time_mix_r']) vec(`${p}.att.${m}`, [1, 1, d]);
    for (const m of ['key', 'value', 'receptance', 'output']) mat(`${p}.att.${m}.weight`, d, d);
    for (const m of ['time_mix_k', 'time_mix_r']) vec(`${p}.ffn.${m}`, [1, 1, d]);
    mat(`${p}.ffn.key.weight`, f, d);
    mat(`${p}.ffn.receptance.weight`, d, d);
    mat(`${p}.ffn.value.weight`, d, f);
  }
  vec('ln_out.weight');
  vec('ln_out.bias');
  mat('head.weight', V, d);
  return out;
}

/** Parameter tensors (or their gradients, or optimizer moments) of one precision. */
export class ParamSet<A extends Vec = Float32Array> {
  readonly specs: ParamSpec[];
  readonly tensors: A[];
  private readonly index = new Map<string, number>();

  constructor(
    readonly config: Rwkv4Config,
    alloc: (n: number) => A,
  ) {
    this.specs = rwkv4ParamSpecs(config);
    this.tensors = this.specs.map((s) => alloc(s.shape.reduce((a, b) => a * b, 1)));
    for (const [i, s] of this.specs.entries()) this.index.set(s.name, i);
  }

  /** A ParamSet over existing arrays, in spec order (e.g. shared memory in a worker). */
  static wrap<B extends Vec>(config: Rwkv4Config, tensors: readonly B[]): ParamSet<B> {
    let i = 0;
    const p = new ParamSet<B>(config, (n) => {
      const t = tensors[i++];
      if (!t || t.length !== n) throw new Error(`ParamSet.wrap: tensor ${i - 1} does not fit`);
      return t;
    });
    if (i !== tensors.length) throw new Error(`ParamSet.wrap: ${tensors.length} tensors for ${i}`);
    return p;
  }

  get(name: string): A {
    const i = this.index.get(name);
    if (i === undefined) throw new Error(`no parameter '${name}'`);
    return this.tensors[i];
  }

  /** Total number of values. */
  count(): number {
    return this.tensors.reduce((a, t) => a + t.length, 0);
  }

  /** Copies values from tensors of the same names and shapes (in place: views stay valid). */
  assign(named: readonly { name: string; shape: readonly number[]; data: ArrayLike<number> }[]) {
    const seen = new Set<string>();
    for (const t of named) {
      const i = this.index.get(t.name);
      if (i === undefined) throw new Error(`unexpected tensor '${t.name}'`);
      const want = this.specs[i].shape;
      if (t.shape.join(',') !== want.join(','))
        throw new Error(`'${t.name}' has shape [${t.shape}], expected [${want}]`);
      this.tensors[i].set(t.data);
      seen.add(t.name);
    }
    const missing = this.specs.find((s) => !seen.has(s.name));
    if (missing) throw new Error(`tensor '${missing.name}' is missing`);
  }

  /** The tensors as float32 NamedTensors (copies), for writing and for Rwkv4.load. */
  toNamed(prefix = ''): NamedTensor[] {
    return this.specs.map((s, i) => ({
      name: prefix + s.name,
      shape: [...s.shape],
      data: Float32Array.from(this.tensors[i]),
    }));
  }
}

/**
 * BlinkDL's RWKV-4 initialization (RWKV-LM v4neo `generate_init_weight` and the
 * `RWKV_TimeMix`/`RWKV_ChannelMix` constructors), with a scaled Gaussian in place of
 * the orthogonal matrices:
 *  - emb: uniform ±1e-4 (ln0 normalizes it); layer norms weight 1, bias 0;
 *  - att.key, att.receptance, att.output, ffn.receptance, ffn.value: zero, so that every
 *    block starts as the identity on the residual stream;
 *  - att.value, ffn.key: orthogonal with gain √(out/in) when out > in, else 1; head: half
 *    that gain — here a Gaussian of the same entry size;
 *  - time_decay_i = −5 + 8·(i/(d−1))^(0.7 + 1.3·l/(L−1)); time_first = ln 0.3 + a zigzag
 *    of ±0.5; time_mix = (i/d)^(1 − l/L) (v: + 0.3·l/(L−1); att r: exponent halved).
 */
export function initRwkv4<A extends Vec>(params: ParamSet<A>, seed: number): void {
  const { nLayer: L, nEmbd: d } = params.config;
  const rng = new Rng(seed);
  const gauss = () => rng.gaussian();
  for (const [i, spec] of params.specs.entries()) {
    const t = params.tensors[i];
    const name = spec.name;
    const layer = Number(/^blocks\.(\d+)\./.exec(name)?.[1] ?? 0);
    const r01 = L > 1 ? layer / (L - 1) : 0; // ratio_0_to_1
    const r10 = 1 - layer / L; // ratio_1_to_almost0
    const ramp = (c: number) => c / d;
    if (name === 'emb.weight') {
      for (let j = 0; j < t.length; j++) t[j] = (2 * rng.next() - 1) * 1e-4;
    } else if (/(^|\.)ln(\d|_out)\.weight$/.test(name)) {
      t.fill(1);
    } else if (/\.bias$/.test(name)) {
      t.fill(0);
    } else if (name.endsWith('att.time_decay')) {
      for (let c = 0; c < d; c++) t[c] = -5 + 8 * (c / Math.max(1, d - 1)) ** (0.7 + 1.3 * r01);
    } else if (name.endsWith('att.time_first')) {
      for (let c = 0; c < d; c++) t[c] = Math.log(0.3) + (((c + 1) % 3) - 1) * 0.5;
    } else if (name.endsWith('att.time_mix_k') || name.endsWith('ffn.time_mix_k')) {
      for (let c = 0; c < d; c++) t[c] = ramp(c) ** r10;
    } else if (name.endsWith('att.time_mix_v')) {
      for (let c = 0; c < d; c++) t[c] = ramp(c) ** r10 + 0.3 * r01;
    } else if (name.endsWith('att.time_mix_r')) {
      for (let c = 0; c < d; c++) t[c] = ramp(c) ** (0.5 * r10);
    } else if (name.endsWith('ffn.time_mix_r')) {
      for (let c = 0; c < d; c++) t[c] = ramp(c) ** r10;
    } else if (
      /att\.(key|receptance|output)\.weight$|ffn\.(receptance|value)\.weight$/.test(name)
    ) {
      t.fill(0);
    } else {
      // att.value, ffn.key, head: an orthogonal [rows, cols] matrix with gain g has entries
      // of size g/√max(rows, cols); a Gaussian of that std stands in for it.
      const [rows, cols] = spec.shape;
      let gain = rows > cols ? Math.sqrt(rows / cols) : 1;
      if (name === 'head.weight') gain *= 0.5;
      const std = gain / Math.sqrt(Math.max(rows, cols));
      for (let j = 0; j < t.length; j++) t[j] = std * gauss();
    }
  }
}
