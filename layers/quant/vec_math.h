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

#include <cmath>
#include <cstdint>

#include "kernels/fast_exp.h"
#include "kernels/level_planes.h"

namespace qnn::detail {

// floor(v) for |v| < 2^31: kernels/level_planes.h's (the quantizer's levels
// and the exported-model runner share that one definition).
using kernels::floor_small;

// e^x for x <= 0: kernels/fast_exp.h's (the fused LSTM shares that one definition).
using kernels::exp_nonpos;

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
