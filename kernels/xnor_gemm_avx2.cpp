// kernels/xnor_gemm_avx2.cpp — AVX2 popcount block kernel.
//
// AVX2 has no vector popcount: each byte's popcount is the sum of two 4-bit
// look-ups (vpshufb into a 16-entry table), accumulated as bytes for at most
// 31 steps (31 * 8 = 248 < 256, no overflow), then widened with vpsadbw.
// Micro-kernel: MR x NR = 3 x 2 tile of (A row, B row) pairs, byte
// accumulators in registers (16 ymm: 6 accumulators + 3 A rows + B + table,
// mask and temporaries). It is ALU-bound (8 vector ops per 256-bit step and
// pair), so the tile shape matters little; 3 x 2 measured best on Zen 4.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/simd_target.h"
#include "kernels/xnor_internal.h"

namespace qnn::kernels::detail {

#if QNN_X86
namespace {

#ifndef QNN_AVX2_MR
#define QNN_AVX2_MR 3
#endif
#ifndef QNN_AVX2_NR
#define QNN_AVX2_NR 2
#endif
constexpr int MR = QNN_AVX2_MR;
constexpr int NR = QNN_AVX2_NR;
constexpr int64_t kMaxByteSteps = 31;  // 256-bit steps before byte counters could overflow

template <int mr, int nr>
QNN_TARGET_AVX2 void tile(const uint64_t* A, int64_t lda, const uint64_t* B, int64_t ldb, int64_t W,
                          int32_t* P, int64_t ldp, bool accumulate) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i total[mr * nr];  // 4 x 64-bit partial sums per pair
#pragma GCC unroll 16
  for (int t = 0; t < mr * nr; ++t) total[t] = zero;
  for (int64_t w0 = 0; w0 < W; w0 += 4 * kMaxByteSteps) {
    const int64_t w1 = std::min(W, w0 + 4 * kMaxByteSteps);
    __m256i c[mr * nr];
#pragma GCC unroll 16
    for (int t = 0; t < mr * nr; ++t) c[t] = zero;
    for (int64_t w = w0; w < w1; w += 4) {
      __m256i a[mr];
#pragma GCC unroll 8
      for (int i = 0; i < mr; ++i)
        a[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A + i * lda + w));
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + j * ldb + w));
#pragma GCC unroll 8
        for (int i = 0; i < mr; ++i) {
          const __m256i x = _mm256_xor_si256(a[i], b);
          const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low4));
          const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low4));
          c[i * nr + j] = _mm256_add_epi8(c[i * nr + j], _mm256_add_epi8(lo, hi));
        }
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < mr * nr; ++t) total[t] = _mm256_add_epi64(total[t], _mm256_sad_epu8(c[t], zero));
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      const __m256i t = total[i * nr + j];
      const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
      const int32_t v = int32_t(_mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1));
      int32_t& p = P[i * ldp + j];
      p = accumulate ? p + v : v;
    }
}

using TileFn = void (*)(const uint64_t*, int64_t, const uint64_t*, int64_t, int64_t, int32_t*,
                       int64_t, bool);

template <int mr, int... nrs>
constexpr auto row_table(std::integer_sequence<int, nrs...>) {
  return std::array<TileFn, sizeof...(nrs)>{&tile<mr, nrs + 1>...};
}
template <int... mrs>
constexpr auto make_table(std::integer_sequence<int, mrs...>) {
  return std::array<std::array<TileFn, NR>, sizeof...(mrs)>{
      row_table<mrs + 1>(std::make_integer_sequence<int, NR>{})...};
}
const auto kTiles = make_table(std::make_integer_sequence<int, MR>{});

}  // namespace

void pop_block_avx2(const uint64_t* A, int64_t ma, int64_t lda, const uint64_t* B, int64_t nb,
                    int64_t ldb, int64_t W, int32_t* P, int64_t ldp, bool accumulate) {
  for (int64_t i0 = 0; i0 < ma; i0 += MR) {
    const int mr = int(std::min<int64_t>(MR, ma - i0));
    for (int64_t j0 = 0; j0 < nb; j0 += NR) {
      const int nr = int(std::min<int64_t>(NR, nb - j0));
      kTiles[mr - 1][nr - 1](A + i0 * lda, lda, B + j0 * ldb, ldb, W, P + i0 * ldp + j0, ldp,
                             accumulate);
    }
  }
}

