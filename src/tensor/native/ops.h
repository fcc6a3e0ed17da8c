// The operations the addon exports: weights in addon-owned memory, and threaded
// GEMV / GEMM / sparse GEMV built from one kernel table (kernels.h) plus OpenBLAS.
// Callers (addon.cc) check every size first; these functions trust their arguments.
#pragma once
#include <cstddef>
#include <mutex>
#include <string>

#include "memory.h"

namespace act {

// W [rows, cols] as rows `ldw` floats apart (ldw = cols rounded up to 16, zero padding),
// plus, when sparse, Wᵀ [cols, rows] as rows `ldt` floats apart.
struct Weight {
  size_t rows = 0, cols = 0, ldw = 0, ldt = 0;
  Buffer w, wt;
  bool released = false;
  size_t bytes() const { return w.size() + wt.size(); }
};

// Picks the best kernels for this CPU, loads OpenBLAS, starts the thread pool. Idempotent.
void init();

// Copies src [rows, cols] into `out`; returns an error message, empty on success.
std::string prepareWeight(Weight& out, const float* src, size_t rows, size_t cols, bool sparse);
void releaseWeight(Weight& w);

// The products return false only when scratch memory cannot be allocated.
// y[rows] = W · x
bool gemv(const Weight& w, float* y, const float* x);
// Y[T, rows] = X[T, cols] · Wᵀ
bool gemm(const Weight& w, float* y, const float* x, size_t tokens);
// y = W · x reading only the Wᵀ rows of non-zero inputs; `active` gets their count.
bool sparseGemv(const Weight& w, float* y, const float* x, size_t& active);

// GB/s reading a buffer of `bytes` with `threads` threads (median of 5 passes), or a
// negative number when the buffer cannot be allocated.
double readBandwidth(size_t bytes, int threads);

// Settings. setSimd accepts "auto", "avx512", "avx2", "scalar" and returns false when
// this CPU (or build) lacks that level.
bool setSimd(const std::string& level);
const char* simdName();
int setThreads(int n);
int threads();
// OpenBLAS for dense products: On = GEMM and GEMV, Off = never, Auto = GEMM only when the
// own kernels are not AVX-512 (see ops.cc). Returns whether GEMM now uses OpenBLAS.
enum class BlasMode { Auto, On, Off };
bool useBlas(BlasMode mode);
bool blasForGemm();
// The OpenBLAS that loaded, or nullptr (then blasReason() says why).
const char* blasName();
const char* blasReason();

// For elementwise.cc: the lock every operation holds (the pool serves one job at a time),
// and the kernel table setSimd chose, to be read with that lock held.
struct Kernels;
std::mutex& opsLock();
const Kernels& currentKernels();

}  // namespace act
