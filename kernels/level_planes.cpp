// kernels/level_planes.cpp — the uniform quantizer's levels, values and
// plane packing (see level_planes.h). Moved here from
// layers/quant/binary_linear_op.cpp so that the exported-model runner
// (kernels/packed_model.cpp) can use the very same code as training.
//
// Compiled without trapping math so the elementwise loops vectorise, like the
// quantizer whose arithmetic they reproduce (see layers/quant/vec_math.h; the
// project-wide -fno-trapping-math already says so, this keeps the file
// self-describing). First in the file, before any #include.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "kernels/level_planes.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/bitpack.h"
#include "kernels/isa.h"
#include "kernels/simd_target.h"

namespace qnn::kernels {

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elementwise loops: below this one thread is faster

void check_geometry(const char* who, int bits, float alpha) {
  if (bits < 1 || bits > 16)
    throw std::invalid_argument(std::string(who) + ": bits must be 1..16, got " + std::to_string(bits));
  if (!std::isfinite(alpha) || !(alpha > 0.0f))
    throw std::invalid_argument(std::string(who) + ": alpha must be finite and > 0, got " + std::to_string(alpha));
}

// The levels of x[0, n) on the calling thread: uniform_odd_levels (or the
// sign rule for bits = 1), as every caller computes them. The row packers
// call it per 64 values. Never inlined: inlined into the AVX-512 packer it
// is compiled for that target, and GCC's code for it there gave other levels
// for some of the tests' awkward inputs (bits 2-16 at K = 1 and 64: found
// when the AVX-512 path first ran on AVX-512 hardware, Zen 5; the likely
// culprit is floor_small's (float)(int32_t)v, which AVX-512 can compile to a
// rounding instruction that treats NaN and values beyond 2^31 otherwise).
// One out-of-line copy is the quantizer's arithmetic for every caller.
__attribute__((noinline)) void levels_serial(const float* x, int64_t n, int bits, float alpha, float* v) {
  if (bits == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = x[i] < 0.0f ? -1.0f : 1.0f;
    return;
  }
  uniform_odd_levels(x, n, alpha, (float)((1u << bits) - 1u), v);
}

// uniform_levels without the checks: levels_serial split across threads when large.
void levels_loop(const float* x, int64_t n, int bits, float alpha, float* v) {
  if (n <= kParallelMin) return levels_serial(x, n, bits, alpha, v);
  const int64_t chunk = 4096;
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += chunk) levels_serial(x + i0, std::min(chunk, n - i0), bits, alpha, v + i0);
}

// Levels of one row, quantized and plane-packed in one pass (layout and bit
// convention of kernels/bitserial.h: plane i of the row at o + i*W words,
// packed bit 1 where bit i of the level index c = (v + L)/2 is 0; pads 0).
// The levels are levels_serial's (the quantizer's) arithmetic, bit for bit.
void level_planes_row_scalar(const float* x, int64_t K, int bits, float alpha, uint64_t* o, int64_t W) {
  const int32_t L = (1 << bits) - 1;
  float lv[64];
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    levels_serial(x + k0, n, bits, alpha, lv);
    uint64_t words[16] = {};
    for (int64_t e = 0; e < n; ++e) {
      const uint32_t c = uint32_t((int32_t)lv[e] + L) >> 1;
      for (int i = 0; i < bits; ++i) words[i] |= uint64_t(((c >> i) & 1) ^ 1) << e;
    }
    for (int i = 0; i < bits; ++i) o[i * W + w] = words[i];
  }
  for (; w < W; ++w)
    for (int i = 0; i < bits; ++i) o[i * W + w] = 0;
}

#if QNN_X86
// The same, with the plane bits gathered by AVX-512 mask tests. The levels
// come from levels_serial, the scalar packer's (and the quantizer's) very
// expression, so the two packers cannot disagree.
QNN_TARGET_AVX512 void level_planes_row_avx512(const float* x, int64_t K, int bits, float alpha, uint64_t* o,
                                               int64_t W) {
  const __m512i vL = _mm512_set1_epi32((1 << bits) - 1);
  float lv[64];
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    levels_serial(x + k0, n, bits, alpha, lv);
    uint64_t words[16] = {};
    for (int q = 0; q < 4; ++q) {
      const int64_t rem = n - 16 * q;
      if (rem <= 0) break;
      const __mmask16 lm = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(lm, lv + 16 * q);
      // level index c = (v + L) / 2; plane i holds NOT bit i of c
      const __m512i ci = _mm512_srli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(v), vL), 1);
      for (int i = 0; i < bits; ++i)
        words[i] |= uint64_t(_mm512_mask_testn_epi32_mask(lm, ci, _mm512_set1_epi32(1 << i))) << (16 * q);
    }
    for (int i = 0; i < bits; ++i) o[i * W + w] = words[i];
  }
  for (; w < W; ++w)
    for (int i = 0; i < bits; ++i) o[i * W + w] = 0;
}
#endif

}  // namespace

void uniform_levels(const float* x, int64_t n, int bits, float alpha, float* v) {
  check_geometry("uniform_levels", bits, alpha);
  if (n < 0) throw std::invalid_argument("uniform_levels: negative size");
  if (n > 0 && (!x || !v)) throw std::invalid_argument("uniform_levels: null pointer");
  levels_loop(x, n, bits, alpha, v);
}

void uniform_values(const float* x, int64_t n, int bits, float alpha, float* q) {
  check_geometry("uniform_values", bits, alpha);
  if (n < 0) throw std::invalid_argument("uniform_values: negative size");
  if (n > 0 && (!x || !q)) throw std::invalid_argument("uniform_values: null pointer");
  const float a = alpha;
  if (bits == 1) {  // QuantForward::sign with levels +-a
#pragma omp parallel for simd if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) q[i] = x[i] < 0.0f ? -a : a;
    return;
  }
  const float n1 = (float)((1u << bits) - 1u);
  const int64_t blocks = (n + kLevelBlock - 1) / kLevelBlock;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {  // levels in place, then (a v) / L
    const int64_t i0 = b * kLevelBlock, e = std::min(kLevelBlock, n - i0);
    float* qb = q + i0;
    float lv[kLevelBlock];
    uniform_odd_levels(x + i0, e, a, n1, lv);
#pragma omp simd
    for (int64_t i = 0; i < e; ++i) qb[i] = (a * lv[i]) / n1;
  }
}

void pack_level_planes(const float* x, int64_t rows, int64_t K, int bits, float alpha, uint64_t* out) {
  check_geometry("pack_level_planes", bits, alpha);
  if (rows < 0 || K < 0) throw std::invalid_argument("pack_level_planes: negative size");
  const int64_t W = packed_words(K);
  if (rows == 0 || W == 0) return;
  if (!x || !out) throw std::invalid_argument("pack_level_planes: null pointer");
  auto fn = level_planes_row_scalar;
#if QNN_X86
  if (active_isa() == Isa::avx512) fn = level_planes_row_avx512;
#endif
#pragma omp parallel for schedule(static) if (rows * K >= (int64_t(1) << 17) && rows > 1)
  for (int64_t r = 0; r < rows; ++r) fn(x + r * K, K, bits, alpha, out + r * bits * W, W);
}

}  // namespace qnn::kernels
