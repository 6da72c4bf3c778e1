// kernels/level_planes.h — the uniform quantizer's arithmetic on raw floats:
// its odd-integer levels, its float outputs, and its levels plane-packed for
// the bit-serial GEMM (kernels/bitserial.h layout).
//
// The quantizer is layers/quant/quantizer.h's Uniform{bits, alpha} (Sign is
// bits 1, alpha 1): with L = 2^bits - 1 it outputs alpha * v / L for the odd
// integer v, |v| <= L, with
//     (v - 1) alpha <= c L < (v + 1) alpha,   c = clip(x, -alpha, alpha)
// in exact (real) arithmetic: the decision thresholds sit at the even
// multiples of alpha / L and a value exactly on one goes up. For bits = 1 it
// is the sign rule v = x < 0 ? -1 : +1 (QuantForward::sign). Exactness is the
// point: u = c L / alpha rounded to float puts the float just below a
// negative threshold onto the even integer (x = -0.66666669 < -2/3 read as
// -1/3 at 2 bits), so the level is decided in double instead, where c L is an
// exact product (see uniform_odd_level). The functions here are that one
// computation: the quantizer (quantizer.cpp, QuantForward::uniform), the
// training framework's fused k-bit product (layers/quant/binary_linear_op.h
// uniform_linear) and the exported-model runner (kernels/packed_model.h) all
// call them, so an exported k-bit model quantizes its activations exactly as
// training did.
//
// NOT the same rounding as kernels::quantize_pack_planes (bitserial.h:
// round-half-away of (x + alpha) L / (2 alpha), the form of docs/design.md §3): the two
// differ at ties and in the last float bits of a threshold. Use these for
// anything that must match the training framework.
//
// bits must be in [1, 16] and alpha finite and > 0 (std::invalid_argument).
#pragma once
#include <cstdint>

namespace qnn::kernels {

// v[i] = the odd-integer level of x[i] (as a float).
void uniform_levels(const float* x, int64_t n, int bits, float alpha, float* v);

// q[i] = the quantizer's output for x[i]: alpha * v / L, computed as
// (alpha * v) / L (bits >= 2), or x < 0 ? -alpha : alpha (bits = 1) — the
// expressions of quantizer.cpp, so the floats are identical.
void uniform_values(const float* x, int64_t n, int bits, float alpha, float* q);

// floor(v) for |v| < 2^31 (truncate, then step down if truncation went up):
// a floor the compiler vectorises with plain SSE2 (layers/quant/vec_math.h
// re-exports it for the surrogates' arithmetic).
inline float floor_small(float v) {
  const float t = (float)(int32_t)v;
  return t - (t > v ? 1.0f : 0.0f);
}

// floor(r) for |r| < 2^31, in double; floor_small's form. The levels depend
// on this exact expression, also for NaN (truncates to INT_MIN, as
// cvttsd2si and the AVX-512 packer's cvttpd2dq do).
inline double floor_small_d(double r) {
  const double t = (double)(int32_t)r;
  return t - (t > r ? 1.0 : 0.0);
}

// The level of one value for bits >= 2, as a float odd integer: the
// definition the quantizer (layers/quant/quantizer.cpp), the level packers
// and the exported-model runner all compute (through uniform_odd_levels
// below, which returns the same values faster), so they agree bit for bit.
// n1 = L = 2^bits - 1 as a float.
//
// v = 2 floor(c L / (2 alpha)) + 1, exactly, for every float x and alpha:
//  * c L is exact in double (a 24-bit by a 16-bit significand);
//  * the quotient r = c L / (2 alpha) rounds once, and rounding cannot carry
//    it across an integer m: if r == m the division is exact, and otherwise
//    |m - r| = |2 m alpha - c L| / (2 alpha) >= ulp(c) / (2 alpha)
//    >= |r| 2^-40 (c has 24 significant bits, L < 2^16), far more than the
//    2^-53 relative error of the double division; for |r| < 1 the cases
//    m = 0 (r < 0 stays < 0: no underflow in double) and m = 1 are clear.
// NaN gives -L (the truncation of NaN is INT_MIN, then the clamp), as the
// plane packers and the exported runner also do.
inline float uniform_odd_level(float x, float a, float n1) {
  float c = x;
  c = c < -a ? -a : c;
  c = c > a ? a : c;
  const double r = ((double)c * (double)n1) / (2.0 * (double)a);
  float odd = (float)(2.0 * floor_small_d(r) + 1.0);
  odd = odd < -n1 ? -n1 : odd;  // only NaN reaches these clamps
  odd = odd > n1 ? n1 : odd;
  return odd;
}

// uniform_odd_level over x[0, n) into v, the same values, faster. Most
// values are decided by the float estimate h = (c (L / alpha)) / 2, whose
// floor is the level index: |h - c L / (2 alpha)| <= L 2^-24 (1 + 2^-20)
// when L / alpha is a normal float (two roundings, plus 2^-150 if c (L /
// alpha) is subnormal), so wherever h is at least w = L 2^-22 away from an
// integer its floor is exact. A block of kLevelBlock values holding any value
// nearer than w to an integer (a threshold; at 2 bits a fraction ~1e-6 of
// random values) is redone with uniform_odd_level's exact double arithmetic;
// NaN takes the float path and gives -L there too.
inline constexpr int64_t kLevelBlock = 256;
inline void uniform_odd_levels(const float* x, int64_t n, float a, float n1, float* v) {
  const float s = n1 / a;
  const bool estimate_ok = s >= 0x1p-126f && s <= 0x1p127f;  // normal and finite: relative error 2^-24
  const float w = n1 * 0x1p-22f;
  for (int64_t b = 0; b < n; b += kLevelBlock) {
    const int64_t e = n - b < kLevelBlock ? n - b : kLevelBlock;
    const float* xb = x + b;
    float* vb = v + b;
    int near = !estimate_ok;
    if (estimate_ok) {
#pragma omp simd reduction(| : near)
      for (int64_t i = 0; i < e; ++i) {
        float c = xb[i];
        c = c < -a ? -a : c;
        c = c > a ? a : c;
        const float h = 0.5f * (c * s);
        const float t = floor_small(h);
        const float f = h - t;  // in [0, 1); rounding here is far below the margin
        near |= (f < w) | (f > 1.0f - w);
        float odd = 2.0f * t + 1.0f;
        odd = odd < -n1 ? -n1 : odd;
        odd = odd > n1 ? n1 : odd;
        vb[i] = odd;
      }
    }
    if (near)
      for (int64_t i = 0; i < e; ++i) vb[i] = uniform_odd_level(xb[i], a, n1);
  }
}

// The quantizer's output for a known level v: (alpha * v) / L. Equal to
// uniform_values' result for any x whose level is v (for bits = 1,
// (alpha * +-1) / 1 = +-alpha exactly).
inline float level_value(int32_t v, int bits, float alpha) {
  return (alpha * float(v)) / float((1u << bits) - 1u);
}

// The step between neighbouring levels' values: alpha / L (layers' level_step).
inline float level_step(int bits, float alpha) { return alpha / float((1u << bits) - 1u); }

// x [rows x K] (dense, stride K) -> the levels, plane-packed: rows * bits *
// packed_words(K) words, plane i of row r at word (r * bits + i) *
// packed_words(K), packed bit 1 where bit i of the level index (v + L) / 2 is
// 0; pads 0 (bitserial.h, bitpack.h). Scalar / AVX-512 by kernels/isa.h,
// OpenMP over rows when large.
void pack_level_planes(const float* x, int64_t rows, int64_t K, int bits, float alpha, uint64_t* out);

}  // namespace qnn::kernels
