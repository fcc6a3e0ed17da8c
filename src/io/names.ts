/**
 * Tensor names across formats. Canonical names are BlinkDL's `.pth` keys for RWKV
 * and Hugging Face's own names for OPT. Hugging Face's RWKV (RWKV-4 only) renames:
 *
 *   emb.weight                  ↔ rwkv.embeddings.weight
 *   blocks.0.ln0.*              ↔ rwkv.blocks.0.pre_ln.*
 *   blocks.N.att.*              ↔ rwkv.blocks.N.attention.*
 *   blocks.N.ffn.*              ↔ rwkv.blocks.N.feed_forward.*
 *   …time_mix_k / _v / _r       ↔ …time_mix_key / _value / _receptance
 *   ln_out.*                    ↔ rwkv.ln_out.*
 *   head.weight                 ↔ head.weight
 */

const MIX_TO_HF: Record<string, string> = { k: 'key', v: 'value', r: 'receptance' };
const MIX_FROM_HF: Record<string, string> = { key: 'k', value: 'v', receptance: 'r' };

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
    /^(att|ffn)\.time_mix_(key|value|receptance)$/,
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
    /^(att|ffn)\.time_mix_([kvr])$/,
    (_, sub: string, w: string) => `${sub}.time_mix_${MIX_TO_HF[w]}`,
  );
  if (rest.startsWith('ln0.')) rest = `pre_ln.${rest.slice('ln0.'.length)}`;
  else if (rest.startsWith('att.')) rest = `attention.${rest.slice('att.'.length)}`;
  else if (rest.startsWith('ffn.')) rest = `feed_forward.${rest.slice('ffn.'.length)}`;
  return `rwkv.blocks.${m[1]}.${rest}`;
}
