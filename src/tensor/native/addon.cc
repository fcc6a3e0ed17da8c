// N-API glue: argument checks, weight handles and settings. Every size is checked here
// so that the kernels behind ops.h never read or write outside the caller's arrays.
#include <napi.h>

#include <cmath>
#include <string>

#include "elementwise.h"
#include "ops.h"
#include "train_gemm.h"
#include "wkv56.h"
#include "wkv7.h"

namespace {

using act::Weight;

// Tags weight handles so that a foreign External is refused instead of misread.
constexpr napi_type_tag kWeightTag = {0x6163747370617273ULL, 0x6e61746976657731ULL};

[[noreturn]] void fail(Napi::Env env, const std::string& what) {
  throw Napi::Error::New(env, what);
}

// A value of the wrong kind (TypeError) or outside what the call allows (RangeError).
[[noreturn]] void failType(Napi::Env env, const std::string& what) {
  throw Napi::TypeError::New(env, what);
}
[[noreturn]] void failRange(Napi::Env env, const std::string& what) {
  throw Napi::RangeError::New(env, what);
}

Weight& weightArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const Napi::Value v = info[i];
  if (!v.IsExternal() || !v.As<Napi::External<Weight>>().CheckTypeTag(&kWeightTag)) {
    fail(info.Env(), std::string(fn) + ": argument " + std::to_string(i + 1) +
                         " is not a weight handle from prepare()");
  }
  Weight& w = *v.As<Napi::External<Weight>>().Data();
  if (w.released) fail(info.Env(), std::string(fn) + ": weight used after release()");
  return w;
}

// A Float32Array with at least `need` values.
Napi::Float32Array floatsArg(const Napi::CallbackInfo& info, size_t i, const char* fn,
                             const char* name, size_t need, const char* needWhat) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    failType(info.Env(), std::string(fn) + ": " + name + " must be a Float32Array");
  }
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  if (a.ElementLength() < need) {
    failRange(info.Env(), std::string(fn) + ": " + name + " has " +
                              std::to_string(a.ElementLength()) + " values; needs " + needWhat +
                              " = " + std::to_string(need));
  }
  return a;
}

// A non-negative integer below 2^31 (the kernels index inputs with int32).
size_t countArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const Napi::Value v = info[i];
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d < 2147483648.0 && std::floor(d) == d)) {
    const std::string what = std::string(fn) + ": " + name + " must be an integer in [0, 2^31)";
    if (v.IsNumber()) failRange(info.Env(), what);
    failType(info.Env(), what);
  }
  return static_cast<size_t>(d);
}

void checkNoOverlap(Napi::Env env, const char* fn, const Napi::Float32Array& y,
                    const Napi::Float32Array& x) {
  const char* y0 = reinterpret_cast<const char*>(y.Data());
  const char* x0 = reinterpret_cast<const char*>(x.Data());
  if (y0 < x0 + x.ByteLength() && x0 < y0 + y.ByteLength()) {
    fail(env, std::string(fn) + ": y and x must not overlap");
  }
}

void finalizeWeight(Napi::Env env, Weight* w) {
  const int64_t bytes = static_cast<int64_t>(w->bytes());
  if (bytes > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -bytes);
  delete w;  // frees the buffers if release() was never called
}

// prepare(w: Float32Array, rows, cols, sparse: boolean) → handle
Napi::Value Prepare(const Napi::CallbackInfo& info) {
  const size_t rows = countArg(info, 1, "prepare", "rows");
  const size_t cols = countArg(info, 2, "prepare", "cols");
  if (rows == 0 || cols == 0) fail(info.Env(), "prepare: rows and cols must be positive");
  Napi::Float32Array src = floatsArg(info, 0, "prepare", "w", 0, "");
  if (src.ElementLength() != rows * cols) {
    fail(info.Env(), "prepare: w has " + std::to_string(src.ElementLength()) + " values != " +
                         std::to_string(rows) + "×" + std::to_string(cols));
  }
  auto* w = new Weight;
  const std::string err = act::prepareWeight(*w, src.Data(), rows, cols, info[3].ToBoolean());
  if (!err.empty()) {
    delete w;
    fail(info.Env(), "prepare: " + err);
  }
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), static_cast<int64_t>(w->bytes()));
  auto handle = Napi::External<Weight>::New(info.Env(), w, finalizeWeight);
  handle.TypeTag(&kWeightTag);
  return handle;
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  Weight& w = weightArg(info, 0, "release");
  const int64_t bytes = static_cast<int64_t>(w.bytes());
  act::releaseWeight(w);
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -bytes);
  return info.Env().Undefined();
}

