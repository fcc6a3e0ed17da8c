/**
 * Tensor names across formats. Canonical names are BlinkDL's `.pth` keys for RWKV
 * and Hugging Face's own names for OPT. Four layouts of RWKV weights in safetensors
 * files are told apart by their names (never by the file name):
 *
 * 1. 'as-is' — BlinkDL names and shapes (a .pth saved as safetensors).
 *
 * 2. 'hf-rwkv' — the Hugging Face ports of RWKV-4 (transformers' RwkvForCausalLM),
 *    RWKV-5 ("RWKV/v5-Eagle-7B-HF", modeling_rwkv5.py) and RWKV-6
 *    ("RWKV/rwkv-6-world-1b6", modeling_rwkv6.py): renamed only, every shape as BlinkDL's
 *    (v5 time_decay/time_faaaa (H, N), v6 time_maa_w1 (C, 5D), time_maa_w2 (5, D, C),
 *    time_decay (1,1,C), time_decay_w1 (C, D2), time_decay_w2 (D2, C)):
 *
 *      emb.weight                  ↔ rwkv.embeddings.weight
 *      blocks.0.ln0.*              ↔ rwkv.blocks.0.pre_ln.*
 *      blocks.N.att.*              ↔ rwkv.blocks.N.attention.*
 *      blocks.N.ffn.*              ↔ rwkv.blocks.N.feed_forward.*
 *      …time_mix_k / _v / _r / _g  ↔ …time_mix_key / _value / _receptance / _gate
 *      (v6 time_maa_*, time_decay*, time_faaaa, ln_x, gate keep their names)
 *      ln_out.*                    ↔ rwkv.ln_out.*
 *      head.weight                 ↔ head.weight
 *
 * 3. 'fla-rwkv7' — fla-hub's RWKV-7 (flash-linear-attention: fla/layers/rwkv7.py, and
 *    utils/convert_from_rwkv7.py, which converts BlinkDL's .pth), also the "RWKV7-*-HF"
 *    folders. LoRAs are nn.Linear, hence transposed against BlinkDL's x @ w1 @ w2:
 *
 *      model.embeddings.weight            emb.weight
 *      model.layers.0.pre_norm.*          blocks.0.ln0.*
 *      model.layers.N.attn_norm.*         blocks.N.ln1.*
 *      model.layers.N.ffn_norm.*          blocks.N.ln2.*
 *      model.layers.N.attn.x_{r,w,k,v,a,g} (1,1,C)   att.x_* (1,1,C)
 *      model.layers.N.attn.x_x (6, C)     att.x_r … x_g        (fused form, r,w,k,v,a,g)
 *      model.layers.N.attn.k_k, k_a (C)   att.k_k, att.k_a (1,1,C)
 *      model.layers.N.attn.r_k (H, N)     att.r_k (H, N)
 *      model.layers.N.attn.{w,a,v}_lora.lora.2.bias (C)   att.{w,a,v}0 (1,1,C)  (w0 unchanged:
 *                                         fla's decay −0.6065·σ(·) is BlinkDL's exp(−0.5)·σ(·))
 *      model.layers.N.attn.{w,a,v,g}_lora.lora.0.weight (D, C)  att.*1 (C, D)  transposed
 *      model.layers.N.attn.{w,a,v,g}_lora.lora.2.weight (C, D)  att.*2 (D, C)  transposed
 *      model.layers.N.attn.{r,k,v,o}_proj.weight   att.{receptance,key,value,output}.weight
 *      model.layers.N.attn.g_norm.*       att.ln_x.*
 *      model.layers.N.ffn.x_k (C)         ffn.x_k (1,1,C)
 *      model.layers.N.ffn.{key,value}.weight       ffn.{key,value}.weight
 *      model.norm.*                       ln_out.*
 *      lm_head.weight                     head.weight
 *
 * 4. 'web-rwkv5' / 'web-rwkv6' — `.st` files from web-rwkv / ai00 (web-rwkv-converter src/lib.rs,
 *    web-rwkv convert_safetensors.py): BlinkDL names, f16, with the renames
 *    time_faaaa → time_first and time_maa → time_mix, and the last two dimensions of
 *    time_mix_w1, time_mix_w2, time_decay_w1, time_decay_w2 transposed. Recognised by
 *    blocks.0.att.time_mix_x (RWKV-6) or, for RWKV-5, by a gate with time_first and no
 *    time_faaaa (BlinkDL's gated v5.2 names it time_faaaa). RWKV-4 and RWKV-7 files
 *    are untouched by that converter. Its v5.1 (per-head decay) files repeat time_decay
 *    and time_faaaa over each head's channels; they read as the equivalent (H, N) v5.2
 *    tensors.
 */
import { NONE, type Relayout, TRANSPOSE, TRANSPOSE12 } from './layout.ts';

