// RWKV-7's WKV recurrence: one kernel body (wkv7_kernel.h) built for AVX-512, AVX2 and
// the baseline instruction set, the one matching the current kernel table (setSimd) run
// per (sequence, head) on the pool.
#include "wkv7.h"

#include <cstring>

#include "kernels.h"
#include "ops.h"
#include "pool.h"

namespace act {

namespace {

#define WKV7_NS baseline
#define WKV7_TARGET
#define WKV7_WIDTH 4
#include "wkv7_kernel.h"
#undef WKV7_NS
#undef WKV7_TARGET
#undef WKV7_WIDTH

#if defined(__x86_64__) && defined(__GNUC__)
#define WKV7_NS avx2
#define WKV7_TARGET __attribute__((target("avx2,fma")))
#define WKV7_WIDTH 8
#include "wkv7_kernel.h"
#undef WKV7_NS
#undef WKV7_TARGET
#undef WKV7_WIDTH

#define WKV7_NS avx512
#define WKV7_TARGET __attribute__((target("avx512f,avx2,fma")))
#define WKV7_WIDTH 16
#include "wkv7_kernel.h"
#undef WKV7_NS
#undef WKV7_TARGET
#undef WKV7_WIDTH
#endif

using HeadFn = void (*)(const Wkv7Args&, size_t, size_t);

HeadFn headKernel() {
#if defined(__x86_64__) && defined(__GNUC__)
  const char* name = currentKernels().name;
  if (std::strcmp(name, "avx512") == 0) return avx512::head;
  if (std::strcmp(name, "avx2") == 0) return avx2::head;
#endif
  return baseline::head;
}

// A (sequence, head) pair over T tokens costs ~T·N²·1 ns (AVX-512: N = 64, 4 µs per
// token); below this many state updates a worker's wake-up (~50 µs) is not worth it.
constexpr size_t kParallelUpdates = size_t{1} << 16;

}  // namespace

void wkv7(const Wkv7Args& a) {
  const size_t pairs = a.seqs * a.heads;
  if (pairs == 0 || a.headSize == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  const HeadFn fn = headKernel();
  const size_t rows = static_cast<size_t>(a.offsets[a.seqs]);
  if (rows * a.heads * a.headSize * a.headSize < kParallelUpdates || Pool::get().threads() == 1) {
    for (size_t p = 0; p < pairs; p++) fn(a, p / a.heads, p % a.heads);
    return;
  }
  struct Job {
    const Wkv7Args* a;
    HeadFn fn;
  } job{&a, fn};
  Pool::get().run(
      pairs,
      [](void* ctx, size_t p, int) {
        const Job& j = *static_cast<Job*>(ctx);
        j.fn(*j.a, p / j.a->heads, p % j.a->heads);
      },
      &job);
}

}  // namespace act
