// tests/isa_util.h — for tests that run a kernel once per SIMD variant.
#pragma once
#include <vector>

#include "kernels/isa.h"

namespace qnn::test {

// Every variant this CPU can run (scalar always), in the order scalar, avx2, avx512.
inline std::vector<kernels::Isa> supported_isas() {
  std::vector<kernels::Isa> v;
  for (kernels::Isa i : {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512})
    if (kernels::isa_supported(i)) v.push_back(i);
  return v;
}

// Restores the best variant when a test ends (tests force variants with set_isa).
struct IsaGuard {
  ~IsaGuard() { kernels::set_isa(kernels::best_isa()); }
};

}  // namespace qnn::test
