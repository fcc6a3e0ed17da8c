/**
 * RWKV-6's state update as a kernel family: RWKV-5.2's (wkv5.ts) with a decay per token
 * and channel, w_t = exp(−exp(time_decay + tanh(xw·w1)·w2)) computed by the model:
 *
 *   out_j = Σ_i r_i·(u_i·k_i·v_j + S_ij)
 *   S_ij ← w_{t,i}·S_ij + k_i·v_j
 *
 * Same state layout [B, H, N, N] (S[i, j]: key channel i, value channel j), same work.
 */
import type { KernelFamily } from '../backend.ts';
import { type Wkv5Args, wkvHeadsBatched, wkvHeadsCost, wkvHeadsSequence } from './wkv5.ts';

/** As RWKV-5's, except `w`: [rows, H·N], the decay of each token. */
export type Wkv6Args = Wkv5Args;

export const wkv6: KernelFamily<Wkv6Args> = {
  name: 'wkv6',
  reference: (a) => wkvHeadsBatched(wkvHeadsSequence, a, true),
  cost: ({ seqs, heads, headSize }) => wkvHeadsCost(seqs, heads, headSize),
};
