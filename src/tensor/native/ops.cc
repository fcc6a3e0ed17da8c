#include "ops.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <mutex>
#include <vector>

#include "blas.h"
#include "kernels.h"
#include "pool.h"

namespace act {

namespace {

// One operation at a time: Node worker_threads may share the addon, and the pool and
// the scratch buffers below serve one caller.
std::mutex opsMutex;
const Kernels* kernels = nullptr;
BlasMode blasMode = BlasMode::Auto;
bool blasLoaded = false;

// Auto: the own AVX-512 GEMM measured 2× OpenBLAS 0.3.21's Haswell kernels (the ones it
// picks on AMD Zen 4/5) and 1.2× its SkylakeX kernels; with AVX2 the two were even, and
// then OpenBLAS (tuned per CPU) is preferred. GEMV is memory-bound: own kernels in auto.
bool blasGemm() {
  if (!blasLoaded || blasMode == BlasMode::Off) return false;
  return blasMode == BlasMode::On || std::strcmp(kernels->name, "avx512") != 0;
}
bool blasGemv() { return blasLoaded && blasMode == BlasMode::On; }

// Work is cut into pieces of about this many bytes of weights: claiming one costs an
// atomic add, and ~100 of them balance two threads on a noisy machine.
constexpr size_t kPieceBytes = size_t{256} << 10;
// Smaller products run on the calling thread alone (waking a worker costs more).
constexpr size_t kParallelBytes = size_t{256} << 10;
constexpr size_t kParallelMacs = size_t{1} << 20;
// GEMM: k-block (xp slice of T × kc stays in L2) and packed-X budget per token chunk.
constexpr size_t kGemmKc = 512;
constexpr size_t kGemmXpBytes = size_t{2} << 20;
constexpr int kMaxDefaultThreads = 8;

struct Scratch {
  Buffer xp;                // packed X for GEMM
  Buffer idx;               // active-input list for sparse GEMV
  std::vector<Buffer> acc;  // private sparse-GEMV output vectors, one per part
} scratch;

size_t roundUp(size_t n, size_t m) { return (n + m - 1) / m * m; }

bool cpuHas(const char* level) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (std::strcmp(level, "avx512") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(level, "avx2") == 0) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
#endif
  return std::strcmp(level, "scalar") == 0;
}

const Kernels* bestKernels() {
  if (cpuHas("avx512") && avx512Kernels()) return avx512Kernels();
  if (cpuHas("avx2") && avx2Kernels()) return avx2Kernels();
  return &scalarKernels();
}

// ---- prepare: padded copy and transpose, in parallel pieces of 64 rows / columns ----

struct CopyJob {
  Weight* w;
  const float* src;
};

void copyPiece(void* ctx, size_t i, int) {
  const CopyJob& j = *static_cast<CopyJob*>(ctx);
  const Weight& w = *j.w;
  const size_t r1 = std::min(w.rows, (i + 1) * 64);
  for (size_t r = i * 64; r < r1; r++) {
    float* dst = w.w.floats() + r * w.ldw;
    std::memcpy(dst, j.src + r * w.cols, w.cols * sizeof(float));
    std::fill(dst + w.cols, dst + w.ldw, 0.0f);
  }
}

void transposePiece(void* ctx, size_t i, int) {
  const CopyJob& j = *static_cast<CopyJob*>(ctx);
  const Weight& w = *j.w;
  // Wᵀ rows [c0, c1) in 64 × 64 tiles: reads and writes both stay within a few pages.
  const size_t c0 = i * 64, c1 = std::min(w.cols, c0 + 64);
  float* wt = w.wt.floats();
  for (size_t r0 = 0; r0 < w.rows; r0 += 64) {
    const size_t r1 = std::min(w.rows, r0 + 64);
    for (size_t c = c0; c < c1; c++) {
      for (size_t r = r0; r < r1; r++) wt[c * w.ldt + r] = j.src[r * w.cols + c];
    }
  }
  for (size_t c = c0; c < c1; c++) std::fill(wt + c * w.ldt + w.rows, wt + (c + 1) * w.ldt, 0.0f);
}

// ---- GEMV: pieces of whole rows ----

struct GemvJob {
  const Weight* w;
  float* y;
  const float* x;
  size_t pieceRows;
};

void gemvPiece(void* ctx, size_t i, int) {
  const GemvJob& j = *static_cast<GemvJob*>(ctx);
  const size_t r0 = i * j.pieceRows, n = std::min(j.pieceRows, j.w->rows - r0);
  kernels->gemvRows(j.y + r0, j.w->w.floats() + r0 * j.w->ldw, j.w->ldw, j.x, n, j.w->cols);
}

void gemvLocked(const Weight& w, float* y, const float* x) {
  if (blasGemv() && w.rows <= INT_MAX && w.ldw <= INT_MAX) {
    blas::gemv(static_cast<int>(w.rows), static_cast<int>(w.cols), w.w.floats(),
               static_cast<int>(w.ldw), x, y);
    return;
  }
  const size_t rowBytes = w.ldw * sizeof(float);
  GemvJob job{&w, y, x, w.rows};
  size_t pieces = 1;
  if (w.rows * rowBytes >= kParallelBytes && Pool::get().threads() > 1) {
    job.pieceRows = std::max<size_t>(4, kPieceBytes / rowBytes / 4 * 4);
    pieces = (w.rows + job.pieceRows - 1) / job.pieceRows;
  }
  Pool::get().run(pieces, gemvPiece, &job);
}

// ---- GEMM (own kernels): X packed per token chunk, pieces of weight rows ----

struct GemmJob {
  const Weight* w;
  float* y;
  const float* x;   // X [tokens, cols] of this chunk
  float* xp;        // X packed: [ceil(tokens / panel)][cols][panel]
  size_t tokens;
  size_t pieceRows;
};

// Packs panel p: xp[p][k][t] = X[p·panel + t, k], zero for tokens past the end.
void packPiece(void* ctx, size_t p, int) {
  const GemmJob& j = *static_cast<GemmJob*>(ctx);
  const size_t panel = static_cast<size_t>(kernels->panel), cols = j.w->cols;
  float* dst = j.xp + p * cols * panel;
  for (size_t t = 0; t < panel; t++) {
    const size_t token = p * panel + t;
    if (token < j.tokens) {
      const float* src = j.x + token * cols;
      for (size_t k = 0; k < cols; k++) dst[k * panel + t] = src[k];
    } else {
      for (size_t k = 0; k < cols; k++) dst[k * panel + t] = 0.0f;
    }
  }
}

void gemmPiece(void* ctx, size_t i, int) {
  const GemmJob& j = *static_cast<GemmJob*>(ctx);
  const Weight& w = *j.w;
  const size_t r0 = i * j.pieceRows, n = std::min(j.pieceRows, w.rows - r0);
  for (size_t k0 = 0; k0 < w.cols; k0 += kGemmKc) {
    kernels->gemmRows(j.y + r0, w.rows, w.w.floats() + r0 * w.ldw, w.ldw, j.xp, j.tokens, w.cols,
                      n, k0, std::min(kGemmKc, w.cols - k0), k0 > 0);
  }
}

bool ownGemm(const Weight& w, float* y, const float* x, size_t tokens) {
  const size_t panel = static_cast<size_t>(kernels->panel);
  // Token chunks keep packed X within kGemmXpBytes (the weights are re-read per chunk,
  // which costs little next to 2·chunk flops per weight).
  const size_t chunk = std::max(panel, kGemmXpBytes / (w.cols * sizeof(float)) / panel * panel);
  if (!scratch.xp.reserve(std::min(roundUp(tokens, panel), chunk) * w.cols * sizeof(float))) {
    return false;
  }
  const size_t tile = static_cast<size_t>(kernels->tileRows);
  for (size_t t0 = 0; t0 < tokens; t0 += chunk) {
    const size_t tc = std::min(chunk, tokens - t0);
    GemmJob job{&w, y + t0 * w.rows, x + t0 * w.cols, scratch.xp.floats(), tc, w.rows};
    const bool parallel = w.rows * w.cols * tc >= kParallelMacs && Pool::get().threads() > 1;
    Pool::get().run((tc + panel - 1) / panel, packPiece, &job);
    size_t pieces = 1;
    if (parallel) {
      job.pieceRows = tile * 8;
      pieces = (w.rows + job.pieceRows - 1) / job.pieceRows;
    }
    Pool::get().run(pieces, gemmPiece, &job);
  }
  return true;
}

// ---- sparse GEMV: the active list cut into one contiguous part per thread ----

struct SparseJob {
  const Weight* w;
  const float* x;
  const int32_t* idx;
  size_t active;
  size_t parts;
};

void sparsePart(void* ctx, size_t part, int) {
  const SparseJob& j = *static_cast<SparseJob*>(ctx);
  const Weight& w = *j.w;
  // Each part sums into its own vector (indexed by part, not by thread, so the result
  // does not depend on which thread ran it).
  float* acc = scratch.acc[part].floats();
  std::fill(acc, acc + w.ldt, 0.0f);
  const size_t a0 = j.active * part / j.parts, a1 = j.active * (part + 1) / j.parts;
  kernels->axpyRows(acc, w.wt.floats(), w.ldt, j.x, j.idx + a0, a1 - a0, w.ldt);
}

}  // namespace

