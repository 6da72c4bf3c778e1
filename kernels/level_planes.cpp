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

// uniform_levels without the checks (the row packers call it per 64 values).
void levels_loop(const float* x, int64_t n, int bits, float alpha, float* v) {
  if (bits == 1) {
#pragma omp parallel for simd if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) v[i] = x[i] < 0.0f ? -1.0f : 1.0f;
    return;
  }
  const float a = alpha;
  const float n1 = (float)((1u << bits) - 1u);
  const float u_scale = n1 / a;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) v[i] = uniform_odd_level(x[i], a, n1, u_scale);
}

// Levels of one row, quantized and plane-packed in one pass (layout and bit
// convention of kernels/bitserial.h: plane i of the row at o + i*W words,
// packed bit 1 where bit i of the level index c = (v + L)/2 is 0; pads 0).
// The levels are levels_loop's (the quantizer's) arithmetic, bit for bit.
void level_planes_row_scalar(const float* x, int64_t K, int bits, float alpha, uint64_t* o, int64_t W) {
  const int32_t L = (1 << bits) - 1;
  float lv[64];
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    levels_loop(x + k0, n, bits, alpha, lv);
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
QNN_TARGET_AVX512 void level_planes_row_avx512(const float* x, int64_t K, int bits, float alpha, uint64_t* o,
                                               int64_t W) {
  const float a = alpha, n1 = (float)((1u << bits) - 1u), u_scale = n1 / a;
  const __m512 va = _mm512_set1_ps(a), vna = _mm512_set1_ps(-a), vn1 = _mm512_set1_ps(n1),
               vnn1 = _mm512_set1_ps(-n1), vu = _mm512_set1_ps(u_scale), half = _mm512_set1_ps(0.5f),
               two = _mm512_set1_ps(2.0f), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  const __m512i vL = _mm512_set1_epi32((1 << bits) - 1);
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    uint64_t words[16] = {};
    for (int q = 0; q < 4; ++q) {
      const int64_t rem = n - 16 * q;
      if (rem <= 0) break;
      const __mmask16 lm = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
      __m512 v;
      if (bits == 1) {  // sign: x < 0 -> -1 (also for tiny x and -0 -> +1)
        const __m512 xv = _mm512_maskz_loadu_ps(lm, x + k0 + 16 * q);
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xv, zero, _CMP_LT_OQ), one, _mm512_set1_ps(-1.0f));
      } else {
        __m512 c = _mm512_maskz_loadu_ps(lm, x + k0 + 16 * q);
        // c = c < -a ? -a : c;  c = c > a ? a : c   (NaN stays NaN, as in the scalar code)
        c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, vna, _CMP_LT_OQ), c, vna);
        c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, va, _CMP_GT_OQ), c, va);
        const __m512 p = _mm512_mul_ps(half, _mm512_mul_ps(c, vu));
        // floor_small: truncate (NaN -> INT_MIN, like cvttss2si), step down if that went up
        __m512 t = _mm512_cvtepi32_ps(_mm512_cvttps_epi32(p));
        t = _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(t, p, _CMP_GT_OQ), t, one);
        __m512 odd = _mm512_add_ps(_mm512_mul_ps(two, t), one);
        odd = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(odd, vnn1, _CMP_LT_OQ), odd, vnn1);
        odd = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(odd, vn1, _CMP_GT_OQ), odd, vn1);
        v = odd;
      }
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
  const float u_scale = n1 / a;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) q[i] = (a * uniform_odd_level(x[i], a, n1, u_scale)) / n1;
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
