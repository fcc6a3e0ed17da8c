#include "blas.h"

#include <string>

#if defined(ACTSPARSE_OPENBLAS)
#include <cblas.h>
#include <dlfcn.h>

#include <cstdlib>
#endif

namespace act::blas {

namespace {
std::string desc;
std::string reason = "built without OpenBLAS (not found at build time, or ACTSPARSE_NO_BLAS=1)";
}  // namespace

#if defined(ACTSPARSE_OPENBLAS)

namespace {

struct Api {
  decltype(&cblas_sgemm) sgemm;
  decltype(&cblas_sgemv) sgemv;
  decltype(&openblas_set_num_threads) setNumThreads;
  decltype(&openblas_get_config) config;
  decltype(&openblas_get_corename) corename;
};
Api api;
bool tried = false;
bool ok = false;

#ifndef ACTSPARSE_OPENBLAS_LIBDIR
#define ACTSPARSE_OPENBLAS_LIBDIR ""
#endif

// OpenBLAS 0.3.21 does not know AMD family 19h/1Ah CPUs with AVX-512 and falls back to
// its AVX2 (Haswell) kernels; its SkylakeX kernels run on them at ~1.7× the speed
// (measured here: sgemm 118 → 200 GFLOPS on one thread). Intel CPUs are left to it.
bool wantSkylakeX() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_is("amd") && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

void* openLibrary() {
  const std::string dir = ACTSPARSE_OPENBLAS_LIBDIR;
  const std::string names[] = {"libopenblas.so.0", dir + "/libopenblas.so.0",
                               dir + "/libopenblas.so", dir + "/libopenblas.dylib",
                               "libopenblas.so"};
  for (const std::string& name : names) {
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  }
  const char* err = dlerror();
  reason = std::string("cannot load OpenBLAS: ") + (err ? err : "not found");
  return nullptr;
}

template <typename F>
bool symbol(void* h, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(h, name));
  if (!out) reason = std::string("OpenBLAS lacks ") + name;
  return out != nullptr;
}

}  // namespace

bool load() {
  if (tried) return ok;
  tried = true;
  // OpenBLAS reads its settings once, in its constructor during dlopen: set them for that
  // moment only, and only those the user has not chosen.
  //  - OPENBLAS_CORETYPE: see wantSkylakeX().
  //  - OPENBLAS_THREAD_TIMEOUT: an idle OpenBLAS thread polls (sched_yield) for 2^n
  //    cycles, 2^28 (~0.1 s) by default, competing with the pool's threads for the cores;
  //    2^22 is ~1 ms, and re-waking it costs ~50 µs against a GEMM of milliseconds.
  const bool coretype = getenv("OPENBLAS_CORETYPE") == nullptr && wantSkylakeX();
  const bool timeout = getenv("OPENBLAS_THREAD_TIMEOUT") == nullptr;
  if (coretype) setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
  if (timeout) setenv("OPENBLAS_THREAD_TIMEOUT", "22", 0);
  void* h = openLibrary();
  if (coretype) unsetenv("OPENBLAS_CORETYPE");
  if (timeout) unsetenv("OPENBLAS_THREAD_TIMEOUT");
  if (!h) return false;
  ok = symbol(h, "cblas_sgemm", api.sgemm) && symbol(h, "cblas_sgemv", api.sgemv) &&
       symbol(h, "openblas_set_num_threads", api.setNumThreads) &&
       symbol(h, "openblas_get_config", api.config) &&
       symbol(h, "openblas_get_corename", api.corename);
  if (!ok) return false;
  std::string config = api.config();
  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH …": keep name and version.
  const size_t second = config.find(' ', config.find(' ') + 1);
  desc = config.substr(0, second) + " (" + api.corename() + " kernels)";
  return true;
}

void setThreads(int n) {
  if (ok) api.setNumThreads(n);
}

void gemmNT(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
            int ldc) {
  api.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}

void gemv(int rows, int cols, const float* a, int lda, const float* x, float* y) {
  api.sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, a, lda, x, 1, 0.0f, y, 1);
}

#else

bool load() { return false; }
void setThreads(int) {}
void gemmNT(int, int, int, const float*, int, const float*, int, float*, int) {}
void gemv(int, int, const float*, int, const float*, float*) {}

#endif

const char* description() { return desc.empty() ? nullptr : desc.c_str(); }
const char* unavailableReason() { return reason.c_str(); }

}  // namespace act::blas