Napi::Value Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(weightArg(info, 0, "bytes").bytes()));
}

void oom(Napi::Env env, const char* fn) { fail(env, std::string(fn) + ": out of memory for scratch"); }

// gemv(handle, y, x)
Napi::Value Gemv(const Napi::CallbackInfo& info) {
  Weight& w = weightArg(info, 0, "gemv");
  Napi::Float32Array y = floatsArg(info, 1, "gemv", "y", w.rows, "rows");
  Napi::Float32Array x = floatsArg(info, 2, "gemv", "x", w.cols, "cols");
  checkNoOverlap(info.Env(), "gemv", y, x);
  if (!act::gemv(w, y.Data(), x.Data())) oom(info.Env(), "gemv");
  return info.Env().Undefined();
}

// gemm(handle, y, x, tokens)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Weight& w = weightArg(info, 0, "gemm");
  const size_t tokens = countArg(info, 3, "gemm", "tokens");
  Napi::Float32Array y = floatsArg(info, 1, "gemm", "y", tokens * w.rows, "tokens·rows");
  Napi::Float32Array x = floatsArg(info, 2, "gemm", "x", tokens * w.cols, "tokens·cols");
  checkNoOverlap(info.Env(), "gemm", y, x);
  if (!act::gemm(w, y.Data(), x.Data(), tokens)) oom(info.Env(), "gemm");
  return info.Env().Undefined();
}

// sparseGemv(handle, y, x) → count of non-zero inputs
Napi::Value SparseGemv(const Napi::CallbackInfo& info) {
  Weight& w = weightArg(info, 0, "sparseGemv");
  if (w.ldt == 0) fail(info.Env(), "sparseGemv: weight was prepared without {sparse: true}");
  Napi::Float32Array y = floatsArg(info, 1, "sparseGemv", "y", w.rows, "rows");
  Napi::Float32Array x = floatsArg(info, 2, "sparseGemv", "x", w.cols, "cols");
  checkNoOverlap(info.Env(), "sparseGemv", y, x);
  size_t active = 0;
  if (!act::sparseGemv(w, y.Data(), x.Data(), active)) oom(info.Env(), "sparseGemv");
  return Napi::Number::New(info.Env(), static_cast<double>(active));
}

// readBandwidth(bytes, threads) → GB/s
Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  const double bytes = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(bytes >= 1 << 20 && bytes <= 64.0 * (1ULL << 30))) {
    fail(info.Env(), "memoryReadBandwidth: bytes must be between 1 MiB and 64 GiB");
  }
  const size_t threads = countArg(info, 1, "memoryReadBandwidth", "threads");
  const double gbs = act::readBandwidth(static_cast<size_t>(bytes), static_cast<int>(threads));
  if (gbs < 0) fail(info.Env(), "memoryReadBandwidth: out of memory");
  return Napi::Number::New(info.Env(), gbs);
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const size_t n = countArg(info, 0, "setThreads", "n");
  return Napi::Number::New(info.Env(), act::setThreads(static_cast<int>(n)));
}

Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  const std::string level = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (!act::setSimd(level)) {
    fail(info.Env(), "setSimd: \"" + level + "\" kernels are not available on this CPU/build");
  }
  return Napi::String::New(info.Env(), act::simdName());
}

// useBlas(true | false | "auto") → whether GEMM now goes through OpenBLAS
Napi::Value UseBlas(const Napi::CallbackInfo& info) {
  const Napi::Value v = info[0];
  act::BlasMode mode = act::BlasMode::Auto;
  if (v.IsBoolean()) {
    mode = v.As<Napi::Boolean>().Value() ? act::BlasMode::On : act::BlasMode::Off;
  } else if (!v.IsString() || v.As<Napi::String>().Utf8Value() != "auto") {
    fail(info.Env(), "useBlas: expected true, false or \"auto\"");
  }
  return Napi::Boolean::New(info.Env(), act::useBlas(mode));
}