void init() {
  std::lock_guard<std::mutex> lock(opsMutex);
  if (kernels) return;
  kernels = bestKernels();
  blasLoaded = blas::load();
  const int n = Pool::get().setThreads(std::min(availableCores(), kMaxDefaultThreads));
  blas::setThreads(n);
}

std::string prepareWeight(Weight& out, const float* src, size_t rows, size_t cols, bool sparse) {
  std::lock_guard<std::mutex> lock(opsMutex);
  out.rows = rows;
  out.cols = cols;
  out.ldw = roundUp(cols, 16);
  out.ldt = sparse ? roundUp(rows, 16) : 0;
  const size_t wBytes = rows * out.ldw * sizeof(float), tBytes = cols * out.ldt * sizeof(float);
  if (!out.w.allocate(wBytes) || (sparse && !out.wt.allocate(tBytes))) {
    out.w.reset();
    return "out of memory allocating " + std::to_string(wBytes + tBytes) + " bytes for a " +
           std::to_string(rows) + "×" + std::to_string(cols) + " weight";
  }
  CopyJob job{&out, src};
  Pool::get().run((rows + 63) / 64, copyPiece, &job);
  if (sparse) Pool::get().run((cols + 63) / 64, transposePiece, &job);
  return "";
}

void releaseWeight(Weight& w) {
  std::lock_guard<std::mutex> lock(opsMutex);
  w.w.reset();
  w.wt.reset();
  w.released = true;
}

