// Threaded entry points of the per-element kernels: the current table (setSimd) run on
// the pool in pieces of rows, elements or channels once the work pays for waking a
// worker, on the calling thread alone below that (step mode: one token per call).
#include "elementwise.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "kernels.h"
#include "ops.h"
#include "pool.h"

namespace act {

namespace {

// The cheap kernels take 0.05–0.4 ns per value (AVX-512, one thread); below this many
// values a second thread gained nothing measurable (T = 256, d = 192: 49k values).
constexpr size_t kParallelValues = size_t{1} << 16;
// wkv4 takes ~1.6 ns per value (two exps and a division in double) and halves with two
// threads at T·d = 49k; step mode (T = 1) stays on the caller up to d = 16k.
constexpr size_t kParallelWkv = size_t{1} << 14;
// Values per piece of the cheap kernels: a few µs of work each.
constexpr size_t kPieceValues = size_t{1} << 14;

const ElementwiseKernels& table() { return *currentKernels().elementwise; }

// Runs f(begin, end) over [0, count) in pieces of `piece` items, on the pool if `parallel`.
template <class F>
void forPieces(size_t count, size_t piece, bool parallel, const F& f) {
  if (!parallel || count <= piece) {
    f(size_t{0}, count);
    return;
  }
  struct Job {
    const F* f;
    size_t count, piece;
  } job{&f, count, piece};
  Pool::get().run(
      (count + piece - 1) / piece,
      [](void* ctx, size_t i, int) {
        const Job& j = *static_cast<Job*>(ctx);
        const size_t begin = i * j.piece;
        (*j.f)(begin, std::min(j.count, begin + j.piece));
      },
      &job);
}

}  // namespace

void layerNorm(float* out, const float* x, const float* w, const float* b, size_t rows, size_t n,
               double eps) {
  if (rows == 0 || n == 0) return;  // n = 0: the reference writes nothing either
  std::lock_guard<std::mutex> lock(opsLock());
  const ElementwiseKernels& k = table();
  forPieces(rows, std::max<size_t>(1, kPieceValues / n), rows * n >= kParallelValues,
            [&](size_t r0, size_t r1) {
              for (size_t r = r0; r < r1; r++) k.layerNormRow(out + r * n, x + r * n, w, b, n, eps);
            });
}

void timeShiftMix(float* out, const float* x, const float* prev, const float* mix, size_t tokens,
                  size_t n) {
  if (tokens == 0 || n == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  const ElementwiseKernels& k = table();
  // Token t mixes x_t with x_{t−1}, token 0 with `prev` (the carried state).
  forPieces(tokens, std::max<size_t>(1, kPieceValues / n), tokens * n >= kParallelValues,
            [&](size_t t0, size_t t1) {
              for (size_t t = t0; t < t1; t++) {
                k.mixRow(out + t * n, x + t * n, t == 0 ? prev : x + (t - 1) * n, mix, n);
              }
            });
}

void sigmoid(float* out, const float* x, size_t n) {
  std::lock_guard<std::mutex> lock(opsLock());
  const ElementwiseKernels& k = table();
  forPieces(n, kPieceValues, n >= kParallelValues,
            [&](size_t i0, size_t i1) { k.sigmoid(out + i0, x + i0, i1 - i0); });
}

void reluSquare(float* out, const float* x, size_t n) {
  std::lock_guard<std::mutex> lock(opsLock());
  const ElementwiseKernels& k = table();
  forPieces(n, kPieceValues, n >= kParallelValues,
            [&](size_t i0, size_t i1) { k.reluSquare(out + i0, x + i0, i1 - i0); });
}

void wkv4(float* out, const float* k, const float* v, const float* r, const float* w,
          const float* u, float* aa, float* bb, float* pp, size_t T, size_t d) {
  if (d == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  const ElementwiseKernels& kern = table();
  // Channels are independent: about 4 pieces per thread, each a multiple of 16 channels
  // (one AVX-512 block) so that pieces share few cache lines of out.
  const size_t threads = static_cast<size_t>(Pool::get().threads());
  const size_t piece = std::max<size_t>(16, (d + 4 * threads - 1) / (4 * threads) + 15) / 16 * 16;
  forPieces(d, piece, T * d >= kParallelWkv, [&](size_t i0, size_t i1) {
    kern.wkv4(out, k, v, r, w, u, aa, bb, pp, T, d, i0, i1);
  });
}

// These two run on the calling thread: a site is d or f values per token in step mode
// (~20 ns of work, far below a pool wake-up) and even [T, f] in sequence mode is one
// streaming pass at memory speed.
void threshold(float* x, size_t n, double lambda, bool strict) {
  if (!(lambda > 0) || n == 0) return;
  // A float32 |x| against a double λ: if λ is a float32 the comparison stays as it is;
  // otherwise |x| > λ and |x| ≥ λ both mean |x| ≥ the next float32 above λ (+inf when λ
  // is beyond FLT_MAX, and the least subnormal when λ is below it).
  float bound = lambda > FLT_MAX ? HUGE_VALF : static_cast<float>(lambda);
  if (static_cast<double>(bound) != lambda) {
    if (static_cast<double>(bound) < lambda) bound = std::nextafter(bound, HUGE_VALF);
    strict = false;
  }
  std::lock_guard<std::mutex> lock(opsLock());
  table().threshold(x, n, bound, strict);
}

size_t countZeros(const float* x, size_t n) {
  if (n == 0) return 0;
  std::lock_guard<std::mutex> lock(opsLock());
  return table().countZeros(x, n);
}

}  // namespace act
