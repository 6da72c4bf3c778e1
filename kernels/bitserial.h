// kernels/bitserial.h — bit-serial GEMM for k-bit x m-bit quantized operands.
//
// Values. A k-bit symmetric uniform quantizer (docs/design.md §3) has n = 2^k
// levels on [-alpha, alpha]: value = alpha * v / L with L = 2^k - 1 and v an
// odd integer in {-L, ..., -1, 1, ..., L}. The level index c = (v + L) / 2 is
// in [0, L]. With c_i the bits of c and s_i = 2*c_i - 1 in {-1, +1}:
//     v = sum_{i<k} 2^i * s_i
// so the k "bit planes" s_i are ±1 vectors, packed with the ordinary
// convention of kernels/bitpack.h (bit 1 = -1, i.e. the packed bit of plane i
// is 1 exactly when bit i of c is 0), and
//     dot(v_a, v_b) = sum_{i,j} 2^(i+j) * (K - 2 * popcount(a_i XOR b_j)),
// exact in integers (the offsets of the symmetric alphabet are already in
// the ±1 planes). k = 1 is exactly the binary case (v = ±1).
//
// Layout of a plane-packed matrix ("row-interleaved planes"): rows x bits
// packed rows of stride packed_words(K); plane i of row r starts at word
//     (r * bits + i) * packed_words(K).
// With bits = 1 it is identical to pack_rows' layout. Pads are 0 (bitpack.h).
//
// The GEMM fuses all plane pairs in one pass: the XNOR micro-kernel runs on
// plane rows (so each loaded A/B vector is reused across the planes of the
// tile), and the epilogue combines the abits*bbits popcounts of an output
// with their weights 2^(i+j). Same ISA dispatch, blocking and OpenMP as
// xnor_gemm.h. bits must be in [1, 16]. Errors: std::invalid_argument.
#pragma once
#include <cstdint>

#include "kernels/bitpack.h"
#include "kernels/isa.h"

namespace qnn::kernels {

// Words of a plane-packed [rows x K] matrix: rows * bits * packed_words(K).
int64_t plane_packed_words(int64_t rows, int64_t K, int bits);

// v: [rows x K] row-major (dense, stride K) odd integers with |v| <= 2^bits - 1
// (checked; a violation throws). out: plane_packed_words(rows, K, bits) words.
void pack_planes(const int32_t* v, int64_t rows, int64_t K, int bits, uint64_t* out);

// Inverse of pack_planes: writes the odd integers v into v[r * K + k].
void unpack_planes(const uint64_t* P, int64_t rows, int64_t K, int bits, int32_t* v);

// Quantize and plane-pack floats in one pass: x is [rows x K] with row stride
// ldx; level index c = round((clip(x, -alpha, alpha) + alpha) * L / (2*alpha))
// (round half away from zero, evaluated in float in this order; NaN counts as
// 0), i.e. the quantizer of docs/design.md §3; the packed value is v = 2c - L, so x is
// represented as alpha * v / L. Passing already-quantized values packs them
// exactly. alpha must be finite and > 0.
void quantize_pack_planes(const float* x, int64_t rows, int64_t K, int64_t ldx, int bits,
                          float alpha, uint64_t* out);

// C[m*ldc + n] = sum_k va[m][k] * vb[n][k]  (odd-integer dot products), for
// A = plane-packed [M x K] with abits planes and B = plane-packed [N x K] with
// bbits planes (B = weights [out x in]; C = A * B^T). Throws if
// (2^abits - 1) * (2^bbits - 1) * K could overflow int32.
void bitserial_gemm_i32(const uint64_t* Ap, int abits, const uint64_t* Bp, int bbits, int64_t M,
                        int64_t N, int64_t K, int32_t* C, int64_t ldc);

// C[m*ldc + n] = col_scale[n] * dot[m][n] + col_bias[n] (nullptr: 1 and 0),
// dot accumulated exactly in int64 and converted to float once. For real
// values use col_scale[n] = (alpha_a / La) * (alpha_b / Lb) (* any per-channel
// weight scale).
void bitserial_gemm_f32(const uint64_t* Ap, int abits, const uint64_t* Bp, int bbits, int64_t M,
                        int64_t N, int64_t K, float* C, int64_t ldc, const float* col_scale,
                        const float* col_bias);

}  // namespace qnn::kernels
