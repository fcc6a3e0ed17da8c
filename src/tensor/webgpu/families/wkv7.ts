/**
 * RWKV-7's WKV recurrence on WebGPU (families/wkv7.ts defines it): one workgroup per
 * sequence and head, one invocation per value index i, which keeps row i of the head's
 * state S [N, N] (S_ij, j the key index) in registers over the sequence's tokens. Per
 * token the workgroup shares r, w, k, a and b of the head; invocation i computes
 *
 *   sa_i = Σ_j S_ij·a_j
 *   S_ij ← S_ij·w_j + sa_i·b_j + v_i·k_j
 *   out_i = Σ_j S_ij·r_j                  (after the update)
 *   bonus_i = (Σ_j r_j·k_j·u_j)·v_i       (the sum by each invocation)
 *
 * in float32, as the reference. An empty sequence leaves its state untouched.
 */

import { UserError } from '../../../errors.ts';
import type { Wkv7Args } from '../../families/wkv7.ts';
import type { WebGpuBackend } from '../backend.ts';
import { registerWebGpuFamily } from '../families.ts';
import type { Kernel } from '../runtime.ts';

const kernels = new Map<number, Kernel>();

/** The kernel for head size N. */
function wkv7Kernel(N: number): Kernel {
  // One invocation per channel of a head: WebGPU guarantees workgroups of 256.
  if (N > 256)
    throw new UserError(
      `head size ${N}: the webgpu kernels take heads of at most 256 channels`,
      'Use a CPU backend (--backend auto) for this model.',
    );
  let k = kernels.get(N);
  if (k) return k;
  k = {
    name: `wkv7_n${N}`,
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'bonus', type: 'f32', write: true },
      { name: 'r', type: 'f32' },
      { name: 'w', type: 'f32' },
      { name: 'k', type: 'f32' },
      { name: 'v', type: 'f32' },
      { name: 'a', type: 'f32' },
      { name: 'b', type: 'f32' },
      { name: 'u', type: 'f32' },
      { name: 'state', type: 'f32', write: true },
      { name: 'offsets', type: 'i32' },
    ],
    params: [['heads', 'u32']],
    code: `
const N = ${N}u;
var<workgroup> rs: array<f32, N>;
var<workgroup> ws: array<f32, N>;
var<workgroup> ks: array<f32, N>;
var<workgroup> as_: array<f32, N>;
var<workgroup> bs: array<f32, N>;
var<workgroup> us: array<f32, N>;

@compute @workgroup_size(N)
fn main(@builtin(local_invocation_index) i: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let q = wid.y;
  let t0 = u32(offsets_ld(q));
  let t1 = u32(offsets_ld(q + 1u));
  if (t1 == t0) { return; }
  let C = P.heads * N;
  // Row i of this sequence's head-h state: S[q, h, i, j] for j = 0 … N − 1.
  let s0 = ((q * P.heads + h) * N + i) * N;
  var s: array<f32, N>;
  for (var j = 0u; j < N; j++) { s[j] = state_ld(s0 + j); }
  us[i] = u_ld(h * N + i);
  for (var t = t0; t < t1; t++) {
    let x = t * C + h * N;
    // The previous token's reads of the shared rows are done before they are replaced.
    workgroupBarrier();
    rs[i] = r_ld(x + i);
    ws[i] = w_ld(x + i);
    ks[i] = k_ld(x + i);
    as_[i] = a_ld(x + i);
    bs[i] = b_ld(x + i);
    workgroupBarrier();
    let vi = v_ld(x + i);
    // sa = Σ_j S_ij·a_j (the state before this token)
    var sa = 0.0;
    for (var j = 0u; j < N; j++) { sa += s[j] * as_[j]; }
    // S_ij ← S_ij·w_j + sa·b_j + v_i·k_j; out_i = Σ_j S_ij·r_j; c = Σ_j r_j·k_j·u_j
    var y = 0.0;
    var c = 0.0;
    for (var j = 0u; j < N; j++) {
      s[j] = s[j] * ws[j] + sa * bs[j] + vi * ks[j];
      y += s[j] * rs[j];
      c += rs[j] * ks[j] * us[j];
    }
    out_st(x + i, y);
    bonus_st(x + i, c * vi);
  }
  for (var j = 0u; j < N; j++) { state_st(s0 + j, s[j]); }
}`,
  };
  kernels.set(N, k);
  return k;
}

registerWebGpuFamily('wkv7', (be: WebGpuBackend, args: unknown) => {
  const x = args as Wkv7Args;
  const { seqs, heads: H, headSize: N } = x;
  if (seqs.rows === 0) return;
  const C = H * N;
  const n = seqs.rows * C;
  be.launch(
    wkv7Kernel(N),
    [
      be.operand(x.out, 0, n),
      be.operand(x.bonus, 0, n),
      be.operand(x.r, 0, n),
      be.operand(x.w, 0, n),
      be.operand(x.k, 0, n),
      be.operand(x.v, 0, n),
      be.operand(x.a, 0, n),
      be.operand(x.b, 0, n),
      be.operand(x.u, 0, C),
      be.operand(x.state, 0, seqs.count * C * N),
      be.seqOperand(seqs, 'offsets'),
    ],
    [H],
    [H, seqs.count],
  );
});
