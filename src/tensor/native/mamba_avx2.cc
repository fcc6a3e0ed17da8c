// The vector Mamba kernels (mamba_simd.h) compiled for AVX2 + FMA (8 floats), selected at run time
// with the matrix kernels; the same source as the other vector table.
#include "mamba.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cstddef>
#include <cstdint>

// Every function below is compiled for avx2 (the standard headers above are not).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace act {
namespace mamba_avx2 {
namespace {
#define ACT_VEC_BYTES 32
#include "mamba_simd.h"
#undef ACT_VEC_BYTES
}  // namespace
}  // namespace mamba_avx2
}  // namespace act

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace act {
namespace {
const MambaKernels kTable = {"avx2", mamba_avx2::conv1dSimd, mamba_avx2::selectiveScanSimd,
                             mamba_avx2::ssdSimd};
}  // namespace

const MambaKernels* mambaAvx2() { return &kTable; }

}  // namespace act

#else
namespace act {
const MambaKernels* mambaAvx2() { return nullptr; }
}  // namespace act
#endif
