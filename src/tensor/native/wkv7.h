// RWKV-7's WKV recurrence (families/wkv7.ts `wkv7Sequence`) over a packed batch: per
// sequence and head, for each token,
//   sa = S·a; S ← S·diag(w) + sa·bᵀ + v·kᵀ; out = S·r; bonus = (Σ_j r_j·k_j·u_j)·v,
// with S [N, N] held as S[i][j] (i the value index, j the key index). Float32 throughout
// (the reference accumulates in double; results agree to float32 rounding).
#pragma once
#include <cstddef>
#include <cstdint>

namespace act {

struct Wkv7Args {
  float* out;    // [rows, H·N]
  float* bonus;  // [rows, H·N]
  const float *r, *w, *k, *v, *a, *b;  // [rows, H·N] each
  const float* u;                      // [H·N]
  float* state;                        // [B, H, N, N]
  const int32_t* offsets;              // [B + 1], rows of sequence s: offsets[s] … offsets[s+1] − 1
  size_t seqs, heads, headSize;
};

// Threaded over sequences × heads on the pool once the work pays for a wake-up; the
// caller (addon.cc) has checked every size and that written arrays overlap nothing.
void wkv7(const Wkv7Args& a);

}  // namespace act
