// apps/common/bench_util.h — what the benchmark programs (bench_cnn,
// bench_bits) share: a steady clock in seconds, and batch-norm statistics of
// a plausible trained model for random-weight timings.
#pragma once

#include <chrono>

#include "core/rng.h"
#include "layers/batchnorm.h"
#include "layers/module.h"

namespace qnn::app {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Random, seeded running statistics and affine parameters for every batch
// norm of m: a folded sign threshold then lands inside the sums' range, as it
// would in a trained model (speed does not depend on the values otherwise).
inline void random_bn(Module& m, Rng& rng) {
  if (auto* bn = dynamic_cast<BatchNorm*>(&m)) {
    for (int64_t c = 0; c < bn->channels(); ++c) {
      bn->running_mean.data()[c] = rng.normal() * 2.0f;
      bn->running_var.data()[c] = 1.0f + rng.uniform(0.0f, 8.0f);
      bn->weight.data()[c] = rng.normal();
      bn->bias.data()[c] = rng.normal() * 0.5f;
    }
  }
  for (auto& [n, c] : m.children()) random_bn(*c, rng);
}

}  // namespace qnn::app