// info() → {blas: string | null, blasReason: string | null, gemm, simd, threads}
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const char* blas = act::blasName();
  const char* reason = act::blasReason();
  o.Set("blas", blas ? Napi::Value(Napi::String::New(env, blas)) : env.Null());
  o.Set("blasReason", reason ? Napi::Value(Napi::String::New(env, reason)) : env.Null());
  o.Set("gemm", act::blasForGemm() ? "openblas" : "own");
  o.Set("simd", act::simdName());
  o.Set("threads", act::threads());
  return o;
}

// ---- Elementwise ops (reference.ts signatures; ElementwiseOps in backend.ts) ----

// A Float32Array argument: its data and the count of values the op reads or writes.
struct Span {
  float* data;
  size_t used;
  const char* name;
};

// One napi call per array (these ops are called per token in step mode).
Span spanArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  const napi_status st =
      napi_get_typedarray_info(info.Env(), info[i], &type, &length, &data, nullptr, nullptr);
  if (st != napi_ok || type != napi_float32_array) {
    failType(info.Env(), std::string(fn) + ": " + name + " must be a Float32Array");
  }
  return Span{static_cast<float*>(data), length, name};
}

// Checks that `s` has at least `need` values and records that the op uses that many.
void require(Napi::Env env, const char* fn, Span& s, size_t need, const char* needWhat) {
  if (s.used < need) {
    failRange(env, std::string(fn) + ": " + s.name + " has " + std::to_string(s.used) +
                       " values; needs " + needWhat + " = " + std::to_string(need));
  }
  s.used = need;
}

Span floatsNeed(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
                size_t need, const char* needWhat) {
  Span s = spanArg(info, i, fn, name);
  require(info.Env(), fn, s, need, needWhat);
  return s;
}

// `out` is written while `in` is read (or written): their used ranges must not overlap,
// except that with `inPlace` `in` may be `out` itself (the kernel reads each value before
// it writes that value, and nothing else).
void checkApart(Napi::Env env, const char* fn, const Span& out, const Span& in, bool inPlace) {
  const char* o0 = reinterpret_cast<const char*>(out.data);
  const char* i0 = reinterpret_cast<const char*>(in.data);
  const size_t ob = out.used * sizeof(float), ib = in.used * sizeof(float);
  if (ob == 0 || ib == 0 || o0 >= i0 + ib || i0 >= o0 + ob) return;
  if (inPlace && o0 == i0 && ob == ib) return;
  fail(env, std::string(fn) + ": " + out.name + " and " + in.name +
                (inPlace ? " must be the same array or not overlap" : " must not overlap"));
}

// `n` when given, else the default (the reference's `n = out.length`).
size_t countOr(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
               size_t fallback) {
  return info[i].IsUndefined() ? fallback : countArg(info, i, fn, name);
}

// layerNorm(out, x, weight, bias, rows, n, eps = 1e-5)
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  const char* fn = "layerNorm";
  const size_t rows = countArg(info, 4, fn, "rows"), n = countArg(info, 5, fn, "n");
  double eps = 1e-5;
  if (!info[6].IsUndefined()) {
    if (!info[6].IsNumber()) failType(info.Env(), "layerNorm: eps must be a number");
    eps = info[6].As<Napi::Number>().DoubleValue();
  }
  const size_t vec = rows > 0 ? n : 0;  // weight and bias are not read for 0 rows
  const Span out = floatsNeed(info, 0, fn, "out", rows * n, "rows·n");
  const Span x = floatsNeed(info, 1, fn, "x", rows * n, "rows·n");
  const Span w = floatsNeed(info, 2, fn, "weight", vec, "n");
  const Span b = floatsNeed(info, 3, fn, "bias", vec, "n");
  checkApart(info.Env(), fn, out, x, true);
  checkApart(info.Env(), fn, out, w, false);
  checkApart(info.Env(), fn, out, b, false);
  act::layerNorm(out.data, x.data, w.data, b.data, rows, n, eps);
  return info.Env().Undefined();
}

