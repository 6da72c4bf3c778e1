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

// Picks OpenBLAS's fastest kernels for this CPU, once, at the top of main().
//
// OpenBLAS (DYNAMIC_ARCH) chooses its kernels when the library loads, from
// the CPU model or the OPENBLAS_CORETYPE variable. 0.3.21 chooses badly on
// the two AMD generations with AVX-512:
//   - Zen 4 (family 0x19): it loads its Cooperlake AVX-512 kernels, but Zen 4
//     runs a 512-bit FMA as two 256-bit halves and the Haswell (AVX2) kernels
//     are faster on our shapes (2 threads: 100x2048x2048 4.2 ms vs 5.2-5.7 ms;
//     2048x2048x100 4.4 vs 4.9 ms; docs/results-log.md);
//   - Zen 5 (family 0x1A and later): it does not know the family and loads
//     Haswell, but Zen 5 has full-width 512-bit FMAs and the SkylakeX kernels
//     train the CIFAR CNN in full precision 1.6x faster (308 vs 196 img/s,
//     docs/results-log.md "Session 9").
// Because the choice is made at load time, the only way to change it is to
// set the variable and start again: on such a CPU this sets
// OPENBLAS_CORETYPE and re-executes the program once (/proc/self/exe, same
// arguments). Does nothing when OPENBLAS_CORETYPE is already set (your choice
// wins), when QNN_BLAS_CORE=keep, on other CPUs, or if the restart fails
// (then the program just goes on).
void select_blas_core(char** argv);

// What select_blas_core knows of the CPU.
struct CpuFacts {
  bool amd = false;
  int family = 0;         // CPUID family (base + extended): 0x19 Zen 3/4, 0x1A Zen 5
  bool avx2_fma = false;
  bool avx512 = false;    // AVX-512 F, DQ, BW and VL (what OpenBLAS's SkylakeX kernels use)
};
CpuFacts cpu_facts();

// The decision alone (testable): the OPENBLAS_CORETYPE to restart with
// ("Haswell" or "SkylakeX"), or nullptr to keep the kernels OpenBLAS loaded.
// `coretype_env` / `qnn_env` are the values of OPENBLAS_CORETYPE /
// QNN_BLAS_CORE (nullptr when unset).
const char* blas_core_to_restart_with(const char* loaded_core, const CpuFacts& cpu, const char* coretype_env,
                                      const char* qnn_env);

}  // namespace qnn::kernels
