// kernels/fma_peak.cpp — the FMA-throughput probe (see fma_peak.h).
#include "kernels/fma_peak.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>
#include <stdexcept>
#include <string>

#include "kernels/simd_target.h"

namespace qnn::kernels {
namespace {

// The chains' constants: m < 1 and c > 0 keep every value in [0.5, 2) for
// any number of rounds (fixed point c / (1 - m) = 1), so no denormals or
// infinities slow one variant down.
constexpr float kM = 0.9990234375f;  // 1 - 2^-10
constexpr float kC = 0.0009765625f;  // 2^-10
float start_value(int chain, int lane) { return 0.5f + 0.03125f * (float)((chain * 16 + lane) % 32); }

// Lanes in 16s so every variant sums the same 16 x kFmaChains values in the
// same order: lane-major within a chain, chains in order.
float checksum_of(const float* v) {  // v[chain * 16 + lane]
  float s = 0;
  for (int ch = 0; ch < kFmaChains; ++ch)
    for (int l = 0; l < 16; ++l) s += v[ch * 16 + l];
  return s;
}

FmaProbe probe_scalar(int64_t iters) {
  float v[kFmaChains * 16];
  for (int ch = 0; ch < kFmaChains; ++ch)
    for (int l = 0; l < 16; ++l) v[ch * 16 + l] = start_value(ch, l);
  for (int64_t i = 0; i < iters; ++i)
    for (float& a : v) a = std::fma(a, kM, kC);
  return {2.0 * 16 * kFmaChains * (double)iters, checksum_of(v)};
}

#if QNN_X86
__attribute__((target("avx2,fma"))) FmaProbe probe_avx2(int64_t iters) {
  // The same 16 lanes per chain as the other variants: 2 x kFmaChains
  // 8-lane vectors, run in groups of 8 one after the other. 8 accumulators
  // cover two pipes of 4-cycle FMAs and, with the 2 constants, fit AVX2's 16
  // vector registers; 12 or 24 at once made GCC spill some to the stack and
  // time the store-to-load round trips instead of the FMAs.
  constexpr int V = 2 * kFmaChains, G = 8;
  static_assert(V % G == 0);
  alignas(32) float v[kFmaChains * 16];
  const __m256 m = _mm256_set1_ps(kM), c = _mm256_set1_ps(kC);
  for (int g0 = 0; g0 < V; g0 += G) {
    __m256 a[G];
    alignas(32) float init[8];
    for (int k = 0; k < G; ++k) {  // vector g0 + k = chain (g0 + k) / 2, lanes 8 * ((g0 + k) % 2) ...
      for (int l = 0; l < 8; ++l) init[l] = start_value((g0 + k) / 2, ((g0 + k) % 2) * 8 + l);
      a[k] = _mm256_load_ps(init);
    }
    for (int64_t i = 0; i < iters; ++i)
      for (int k = 0; k < G; ++k) a[k] = _mm256_fmadd_ps(a[k], m, c);
    for (int k = 0; k < G; ++k) _mm256_store_ps(v + (g0 + k) * 8, a[k]);
  }
  return {2.0 * 16 * kFmaChains * (double)iters, checksum_of(v)};
}

QNN_TARGET_AVX512 FmaProbe probe_avx512(int64_t iters) {
  __m512 a[kFmaChains];
  alignas(64) float init[16];
  for (int ch = 0; ch < kFmaChains; ++ch) {
    for (int l = 0; l < 16; ++l) init[l] = start_value(ch, l);
    a[ch] = _mm512_load_ps(init);
  }
  const __m512 m = _mm512_set1_ps(kM), c = _mm512_set1_ps(kC);
  for (int64_t i = 0; i < iters; ++i)
    for (int ch = 0; ch < kFmaChains; ++ch) a[ch] = _mm512_fmadd_ps(a[ch], m, c);
  alignas(64) float v[kFmaChains * 16];
  for (int ch = 0; ch < kFmaChains; ++ch) _mm512_store_ps(v + ch * 16, a[ch]);
  return {2.0 * 16 * kFmaChains * (double)iters, checksum_of(v)};
}
#endif

}  // namespace

FmaProbe fma_probe(Isa isa, int64_t iters) {
  if (!isa_supported(isa)) throw std::invalid_argument(std::string("fma_probe: this CPU cannot run ") + isa_name(isa));
  if (iters < 0) throw std::invalid_argument("fma_probe: iters must be >= 0");
#if QNN_X86
  if (isa == Isa::avx2 && !__builtin_cpu_supports("fma"))
    throw std::invalid_argument("fma_probe: this CPU has AVX2 but no FMA3");
#endif
#if QNN_X86
  if (isa == Isa::avx512) return probe_avx512(iters);
  if (isa == Isa::avx2) return probe_avx2(iters);
#endif
  return probe_scalar(iters);
}

FmaPeak measure_fma_peak(Isa isa, int threads, int reps) {
  auto now = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  int64_t iters = 1 << 16;
  auto all_threads = [&] {
    const double t0 = now();
    float bad = 0;
#pragma omp parallel num_threads(threads) reduction(+ : bad)
    {
      const FmaProbe p = fma_probe(isa, iters);
      bad += p.checksum != p.checksum ? 1.f : 0.f;  // NaN cannot happen; keeps the result used
    }
    if (bad != 0) throw std::runtime_error("fma probe: NaN checksum");
    return now() - t0;
  };
  for (double t = 0; t < 0.1; iters *= 2) t = all_threads();  // calibrate
  iters /= 2;
  std::vector<double> ts;
  all_threads();  // warm-up
  for (int r = 0; r < std::max(1, reps); ++r) ts.push_back(all_threads());
  std::sort(ts.begin(), ts.end());
  FmaPeak out;
  out.median_s = ts[ts.size() / 2];
  out.iters = iters;
  out.gflops = (double)threads * 2.0 * 16 * kFmaChains * (double)iters / out.median_s / 1e9;
  return out;
}

}  // namespace qnn::kernels
