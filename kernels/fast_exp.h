// kernels/fast_exp.h — e^x for x <= 0 as branch-free float arithmetic, so the
// loops that call it vectorise with plain SSE2 (std::exp is a library call
// GCC does not vectorise for the baseline x86-64 target).
//
// One definition for its two users: the fused LSTM's gate nonlinearities
// (core/ops_rnn.cpp) and the quantizers' surrogate gradients
// (layers/quant/vec_math.h, sech2). The calling loops' files disable
// -ftrapping-math (see layers/quant/vec_math.h) so selects if-convert.
#pragma once

#include <bit>
#include <cstdint>

namespace qnn::kernels {

// e^x for x <= 0, clamped at -87 (e^-87 ~ 1.6e-38 is still a normal float):
// 2^(x log2 e) with the exponent split as n + f, n = round(t) by the
// 1.5 * 2^23 trick (adding it leaves no fraction bits: round to nearest, ties
// to even; needs the default rounding mode and no -ffast-math reassociation),
// f in [-1/2, 1/2], 2^f by its degree-6 Taylor polynomial; relative error < 2e-7.
inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.4426950408889634f;
  const float n = (t + 12582912.0f) - 12582912.0f;
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

}  // namespace qnn::kernels
