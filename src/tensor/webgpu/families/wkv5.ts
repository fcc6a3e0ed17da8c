/**
 * RWKV-5's and RWKV-6's state update on WebGPU (families/wkv5.ts and wkv6.ts define
 * them): one workgroup per sequence and head, one invocation per value channel j, which
 * keeps column j of the head's state S [N, N] (S_ij, i the key channel) in registers
 * over the sequence's tokens. Per token the workgroup shares r, k and w of the head;
 * invocation j computes
 *
 *   out_j = b·v_j + Σ_i r_i·S_ij     with b = Σ_i r_i·u_i·k_i (the bonus, summed by each)
 *   S_ij ← w_i·S_ij + k_i·v_j
 *
 * in float32 (the reference sums in double: differences near 1e-6 relative). RWKV-5
 * has one decay row w [H·N]; RWKV-6 a row per token [rows, H·N]. An empty sequence
 * leaves its state untouched.
 */

import { UserError } from '../../../errors.ts';
import type { Wkv5Args } from '../../families/wkv5.ts';
import type { WebGpuBackend } from '../backend.ts';
import { registerWebGpuFamily } from '../families.ts';
import type { Kernel } from '../runtime.ts';

const kernels = new Map<string, Kernel>();

/** The kernel for head size N, with one decay row (RWKV-5) or one per token (RWKV-6). */
function wkvHeadsKernel(N: number, perToken: boolean): Kernel {
  // One invocation per channel of a head: WebGPU guarantees workgroups of 256.
  if (N > 256)
    throw new UserError(
      `head size ${N}: the webgpu kernels take heads of at most 256 channels`,
      'Use a CPU backend (--backend auto) for this model.',
    );
  const key = `${N}:${perToken}`;
  let k = kernels.get(key);
  if (k) return k;
  k = {
    name: perToken ? `wkv6_n${N}` : `wkv5_n${N}`,
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'r', type: 'f32' },
      { name: 'k', type: 'f32' },
      { name: 'v', type: 'f32' },
      { name: 'w', type: 'f32' },
      { name: 'u', type: 'f32' },
      { name: 'state', type: 'f32', write: true },
      { name: 'offsets', type: 'i32' },
    ],
    params: [['heads', 'u32']],
    code: `
const N = ${N}u;
var<workgroup> rs: array<f32, N>;
var<workgroup> ks: array<f32, N>;
var<workgroup> ws: array<f32, N>;
var<workgroup> us: array<f32, N>;

@compute @workgroup_size(N)
fn main(@builtin(local_invocation_index) j: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let q = wid.y;
  let t0 = u32(offsets_ld(q));
  let t1 = u32(offsets_ld(q + 1u));
  if (t1 == t0) { return; }
  let A = P.heads * N;
  // Column j of this sequence's head-h state: S[q, h, i, j] for i = 0 … N − 1.
  let s0 = (q * P.heads + h) * N * N + j;
  var s: array<f32, N>;
  for (var i = 0u; i < N; i++) { s[i] = state_ld(s0 + i * N); }
  us[j] = u_ld(h * N + j);
  for (var t = t0; t < t1; t++) {
    let x = t * A + h * N;
    // The previous token's reads of rs, ks, ws are done before they are replaced.
    workgroupBarrier();
    rs[j] = r_ld(x + j);
    ks[j] = k_ld(x + j);
    ws[j] = w_ld(${perToken ? 'x' : 'h * N'} + j);
    workgroupBarrier();
    let vj = v_ld(x + j);
    var bonus = 0.0;
    var acc = 0.0;
    for (var i = 0u; i < N; i++) {
      // b += r_i·u_i·k_i; out_j += r_i·S_ij (the state before this token); S_ij ← w_i·S_ij + k_i·v_j
      bonus += rs[i] * us[i] * ks[i];
      acc += rs[i] * s[i];
      s[i] = ws[i] * s[i] + ks[i] * vj;
    }
    out_st(x + j, bonus * vj + acc);
  }
  for (var i = 0u; i < N; i++) { state_st(s0 + i * N, s[i]); }
}`,
  };
  kernels.set(key, k);
  return k;
}

function runWkvHeads(be: WebGpuBackend, a: Wkv5Args, perToken: boolean): void {
  const { seqs, heads: H, headSize: N } = a;
  if (seqs.rows === 0) return;
  const A = H * N;
  const n = seqs.rows * A;
  be.launch(
    wkvHeadsKernel(N, perToken),
    [
      be.operand(a.out, 0, n),
      be.operand(a.r, 0, n),
      be.operand(a.k, 0, n),
      be.operand(a.v, 0, n),
      be.operand(a.w, 0, perToken ? n : A),
      be.operand(a.u, 0, A),
      be.operand(a.state, 0, seqs.count * A * N),
      be.seqOperand(seqs, 'offsets'),
    ],
    [H],
    [H, seqs.count],
  );
}

registerWebGpuFamily('wkv5', (be, args) => runWkvHeads(be, args as Wkv5Args, false));
registerWebGpuFamily('wkv6', (be, args) => runWkvHeads(be, args as Wkv5Args, true));
