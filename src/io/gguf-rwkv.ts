/**
 * llama.cpp's RWKV-6 and RWKV-7 GGUF layouts ↔ BlinkDL's canonical `.pth` names and
 * shapes. Read from llama.cpp's converter (convert_hf_to_gguf.py, classes Rwkv6Model and
 * Rwkv7Model, now conversion/rwkv.py), its name table (gguf-py/gguf/tensor_mapping.py,
 * constants.py MODEL_TENSORS[RWKV6/RWKV7]) and its quantizer's skip list
 * (src/llama-quant.cpp). The converter reads Hugging Face checkpoints (RWKV/rwkv-6-world-*,
 * fla-hub rwkv7-*), whose weights equal BlinkDL's up to names and the layouts noted in
 * names.ts; GGUF shapes below are PyTorch order (GGUF's ne reversed), C = n_embd,
 * L = layer, H×N = heads × head size, D = LoRA rank.
 *
 *   GGUF                                   canonical                       transform
 *   token_embd.weight                      emb.weight                      —
 *   token_embd_norm.{weight,bias}          blocks.0.ln0.*                  —
 *   output_norm.{weight,bias}              ln_out.*                        —
 *   output.weight                          head.weight                     —
 *   blk.L.attn_norm.{weight,bias}          blocks.L.ln1.*                  —
 *   blk.L.attn_norm_2.{weight,bias}        blocks.L.ln2.*                  —
 *   blk.L.time_mix_ln.{weight,bias}        blocks.L.att.ln_x.*             —
 *
 * RWKV-6 (`general.architecture` rwkv6):
 *   blk.L.time_mix_lerp_x (C)              att.time_maa_x (1,1,C)          squeezed
 *   blk.L.time_mix_lerp_fused (5,1,1,C)    att.time_maa_{w,k,v,r,g}        stacked in that order
 *   blk.L.time_mix_lerp_{w,k,v,r,g} (C)    att.time_maa_* (1,1,C)          (older, unfused files)
 *   blk.L.time_mix_w1 (5D, C)              att.time_maa_w1 (C, 5D)         transposed
 *   blk.L.time_mix_w2 (5, C, D)            att.time_maa_w2 (5, D, C)       permute(0,2,1)
 *   blk.L.time_mix_decay (C)               att.time_decay (1,1,C)          squeezed
 *   blk.L.time_mix_decay_w1 (D2, C)        att.time_decay_w1 (C, D2)       transposed
 *   blk.L.time_mix_decay_w2 (C, D2)        att.time_decay_w2 (D2, C)       transposed
 *   blk.L.time_mix_first (H, N)            att.time_faaaa (H, N)           —
 *   blk.L.time_mix_{key,value,receptance,gate}  att.*.weight                —
 *   blk.L.time_mix_output                  att.output.weight               ÷ 2^⌊L/r⌋
 *   blk.L.channel_mix_lerp_{k,r} (C)       ffn.time_maa_{k,r} (1,1,C)      squeezed
 *   blk.L.channel_mix_{key,receptance}     ffn.*.weight                    —
 *   blk.L.channel_mix_value                ffn.value.weight                ÷ 2^⌊L/r⌋
 * r = `rwkv6.rescale_every_n_layers` (the HF config's rescale_every, 6 for the World
 * models): the converter divides those two weights so that llama.cpp can halve the
 * residual stream every r layers; `read` multiplies them back (exact: a power of two).
 *
 * RWKV-7 (`general.architecture` rwkv7):
 *   blk.L.time_mix_lerp_fused (6,1,1,C)    att.x_{r,w,k,v,a,g} (1,1,C)     stacked in that order
 *   blk.L.time_mix_{w,a,v}0 (C)            att.{w,a,v}0 (1,1,C)            squeezed
 *   blk.L.time_mix_{w,a,v,g}1 (D, C)       att.*1 (C, D)                   transposed
 *   blk.L.time_mix_{w,a,v,g}2 (C, D)       att.*2 (D, C)                   transposed
 *   blk.0.time_mix_v{0,1,2}                (none)                          copies of a0..a2 that
 *                                                                          llama.cpp's loader wants; dropped
 *   blk.L.time_mix_k_k, _k_a (C)           att.k_k, att.k_a (1,1,C)        squeezed
 *   blk.L.time_mix_r_k (C)                 att.r_k (H, N)                  flattened; N = rwkv7.wkv.head_size
 *   blk.L.time_mix_{key,value,receptance,output}  att.*.weight              —
 *   blk.L.channel_mix_lerp_k (C)           ffn.x_k (1,1,C)                 squeezed
 *   blk.L.channel_mix_{key,value}          ffn.{key,value}.weight          —
 * The converter transposes the LoRA matrices only when they come in BlinkDL's [C, D]
 * orientation; fla's nn.Linear weights are already [D, C]; either way the file holds
 * (D, C) for *1 and (C, D) for *2. w0 is the LoRA bias unchanged (no sign or offset).
 *
 * rwkv6qwen2 and arwkv7 (RWKV time mixing grafted onto Qwen2 / a hybrid with attention
 * layers, RMSNorm and no channel mix) are different models and are refused by name.
 */
