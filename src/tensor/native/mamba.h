// Mamba's kernel families (src/tensor/families/conv1d.ts, selective-scan.ts, ssd.ts): the
// causal depthwise convolution, the selective scan and Mamba-2's SSD scan over a packed
// batch, threaded over sequences × channels (or heads) on the pool. One table per
// instruction set (mamba_scalar.cc: the reference line by line in double; mamba_avx2.cc,
// mamba_avx512.cc: float32 vectors over the state index with a ~2-ulp exp), chosen with
// the matrix kernels (setSimd).
//
// Precision of the vector tables: float32 arithmetic with FMA where the reference
// computes in double and rounds the state to float32 after each token, so results differ
// from it by float32 rounding (relative ~1e-6 per token, growing slowly with length).
#pragma once
#include <cstddef>
#include <cstdint>

namespace act {

// Arguments of one call, as the families define them (sizes checked by addon.cc).
struct Conv1dCall {
  float* out;           // [rows, C]
  const float* x;       // [rows, C]
  const float* weight;  // [C, K]
  const float* bias;    // [C] or nullptr
  float* state;         // [B, (K−1)·C]
  const int32_t* offsets;  // B + 1 row offsets
  size_t batch, C, K;
};

struct SelectiveScanCall {
  float* y;                // [rows, E]
  const float* u;          // [rows, E]
  const float* delta;      // [rows, E]
  const float* deltaBias;  // [E]
  const float* A;          // [E, N]
  const float* B;          // [rows, N]
  const float* C;          // [rows, N]
  const float* D;          // [E]
  float* state;            // [batch, E·N]
  const int32_t* offsets;
  size_t batch, E, N;
};

struct SsdCall {
  float* y;             // [rows, H·P]
  const float* x;       // [rows, H·P]
  const float* dt;      // [rows, H]
  const float* dtBias;  // [H]
  const float* A;       // [H]
  const float* B;       // [rows, G·N]
  const float* C;       // [rows, G·N]
  const float* D;       // [H]
  float* state;         // [batch, H·P·N]
  const int32_t* offsets;
  size_t batch, H, P, G, N;
  double dtMin, dtMax;
};

// Tokens per block of the scans: Δ (and the SSD decay) of a block is computed before the
// block's recurrence, into scratch.
constexpr size_t kTokenBlock = 64;

// One instruction set's kernels, each over one sequence and a range of its channels, with
// `scratch` of at least: conv K·(c1 − c0) floats (channels [c0, c1)); selective scan
// kTokenBlock·(e1 − e0) (channels [e0, e1)); SSD 2·kTokenBlock·(h1 − h0) (heads [h0, h1)).
struct MambaKernels {
  const char* name;
  void (*conv1d)(const Conv1dCall& a, size_t seq, size_t c0, size_t c1, float* scratch);
  void (*selectiveScan)(const SelectiveScanCall& a, size_t seq, size_t e0, size_t e1,
                        float* scratch);
  void (*ssd)(const SsdCall& a, size_t seq, size_t h0, size_t h1, float* scratch);
};

extern const MambaKernels kMambaScalar;
// nullptr where kernels_avx*.cc are not built (x86-64 with GCC or Clang only).
const MambaKernels* mambaAvx2();
const MambaKernels* mambaAvx512();

// Threaded entry points (mamba.cc); the caller (addon.cc) has checked every size.
void conv1d(const Conv1dCall& a);
void selectiveScan(const SelectiveScanCall& a);
void ssd(const SsdCall& a);

}  // namespace act
