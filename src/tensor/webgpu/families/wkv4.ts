/**
 * RWKV-4's WKV recurrence on WebGPU (families/wkv4.ts defines it): one invocation per
 * sequence and channel, looping over the sequence's tokens; k, v, r and out are read
 * and written a row at a time, so neighbouring channels make coalesced accesses.
 */
import type { Wkv4Args } from '../../families/wkv4.ts';
import type { WebGpuBackend } from '../backend.ts';
import { registerWebGpuFamily } from '../families.ts';
import type { Kernel } from '../runtime.ts';

const WKV4: Kernel = {
  name: 'wkv4',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'k', type: 'f32' },
    { name: 'v', type: 'f32' },
    { name: 'r', type: 'f32' },
    { name: 'w', type: 'f32' },
    { name: 'u', type: 'f32' },
    { name: 'aa', type: 'f32', write: true },
    { name: 'bb', type: 'f32', write: true },
    { name: 'pp', type: 'f32', write: true },
    { name: 'offsets', type: 'i32' },
  ],
  params: [
    ['batch', 'u32'],
    ['d', 'u32'],
  ],
  code: `
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let id = gid.x;
  if (id >= P.batch * P.d) { return; }
  let b = id / P.d;
  let i = id - b * P.d;
  let s = b * P.d + i;
  var a = aa_ld(s);
  var bsum = bb_ld(s);
  var p = pp_ld(s);
  let wi = w_ld(i);
  let ui = u_ld(i);
  for (var t = u32(offsets_ld(b)); t < u32(offsets_ld(b + 1u)); t++) {
    let j = t * P.d + i;
    let kt = k_ld(j);
    let vt = v_ld(j);
    // wkv = (e1·aa + e2·v) / (e1·bb + e2) with the shared exponent q = max(pp, u + k)
    var ww = ui + kt;
    var q = max(p, ww);
    var e1 = exp(p - q);
    var e2 = exp(ww - q);
    out_st(j, r_ld(j) * (e1 * a + e2 * vt) / (e1 * bsum + e2));
    // aa ← e1·aa + e2·v; bb ← e1·bb + e2; pp ← q, with q = max(pp + w, k)
    ww = p + wi;
    q = max(ww, kt);
    e1 = exp(ww - q);
    e2 = exp(kt - q);
    a = e1 * a + e2 * vt;
    bsum = e1 * bsum + e2;
    p = q;
  }
  aa_st(s, a);
  bb_st(s, bsum);
  pp_st(s, p);
}`,
};

registerWebGpuFamily('wkv4', (be: WebGpuBackend, args: unknown) => {
  const a = args as Wkv4Args;
  const { seqs, d } = a;
  if (seqs.rows === 0) return;
  const B = seqs.count;
  be.launch(
    WKV4,
    [
      be.operand(a.out, 0, seqs.rows * d),
      be.operand(a.k, 0, seqs.rows * d),
      be.operand(a.v, 0, seqs.rows * d),
      be.operand(a.r, 0, seqs.rows * d),
      be.operand(a.w, 0, d),
      be.operand(a.u, 0, d),
      be.operand(a.aa, 0, B * d),
      be.operand(a.bb, 0, B * d),
      be.operand(a.pp, 0, B * d),
      be.seqOperand(seqs, 'offsets'),
    ],
    [B, d],
    [Math.ceil((B * d) / 256)],
  );
});
