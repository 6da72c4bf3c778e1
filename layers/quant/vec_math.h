// layers/quant/vec_math.h — (internal) small math helpers written so that the
// compiler can vectorise the loops that call them with plain SSE2.
//
// std::floor, std::tanh and std::exp are library calls the compiler does not
// vectorise for the baseline x86-64 target (no SSE4.1 roundps; glibc's vector
// math entry points are only declared under -ffast-math). The quantizers run
// on every weight and activation at every step, so their loops use these.
// Two rules make those loops vectorise with GCC:
//  - only unconditional arithmetic and single, un-nested selects
//    (c = c < lo ? lo : c), not std::min/max (they return references);
//  - the .cpp files that hold the loops start, before any #include, with
//      #if defined(__GNUC__) && !defined(__clang__)
//      #pragma GCC optimize("no-trapping-math")
//      #endif
//    GCC's default -ftrapping-math refuses to if-convert a select whose
//    comparison might raise a floating-point exception flag. qnn never reads
//    those flags. (First in the file, so every function in it has the same
//    options and inlining between them stays allowed.)
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "kernels/level_planes.h"

namespace qnn::detail {

// floor(v) for |v| < 2^31: kernels/level_planes.h's (the quantizer's levels
// and the exported-model runner share that one definition).
using kernels::floor_small;

// e^x for x <= 0 (clamped at -87, where e^x ~ 1.6e-38 is still a normal
// float). 2^(x log2 e) with the exponent split as n + f, f in [-1/2, 1/2],
// 2^f by its degree-6 Taylor polynomial: relative error < 2e-7.
inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.4426950408889634f;
  const float n = floor_small(t + 0.5f);
  const float f = t - n;
  float p = 1.5403530393381606e-4f;
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;  // 2^n, n in [-126, 0]
  return p * std::bit_cast<float>(bits);
}

// sech^2(z) = 1 - tanh^2(z) = 4 e^{-2|z|} / (1 + e^{-2|z|})^2, accurate where
// 1 - tanh^2 computed from tanh would lose digits (large |z|).
inline float sech2(float z) {
  const float a = std::fabs(z);
  const float e = exp_nonpos(-2.0f * a);
  const float d = 1.0f + e;
  return 4.0f * e / (d * d);
}

// A 32-bit integer mixer (Wellons' "lowbias32"): bijective, good avalanche,
// only 32-bit multiplies so a loop over it vectorises.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

}  // namespace qnn::detail
