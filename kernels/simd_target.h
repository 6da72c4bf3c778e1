// kernels/simd_target.h — internal: per-function target attributes.
// One binary runs everywhere: only functions marked with these attributes use
// AVX2 / AVX-512 instructions, and they are called only after isa_supported().
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#define QNN_X86 1
// GCC 12's AVX-512 headers self-initialise "undefined" vectors (__Y = __Y),
// which -Wextra reports at every inlined intrinsic; the code is correct.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#define QNN_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define QNN_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt")))
#define QNN_TARGET_POPCNT __attribute__((target("popcnt")))
#else
#define QNN_X86 0
#endif
