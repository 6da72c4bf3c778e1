// kernels/fma_peak.h — how many float multiply-adds one core retires per
// second: the denominator of a "fraction of the FMA peak" figure, measured
// rather than computed from a clock a VM may not publish.
//
//   FmaProbe p = fma_probe(Isa::avx512, 1 << 24);   // on each thread, timed by the caller
//   peak GFLOP/s = p.flops / seconds / 1e9
//
// Each variant runs kFmaChains independent chains a <- a * m + c per vector
// lane (enough chains to cover the FMA latency of two pipes), so the loop is
// bound by FMA throughput alone. Every variant computes the same fused
// recurrence, so the checksums agree bit for bit (tested), which is also what
// keeps the compiler from deleting the loop.
#pragma once
#include <cstdint>

#include "kernels/isa.h"

namespace qnn::kernels {

inline constexpr int kFmaChains = 12;

struct FmaProbe {
  double flops = 0;     // 2 per lane per FMA
  float checksum = 0;   // sum of the chains' final values (lane by lane, then chain by chain)
};

// `iters` rounds of kFmaChains vector FMAs with `isa`'s widest float vector
// (avx512: 16 lanes, avx2: 8, scalar: 16 lanes of std::fma). Throws
// std::invalid_argument if this CPU cannot run `isa`.
FmaProbe fma_probe(Isa isa, int64_t iters);

// The measured peak of `threads` cores: every thread runs fma_probe(isa) at
// once, the round count doubled until one run takes 0.1 s, then the median
// of `reps` runs (flops of all threads over the wall time). The denominator
// of the benchmarks' "fraction of the FMA peak" figures.
struct FmaPeak {
  double gflops = 0;    // all threads
  double median_s = 0;  // one run
  int64_t iters = 0;    // rounds per thread in a run
};
FmaPeak measure_fma_peak(Isa isa, int threads, int reps);

}  // namespace qnn::kernels