import { check, UserError } from '../errors.ts';
import { numel } from '../tensor/tensor.ts';
import type {
  GgufEntry,
  GgufHeader,
  GgufKVIn,
  GgufTensorInfo,
  GgufTensorOut,
  GgufWriteType,
} from './gguf.ts';
import {
  NONE,
  type Relayout,
  relayout,
  relayoutShape,
  TRANSPOSE,
  TRANSPOSE12,
  transpose,
} from './layout.ts';
import { isQuantType, QK } from './quant.ts';
import type { TensorToWrite } from './safetensors.ts';
import { printable } from './text.ts';

export const UNSUPPORTED_RWKV_ARCHS: Readonly<Record<string, string>> = {
  rwkv6qwen2: 'RWKV-6 time mixing on a Qwen2 model',
  arwkv7: 'RWKV-7 time mixing on a Qwen2.5 hybrid',
};

const V6_LERP = ['w', 'k', 'v', 'r', 'g'];
const V7_LERP = ['r', 'w', 'k', 'v', 'a', 'g'];

// ---- reading ----

/** A name pattern and what to do with its match. */
type Rule = [RegExp, (m: RegExpExecArray) => void];

/** Runs the first rule whose pattern matches `key`; false when none does. */
function applyRule(key: string, rules: readonly Rule[]): boolean {
  for (const [re, run] of rules) {
    const m = re.exec(key);
    if (m) {
      run(m);
      return true;
    }
  }
  return false;
}

