// kernels/xnor_gemm_scalar.cpp — portable popcount block kernel.
//
// 2 x 2 tile of (A row, B row) pairs with __builtin_popcountll. On x86 CPUs
// with the POPCNT instruction (all since ~2008) a copy compiled with
// target("popcnt") is used; otherwise the compiler's generic bit-count code.
#include <algorithm>

#include "kernels/simd_target.h"
#include "kernels/xnor_internal.h"

namespace qnn::kernels::detail {

namespace {

#define QNN_SCALAR_BLOCK_BODY                                                          \
  for (int64_t i0 = 0; i0 < ma; i0 += 2) {                                             \
    const int64_t mr = std::min<int64_t>(2, ma - i0);                                  \
    for (int64_t j0 = 0; j0 < nb; j0 += 2) {                                           \
      const int64_t nr = std::min<int64_t>(2, nb - j0);                                \
      const uint64_t* a0 = A + i0 * lda;                                            \
      const uint64_t* a1 = A + (i0 + mr - 1) * lda; /* duplicate row on edges */    \
      const uint64_t* b0 = B + j0 * ldb;                                            \
      const uint64_t* b1 = B + (j0 + nr - 1) * ldb;                                 \
      int64_t c00 = 0, c01 = 0, c10 = 0, c11 = 0;                                      \
      for (int64_t w = 0; w < W; ++w) {                                                \
        const uint64_t x0 = a0[w], x1 = a1[w], y0 = b0[w], y1 = b1[w];                 \
        c00 += __builtin_popcountll(x0 ^ y0);                                          \
        c01 += __builtin_popcountll(x0 ^ y1);                                          \
        c10 += __builtin_popcountll(x1 ^ y0);                                          \
        c11 += __builtin_popcountll(x1 ^ y1);                                          \
      }                                                                                \
      const int64_t c[2][2] = {{c00, c01}, {c10, c11}};                                \
      for (int64_t i = 0; i < mr; ++i)                                                 \
        for (int64_t j = 0; j < nr; ++j) {                                             \
          int32_t& p = P[(i0 + i) * ldp + j0 + j];                                     \
          p = accumulate ? p + int32_t(c[i][j]) : int32_t(c[i][j]);                    \
        }                                                                              \
    }                                                                                  \
  }

void block_generic(const uint64_t* A, int64_t ma, int64_t lda, const uint64_t* B, int64_t nb,
                   int64_t ldb, int64_t W, int32_t* P, int64_t ldp, bool accumulate) {
  QNN_SCALAR_BLOCK_BODY
}

#if QNN_X86
QNN_TARGET_POPCNT void block_popcnt(const uint64_t* A, int64_t ma, int64_t lda,
                                    const uint64_t* B, int64_t nb, int64_t ldb, int64_t W,
                                    int32_t* P, int64_t ldp, bool accumulate) {
  QNN_SCALAR_BLOCK_BODY
}
#endif

}  // namespace

void pop_block_scalar(const uint64_t* A, int64_t ma, int64_t lda, const uint64_t* B, int64_t nb,
                      int64_t ldb, int64_t W, int32_t* P, int64_t ldp, bool accumulate) {
#if QNN_X86
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  if (has_popcnt) return block_popcnt(A, ma, lda, B, nb, ldb, W, P, ldp, accumulate);
#endif
  block_generic(A, ma, lda, B, nb, ldb, W, P, ldp, accumulate);
}

void sign_row_scalar(const int32_t* p, const int32_t* pt, const uint64_t* flipw, int64_t n,
                     uint64_t* out) {
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    const int64_t cnt = std::min<int64_t>(64, n - j0);
    uint64_t ge = 0;
    for (int64_t j = 0; j < cnt; ++j) ge |= uint64_t(p[j0 + j] <= pt[j0 + j]) << j;
    const uint64_t valid = cnt == 64 ? ~uint64_t(0) : (uint64_t(1) << cnt) - 1;
    out[j0 / 64] = ~(ge ^ flipw[j0 / 64]) & valid;
  }
}

void store_i32_scalar(const int32_t* p, int64_t n, int32_t K, int32_t* c, bool) {
  for (int64_t j = 0; j < n; ++j) c[j] = K - 2 * p[j];
}

void store_f32_scalar(const int32_t* p, int64_t n, int32_t K, const float* scale,
                      const float* bias, float* c, bool) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = scale ? scale[j] : 1.0f, b = bias ? bias[j] : 0.0f;
    c[j] = s * float(K - 2 * p[j]) + b;
  }
}

}  // namespace qnn::kernels::detail
