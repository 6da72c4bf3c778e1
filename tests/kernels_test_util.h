// tests/kernels_test_util.h — shared by the bit-packing and bit-serial kernel
// tests (test_kernels.cpp, test_kernels_bitserial.cpp): the K values every
// GEMM runs over, and a check that packed rows keep their padding bits zero.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/bitpack.h"

namespace qnn::test {

inline const std::vector<int64_t> kKs = {1, 63, 64, 65, 511, 784, 1000};

// Are the bits at element index >= K of every packed row (rows of
// kernels::packed_words(K) words) zero?
inline bool pads_zero(const uint64_t* p, int64_t rows, int64_t K) {
  const int64_t W = kernels::packed_words(K);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < W; ++w) {
      uint64_t mask = 0;  // bits at element index >= K
      const int64_t first = w * 64;
      if (first >= K) mask = ~uint64_t(0);
      else if (K - first < 64) mask = ~uint64_t(0) << (K - first);
      if (p[r * W + w] & mask) return false;
    }
  return true;
}

}  // namespace qnn::test
