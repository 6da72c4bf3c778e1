// kernels/small_gemm.cpp — see small_gemm.h.
#include "kernels/small_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/isa.h"
#include "kernels/simd_target.h"

namespace qnn::kernels {

namespace {
constexpr int64_t kPanel = 16;  // columns per panel: two AVX2 registers
constexpr int kRows = 6;        // rows per micro-tile: 12 accumulators + 2 B + 1 A of 16 registers

inline float b_at(const SmallGemmB& B, int64_t k, int64_t n) {
  return B.panels[(size_t)((n / kPanel) * B.K * kPanel + k * kPanel + n % kPanel)];
}

void check(const SmallGemmB& B, int64_t lda, int64_t M, int64_t ldc) {
  if (M < 0 || lda < B.K || ldc < B.N)
    throw std::invalid_argument("small_gemm: M = " + std::to_string(M) + ", lda = " + std::to_string(lda) +
                                " (K = " + std::to_string(B.K) + "), ldc = " + std::to_string(ldc) +
                                " (N = " + std::to_string(B.N) + ")");
}

#if QNN_X86
#define QNN_TARGET_FMA __attribute__((target("avx2,fma")))

// MR rows x one 16-column panel. Columns [0, w) of the panel are real (w <= 16).
// The accumulators are named variables, not an array: GCC keeps an array of
// __m256 on the stack here and stores it every k (measured 2x slower).
template <int MR>
QNN_TARGET_FMA inline void tile(const float* A, int64_t lda, const float* P, int64_t K, float* C, int64_t ldc,
                                int64_t w, bool accumulate) {
  alignas(32) float tmp[kRows][kPanel];
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (accumulate) {
    const float* src = C;
    int64_t ld = ldc;
    if (w < kPanel) {  // a partial panel: through a zero-padded copy
      std::memset(tmp, 0, sizeof tmp);
      for (int r = 0; r < MR; ++r) std::memcpy(tmp[r], C + r * ldc, (size_t)w * sizeof(float));
      src = tmp[0];
      ld = kPanel;
    }
#define QNN_LOAD(r)                                  \
  if constexpr (MR > r) {                            \
    c##r##0 = _mm256_loadu_ps(src + r * ld);         \
    c##r##1 = _mm256_loadu_ps(src + r * ld + 8);     \
  }
    QNN_LOAD(0) QNN_LOAD(1) QNN_LOAD(2) QNN_LOAD(3) QNN_LOAD(4) QNN_LOAD(5)
#undef QNN_LOAD
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_load_ps(P + k * kPanel), b1 = _mm256_load_ps(P + k * kPanel + 8);
#define QNN_FMA(r)                                             \
  if constexpr (MR > r) {                                      \
    const __m256 a = _mm256_broadcast_ss(A + r * lda + k);     \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                 \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);                 \
  }
    QNN_FMA(0) QNN_FMA(1) QNN_FMA(2) QNN_FMA(3) QNN_FMA(4) QNN_FMA(5)
#undef QNN_FMA
  }
  float* dst = w == kPanel ? C : tmp[0];
  const int64_t ld = w == kPanel ? ldc : kPanel;
#define QNN_STORE(r)                               \
  if constexpr (MR > r) {                          \
    _mm256_storeu_ps(dst + r * ld, c##r##0);       \
    _mm256_storeu_ps(dst + r * ld + 8, c##r##1);   \
  }
  QNN_STORE(0) QNN_STORE(1) QNN_STORE(2) QNN_STORE(3) QNN_STORE(4) QNN_STORE(5)
#undef QNN_STORE
  if (w < kPanel)
    for (int r = 0; r < MR; ++r) std::memcpy(C + r * ldc, tmp[r], (size_t)w * sizeof(float));
}

template <int MR>
QNN_TARGET_FMA void rows_fma(const float* A, int64_t lda, const SmallGemmB& B, float* C, int64_t ldc,
                             bool accumulate) {
  const int64_t panels = (B.N + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p)
    tile<MR>(A, lda, B.panels.data() + p * B.K * kPanel, B.K, C + p * kPanel, ldc,
             std::min<int64_t>(kPanel, B.N - p * kPanel), accumulate);
}

QNN_TARGET_FMA void small_gemm_fma(const float* A, int64_t lda, int64_t M, const SmallGemmB& B, float* C,
                                   int64_t ldc, bool accumulate) {
  int64_t m = 0;
  for (; m + kRows <= M; m += kRows) rows_fma<kRows>(A + m * lda, lda, B, C + m * ldc, ldc, accumulate);
  const float* a = A + m * lda;
  float* c = C + m * ldc;
  switch (M - m) {
    case 5: rows_fma<5>(a, lda, B, c, ldc, accumulate); break;
    case 4: rows_fma<4>(a, lda, B, c, ldc, accumulate); break;
    case 3: rows_fma<3>(a, lda, B, c, ldc, accumulate); break;
    case 2: rows_fma<2>(a, lda, B, c, ldc, accumulate); break;
    case 1: rows_fma<1>(a, lda, B, c, ldc, accumulate); break;
    default: break;
  }
}

bool fma_usable() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok && active_isa() != Isa::scalar;
}
#endif
template <int W>  // words per row actually used (0: any, given by w)
inline void xnor_rows(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K, int64_t stride,
                      int64_t w, int32_t* C, int64_t ldc) {
  const int64_t words = W ? W : w;
  for (int64_t m = 0; m < M; ++m) {
    const uint64_t* a = A + m * stride;
    int32_t* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) {
      const uint64_t* b = B + n * stride;
      int64_t pop = 0;
      for (int64_t k = 0; k < words; ++k) pop += __builtin_popcountll(a[k] ^ b[k]);
      c[n] = (int32_t)(K - 2 * pop);
    }
  }
}

void xnor_small_plain(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K, int32_t* C,
                      int64_t ldc) {
  const int64_t w = (K + 63) / 64, stride = packed_words(K);
  if (w == 2) return xnor_rows<2>(A, B, M, N, K, stride, w, C, ldc);
  xnor_rows<0>(A, B, M, N, K, stride, w, C, ldc);
}
#if QNN_X86
QNN_TARGET_POPCNT void xnor_small_popcnt(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                                         int32_t* C, int64_t ldc) {
  const int64_t w = (K + 63) / 64, stride = packed_words(K);
  if (w == 1) return xnor_rows<1>(A, B, M, N, K, stride, w, C, ldc);
  if (w == 2) return xnor_rows<2>(A, B, M, N, K, stride, w, C, ldc);
  xnor_rows<0>(A, B, M, N, K, stride, w, C, ldc);
}
#endif
}  // namespace