// timeShiftMix(out, x, prev, mix, tokens, n)
Napi::Value TimeShiftMix(const Napi::CallbackInfo& info) {
  const char* fn = "timeShiftMix";
  const size_t tokens = countArg(info, 4, fn, "tokens"), n = countArg(info, 5, fn, "n");
  const size_t vec = tokens > 0 ? n : 0;
  const Span out = floatsNeed(info, 0, fn, "out", tokens * n, "tokens·n");
  const Span x = floatsNeed(info, 1, fn, "x", tokens * n, "tokens·n");
  const Span prev = floatsNeed(info, 2, fn, "prev", vec, "n");
  const Span mix = floatsNeed(info, 3, fn, "mix", vec, "n");
  // Not even in place: token t reads x_{t−1}, which out_{t−1} would have replaced.
  checkApart(info.Env(), fn, out, x, false);
  checkApart(info.Env(), fn, out, prev, false);
  checkApart(info.Env(), fn, out, mix, false);
  act::timeShiftMix(out.data, x.data, prev.data, mix.data, tokens, n);
  return info.Env().Undefined();
}

// sigmoid(out, x, n = out.length) and reluSquare(out, x, n = out.length)
template <void (*Op)(float*, const float*, size_t)>
Napi::Value Unary(const Napi::CallbackInfo& info, const char* fn) {
  Span out = spanArg(info, 0, fn, "out");
  const size_t n = countOr(info, 2, fn, "n", out.used);
  require(info.Env(), fn, out, n, "n");
  const Span x = floatsNeed(info, 1, fn, "x", n, "n");
  checkApart(info.Env(), fn, out, x, true);
  Op(out.data, x.data, n);
  return info.Env().Undefined();
}

Napi::Value Sigmoid(const Napi::CallbackInfo& info) { return Unary<act::sigmoid>(info, "sigmoid"); }

Napi::Value ReluSquare(const Napi::CallbackInfo& info) {
  return Unary<act::reluSquare>(info, "reluSquare");
}

// threshold(x, lambda, comparison, n = x.length), in place. lambda: any number but NaN,
// ≤ 0 (−inf included) being the identity and +inf zeroing every finite value;
// comparison: "gt" keeps |x| > lambda, "ge" keeps |x| ≥ lambda.
Napi::Value Threshold(const Napi::CallbackInfo& info) {
  const char* fn = "threshold";
  Napi::Env env = info.Env();
  Span x = spanArg(info, 0, fn, "x");
  const size_t n = countOr(info, 3, fn, "n", x.used);
  require(env, fn, x, n, "n");
  double lambda = 0;
  if (napi_get_value_double(env, info[1], &lambda) != napi_ok) {
    failType(env, "threshold: lambda must be a number");
  }
  if (std::isnan(lambda)) failRange(env, "threshold: lambda is NaN");
  // Up to 7 bytes: any string longer than "gt"/"ge" shows a third character (≤ 4 bytes).
  char cmp[8] = {0};
  size_t len = 0;
  if (napi_get_value_string_utf8(env, info[2], cmp, sizeof cmp, &len) != napi_ok) {
    failType(env, "threshold: comparison must be the string 'gt' or 'ge'");
  }
  const bool gt = len == 2 && cmp[0] == 'g' && cmp[1] == 't';
  if (!gt && !(len == 2 && cmp[0] == 'g' && cmp[1] == 'e')) {
    failRange(env, std::string("threshold: comparison must be 'gt' or 'ge', not '") + cmp + "'");
  }
  act::threshold(x.data, n, lambda, gt);
  return env.Undefined();
}

// countZeros(x, n = x.length) → the number of x[i] === 0 (±0) in x[0:n]
Napi::Value CountZeros(const Napi::CallbackInfo& info) {
  const char* fn = "countZeros";
  Span x = spanArg(info, 0, fn, "x");
  const size_t n = countOr(info, 1, fn, "n", x.used);
  require(info.Env(), fn, x, n, "n");
  return Napi::Number::New(info.Env(), static_cast<double>(act::countZeros(x.data, n)));
}

