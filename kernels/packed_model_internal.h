// kernels/packed_model_internal.h — what the .qnnx files of kernels/ share
// (packed_model.cpp, packed_model_io.cpp, packed_epilogue.cpp,
// packed_runner.cpp, packed_cnn.cpp). An implementation detail: not installed.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/packed_model.h"

namespace qnn::kernels::pmodel {

// ---- limits: what validate() accepts and the file reader refuses beyond --------
constexpr int64_t kMaxDim = int64_t(1) << 26;      // per layer in / out
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxPixelsIn = ((int64_t(1) << 24) - 1) / 255;  // V = sum (2p-255) w exact in float
constexpr int kRealInputBits = 32;              // dense_levels input_bits for real input (no quantizer)

inline std::string dims_str(const PackedLayer& L) {
  return std::string(layer_type_name(L.type)) + " " + std::to_string(L.in) + " -> " + std::to_string(L.out);
}

inline int64_t words64(int64_t K) { return (K + 63) / 64; }  // file row: ceil(K / 64) words

// Exact integer sums for a dense_levels layer with levels input: every
// partial sum of u . v below 2^24, as layers/quant uniform_linear_exact
// requires of the training product (so it took this path there too).
inline bool levels_exact(int64_t in, int in_bits, int wbits) {
  return double(in) * double((1 << in_bits) - 1) * double((1 << wbits) - 1) < 16777216.0;
}

// Largest |V| of a binary layer's integer dot product.
inline int64_t vmax_of(const PackedLayer& L) {
  const int64_t K = L.type == LayerType::conv_binary ? L.geom.taps() : L.in;
  return L.input == LayerInput::pixels8 ? 255 * K : K;
}

// A dense_levels layer with +-1 weights (1 bit, range 1: Sign) on a float
// input (real or levels_f32) is, in training, QuantLinear's sign_weight path
// (no input quantizer, a +-1 weight quantizer): sign_weight_linear, whose
// product is kernels::pm1_gemm's table look-up with its own summation order.
// The runner must sum in that order too (not sgemm's) to match it bit for bit.
inline bool pm1_product(const PackedLayer& L) {
  return L.type == LayerType::dense_levels && L.wbits == 1 && L.w_alpha == 1.0f &&
         (L.input == LayerInput::real || L.input == LayerInput::levels_f32);
}

// ---- the runner's epilogues (packed_epilogue.cpp) --------------------------------
// Per-ISA epilogue pieces of a binary layer's blocked product:
//   combine         V[j] = base - 2 * sum_i 2^i pop_i[j], j < nc (abits planes
//                   of one output row, pop_i = p + i * ldp; base = (2^abits - 1) * K)
//   threshold_pack  bit j of out[j / 64] = 1 (-1) unless (V[j] >= T[j]) XOR F[j],
//                   j < cnt; whole words (bits >= cnt of the last word are 0)
struct EpilogueFns {
  void (*combine)(const int32_t* p, int64_t ldp, int abits, int64_t nc, int32_t base, int32_t* V);
  void (*threshold_pack)(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt, uint64_t* out);
};
EpilogueFns epilogue_fns();  // the active ISA's (kernels/isa.h)

// z = y (+ bias); affine; relu for columns [n, n + cnt) of one row of a
// binary layer, y = float(V) (/ 256 for pixels8).
void float_epilogue_binary(const PackedLayer& L, const int32_t* V, int64_t n, int64_t cnt, float* out);
// The same on float rows Y [rows x L.out] (in place; affine and relu only).
void float_epilogue_f32(const PackedLayer& L, float* Y, int64_t rows);
// dense_levels with levels input: Y = s * Y (+ bias), uniform_linear's rounding.
void scale_bias_f32(const PackedLayer& L, float s, float* Y, int64_t rows);
// One binary layer, rows [0, M) x output columns [n0, n1) (n0 a multiple of
// 64), epilogue fused: packed signs into P (row stride packed_words(out)) or
// floats into Fo (row stride out). serial: no OpenMP region of its own (the
// small-batch path calls it from inside one).
void binary_layer(const PackedLayer& L, const uint64_t* A, int64_t M, int64_t n0, int64_t n1, uint64_t* P,
                  float* Fo, const EpilogueFns& fn, bool serial);

// The threshold_pack variants themselves (tests hold them to each other).
void threshold_pack_scalar(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt, uint64_t* out);
void threshold_pack_avx2(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt, uint64_t* out);

// ---- the runner's binary convolutions with a sign epilogue (packed_cnn.cpp) -------
// Integer product of a conv on 8-bit pixels (v = 2p - 255, 0 in padded taps):
//   V[p * O + o] = sum_{t < T} X[p * T + t] * S[t * OP + o]   for p < P, o < O,
// X the integer patch rows, S the +-1 weights (S[t * OP + o] = 0 for o >= O,
// OP = round_up(O, 8)). Exact int32 (the caller keeps |V| < 2^24).
using PixelRowsFn = void (*)(const int32_t* X, int64_t P, int64_t T, const int32_t* S, int64_t O, int64_t OP,
                             int32_t* V);
void pixel_rows_scalar(const int32_t* X, int64_t P, int64_t T, const int32_t* S, int64_t O, int64_t OP, int32_t* V);
void pixel_rows_avx2(const int32_t* X, int64_t P, int64_t T, const int32_t* S, int64_t O, int64_t OP, int32_t* V);
PixelRowsFn pixel_rows_fn();  // the active ISA's

// One image's pixel-major integer sums V [H * W rows of O] -> k x k max-pool
// (stride s; k = s = 1: none) -> sign by threshold (+1 iff (max >= T[o]) XOR
// F[o]) -> packed NHWC: out, OH * OW pixels of pixel_words(O) words (bits >= O
// zero). Max first, then one comparison: "max >= t" is the OR of the window's
// "V >= t", so this is the threshold-then-pool order's result too.
void sign_pool_rows(const int32_t* V, int64_t H, int64_t W, int64_t O, int64_t k, int64_t s, const int32_t* T,
                    const uint8_t* F, uint64_t* out, const EpilogueFns& fn);

}  // namespace qnn::kernels::pmodel
