// RWKV-5/6 state update (wkv56.h). The per-head loop is one always-inline function,
// compiled into three wrappers with their target instruction sets (GCC and Clang then
// vectorize the loops over the value channel j with 16, 8 or 4 floats per step).
#include "wkv56.h"

#include <cstring>
#include <vector>

#include "kernels.h"
#include "ops.h"
#include "pool.h"

namespace act {

namespace {

// One head of one sequence over T tokens; pointers are at the head's first channel of
// token 0 (rows `A` floats apart; w rows `wStride` apart, 0 for one decay); s is the
// head's state [N, N]; acc has room for N floats.
inline __attribute__((always_inline)) void headTokens(
    float* __restrict out, const float* __restrict r, const float* __restrict k,
    const float* __restrict v, const float* __restrict w, size_t wStride,
    const float* __restrict u, float* __restrict s, float* __restrict acc, size_t T, size_t A,
    size_t N) {
  for (size_t t = 0; t < T; t++) {
    const float* rt = r + t * A;
    const float* kt = k + t * A;
    const float* vt = v + t * A;
    const float* wt = w + t * wStride;
    // b = Σ_i r_i·u_i·k_i; out_j starts as b·v_j
    float bonus = 0;
    for (size_t i = 0; i < N; i++) bonus += rt[i] * u[i] * kt[i];
    for (size_t j = 0; j < N; j++) acc[j] = bonus * vt[j];
    for (size_t i = 0; i < N; i++) {
      const float ri = rt[i], ki = kt[i], wi = wt[i];
      float* __restrict row = s + i * N;
      // out_j += r_i·S_ij (the state before this token); S_ij ← w_i·S_ij + k_i·v_j
      for (size_t j = 0; j < N; j++) {
        acc[j] += ri * row[j];
        row[j] = wi * row[j] + ki * vt[j];
      }
    }
    std::memcpy(out + t * A, acc, N * sizeof(float));
  }
}

using HeadFn = void (*)(float*, const float*, const float*, const float*, const float*, size_t,
                        const float*, float*, float*, size_t, size_t, size_t);

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx2,fma,prefer-vector-width=512"))) void headAvx512(
    float* out, const float* r, const float* k, const float* v, const float* w, size_t wStride,
    const float* u, float* s, float* acc, size_t T, size_t A, size_t N) {
  headTokens(out, r, k, v, w, wStride, u, s, acc, T, A, N);
}
__attribute__((target("avx2,fma"))) void headAvx2(float* out, const float* r, const float* k,
                                                  const float* v, const float* w, size_t wStride,
                                                  const float* u, float* s, float* acc, size_t T,
                                                  size_t A, size_t N) {
  headTokens(out, r, k, v, w, wStride, u, s, acc, T, A, N);
}
#endif
void headBaseline(float* out, const float* r, const float* k, const float* v, const float* w,
                  size_t wStride, const float* u, float* s, float* acc, size_t T, size_t A,
                  size_t N) {
  headTokens(out, r, k, v, w, wStride, u, s, acc, T, A, N);
}

// The loop compiled for the instruction set of the kernels setSimd chose.
HeadFn headFor(const Kernels& k) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (std::strcmp(k.name, "avx512") == 0) return headAvx512;
  if (std::strcmp(k.name, "avx2") == 0) return headAvx2;
#endif
  return headBaseline;
}

// Below this many state updates (tokens·H·N²) a call stays on the calling thread: one
// head-token of N = 64 is ~0.3 µs with AVX-512, a sleeping worker wakes in ~50 µs.
constexpr size_t kParallelUpdates = size_t{1} << 16;

}  // namespace

void wkvHeads(float* out, const float* r, const float* k, const float* v, const float* w,
              size_t wStride, const float* u, float* state, const int32_t* offsets, size_t B,
              size_t H, size_t N) {
  const size_t A = H * N;
  const size_t rows = static_cast<size_t>(offsets[B]);
  if (rows == 0 || A == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  struct Job {
    HeadFn head;
    float* out;
    const float *r, *k, *v, *w, *u;
    size_t wStride;
    float* state;
    const int32_t* offsets;
    size_t H, N, A;
  } job{headFor(currentKernels()), out, r, k, v, w, u, wStride, state, offsets, H, N, A};
  // Piece p is head p mod H of sequence p / H; an empty sequence leaves its state alone.
  const Piece piece = [](void* ctx, size_t p, int) {
    const Job& j = *static_cast<Job*>(ctx);
    const size_t q = p / j.H, h = p % j.H;
    const size_t t0 = static_cast<size_t>(j.offsets[q]);
    const size_t T = static_cast<size_t>(j.offsets[q + 1]) - t0;
    if (T == 0) return;
    std::vector<float> acc(j.N);
    const size_t x0 = t0 * j.A + h * j.N;
    j.head(j.out + x0, j.r + x0, j.k + x0, j.v + x0, j.w + t0 * j.wStride + h * j.N, j.wStride,
           j.u + h * j.N, j.state + q * j.A * j.N + h * j.N * j.N, acc.data(), T, j.A, j.N);
  };
  if (rows * A * N < kParallelUpdates) {
    for (size_t p = 0; p < B * H; p++) piece(&job, p, 0);
  } else {
    Pool::get().run(B * H, piece, &job);
  }
}

}  // namespace act