/** Canonical entries for the tensors of a GGUF file (as-is for non-RWKV architectures). */
export function ggufToCanonical(
  path: string,
  arch: string | undefined,
  h: GgufHeader,
): GgufEntry[] {
  const entry = (
    s: GgufTensorInfo,
    name: string,
    shape: readonly number[],
    r: Relayout = NONE,
    scale = 1,
  ): GgufEntry => ({
    name,
    fileName: s.name,
    shape,
    dtype: s.type.dtype,
    byteLength: r.kind === 'slice' ? s.byteLength / r.count : s.byteLength,
    stored: s,
    relayout: r,
    scale,
  });
  if (arch !== 'rwkv6' && arch !== 'rwkv7') {
    return h.tensors.map((s) => entry(s, s.name, s.shape));
  }
  if (h.tensors.length === 0) return []; // a vocab-only file (llama.cpp ships some)
  const v6 = arch === 'rwkv6';
  const emb = h.tensors.find((s) => s.name === 'token_embd.weight');
  check(emb && emb.shape.length === 2, path, `${arch}: no 2-D token_embd.weight tensor`);
  const C = emb.shape[1];
  const headSize = h.kv.get(`${arch}.wkv.head_size`)?.value;
  const rescaleKV = h.kv.get('rwkv6.rescale_every_n_layers')?.value;
  const rescale = v6 && typeof rescaleKV === 'number' && rescaleKV > 0 ? rescaleKV : 0;

  const out: GgufEntry[] = [];
  for (const s of h.tensors) {
    const sh = s.shape;
    const expect = (cond: boolean, what: string) =>
      check(
        cond,
        path,
        `tensor '${printable(s.name)}' has shape [${sh.join(', ')}]; expected ${what} (${arch}, n_embd ${C})`,
      );
    const vector = (name: string) => {
      expect(numel(sh) === C, `${C} values`);
      out.push(entry(s, name, [1, 1, C]));
    };
    const matrixT = (name: string) => {
      expect(sh.length === 2, 'a matrix');
      out.push(entry(s, name, relayoutShape(TRANSPOSE, sh), TRANSPOSE));
    };
    const fused = (prefix: string, parts: readonly string[]) => {
      expect(numel(sh) === parts.length * C, `(${parts.length}, 1, 1, ${C})`);
      parts.forEach((p, index) => {
        out.push(
          entry(s, `${prefix}${p}`, [1, 1, C], { kind: 'slice', index, count: parts.length }),
        );
      });
    };

    const global: Record<string, string> = {
      'token_embd.weight': 'emb.weight',
      'token_embd_norm.weight': 'blocks.0.ln0.weight',
      'token_embd_norm.bias': 'blocks.0.ln0.bias',
      'output_norm.weight': 'ln_out.weight',
      'output_norm.bias': 'ln_out.bias',
      'output.weight': 'head.weight',
    };
    if (Object.hasOwn(global, s.name)) {
      out.push(entry(s, global[s.name], sh));
      continue;
    }
    const m = /^blk\.(\d+)\.([a-z0-9_]+)\.(weight|bias)$/.exec(s.name);
    if (!m) {
      out.push(entry(s, s.name, sh)); // not an RWKV tensor llama.cpp writes: keep its name
      continue;
    }
    const L = Number(m[1]);
    const key = m[2];
    const suffix = m[3];
    const b = `blocks.${L}.`;
    const scale = rescale ? 2 ** Math.floor(L / rescale) : 1;
    const common: Rule[] = [
      [/^attn_norm$/, () => out.push(entry(s, `${b}ln1.${suffix}`, sh))],
      [/^attn_norm_2$/, () => out.push(entry(s, `${b}ln2.${suffix}`, sh))],
      [/^time_mix_ln$/, () => out.push(entry(s, `${b}att.ln_x.${suffix}`, sh))],
    ];
    const rwkv6: Rule[] = [
      [/^time_mix_lerp_x$/, () => vector(`${b}att.time_maa_x`)],
      [/^time_mix_lerp_fused$/, () => fused(`${b}att.time_maa_`, V6_LERP)],
      [/^time_mix_lerp_([wkvrg])$/, (k) => vector(`${b}att.time_maa_${k[1]}`)],
      [/^time_mix_w1$/, () => matrixT(`${b}att.time_maa_w1`)],
      [
        /^time_mix_w2$/,
        () => {
          expect(sh.length === 3, '(5, C, D)');
          out.push(entry(s, `${b}att.time_maa_w2`, relayoutShape(TRANSPOSE12, sh), TRANSPOSE12));
        },
      ],
      [/^time_mix_decay$/, () => vector(`${b}att.time_decay`)],
      [/^time_mix_decay_(w[12])$/, (k) => matrixT(`${b}att.time_decay_${k[1]}`)],
      [
        /^time_mix_first$/,
        () => {
          if (sh.length === 2) out.push(entry(s, `${b}att.time_faaaa`, sh));
          else {
            expect(
              typeof headSize === 'number' && numel(sh) === C,
              '(H, N) or rwkv6.wkv.head_size',
            );
            const n = headSize as number;
            out.push(entry(s, `${b}att.time_faaaa`, [C / n, n]));
          }
        },
      ],
      [
        /^time_mix_(key|value|receptance|gate|output)$/,
        (k) =>
          out.push(entry(s, `${b}att.${k[1]}.${suffix}`, sh, NONE, k[1] === 'output' ? scale : 1)),
      ],
      [/^channel_mix_lerp_([kr])$/, (k) => vector(`${b}ffn.time_maa_${k[1]}`)],
      [
        /^channel_mix_(key|receptance|value)$/,
        (k) =>
          out.push(entry(s, `${b}ffn.${k[1]}.${suffix}`, sh, NONE, k[1] === 'value' ? scale : 1)),
      ],
    ];
    const rwkv7: Rule[] = [
      [/^time_mix_lerp_fused$/, () => fused(`${b}att.x_`, V7_LERP)],
      [
        /^time_mix_([wavg])([012])$/,
        (k) => {
          // layer 0 has no value residual: its v0..v2 are the converter's copies of a0..a2
          if (k[1] === 'v' && L === 0) return;
          if (k[2] === '0') vector(`${b}att.${k[1]}0`);
          else matrixT(`${b}att.${k[1]}${k[2]}`);
        },
      ],
      [/^time_mix_k_([ka])$/, (k) => vector(`${b}att.k_${k[1]}`)],
      [
        /^time_mix_r_k$/,
        () => {
          const n = typeof headSize === 'number' ? headSize : 0;
          expect(
            n > 0 && numel(sh) === C && C % n === 0,
            `${C} values and rwkv7.wkv.head_size dividing it`,
          );
          out.push(entry(s, `${b}att.r_k`, [C / n, n]));
        },
      ],
      [
        /^time_mix_(key|value|receptance|output)$/,
        (k) => out.push(entry(s, `${b}att.${k[1]}.${suffix}`, sh)),
      ],
      [/^channel_mix_lerp_k$/, () => vector(`${b}ffn.x_k`)],
      [/^channel_mix_(key|value)$/, (k) => out.push(entry(s, `${b}ffn.${k[1]}.${suffix}`, sh))],
    ];
    // not an RWKV tensor llama.cpp writes: keep its name
    if (!applyRule(key, [...common, ...(v6 ? rwkv6 : rwkv7)])) out.push(entry(s, s.name, sh));
  }
  return out;
}

