# Built by scripts/build-native.mjs (which sets the OpenBLAS variables), not by npm's
# implicit `node-gyp rebuild`. No -march flag: AVX2/AVX-512 code is selected per
# function at run time (kernels_avx*.cc), so the addon runs on any x86-64 CPU.
{
  "variables": {
    "openblas%": "0",
    "openblas_include%": "",
    "openblas_libdir%": "",
  },
  "targets": [
    {
      "target_name": "actsparse",
      "sources": [
        "addon.cc",
        "blas.cc",
        "elementwise.cc",
        "elementwise_avx2.cc",
        "elementwise_avx512.cc",
        "elementwise_scalar.cc",
        "kernels_avx2.cc",
        "kernels_avx512.cc",
        "kernels_scalar.cc",
        "memory.cc",
        "ops.cc",
        "pool.cc",
        "train_gemm.cc",
        "wkv56.cc",
        "wkv7.cc",
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=gnu++17", "-fexceptions"],
      "ldflags": ["-pthread"],
      "libraries": ["-ldl"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      },
      "conditions": [
        [
          "openblas==1",
          {
            "defines": [
              "ACTSPARSE_OPENBLAS",
              "ACTSPARSE_OPENBLAS_LIBDIR=\"<(openblas_libdir)\"",
            ],
            "include_dirs": ["<(openblas_include)"],
          },
        ],
      ],
    },
  ],
}
