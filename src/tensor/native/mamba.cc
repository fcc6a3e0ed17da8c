// Threaded entry points of the Mamba kernels: work items are (sequence, piece of
// channels or heads), run on the pool once the call's work pays for waking a worker,
// on the calling thread alone below that (step mode of small models).
#include "mamba.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernels.h"
#include "ops.h"
#include "pool.h"

namespace act {

namespace {

// Below this many multiply-adds a call runs on the calling thread (a worker's wake-up
// costs ~0.2–50 µs, PERF.md; 2¹⁶ multiply-adds take ~10 µs).
constexpr size_t kParallelWork = size_t{1} << 16;
// The vector scans keep a channel's state in at most 256 values (mamba_simd.h).
constexpr size_t kMaxVectorState = 256;

// The table of the kernels setSimd chose (read with opsLock held).
const MambaKernels& table() {
  const char* name = currentKernels().name;
  const MambaKernels* t = nullptr;
  if (std::strcmp(name, "avx512") == 0) t = mambaAvx512();
  if (std::strcmp(name, "avx2") == 0) t = mambaAvx2();
  return t ? *t : kMambaScalar;
}

// Scratch for one work item, per thread (the kernels allocate nothing).
float* scratch(size_t floats) {
  thread_local std::vector<float> buf;
  if (buf.size() < floats) buf.resize(floats);
  return buf.data();
}

// A piece of `unit` channels (or heads) per work item: about 4 items per thread over the
// whole batch, at least `minimum` channels each.
size_t pieceOf(size_t channels, size_t batch, size_t minimum) {
  const size_t threads = static_cast<size_t>(Pool::get().threads());
  const size_t perSeq = std::max<size_t>(1, (4 * threads + batch - 1) / batch);
  return std::max(minimum, (channels + perSeq - 1) / perSeq);
}

// Runs item(seq, begin, end) over every non-empty sequence × piece of `channels`.
template <class F>
void forItems(const int32_t* offsets, size_t batch, size_t channels, size_t piece, bool parallel,
              const F& item) {
  std::vector<std::pair<size_t, size_t>> items;  // (sequence, first channel)
  for (size_t s = 0; s < batch; s++) {
    if (offsets[s + 1] == offsets[s]) continue;  // an empty sequence keeps its state
    for (size_t c = 0; c < channels; c += piece) items.emplace_back(s, c);
  }
  struct Job {
    const F* item;
    const std::vector<std::pair<size_t, size_t>>* items;
    size_t channels, piece;
  } job{&item, &items, channels, piece};
  auto run = [](void* ctx, size_t i, int) {
    const Job& j = *static_cast<Job*>(ctx);
    const auto [s, c] = (*j.items)[i];
    (*j.item)(s, c, std::min(j.channels, c + j.piece));
  };
  if (!parallel || items.size() < 2) {
    for (size_t i = 0; i < items.size(); i++) run(&job, i, 0);
  } else {
    Pool::get().run(items.size(), run, &job);
  }
}

size_t rowsOf(const int32_t* offsets, size_t batch) {
  return static_cast<size_t>(offsets[batch] - offsets[0]);
}

}  // namespace

void conv1d(const Conv1dCall& a) {
  if (a.C == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  const MambaKernels& k = table();
  const size_t piece = pieceOf(a.C, a.batch, 64);
  const bool parallel = rowsOf(a.offsets, a.batch) * a.C * a.K >= kParallelWork;
  forItems(a.offsets, a.batch, a.C, piece, parallel, [&](size_t s, size_t c0, size_t c1) {
    k.conv1d(a, s, c0, c1, scratch(a.K * (c1 - c0)));
  });
}

void selectiveScan(const SelectiveScanCall& a) {
  if (a.E == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  const MambaKernels& k = a.N <= kMaxVectorState ? table() : kMambaScalar;
  const size_t piece = pieceOf(a.E, a.batch, 16);
  const bool parallel = rowsOf(a.offsets, a.batch) * a.E * a.N >= kParallelWork;
  forItems(a.offsets, a.batch, a.E, piece, parallel, [&](size_t s, size_t e0, size_t e1) {
    k.selectiveScan(a, s, e0, e1, scratch(kTokenBlock * (e1 - e0)));
  });
}

void ssd(const SsdCall& a) {
  if (a.H == 0) return;
  std::lock_guard<std::mutex> lock(opsLock());
  const MambaKernels& k = a.N <= kMaxVectorState ? table() : kMambaScalar;
  const size_t piece = pieceOf(a.H, a.batch, 1);
  const bool parallel = rowsOf(a.offsets, a.batch) * a.H * a.P * a.N >= kParallelWork;
  forItems(a.offsets, a.batch, a.H, piece, parallel, [&](size_t s, size_t h0, size_t h1) {
    k.ssd(a, s, h0, h1, scratch(2 * kTokenBlock * (h1 - h0)));
  });
}

}  // namespace act