// wkv4(out, k, v, r, w, u, aa, bb, pp, T, d)
Napi::Value Wkv4(const Napi::CallbackInfo& info) {
  const char* fn = "wkv4";
  const size_t T = countArg(info, 9, fn, "T"), d = countArg(info, 10, fn, "d");
  const Span out = floatsNeed(info, 0, fn, "out", T * d, "T·d");
  const Span k = floatsNeed(info, 1, fn, "k", T * d, "T·d");
  const Span v = floatsNeed(info, 2, fn, "v", T * d, "T·d");
  const Span r = floatsNeed(info, 3, fn, "r", T * d, "T·d");
  const Span w = floatsNeed(info, 4, fn, "w", d, "d");
  const Span u = floatsNeed(info, 5, fn, "u", d, "d");
  const Span aa = floatsNeed(info, 6, fn, "aa", d, "d");
  const Span bb = floatsNeed(info, 7, fn, "bb", d, "d");
  const Span pp = floatsNeed(info, 8, fn, "pp", d, "d");
  // Written: out, aa, bb, pp; each apart from every other array, except that out may be
  // k, v or r itself (each [t, i] is read once, just before out[t, i] is written).
  const Span* written[] = {&out, &aa, &bb, &pp};
  const Span* all[] = {&out, &aa, &bb, &pp, &k, &v, &r, &w, &u};
  for (size_t a = 0; a < 4; a++) {
    for (size_t b = a + 1; b < 9; b++) {
      const bool inPlace = a == 0 && (all[b] == &k || all[b] == &v || all[b] == &r);
      checkApart(info.Env(), fn, *written[a], *all[b], inPlace);
    }
  }
  act::wkv4(out.data, k.data, v.data, r.data, w.data, u.data, aa.data, bb.data, pp.data, T, d);
  return info.Env().Undefined();
}

// wkvHeads(out, r, k, v, w, u, state, offsets, H, N, perToken): RWKV-5/6's state update
// over a packed batch (families/wkv5.ts); offsets is the Int32Array of Seqs.
Napi::Value WkvHeads(const Napi::CallbackInfo& info) {
  const char* fn = "wkvHeads";
  const Napi::Env env = info.Env();
  const Napi::Value o = info[7];
  if (!o.IsTypedArray() || o.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    failType(env, "wkvHeads: offsets must be an Int32Array");
  }
  const Napi::Int32Array offs = o.As<Napi::Int32Array>();
  if (offs.ElementLength() < 1) failRange(env, "wkvHeads: offsets needs B + 1 ≥ 1 values");
  const size_t B = offs.ElementLength() - 1;
  // Offsets start at 0 and never decrease: every sequence's rows lie inside the arrays.
  if (offs[0] != 0) failRange(env, "wkvHeads: offsets[0] must be 0");
  for (size_t b = 0; b < B; b++) {
    if (offs[b + 1] < offs[b]) failRange(env, "wkvHeads: offsets must not decrease");
  }
  const size_t H = countArg(info, 8, fn, "H"), N = countArg(info, 9, fn, "N");
  if (!info[10].IsBoolean()) failType(env, "wkvHeads: perToken must be a boolean");
  const bool perToken = info[10].As<Napi::Boolean>().Value();
  const size_t rows = static_cast<size_t>(offs[B]), A = H * N;
  const Span out = floatsNeed(info, 0, fn, "out", rows * A, "rows·H·N");
  const Span r = floatsNeed(info, 1, fn, "r", rows * A, "rows·H·N");
  const Span k = floatsNeed(info, 2, fn, "k", rows * A, "rows·H·N");
  const Span v = floatsNeed(info, 3, fn, "v", rows * A, "rows·H·N");
  const Span w = floatsNeed(info, 4, fn, "w", perToken ? rows * A : A,
                            perToken ? "rows·H·N" : "H·N");
  const Span u = floatsNeed(info, 5, fn, "u", A, "H·N");
  const Span state = floatsNeed(info, 6, fn, "state", B * A * N, "B·H·N·N");
  // Written: out and state, each apart from every other array.
  const Span* read[] = {&r, &k, &v, &w, &u};
  for (const Span* in : read) {
    checkApart(env, fn, out, *in, false);
    checkApart(env, fn, state, *in, false);
  }
  checkApart(env, fn, out, state, false);
  act::wkvHeads(out.data, r.data, k.data, v.data, w.data, perToken ? A : 0, u.data, state.data,
                offs.Data(), B, H, N);
  return env.Undefined();
}