const MIX_TO_HF: Record<string, string> = { k: 'key', v: 'value', r: 'receptance', g: 'gate' };
const MIX_FROM_HF: Record<string, string> = { key: 'k', value: 'v', receptance: 'r', gate: 'g' };

/** True when the names look like Hugging Face's RWKV layout (`rwkv.` prefix). */
export function isHfRwkvNames(names: Iterable<string>): boolean {
  for (const n of names) if (n.startsWith('rwkv.')) return true;
  return false;
}

/** A Hugging Face RWKV name → the BlinkDL `.pth` name; other names are returned as-is. */
export function hfToBlink(name: string): string {
  if (!name.startsWith('rwkv.')) return name;
  let n = name.slice('rwkv.'.length);
  if (n.startsWith('embeddings.')) return `emb.${n.slice('embeddings.'.length)}`;
  const m = /^blocks\.(\d+)\.(.*)$/.exec(n);
  if (!m) return n;
  let rest = m[2];
  if (rest.startsWith('pre_ln.')) rest = `ln0.${rest.slice('pre_ln.'.length)}`;
  else if (rest.startsWith('attention.')) rest = `att.${rest.slice('attention.'.length)}`;
  else if (rest.startsWith('feed_forward.')) rest = `ffn.${rest.slice('feed_forward.'.length)}`;
  rest = rest.replace(
    /^(att|ffn)\.time_mix_(key|value|receptance|gate)$/,
    (_, sub: string, w: string) => `${sub}.time_mix_${MIX_FROM_HF[w]}`,
  );
  n = `blocks.${m[1]}.${rest}`;
  return n;
}

/** A BlinkDL `.pth` RWKV name → the Hugging Face name (inverse of hfToBlink). */
export function blinkToHf(name: string): string {
  if (name === 'head.weight') return name;
  if (name.startsWith('emb.')) return `rwkv.embeddings.${name.slice('emb.'.length)}`;
  const m = /^blocks\.(\d+)\.(.*)$/.exec(name);
  if (!m) return `rwkv.${name}`;
  let rest = m[2];
  rest = rest.replace(
    /^(att|ffn)\.time_mix_([kvrg])$/,
    (_, sub: string, w: string) => `${sub}.time_mix_${MIX_TO_HF[w]}`,
  );
  if (rest.startsWith('ln0.')) rest = `pre_ln.${rest.slice('ln0.'.length)}`;
  else if (rest.startsWith('att.')) rest = `attention.${rest.slice('att.'.length)}`;
  else if (rest.startsWith('ffn.')) rest = `feed_forward.${rest.slice('ffn.'.length)}`;
  return `rwkv.blocks.${m[1]}.${rest}`;
}

// ---- layouts with transforms ----

export type NameScheme = 'as-is' | 'hf-rwkv' | 'fla-rwkv7' | 'web-rwkv5' | 'web-rwkv6';

/** One canonical tensor made from a stored one. */
export interface CanonicalPart {
  readonly name: string;
  readonly shape: readonly number[];
  readonly relayout: Relayout;
}

/** Which layout a set of tensor names is in (see the header). */
export function detectNameScheme(names: ReadonlySet<string>): NameScheme {
  for (const n of names) {
    if (/^model\.layers\.\d+\.attn\.(r_k|k_k|x_r|x_x|w_lora\.)/.test(n)) return 'fla-rwkv7';
  }
  if (isHfRwkvNames(names)) return 'hf-rwkv';
  if (names.has('blocks.0.att.time_mix_x')) return 'web-rwkv6';
  if (
    names.has('blocks.0.att.gate.weight') &&
    names.has('blocks.0.att.time_first') &&
    !names.has('blocks.0.att.time_faaaa')
  ) {
    return 'web-rwkv5';
  }
  return 'as-is';
}

/** The canonical tensor(s) for one stored tensor of a layout. */
export function canonicalParts(
  scheme: NameScheme,
  name: string,
  shape: readonly number[],
): CanonicalPart[] {
  switch (scheme) {
    case 'as-is':
      return [{ name, shape, relayout: NONE }];
    case 'hf-rwkv':
      return [{ name: hfToBlink(name), shape, relayout: NONE }];
    case 'fla-rwkv7':
      return flaToBlink(name, shape);
    case 'web-rwkv5':
    case 'web-rwkv6':
      return [webRwkvToBlink(name, shape, scheme === 'web-rwkv6')];
  }
}

const numel = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);
const vector = (name: string, shape: readonly number[]): CanonicalPart => ({
  name,
  shape: [1, 1, numel(shape)],
  relayout: NONE,
});
const transposed = (name: string, shape: readonly number[]): CanonicalPart =>
  shape.length === 2
    ? { name, shape: [shape[1], shape[0]], relayout: TRANSPOSE }
    : { name, shape, relayout: NONE }; // not a matrix: leave it for the model's shape check

