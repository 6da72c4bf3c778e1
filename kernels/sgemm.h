// kernels/sgemm.h — the one door to full-precision matrix products.
//
// Every float GEMM in qnn goes through here, so swapping BLAS or counting
// FLOPs touches one file. Row-major throughout (C-style arrays):
//   C[M x N] = alpha * op(A) * op(B) + beta * C
//   op(A) is A[M x K] (trans_a=false) or A[K x M] read transposed (trans_a=true)
//   op(B) is B[K x N] (trans_b=false) or B[N x K] read transposed (trans_b=true)
// lda/ldb/ldc are row strides of the matrices as stored.
#pragma once
#include <cstdint>

namespace qnn::kernels {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
           float beta, float* C, int64_t ldc);

// Threads used by OpenBLAS *and* our OpenMP loops (the OpenMP build of
// OpenBLAS uses the OpenMP runtime, so one setting governs both).
void set_num_threads(int n);
int num_threads();
const char* blas_info();  // OpenBLAS config + core name, for run headers

}  // namespace qnn::kernels