bool gemv(const Weight& w, float* y, const float* x) {
  std::lock_guard<std::mutex> lock(opsMutex);
  gemvLocked(w, y, x);
  return true;
}

bool gemm(const Weight& w, float* y, const float* x, size_t tokens) {
  std::lock_guard<std::mutex> lock(opsMutex);
  // Up to 3 tokens, one GEMV each is faster: the GEMM tiles pad tokens to a whole panel
  // (32 with AVX-512), so their cost does not shrink below that.
  if (tokens < 4) {
    for (size_t t = 0; t < tokens; t++) gemvLocked(w, y + t * w.rows, x + t * w.cols);
    return true;
  }
  if (blasGemm() && tokens <= INT_MAX && w.rows <= INT_MAX && w.ldw <= INT_MAX) {
    blas::gemmNT(static_cast<int>(tokens), static_cast<int>(w.rows), static_cast<int>(w.cols), x,
                 static_cast<int>(w.cols), w.w.floats(), static_cast<int>(w.ldw), y,
                 static_cast<int>(w.rows));
    return true;
  }
  return ownGemm(w, y, x, tokens);
}

bool sparseGemv(const Weight& w, float* y, const float* x, size_t& active) {
  std::lock_guard<std::mutex> lock(opsMutex);
  if (!scratch.idx.reserve((w.cols + 16) * sizeof(int32_t))) return false;
  const int32_t* idx = reinterpret_cast<const int32_t*>(scratch.idx.floats());
  active = kernels->nonzero(reinterpret_cast<int32_t*>(scratch.idx.floats()), x, w.cols);
  const size_t rowBytes = w.ldt * sizeof(float);
  const size_t parts =
      active * rowBytes >= kParallelBytes ? static_cast<size_t>(Pool::get().threads()) : 1;
  if (scratch.acc.size() < parts) scratch.acc.resize(parts);
  for (size_t p = 0; p < parts; p++) {
    if (!scratch.acc[p].reserve(rowBytes)) return false;
  }
  SparseJob job{&w, x, idx, active, parts};
  Pool::get().run(parts, sparsePart, &job);
  // y = part 0 + part 1 + … in a fixed order.
  std::memcpy(y, scratch.acc[0].floats(), w.rows * sizeof(float));
  for (size_t p = 1; p < parts; p++) {
    const float* a = scratch.acc[p].floats();
    for (size_t r = 0; r < w.rows; r++) y[r] += a[r];
  }
  return true;
}

