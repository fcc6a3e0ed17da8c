// The vector Mamba kernels (mamba_simd.h) compiled for AVX-512F (16 floats), selected at run time
// with the matrix kernels; the same source as the other vector table.
#include "mamba.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cstddef>
#include <cstdint>

// Every function below is compiled for avx512 (the standard headers above are not).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#endif

namespace act {
namespace mamba_avx512 {
namespace {
#define ACT_VEC_BYTES 64
#include "mamba_simd.h"
#undef ACT_VEC_BYTES
}  // namespace
}  // namespace mamba_avx512
}  // namespace act

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace act {
namespace {
const MambaKernels kTable = {"avx512", mamba_avx512::conv1dSimd, mamba_avx512::selectiveScanSimd,
                             mamba_avx512::ssdSimd};
}  // namespace

const MambaKernels* mambaAvx512() { return &kTable; }

}  // namespace act

#else
namespace act {
const MambaKernels* mambaAvx512() { return nullptr; }
}  // namespace act
#endif
