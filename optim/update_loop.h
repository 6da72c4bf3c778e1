// optim/update_loop.h — (internal) how the optimizers' elementwise loops run.
//
// An update is one pass over a parameter: memory-bound, so it is worth
// splitting across cores only when the tensor is large (thread start-up costs
// a few microseconds; a bias vector of 4096 floats is done before that).
// `simd` lets the compiler vectorise the loop body even inside OpenMP.
#pragma once

#include <cstdint>

namespace qnn::detail {
// Tensors at least this large are updated by all OpenMP threads.
inline constexpr int64_t kOptimParallelMin = 1 << 15;
}  // namespace qnn::detail

#define QNN_OPTIM_PRAGMA(x) _Pragma(#x)
#define QNN_OPTIM_PARALLEL_FOR(n) \
  QNN_OPTIM_PRAGMA(omp parallel for simd schedule(static) if (parallel: (n) >= ::qnn::detail::kOptimParallelMin))
