// kernels/xnor_gemm.h — binary (±1) matrix products on bit-packed data.
//
// Operands follow the bit convention of kernels/bitpack.h (bit 1 = -1,
// element k at bit k%64 of word k/64, rows of packed_words(K) words, pads 0).
//   A: M packed rows of K elements   (activations, [M x K])
//   B: N packed rows of K elements   (weights as a Linear layer stores them,
//                                     [out x in] = [N x K])
// and the products are C = A * B^T:
//   dot[m][n] = sum_k a_mk * b_nk = K - 2 * popcount(A_m XOR B_n)   (exact).
//
// Implementation: a register-tiled micro-kernel (AVX-512: 3 A rows x 8 B rows
// of zmm accumulators, xor + vpopcntq + add; AVX2: 3 x 2 with a vpshufb nibble
// table; scalar: 2 x 2 with __builtin_popcountll), blocks of 48 rows x 256
// columns (L2-resident), K split in 8192-bit chunks when longer, OpenMP over
// blocks of rows *and* columns (M = 1 still runs in parallel over N). Outputs
// of 8 MiB or more are written with streaming stores. The variant comes from kernels/isa.h (QNN_KERNEL / set_isa / CPUID);
// all variants are bit-exact. Threads: kernels::set_num_threads (sgemm.h).
//
// Empty shapes are fine: M = 0 or N = 0 writes nothing, K = 0 gives dot = 0.
// Invalid arguments (negative sizes, ldc < N, null pointers with a non-empty
// output) throw std::invalid_argument.
#pragma once
#include <cstdint>

#include "kernels/bitpack.h"
#include "kernels/isa.h"

namespace qnn::kernels {

// C[m*ldc + n] = dot[m][n]   (ldc >= N).
void xnor_gemm_i32(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                   int32_t* C, int64_t ldc);

// C[m*ldc + n] = col_scale[n] * dot[m][n] + col_bias[n], computed in float.
// col_scale == nullptr means 1, col_bias == nullptr means 0.
void xnor_gemm_f32(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                   float* C, int64_t ldc, const float* col_scale, const float* col_bias);

// Fused threshold epilogue (batch norm + sign at inference), PACKED output:
//   value[m][n] = +1  iff  (dot[m][n] >= thresh[n]) XOR flip[n]   else -1,
// where flip == nullptr means all 0 and flip[n] != 0 means flip.
// Ties: dot == thresh[n] counts as ">=", so it gives +1 without flip and -1
// with flip. The comparison is exact: |dot| < 2^24 converts to float without
// rounding, and is then compared with the float thresh.
// out: M rows of packed_words(N) words, same bit convention (bit 1 = -1),
// pad bits written as 0 — ready to be the A operand of the next layer.
void xnor_gemm_sign(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                    const float* thresh, const uint8_t* flip, uint64_t* out);

// Note: this closed form rounds -b/a in real arithmetic; it can disagree with
// the float expression a*dot + b >= 0 at a boundary point. The exporter
// (layers/quant/export.cpp) therefore binary-searches the float predicate.
// Folds "y = a[n] * dot + b[n], then sign(y) with sign(0) = +1" into the
// (thresh, flip) pair of xnor_gemm_sign, exactly for integer dot (|dot| < 2^24):
//   a > 0 : +1 iff dot >= -b/a        -> thresh = ceil(-b/a),      flip = 0
//   a < 0 : +1 iff dot <= -b/a        -> thresh = floor(-b/a) + 1, flip = 1
//   a = 0 : +1 iff b >= 0             -> thresh = -inf,            flip = (b < 0)
//   a or b NaN: +1 (as NaN packs)     -> thresh = -inf,            flip = 0
// (-b/a is evaluated in double.) For batch norm after a binary product:
// a = gamma / sqrt(var + eps) * s[n], b = beta - gamma * mean / sqrt(var + eps)
// (+ a[n]/s[n] * bias[n] if the product has a bias), s[n] the weight scale.
void fold_affine_sign(int64_t N, const float* a, const float* b, float* thresh, uint8_t* flip);

}  // namespace qnn::kernels
