#include "kernels/sgemm.h"

#include <cblas.h>
#include <cpuid.h>
#include <omp.h>

#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qnn::kernels {

namespace {
constexpr int64_t kSplitMaxRows = 256;           // "short": a training batch
constexpr int64_t kSplitMinColsPerThread = 256;  // "wide": enough columns per thread
}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
           float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS leaves C untouched for K=0 only when beta=1; be explicit
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  // Short-and-wide products (a batch of 100 rows times a 2048-wide layer) are
  // where OpenBLAS's own threading is weakest here: a stand-alone cblas_sgemm
  // test on 2 threads measured 100 x 2048 x 2048 at 161 GFLOP/s, against 171
  // when each thread runs a single-threaded sgemm on its half of the columns
  // (and 5 % shorter training steps, mnist_mlp --profile-steps). So: split N
  // into one column panel per thread.
  // Inside an OpenMP parallel region the OpenMP build of OpenBLAS runs
  // single-threaded, which is what we want. Like OpenBLAS's own threading,
  // the split is fixed by the thread count, so a run at a fixed --threads is
  // reproducible; a different thread count may round differently (OpenBLAS's
  // edge kernels for a ragged panel sum in another order).
  const int T = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (T > 1 && M <= kSplitMaxRows && N >= kSplitMinColsPerThread * T) {
    const int64_t panel = ((N + T - 1) / T + 15) / 16 * 16;  // multiple of 16 columns: whole SIMD tiles
#pragma omp parallel num_threads(T)
    {
      const int64_t n0 = std::min<int64_t>(N, omp_get_thread_num() * panel);
      const int64_t n1 = std::min<int64_t>(N, n0 + panel);
      if (n1 > n0) {
        const float* Bp = trans_b ? B + n0 * ldb : B + n0;
        cblas_sgemm(CblasRowMajor, ta, tb, (blasint)M, (blasint)(n1 - n0), (blasint)K, alpha, A, (blasint)lda, Bp,
                    (blasint)ldb, beta, C + n0, (blasint)ldc);
      }
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, ta, tb, (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
              beta, C, (blasint)ldc);
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

const char* blas_info() {
  static char buf[320];
  const char* how = std::getenv("QNN_BLAS_CORE_SELECTED") ? " (chosen by qnn, see kernels/sgemm.h)" : "";
  snprintf(buf, sizeof buf, "%s | core=%s%s", openblas_get_config(), openblas_get_corename(), how);
  return buf;
}

CpuFacts cpu_facts() {
  CpuFacts c;
  __builtin_cpu_init();
  c.amd = __builtin_cpu_is("amd");
  c.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  c.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  unsigned a = 0, b = 0, cx = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &cx, &d)) {
    const int base = (int)((a >> 8) & 0xF);
    c.family = base == 0xF ? base + (int)((a >> 20) & 0xFF) : base;
  }
  return c;
}

const char* blas_core_to_restart_with(const char* loaded_core, const CpuFacts& cpu, const char* coretype_env,
                                      const char* qnn_env) {
  if (coretype_env) return nullptr;                                 // the user's choice wins
  if (qnn_env && std::strcmp(qnn_env, "keep") == 0) return nullptr;  // opted out
  if (!loaded_core || !cpu.amd || !cpu.avx2_fma) return nullptr;
  const bool avx512_kernels = strcasecmp(loaded_core, "cooperlake") == 0 || strcasecmp(loaded_core, "skylakex") == 0 ||
                              strcasecmp(loaded_core, "sapphirerapids") == 0;
  if (cpu.family == 0x19 && avx512_kernels) return "Haswell";  // Zen 4: 512-bit FMAs in two halves
  if (cpu.family >= 0x1A && cpu.avx512 && !avx512_kernels) return "SkylakeX";  // Zen 5: full-width 512-bit FMAs
  return nullptr;
}

void select_blas_core(char** argv) {
  if (!argv || !argv[0]) return;
  const char* core = blas_core_to_restart_with(openblas_get_corename(), cpu_facts(), std::getenv("OPENBLAS_CORETYPE"),
                                               std::getenv("QNN_BLAS_CORE"));
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  setenv("QNN_BLAS_CORE_SELECTED", "1", 1);
  std::fflush(nullptr);
  execv("/proc/self/exe", argv);
  // Still here: the restart failed. Run on with the kernels already loaded.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("QNN_BLAS_CORE_SELECTED");
}

}  // namespace qnn::kernels