const FLA_GLOBAL: Readonly<Record<string, string>> = {
  'model.embeddings.weight': 'emb.weight',
  'model.norm.weight': 'ln_out.weight',
  'model.norm.bias': 'ln_out.bias',
  'lm_head.weight': 'head.weight',
};
const FLA_PROJ: Readonly<Record<string, string>> = {
  r_proj: 'receptance',
  k_proj: 'key',
  v_proj: 'value',
  o_proj: 'output',
};
const FLA_NORM: Readonly<Record<string, string>> = {
  pre_norm: 'ln0',
  attn_norm: 'ln1',
  ffn_norm: 'ln2',
};
const V7_LERP = ['r', 'w', 'k', 'v', 'a', 'g'];

/** fla's RWKV-7 names (see the header, layout 3). */
function flaToBlink(name: string, shape: readonly number[]): CanonicalPart[] {
  if (Object.hasOwn(FLA_GLOBAL, name)) return [{ name: FLA_GLOBAL[name], shape, relayout: NONE }];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) return [{ name, shape, relayout: NONE }];
  const b = `blocks.${m[1]}.`;
  const rest = m[2];
  const parts = rest.split('.');
  if (parts.length === 2 && Object.hasOwn(FLA_NORM, parts[0])) {
    return [{ name: `${b}${FLA_NORM[parts[0]]}.${parts[1]}`, shape, relayout: NONE }];
  }
  let k = /^attn\.(x_[rwkvag]|k_k|k_a)$/.exec(rest);
  if (k) return [vector(`${b}att.${k[1]}`, shape)];
  if (rest === 'attn.x_x') {
    const count = V7_LERP.length;
    const c = numel(shape) / count;
    return V7_LERP.map((p, index) => ({
      name: `${b}att.x_${p}`,
      shape: [1, 1, c],
      relayout: { kind: 'slice', index, count },
    }));
  }
  if (rest === 'attn.r_k') return [{ name: `${b}att.r_k`, shape, relayout: NONE }];
  k = /^attn\.([wavg])_lora\.lora\.(0|2)\.(weight|bias)$/.exec(rest);
  if (k) {
    const [, which, layer, kind] = k;
    if (kind === 'bias') return [vector(`${b}att.${which}0`, shape)];
    return [transposed(`${b}att.${which}${layer === '0' ? '1' : '2'}`, shape)];
  }
  k = /^attn\.([rkvo]_proj)\.weight$/.exec(rest);
  if (k) return [{ name: `${b}att.${FLA_PROJ[k[1]]}.weight`, shape, relayout: NONE }];
  k = /^attn\.g_norm\.(weight|bias)$/.exec(rest);
  if (k) return [{ name: `${b}att.ln_x.${k[1]}`, shape, relayout: NONE }];
  if (rest === 'ffn.x_k') return [vector(`${b}ffn.x_k`, shape)];
  k = /^ffn\.(key|value)\.weight$/.exec(rest);
  if (k) return [{ name: `${b}ffn.${k[1]}.weight`, shape, relayout: NONE }];
  return [{ name, shape, relayout: NONE }];
}

/** web-rwkv's renames and transposes undone (see the header, layout 4). */
function webRwkvToBlink(name: string, shape: readonly number[], v6: boolean): CanonicalPart {
  const m = /^(blocks\.\d+\.)(att|ffn)\.(.+)$/.exec(name);
  if (!m) return { name, shape, relayout: NONE };
  const [, b, sub, rest] = m;
  if (sub === 'att' && rest === 'time_first') {
    return { name: `${b}att.time_faaaa`, shape, relayout: NONE };
  }
  // v5 keeps BlinkDL's time_mix_{k,v,r,g}; only v6's time_maa_* were renamed
  if (!v6) return { name, shape, relayout: NONE };
  // time_mix_{x,w,k,v,r,g} in att, time_mix_{k,r} in ffn: v6's time_maa_* renamed
  const mix = /^time_mix_([xwkvrg])$/.exec(rest);
  if (mix && (sub === 'att' || /^[kr]$/.test(mix[1]))) {
    return { name: `${b}${sub}.time_maa_${mix[1]}`, shape, relayout: NONE };
  }
  if (sub === 'att' && rest === 'time_mix_w1') return transposed(`${b}att.time_maa_w1`, shape);
  if (sub === 'att' && rest === 'time_mix_w2') {
    return shape.length === 3
      ? {
          name: `${b}att.time_maa_w2`,
          shape: [shape[0], shape[2], shape[1]],
          relayout: TRANSPOSE12,
        }
      : { name: `${b}att.time_maa_w2`, shape, relayout: NONE };
  }
  if (sub === 'att' && /^time_decay_w[12]$/.test(rest)) return transposed(name, shape);
  return { name, shape, relayout: NONE };
}