double readBandwidth(size_t bytes, int threads) {
  std::lock_guard<std::mutex> lock(opsMutex);
  Pool& pool = Pool::get();
  const int before = pool.threads();
  const int n = pool.setThreads(threads);
  // Each thread reads one contiguous share; shares are whole 64-float (256 B) blocks.
  const size_t share = roundUp(bytes / sizeof(float), size_t{64} * n) / n;
  Buffer buf;
  if (!buf.allocate(share * n * sizeof(float))) {
    pool.setThreads(before);
    return -1;
  }
  std::fill(buf.floats(), buf.floats() + share * n, 1.0f);  // touch every page first
  struct Job {
    const float* p;
    size_t share;
    float sums[256];
  } job{buf.floats(), share, {}};
  auto piece = [](void* ctx, size_t i, int) {
    Job& j = *static_cast<Job*>(ctx);
    j.sums[i % 256] = kernels->readSum(j.p + i * j.share, j.share);
  };
  std::vector<double> secs;
  for (int pass = 0; pass < 6; pass++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.runEach(piece, &job);
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    if (pass > 0) secs.push_back(dt.count());  // pass 0 warms up
  }
  pool.setThreads(before);
  std::sort(secs.begin(), secs.end());
  return static_cast<double>(share * n * sizeof(float)) / secs[secs.size() / 2] / 1e9;
}

bool setSimd(const std::string& level) {
  std::lock_guard<std::mutex> lock(opsMutex);
  if (level == "auto") {
    kernels = bestKernels();
    return true;
  }
  const Kernels* k = level == "avx512" ? avx512Kernels()
                     : level == "avx2" ? avx2Kernels()
                     : level == "scalar" ? &scalarKernels()
                                         : nullptr;
  if (!k || !cpuHas(level.c_str())) return false;
  kernels = k;
  return true;
}

const char* simdName() { return kernels->name; }

int setThreads(int n) {
  std::lock_guard<std::mutex> lock(opsMutex);
  n = Pool::get().setThreads(n);
  blas::setThreads(n);
  return n;
}

int threads() { return Pool::get().threads(); }

bool useBlas(BlasMode mode) {
  std::lock_guard<std::mutex> lock(opsMutex);
  blasMode = mode;
  return blasGemm();
}

bool blasForGemm() {
  std::lock_guard<std::mutex> lock(opsMutex);
  return blasGemm();
}

const char* blasName() { return blasLoaded ? blas::description() : nullptr; }

const char* blasReason() { return blasLoaded ? nullptr : blas::unavailableReason(); }

std::mutex& opsLock() { return opsMutex; }

const Kernels& currentKernels() { return *kernels; }

}  // namespace act
