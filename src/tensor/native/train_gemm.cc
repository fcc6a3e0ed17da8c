#include "train_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "ops.h"

#if defined(ACTSPARSE_OPENBLAS)
#include <cblas.h>
#include <dlfcn.h>
#endif

namespace act::train {

namespace {

// The own path's scratch (the NT-form copies of the operands), reused between calls and
// guarded: two JavaScript threads may call sgemm at once (the trainer's data parallelism).
std::mutex ownMutex;
Weight scratchW;
Buffer scratchX;

size_t roundUp(size_t x, size_t m) { return (x + m - 1) / m * m; }

#if defined(ACTSPARSE_OPENBLAS)
// The OpenBLAS that blas.cc loaded (RTLD_NOLOAD: never a second copy, never a load
// without the settings blas.cc gives it), or nullptr.
decltype(&cblas_sgemm) blasSgemm() {
  static bool tried = false;
  static decltype(&cblas_sgemm) fn = nullptr;
  std::lock_guard<std::mutex> lock(ownMutex);
  if (tried) return fn;
  tried = true;
  if (blasName() == nullptr) return nullptr;
  for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"}) {
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)) {
      fn = reinterpret_cast<decltype(&cblas_sgemm)>(dlsym(h, "cblas_sgemm"));
      if (fn) break;
    }
  }
  return fn;
}
#endif

// dst[c, r] = src[r, c] for src [rows, cols], dst rows `ld` floats apart; 32×32 tiles.
void transpose(float* dst, size_t ld, const float* src, size_t rows, size_t cols) {
  constexpr size_t B = 32;
  for (size_t r0 = 0; r0 < rows; r0 += B) {
    const size_t r1 = std::min(rows, r0 + B);
    for (size_t c0 = 0; c0 < cols; c0 += B) {
      const size_t c1 = std::min(cols, c0 + B);
      for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) dst[c * ld + r] = src[r * cols + c];
    }
  }
}

// C = op(A)·op(B) through ops.h `gemm` (Y[T, rows] = X[T, cols]·Wᵀ): W = op(B)ᵀ [n, k]
// with rows padded to 16 floats (the kernels' layout contract), X = op(A) [m, k].
std::string ownSgemm(bool transA, bool transB, size_t m, size_t n, size_t k, const float* a,
                     const float* b, float* c) {
  std::lock_guard<std::mutex> lock(ownMutex);
  const size_t ld = roundUp(k, 16);
  if (!scratchW.w.reserve(n * ld * sizeof(float))) return "out of memory for scratch";
  float* w = scratchW.w.floats();
  if (transB) {
    for (size_t r = 0; r < n; r++) std::memcpy(w + r * ld, b + r * k, k * sizeof(float));
  } else {
    transpose(w, ld, b, k, n);
  }
  for (size_t r = 0; r < n; r++) std::fill(w + r * ld + k, w + (r + 1) * ld, 0.0f);
  scratchW.rows = n;
  scratchW.cols = k;
  scratchW.ldw = ld;
  scratchW.ldt = 0;
  const float* x = a;
  if (transA) {
    if (!scratchX.reserve(m * k * sizeof(float))) return "out of memory for scratch";
    transpose(scratchX.floats(), k, a, k, m);
    x = scratchX.floats();
  }
  if (!gemm(scratchW, c, x, m)) return "out of memory for scratch";
  return "";
}

// ---- N-API ----

[[noreturn]] void failType(Napi::Env env, const std::string& what) {
  throw Napi::TypeError::New(env, "sgemm: " + what);
}
[[noreturn]] void failRange(Napi::Env env, const std::string& what) {
  throw Napi::RangeError::New(env, "sgemm: " + what);
}

size_t dimArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d < 2147483648.0 && std::floor(d) == d)) {
    const std::string what = std::string(name) + " must be an integer in [0, 2^31)";
    if (v.IsNumber()) failRange(info.Env(), what);
    failType(info.Env(), what);
  }
  return static_cast<size_t>(d);
}

Napi::Float32Array floatsArg(const Napi::CallbackInfo& info, size_t i, const char* name,
                             size_t need) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    failType(info.Env(), std::string(name) + " must be a Float32Array");
  Napi::Float32Array f = v.As<Napi::Float32Array>();
  if (f.ElementLength() < need) {
    failRange(info.Env(), std::string(name) + " has " + std::to_string(f.ElementLength()) +
                              " values; needs " + std::to_string(need));
  }
  return f;
}

bool overlap(const Napi::Float32Array& p, const Napi::Float32Array& q) {
  const char* p0 = reinterpret_cast<const char*>(p.Data());
  const char* q0 = reinterpret_cast<const char*>(q.Data());
  return p0 < q0 + q.ByteLength() && q0 < p0 + p.ByteLength();
}

// sgemm(transA, transB, m, n, k, a, b, c, own)
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9) failType(env, "expects (transA, transB, m, n, k, a, b, c, own)");
  const bool transA = info[0].ToBoolean();
  const bool transB = info[1].ToBoolean();
  const size_t m = dimArg(info, 2, "m");
  const size_t n = dimArg(info, 3, "n");
  const size_t k = dimArg(info, 4, "k");
  // Products of two dims below 2^31 fit size_t; a Float32Array can hold at most 2^32.
  Napi::Float32Array a = floatsArg(info, 5, "a", m * k);
  Napi::Float32Array b = floatsArg(info, 6, "b", k * n);
  Napi::Float32Array c = floatsArg(info, 7, "c", m * n);
  if (overlap(c, a) || overlap(c, b)) failRange(env, "c must not overlap a or b");
  const std::string err =
      sgemm(transA, transB, m, n, k, a.Data(), b.Data(), c.Data(), info[8].ToBoolean());
  if (!err.empty()) throw Napi::Error::New(env, "sgemm: " + err);
  return env.Undefined();
}

}  // namespace

std::string sgemm(bool transA, bool transB, size_t m, size_t n, size_t k, const float* a,
                  const float* b, float* c, bool own) {
  if (m == 0 || n == 0) return "";
  if (k == 0) {
    std::fill(c, c + m * n, 0.0f);
    return "";
  }
#if defined(ACTSPARSE_OPENBLAS)
  if (!own) {
    if (auto fn = blasSgemm()) {
      const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
      fn(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, im,
         in, ik, 1.0f, a, transA ? im : ik, b, transB ? ik : in, 0.0f, c, in);
      return "";
    }
  }
#endif
  return ownSgemm(transA, transB, m, n, k, a, b, c);
}

void addExports(Napi::Env env, Napi::Object exports) {
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
}

}  // namespace act::train