void xnor_small_i32(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K, int32_t* C, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0 || ldc < N || ((!A || !B) && M > 0 && N > 0 && K > 0) || (!C && M > 0 && N > 0))
    throw std::invalid_argument("xnor_small_i32: M = " + std::to_string(M) + ", N = " + std::to_string(N) +
                                ", K = " + std::to_string(K) + ", ldc = " + std::to_string(ldc));
  if (M == 0 || N == 0) return;
#if QNN_X86
  static const bool popcnt = __builtin_cpu_supports("popcnt");
  if (popcnt && active_isa() != Isa::scalar) return xnor_small_popcnt(A, B, M, N, K, C, ldc);
#endif
  xnor_small_plain(A, B, M, N, K, C, ldc);
}

void pack_small_b(const float* B, int64_t K, int64_t N, int64_t ldb, bool trans, SmallGemmB& out) {
  if (K < 0 || N < 0 || ldb < (trans ? K : N))
    throw std::invalid_argument("pack_small_b: K = " + std::to_string(K) + ", N = " + std::to_string(N) +
                                ", ldb = " + std::to_string(ldb));
  const int64_t panels = (N + kPanel - 1) / kPanel;
  out.K = K;
  out.N = N;
  out.panels.assign((size_t)(panels * K * kPanel), 0.0f);
  for (int64_t p = 0; p < panels; ++p) {
    float* P = out.panels.data() + p * K * kPanel;
    const int64_t w = std::min<int64_t>(kPanel, N - p * kPanel);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < w; ++j) {
        const int64_t n = p * kPanel + j;
        P[k * kPanel + j] = trans ? B[n * ldb + k] : B[k * ldb + n];
      }
  }
}

void small_gemm_reference(const float* A, int64_t lda, int64_t M, const SmallGemmB& B, float* C, int64_t ldc,
                          bool accumulate) {
  check(B, lda, M, ldc);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < B.N; ++n) {
      float acc = accumulate ? C[m * ldc + n] : 0.0f;
      for (int64_t k = 0; k < B.K; ++k) acc = std::fma(A[m * lda + k], b_at(B, k, n), acc);
      C[m * ldc + n] = acc;
    }
}

void small_gemm(const float* A, int64_t lda, int64_t M, const SmallGemmB& B, float* C, int64_t ldc, bool accumulate) {
  check(B, lda, M, ldc);
  if (M == 0 || B.N == 0) return;
#if QNN_X86
  if (fma_usable()) return small_gemm_fma(A, lda, M, B, C, ldc, accumulate);
#endif
  small_gemm_reference(A, lda, M, B, C, ldc, accumulate);
}

}  // namespace qnn::kernels