// ---- writing ----

/** The value (fetching it when lazy) of a tensor to write. */
function values(t: TensorToWrite): Float32Array {
  return typeof t.data === 'function' ? t.data() : t.data;
}

/**
 * llama.cpp's layout for canonical RWKV-6/7 tensors: the converter's transforms, the
 * hyperparameters its loader reads, and per tensor the type the converter (and then
 * llama-quantize) would give it: 1-D tensors and time_mix_w1/w2, decay_w1/w2,
 * lerp_fused stay f32; time_mix_first and the other LoRA matrices are never quantized
 * (f16, or f32 when `dtype` is f32); the remaining matrices get `dtype`.
 */
export function rwkvToGguf(
  arch: 'rwkv6' | 'rwkv7',
  tensors: readonly TensorToWrite[],
  dtype: GgufWriteType,
  rescaleEvery: number,
): { kv: Map<string, GgufKVIn>; tensors: GgufTensorOut[] } {
  const v6 = arch === 'rwkv6';
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const need = (name: string): TensorToWrite => {
    const t = byName.get(name);
    if (!t) throw new UserError(`writeGguf: ${arch} needs tensor '${name}'`);
    return t;
  };
  const emb = need('emb.weight');
  const C = emb.shape[1];
  let nLayer = 0;
  for (const t of tensors) {
    const m = /^blocks\.(\d+)\./.exec(t.name);
    if (m) nLayer = Math.max(nLayer, Number(m[1]) + 1);
  }
  const small = dtype === 'f32' || dtype === 'bf16' ? dtype : 'f16';
  const matrix = (shape: readonly number[]): GgufWriteType =>
    isQuantType(dtype) && shape[shape.length - 1] % QK !== 0 ? small : dtype;

  const out: GgufTensorOut[] = [];
  const emitted = new Set<string>();
  const put = (
    name: string,
    shape: readonly number[],
    type: GgufWriteType,
    data: () => Float32Array,
  ) => out.push({ name, shape, type, data });
  const same = (t: TensorToWrite) => () => values(t);
  const flat = (t: TensorToWrite): [number[], GgufWriteType, () => Float32Array] => [
    [numel(t.shape)],
    'f32',
    same(t),
  ];
  const transposed = (t: TensorToWrite) => () => transpose(values(t), t.shape[0], t.shape[1]);
  const globals: Record<string, string> = {
    'emb.weight': 'token_embd.weight',
    'blocks.0.ln0.weight': 'token_embd_norm.weight',
    'blocks.0.ln0.bias': 'token_embd_norm.bias',
    'ln_out.weight': 'output_norm.weight',
    'ln_out.bias': 'output_norm.bias',
    'head.weight': 'output.weight',
  };

  for (const t of tensors) {
    if (Object.hasOwn(globals, t.name)) {
      const name = globals[t.name];
      const type = t.shape.length >= 2 ? matrix(t.shape) : 'f32';
      put(name, t.shape, type, same(t));
      continue;
    }
    const m = /^blocks\.(\d+)\.(.+)$/.exec(t.name);
    if (!m) throw new UserError(`writeGguf: '${printable(t.name)}' is not an ${arch} tensor`);
    const L = Number(m[1]);
    const rest = m[2];
    const blk = `blk.${L}.`;
    const common: Rule[] = [
      [
        /^ln([12])\.(weight|bias)$/,
        (k) => put(`${blk}attn_norm${k[1] === '2' ? '_2' : ''}.${k[2]}`, t.shape, 'f32', same(t)),
      ],
      [
        /^att\.ln_x\.(weight|bias)$/,
        (k) => put(`${blk}time_mix_ln.${k[1]}`, t.shape, 'f32', same(t)),
      ],
    ];
    // stacked (n, 1, 1, C) lerp weights, emitted once per layer in the converter's order
    const fusedLerp = (prefix: string, order: readonly string[]) => {
      const name = `${blk}time_mix_lerp_fused.weight`;
      if (emitted.has(name)) return;
      emitted.add(name);
      const parts = order.map((p) => need(`blocks.${L}.att.${prefix}${p}`));
      put(name, [order.length, 1, 1, C], 'f32', () => concat(parts.map(values)));
    };
    const scale = v6 && rescaleEvery > 0 ? 2 ** -Math.floor(L / rescaleEvery) : 1;
    const scaled = (x: TensorToWrite) => () => {
      const v = values(x);
      return scale === 1 ? v : v.map((a) => a * scale);
    };
    const rwkv6: Rule[] = [
      [/^att\.time_maa_x$/, () => put(`${blk}time_mix_lerp_x.weight`, ...flat(t))],
      [/^att\.time_maa_[wkvrg]$/, () => fusedLerp('time_maa_', V6_LERP)],
      [
        /^att\.time_maa_w1$/,
        () => put(`${blk}time_mix_w1.weight`, [t.shape[1], t.shape[0]], 'f32', transposed(t)),
      ],
      [
        /^att\.time_maa_w2$/,
        () => {
          const [n, d, c] = t.shape;
          put(`${blk}time_mix_w2.weight`, [n, c, d], 'f32', () =>
            relayout(TRANSPOSE12, t.shape, values(t)),
          );
        },
      ],
      [/^att\.time_decay$/, () => put(`${blk}time_mix_decay.weight`, ...flat(t))],
      [
        /^att\.time_decay_(w[12])$/,
        (k) =>
          put(
            `${blk}time_mix_decay_${k[1]}.weight`,
            [t.shape[1], t.shape[0]],
            'f32',
            transposed(t),
          ),
      ],
      [/^att\.time_faaaa$/, () => put(`${blk}time_mix_first.weight`, t.shape, small, same(t))],
      [
        /^att\.(key|value|receptance|gate|output)\.weight$/,
        (k) =>
          put(
            `${blk}time_mix_${k[1]}.weight`,
            t.shape,
            matrix(t.shape),
            k[1] === 'output' ? scaled(t) : same(t),
          ),
      ],
      [/^ffn\.time_maa_([kr])$/, (k) => put(`${blk}channel_mix_lerp_${k[1]}.weight`, ...flat(t))],
      [
        /^ffn\.(key|receptance|value)\.weight$/,
        (k) =>
          put(
            `${blk}channel_mix_${k[1]}.weight`,
            t.shape,
            matrix(t.shape),
            k[1] === 'value' ? scaled(t) : same(t),
          ),
      ],
    ];
    const rwkv7: Rule[] = [
      [/^att\.x_[rwkvag]$/, () => fusedLerp('x_', V7_LERP)],
      [
        /^att\.([wavg])([012])$/,
        ([, which, n]) => {
          const emit = (w: string) => {
            if (n === '0') put(`${blk}time_mix_${w}0.weight`, ...flat(t));
            else {
              // w1/w2 stay f32 (the converter's list); a, v, g LoRAs are never quantized
              const type = which === 'w' ? 'f32' : small;
              put(`${blk}time_mix_${w}${n}.weight`, [t.shape[1], t.shape[0]], type, transposed(t));
            }
          };
          emit(which);
          // llama.cpp's loader wants v0..v2 in layer 0 too: the converter copies a0..a2
          if (which === 'a' && L === 0 && !byName.has(`blocks.0.att.v${n}`)) emit('v');
        },
      ],
      [/^att\.k_([ka])$/, (k) => put(`${blk}time_mix_k_${k[1]}.weight`, ...flat(t))],
      [/^att\.r_k$/, () => put(`${blk}time_mix_r_k.weight`, ...flat(t))],
      [
        /^att\.(key|value|receptance|output)\.weight$/,
        (k) => put(`${blk}time_mix_${k[1]}.weight`, t.shape, matrix(t.shape), same(t)),
      ],
      [/^ffn\.x_k$/, () => put(`${blk}channel_mix_lerp_k.weight`, ...flat(t))],
      [
        /^ffn\.(key|value)\.weight$/,
        (k) => put(`${blk}channel_mix_${k[1]}.weight`, t.shape, matrix(t.shape), same(t)),
      ],
    ];
    if (!applyRule(rest, [...common, ...(v6 ? rwkv6 : rwkv7)])) {
      throw new UserError(`writeGguf: '${printable(t.name)}' is not an ${arch} tensor`);
    }
  }

  // Hyperparameters, as the converter's set_gguf_parameters writes them.
  const u32 = (value: number): GgufKVIn => ({ type: 'u32', value });
  const kv = new Map<string, GgufKVIn>();
  kv.set(`${arch}.context_length`, u32(1048576));
  kv.set(`${arch}.embedding_length`, u32(C));
  kv.set(`${arch}.block_count`, u32(nLayer));
  kv.set(`${arch}.attention.layer_norm_epsilon`, { type: 'f32', value: 1e-5 });
  if (v6) {
    kv.set('rwkv6.rescale_every_n_layers', u32(rescaleEvery));
    kv.set('rwkv6.wkv.head_size', u32(need('blocks.0.att.time_faaaa').shape[1]));
    kv.set('rwkv6.time_mix_extra_dim', u32(need('blocks.0.att.time_maa_w1').shape[1] / 5));
    kv.set('rwkv6.time_decay_extra_dim', u32(need('blocks.0.att.time_decay_w1').shape[1]));
  } else {
    kv.set('rwkv7.wkv.head_size', u32(need('blocks.0.att.r_k').shape[1]));
    kv.set('rwkv7.attention.decay_lora_rank', u32(need('blocks.0.att.w1').shape[1]));
    kv.set('rwkv7.attention.iclr_lora_rank', u32(need('blocks.0.att.a1').shape[1]));
    const v1 = byName.get('blocks.1.att.v1');
    kv.set('rwkv7.attention.value_residual_mix_lora_rank', u32(v1 ? v1.shape[1] : 32));
    kv.set('rwkv7.attention.gate_lora_rank', u32(need('blocks.0.att.g1').shape[1]));
  }
  kv.set(`${arch}.feed_forward_length`, u32(need('blocks.0.ffn.key.weight').shape[0]));
  kv.set(`${arch}.attention.head_count`, u32(0));
  return { kv, tensors: out };
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
