// RWKV-5/6's state update (src/tensor/families/wkv5.ts) over a packed batch: per sequence
// and head of N channels, S [N, N] (S[i, j]: key channel i, value channel j) and per token
//
//   out_j = Σ_i r_i·S_ij + (Σ_i r_i·u_i·k_i)·v_j;   S_ij ← w_i·S_ij + k_i·v_j
//
// in float32 with fused multiply-adds (the reference sums in double: results agree to
// ~1e-6 relative). The loops are written once and compiled for AVX-512, AVX2 and the
// baseline instruction set (the level setSimd chose); (sequence, head) pairs run on the
// pool, each keeping its head's state in the caches over all its tokens.
#pragma once
#include <cstddef>
#include <cstdint>

namespace act {

// r, k, v, out: [rows, H·N] with rows = offsets[B]; u: [H·N]; w: [H·N] when wStride is 0
// (one decay for every token, RWKV-5) or [rows, H·N] when wStride is H·N (RWKV-6);
// state: [B, H, N, N], updated. offsets: B + 1 row offsets, non-decreasing from 0.
// `out` must not overlap any other argument (the caller, addon.cc, checks it).
void wkvHeads(float* out, const float* r, const float* k, const float* v, const float* w,
              size_t wStride, const float* u, float* state, const int32_t* offsets, size_t B,
              size_t H, size_t N);

}  // namespace act
