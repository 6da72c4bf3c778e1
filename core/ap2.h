// core/ap2.h — AP2: approximate power of two (Courbariaux et al., BinaryNet §1.3).
//
//   AP2(x) = sign(x) * 2^round(log2|x|)
//
// Multiplying by AP2(x) is a bit shift in fixed point, which is why shift-based
// batch norm and shift-based AdaMax use it. Safe at the edges: AP2(0) = 0,
// denormals and tiny values round to the smallest normal power of two they are
// closest to in log2, infinities and NaN pass through.
#pragma once

#include <cmath>

namespace qnn {

inline float ap2(float x) {
  if (x == 0.0f || !std::isfinite(x)) return x;
  const float a = std::fabs(x);
  int e = (int)std::lround(std::log2((double)a));
  if (e < -126) e = -126;  // stay a normal float
  if (e > 127) e = 127;
  const float p = std::ldexp(1.0f, e);
  return x < 0 ? -p : p;
}

}  // namespace qnn
