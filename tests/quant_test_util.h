// tests/quant_test_util.h — shared by the quantizer and quantized-layer tests
// (test_quant.cpp, test_quant_layers.cpp): random input vectors.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace qnn::test {

// n draws of rng.uniform(lo, hi).
inline std::vector<float> randv(int64_t n, float lo, float hi, Rng& rng) {
  std::vector<float> v(n);
  for (auto& e : v) e = rng.uniform(lo, hi);
  return v;
}

}  // namespace qnn::test