// wkv7(out, bonus, r, w, k, v, a, b, u, state, offsets, heads, headSize): offsets an
// Int32Array [B + 1] of sequence starts (0, non-decreasing); rows = offsets[B].
Napi::Value Wkv7(const Napi::CallbackInfo& info) {
  const char* fn = "wkv7";
  Napi::Env env = info.Env();
  const Napi::Value ov = info[10];
  if (!ov.IsTypedArray() || ov.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    failType(env, "wkv7: offsets must be an Int32Array");
  }
  const Napi::Int32Array offsets = ov.As<Napi::Int32Array>();
  if (offsets.ElementLength() == 0 || offsets[0] != 0) {
    failRange(env, "wkv7: offsets must start with 0");
  }
  const size_t B = offsets.ElementLength() - 1;
  for (size_t s = 0; s < B; s++) {
    if (offsets[s + 1] < offsets[s]) failRange(env, "wkv7: offsets must not decrease");
  }
  const size_t H = countArg(info, 11, fn, "heads"), N = countArg(info, 12, fn, "headSize");
  const size_t rows = static_cast<size_t>(offsets[B]), C = H * N;
  // Sizes far beyond any array (2^53 values) would overflow the products below.
  const double big = 9007199254740992.0;
  if (static_cast<double>(C) * N * (B + 1) > big || static_cast<double>(rows) * C > big) {
    failRange(env, "wkv7: heads, headSize and rows give arrays too large");
  }
  Span out = floatsNeed(info, 0, fn, "out", rows * C, "rows·H·N");
  Span bonus = floatsNeed(info, 1, fn, "bonus", rows * C, "rows·H·N");
  const char* names[] = {"r", "w", "k", "v", "a", "b"};
  Span in[6] = {};
  for (size_t i = 0; i < 6; i++) in[i] = floatsNeed(info, 2 + i, fn, names[i], rows * C, "rows·H·N");
  const Span u = floatsNeed(info, 8, fn, "u", C, "H·N");
  Span state = floatsNeed(info, 9, fn, "state", B * C * N, "B·H·N·N");
  // Written arrays overlap nothing else (no in-place form).
  const Span* written[] = {&out, &bonus, &state};
  for (size_t i = 0; i < 3; i++) {
    for (size_t j = i + 1; j < 3; j++) checkApart(env, fn, *written[i], *written[j], false);
    for (const Span& x : in) checkApart(env, fn, *written[i], x, false);
    checkApart(env, fn, *written[i], u, false);
  }
  act::wkv7({out.data, bonus.data, in[0].data, in[1].data, in[2].data, in[3].data, in[4].data,
             in[5].data, u.data, state.data, offsets.Data(), B, H, N});
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  act::init();
  exports.Set("prepare", Napi::Function::New(env, Prepare));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("bytes", Napi::Function::New(env, Bytes));
  exports.Set("gemv", Napi::Function::New(env, Gemv));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("sparseGemv", Napi::Function::New(env, SparseGemv));
  exports.Set("readBandwidth", Napi::Function::New(env, ReadBandwidth));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("setSimd", Napi::Function::New(env, SetSimd));
  exports.Set("useBlas", Napi::Function::New(env, UseBlas));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("timeShiftMix", Napi::Function::New(env, TimeShiftMix));
  exports.Set("sigmoid", Napi::Function::New(env, Sigmoid));
  exports.Set("reluSquare", Napi::Function::New(env, ReluSquare));
  exports.Set("wkv4", Napi::Function::New(env, Wkv4));
  exports.Set("wkvHeads", Napi::Function::New(env, WkvHeads));
  exports.Set("wkv7", Napi::Function::New(env, Wkv7));
  exports.Set("threshold", Napi::Function::New(env, Threshold));
  exports.Set("countZeros", Napi::Function::New(env, CountZeros));
  act::train::addExports(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(actsparse, Init)
