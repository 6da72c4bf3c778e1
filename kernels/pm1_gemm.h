// kernels/pm1_gemm.h — real x (+-1) matrix products by table look-up: the
// backward pass of binary layers.
//
//   C[I x K]  (=|+=)  A[I x J] · S[J x K],     A real, every S_jk = +1 or -1
//
// Where it is used. A binary layer y = sign(x) sign(W)^T has two such products
// in its backward pass (layers/quant/binary_linear_op.h):
//   dx = g · sign(W)      A = g [N x out],   S = sign(W) [out x in]
//   dW = g^T · sign(x)    A = g^T [out x N], S = sign(x) [N x in]
// The forward product is XNOR-popcount (kernels/xnor_gemm.h) because both
// operands are +-1; here only S is, and g is real, so popcount cannot help.
// sgemm can, at 2 flops per multiply-add; the trick below does better.
//
// THE TRICK. Take j four at a time. For a fixed row i and group g, the sum
//     t = (s0 a0 + s1 a1) + (s2 a2 + s3 a3)       (a_r = A[i][4g+r], s_r = +-1)
// can take only 16 values, one per sign pattern (s0..s3). So build, once per
// (i, g), a table of those 16 sums; then for every column k the 4-bit pattern
// of S[4g..4g+3][k] indexes the table. AVX-512's vpermps looks up 16 lanes in
// a 16-entry table in one instruction: one look-up and one add replace four
// multiply-adds. On 2 Zen 4 cores the products above run 2-3x faster than
// OpenBLAS sgemm (numbers: docs/results-log.md, apps/bench_kernels).
//
// THE SUMMATION ORDER is part of the contract, because training must give the
// same bits with the kernels on and off (the off path computes it with the
// plain loops of pm1_gemm_reference):
//     u_r  = s_r * a_r                  exact (a sign flip); u_r = +0 for 4g+r >= J
//     t_g  = (u_0 + u_1) + (u_2 + u_3)
//     acc  = (((+0 + t_0) + t_1) + ...) + t_{G-1},      G = ceil(J / 4)
//     C_ik = acc                (accumulate = false)
//     C_ik = C_ik + acc         (accumulate = true)
// Every variant (scalar, AVX2, AVX-512) and the reference give identical bits
// (tests/test_pm1_gemm.cpp). It is a different order from sgemm's, so results
// differ from sgemm's in the last bits, like any two BLAS libraries.
//
// OPERANDS. A element (i, j) is A[i * a_i + j * a_j]: row-major A is
// (a_i, a_j) = (lda, 1); the transpose of a row-major g [J x I] is (1, ldg).
// S is given as J packed rows of K elements (kernels/bitpack.h: bit 1 = -1,
// row stride packed_words(K)), which is how binary layers keep sign(W) and
// sign(x) anyway. C is row-major with row stride ldc >= K.
// The SIMD variant is kernels/isa.h's choice. OpenMP over blocks of C (rows,
// else columns); a long J is reduced in chunks of groups, so that the tables
// of a chunk stay in L1 and its nibbles in L2 (see pm1_gemm.cpp).
#pragma once
#include <cstdint>

namespace qnn::kernels {

// C (=|+=) A · S with S from packed rows (see above). I, J, K >= 0; J = 0
// gives acc = +0. Throws std::invalid_argument on bad sizes or strides.
void pm1_gemm(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j, const uint64_t* S_packed,
              float* C, int64_t ldc, bool accumulate);

// The same product with S given by its COLUMNS: K packed rows of J elements,
// packed row k = (S[0][k], ..., S[J-1][k]). A weight W [out x in] kept as
// packed rows of sign(W) is such an S for y = x · sign(W)^T (J = in,
// K = out): the forward product of a BNN's first layer, whose input is real.
void pm1_gemm_cols(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j,
                   const uint64_t* S_cols_packed, float* C, int64_t ldc, bool accumulate);

// The same product with some S entries 0 instead of +-1: the columns fall in
// blocks of Kq (column k is in block q = k / Kq, Q = ceil(K / Kq) blocks),
// and S_jk = 0 wherever bit q of row j of `zeros` is set (J rows of
// ceil(Q / 64) words, bit q % 64 of word q / 64); elsewhere S_jk is the packed sign. A zero entry's
// term is u = +-0, so the result equals pm1_gemm_reference's with those S
// entries 0.0f, bit for bit. The weight gradient of a zero-padded binary
// convolution: a tap (block q) that falls on padding for pixel j is 0.
void pm1_gemm_zeros(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j,
                    const uint64_t* S_packed, int64_t Kq, const uint64_t* zeros, float* C, int64_t ldc,
                    bool accumulate);

// The definition, as plain loops over a float S [J x K] (row stride lds):
// u = S_jk * A_ij, then the grouping above. For S of +-1 values it equals
// pm1_gemm bit for bit; for other S it is simply a matrix product with this
// summation order (the autograd op built on it is gradient-checked that way).
void pm1_gemm_reference(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j, const float* S,
                        int64_t lds, float* C, int64_t ldc, bool accumulate);

namespace detail {
// Internals shared with the SIMD file (not API).
// A PANEL is ir <= 4 rows x kw columns of C, reduced over G groups:
//   acc[r][k] = (acc_in ? acc_in[r * ldc + k] : +0)
//   for g < G:  acc[r][k] = acc[r][k] + T[goff[g] + 16 r + code(nib[g * ldn + k])]
//   out[r * ldc + k] = add_out ? out[r * ldc + k] + acc[r][k] : acc[r][k]
// so a long reduction can be cut into chunks of groups with the same
// sequential sum (acc_in = the previous chunk's out). Tables: 16 floats per
// (group, row), entry p = t_g for sign pattern p (bit r of p set = s_r is -1);
// a group's 4 row tables are consecutive, at T + goff[g]. Nibbles: the
// pattern of S[4g..4g+3][k], ldn a multiple of 64 and >= (last column) + 16,
// so a panel may read 16 bytes past its last column. Pattern codes: the scalar
// and AVX-512 panels read the 4-bit pattern p; the AVX2 panel reads
// pm1_signed_code(p) (below), since t_p = -t_{15-p} exactly (every u_r flips
// sign, and rounding is symmetric; only the sign of a zero t can differ, and
// a +-0 term never changes a sum that starts at +0 — see the contract).
using Pm1PanelFn = void (*)(const float* T, const int64_t* goff, int64_t ir, int64_t G, const uint8_t* nib,
                            int64_t ldn, int64_t kw, const float* acc_in, float* out, int64_t ldc, bool add_out);
void pm1_panel_scalar(const float*, const int64_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                      const float*, float*, int64_t, bool);
void pm1_panel_avx2(const float*, const int64_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                    const float*, float*, int64_t, bool);
void pm1_panel_avx512(const float*, const int64_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                      const float*, float*, int64_t, bool);
// The AVX2 code of pattern p: p < 8 as is; else 0x80 | (p ^ 7): low 3 bits
// index the 8-entry half table t_0..t_7 (t_p = -t_{p ^ 15}), bit 7 (the sign
// of the byte, sign-extended) says "negate". Applied to 8 patterns per word.
inline uint64_t pm1_signed_code8(uint64_t patterns) {
  const uint64_t f = (patterns >> 3) & 0x0101010101010101ull;
  return patterns ^ (f * 0x87u);
}
}  // namespace detail

}  // namespace qnn::kernels
