// kernels/small_gemm.h — a few rows times a fixed, pre-packed float matrix:
// the per-step products of a recurrent layer.
//
//   C[M x N] (=|+=) A[M x K] · B[K x N]
//
// Why not sgemm: an LSTM step multiplies [32..64 x 100] by [100 x 400], 300
// times per sequence, with the same B every time. OpenBLAS re-packs B on
// every call (a third of the time at these sizes) and its threading costs
// more than the product; here B is packed once (pack_small_b) and each call
// runs single-threaded on the caller's rows (the LSTM runs one thread per
// block of rows).
//
// THE SUMMATION ORDER is part of the contract: each output is ONE fused
// multiply-add chain over k in order,
//     acc = accumulate ? C_mn : +0;   acc = fma(A_mk, B_kn, acc) for k = 0 .. K-1;   C_mn = acc
// so the bits do not depend on M, on how rows are split between threads, or
// on the SIMD variant (AVX2+FMA micro-kernel of 6 rows x 16 columns; the
// scalar variant is the definition, std::fma in that order, and is what
// kernels/isa.h's QNN_KERNEL=scalar selects). It differs from sgemm's order
// in the last bits, like any two BLAS libraries. Tests: tests/test_small_gemm.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/bitpack.h"  // AlignedAllocator

namespace qnn::kernels {

// B packed in panels of 16 columns: panel p holds, for k = 0 .. K-1, the 16
// values B[k][16p .. 16p+15] (columns >= N are 0), 64-byte aligned.
struct SmallGemmB {
  int64_t K = 0, N = 0;
  std::vector<float, AlignedAllocator<float>> panels;
};

// Packs B [K x N] (trans = false: element (k, n) at B[k * ldb + n]) or the
// transpose of a stored [N x K] matrix (trans = true: (k, n) at B[n * ldb + k],
// e.g. a weight [out x in] for y = x W^T). Reuses out's storage.
void pack_small_b(const float* B, int64_t K, int64_t N, int64_t ldb, bool trans, SmallGemmB& out);

// C[m * ldc + n] (=|+=) sum_k A[m * lda + k] * B(k, n) in the order above.
// M >= 0; lda >= K, ldc >= N. Throws std::invalid_argument on bad strides.
void small_gemm(const float* A, int64_t lda, int64_t M, const SmallGemmB& B, float* C, int64_t ldc, bool accumulate);

// The definition (std::fma loops), for tests.
void small_gemm_reference(const float* A, int64_t lda, int64_t M, const SmallGemmB& B, float* C, int64_t ldc,
                          bool accumulate);

// XNOR-popcount for short rows: kernels/xnor_gemm.h's xnor_gemm_i32 (the
// same operands, bit convention and integers: C[m*ldc + n] = K - 2 popcount(
// A_m XOR B_n)), reading only the ceil(K / 64) words that hold elements
// instead of the whole 512-bit-padded rows: at K = 100 (an LSTM's hidden
// state) that is 2 words of 8. Single-threaded (the caller runs it per block
// of rows); popcnt instruction where the CPU has it.
void xnor_small_i32(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K, int32_t* C, int64_t ldc);

}  // namespace qnn::kernels