// ---- output helpers (see xnor_internal.h) ----------------------------------
QNN_TARGET_AVX2 void store_i32_avx2(const int32_t* p, int64_t n, int32_t K, int32_t* c, bool stream) {
  const __m256i kk = _mm256_set1_epi32(K);
  int64_t j = 0;
  if (stream) {
    for (; j < n && (reinterpret_cast<uintptr_t>(c + j) & 31) != 0; ++j) c[j] = K - 2 * p[j];
    for (; j + 8 <= n; j += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j));
      _mm256_stream_si256(reinterpret_cast<__m256i*>(c + j), _mm256_sub_epi32(kk, _mm256_add_epi32(v, v)));
    }
  } else {
    for (; j + 8 <= n; j += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + j), _mm256_sub_epi32(kk, _mm256_add_epi32(v, v)));
    }
  }
  for (; j < n; ++j) c[j] = K - 2 * p[j];
}

QNN_TARGET_AVX2 void store_f32_avx2(const int32_t* p, int64_t n, int32_t K, const float* scale,
                           const float* bias, float* c, bool stream) {
  const __m256i kk = _mm256_set1_epi32(K);
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  auto tail = [&](int64_t j) {
    const float s = scale ? scale[j] : 1.0f, b = bias ? bias[j] : 0.0f;
    c[j] = s * float(K - 2 * p[j]) + b;
  };
  int64_t j = 0;
  if (stream)
    for (; j < n && (reinterpret_cast<uintptr_t>(c + j) & 31) != 0; ++j) tail(j);
  for (; j + 8 <= n; j += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j));
    const __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(kk, _mm256_add_epi32(v, v)));
    const __m256 s = scale ? _mm256_loadu_ps(scale + j) : one;
    const __m256 b = bias ? _mm256_loadu_ps(bias + j) : zero;
    const __m256 r = _mm256_add_ps(_mm256_mul_ps(s, d), b);  // no FMA: same rounding as scalar
    if (stream)
      _mm256_stream_ps(c + j, r);
    else
      _mm256_storeu_ps(c + j, r);
  }
  for (; j < n; ++j) tail(j);
}

// Sign rows (xnor_internal.h): 8 "p <= pt" comparisons per step
// (NOT p > pt, signed), their movemask is the next 8 bits of the word.
QNN_TARGET_AVX2 void sign_row_avx2(const int32_t* p, const int32_t* pt, const uint64_t* flipw, int64_t n,
                                   uint64_t* out) {
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    const int64_t cnt = std::min<int64_t>(64, n - j0);
    uint64_t ge = 0;
    int64_t j = 0;
    for (; j + 8 <= cnt; j += 8) {
      const __m256i vp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j0 + j));
      const __m256i vt = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pt + j0 + j));
      const uint32_t gt = uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(vp, vt))));
      ge |= uint64_t(~gt & 0xFFu) << j;
    }
    for (; j < cnt; ++j) ge |= uint64_t(p[j0 + j] <= pt[j0 + j]) << j;
    const uint64_t valid = cnt == 64 ? ~uint64_t(0) : (uint64_t(1) << cnt) - 1;
    out[j0 / 64] = ~(ge ^ flipw[j0 / 64]) & valid;
  }
}

#else
void sign_row_avx2(const int32_t*, const int32_t*, const uint64_t*, int64_t, uint64_t*) {}
void pop_block_avx2(const uint64_t*, int64_t, int64_t, const uint64_t*, int64_t, int64_t, int64_t,
                    int32_t*, int64_t, bool) {}
void store_i32_avx2(const int32_t*, int64_t, int32_t, int32_t*, bool) {}
void store_f32_avx2(const int32_t*, int64_t, int32_t, const float*, const float*, float*, bool) {}
#endif

}  // namespace qnn::kernels::detail
