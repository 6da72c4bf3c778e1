// kernels/level_planes.h — the uniform quantizer's arithmetic on raw floats:
// its odd-integer levels, its float outputs, and its levels plane-packed for
// the bit-serial GEMM (kernels/bitserial.h layout).
//
// The quantizer is layers/quant/quantizer.h's Uniform{bits, alpha} (Sign is
// bits 1, alpha 1): with L = 2^bits - 1 it outputs alpha * v / L for an odd
// integer v, |v| <= L, chosen as (quantizer.cpp, QuantForward::uniform)
//     c = clip(x, -alpha, alpha)             (NaN stays NaN)
//     v = 2 floor((c * (L / alpha)) / 2) + 1, clamped to [-L, L]
// in float, in exactly that order; for bits = 1 it is the sign rule
// v = x < 0 ? -1 : +1 (QuantForward::sign). The functions here reproduce that
// bit for bit: the training framework's fused k-bit product
// (layers/quant/binary_linear_op.h uniform_linear) and the exported-model
// runner (kernels/packed_model.h) both call them, so an exported k-bit model
// quantizes its activations exactly as training did.
//
// NOT the same rounding as kernels::quantize_pack_planes (bitserial.h:
// round-half-away of (x + alpha) L / (2 alpha), DESIGN.md's form): the two
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
// a floor the compiler vectorises with plain SSE2. The quantizer's levels
// depend on this exact expression (layers/quant/vec_math.h re-exports it).
inline float floor_small(float v) {
  const float t = (float)(int32_t)v;
  return t - (t > v ? 1.0f : 0.0f);
}

// The level of one value for bits >= 2, as a float odd integer: the one
// expression the quantizer (layers/quant/quantizer.cpp), the level packers
// and the exported-model runner all use, so they agree bit for bit.
// n1 = 2^bits - 1 and u_scale = n1 / a, both as floats.
inline float uniform_odd_level(float x, float a, float n1, float u_scale) {
  float c = x;
  c = c < -a ? -a : c;
  c = c > a ? a : c;
  float odd = 2.0f * floor_small(0.5f * (c * u_scale)) + 1.0f;
  odd = odd < -n1 ? -n1 : odd;
  odd = odd > n1 ? n1 : odd;
  return odd;
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
