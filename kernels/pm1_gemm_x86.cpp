// kernels/pm1_gemm_x86.cpp — the AVX2 and AVX-512 tiles of pm1_gemm (the
// table look-up product; contract and summation order in pm1_gemm.h).
//
// A tile is IR rows x KR vectors of C, held in registers for the whole
// reduction over the G groups:
//   per group g:  load the KR index vectors (16 nibbles -> 16 dword lanes),
//                 then for each row r: load its 16-entry table t[r][g] and
//                 acc[r][b] += table_lookup(t[r][g], index[b])
// AVX-512: vpermps (_mm512_permutexvar_ps) looks up all 16 lanes at once.
// AVX2:    vpermps covers 8 entries, so the table is split in halves and the
//          4th bit of the pattern picks the half (blendv on bit 3 << 28).
// Tiles are independent (each owns its C block), so OpenMP splits them.
#include "kernels/pm1_gemm.h"
#include "kernels/simd_target.h"

#if QNN_X86
#include <algorithm>
#include <array>
#include <utility>

namespace qnn::kernels::detail {

namespace {

constexpr int64_t kParallelWork = int64_t(1) << 18;  // look-ups below which one thread is faster

// ---- AVX-512: 4 rows x 6 vectors of 16 ----------------------------------------------------

constexpr int kIR512 = 4, kKR512 = 6;

template <int IR, int KR>
QNN_TARGET_AVX512 void tile512(const float* T, int64_t G, const uint8_t* nib, int64_t ldn, float* C, int64_t ldc,
                               __mmask16 last, bool accumulate) {
  __m512 acc[IR][KR];
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) acc[r][b] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i ix[KR];
    for (int b = 0; b < KR; ++b)
      ix[b] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nib + g * ldn + 16 * b)));
    for (int r = 0; r < IR; ++r) {
      const __m512 t = _mm512_load_ps(T + (r * G + g) * 16);
      for (int b = 0; b < KR; ++b) acc[r][b] = _mm512_add_ps(acc[r][b], _mm512_permutexvar_ps(ix[b], t));
    }
  }
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) {
      const __mmask16 m = b == KR - 1 ? last : __mmask16(0xFFFF);
      float* c = C + r * ldc + 16 * b;
      __m512 v = acc[r][b];
      if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), v);  // C + acc
      _mm512_mask_storeu_ps(c, m, v);
    }
}

using Tile512Fn = void (*)(const float*, int64_t, const uint8_t*, int64_t, float*, int64_t, __mmask16, bool);

template <int IR, int... KRs>
constexpr auto row512(std::integer_sequence<int, KRs...>) {
  return std::array<Tile512Fn, sizeof...(KRs)>{&tile512<IR, KRs + 1>...};
}
template <int... IRs>
constexpr auto table512(std::integer_sequence<int, IRs...>) {
  return std::array<std::array<Tile512Fn, kKR512>, sizeof...(IRs)>{
      row512<IRs + 1>(std::make_integer_sequence<int, kKR512>{})...};
}
// kTiles512[ir - 1][kr - 1]: the tile for the ragged edges too.
constexpr auto kTiles512 = table512(std::make_integer_sequence<int, kIR512>{});

// ---- AVX2: 4 rows x 2 vectors of 8 ------------------------------------------------------------

constexpr int kIR256 = 4, kKR256 = 2;

template <int IR, int KR>
QNN_TARGET_AVX2 void tile256(const float* T, int64_t G, const uint8_t* nib, int64_t ldn, float* C, int64_t ldc,
                             int last_n, bool accumulate) {
  __m256 acc[IR][KR];
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) acc[r][b] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256i ix[KR];
    __m256 hi[KR];
    for (int b = 0; b < KR; ++b) {
      ix[b] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(nib + g * ldn + 8 * b)));
      hi[b] = _mm256_castsi256_ps(_mm256_slli_epi32(ix[b], 28));  // bit 3 -> sign bit: blendv's selector
    }
    for (int r = 0; r < IR; ++r) {
      const __m256 t_lo = _mm256_load_ps(T + (r * G + g) * 16), t_hi = _mm256_load_ps(T + (r * G + g) * 16 + 8);
      for (int b = 0; b < KR; ++b) {
        const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t_lo, ix[b]),
                                          _mm256_permutevar8x32_ps(t_hi, ix[b]), hi[b]);
        acc[r][b] = _mm256_add_ps(acc[r][b], v);
      }
    }
  }
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) {
      float* c = C + r * ldc + 8 * b;
      const int n = b == KR - 1 ? last_n : 8;
      if (n == 8) {
        __m256 v = acc[r][b];
        if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
        _mm256_storeu_ps(c, v);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, acc[r][b]);
        for (int q = 0; q < n; ++q) c[q] = accumulate ? c[q] + tmp[q] : tmp[q];
      }
    }
}

using Tile256Fn = void (*)(const float*, int64_t, const uint8_t*, int64_t, float*, int64_t, int, bool);

template <int IR, int... KRs>
constexpr auto row256(std::integer_sequence<int, KRs...>) {
  return std::array<Tile256Fn, sizeof...(KRs)>{&tile256<IR, KRs + 1>...};
}
template <int... IRs>
constexpr auto table256(std::integer_sequence<int, IRs...>) {
  return std::array<std::array<Tile256Fn, kKR256>, sizeof...(IRs)>{
      row256<IRs + 1>(std::make_integer_sequence<int, kKR256>{})...};
}
constexpr auto kTiles256 = table256(std::make_integer_sequence<int, kIR256>{});

}  // namespace

// Walks C in tiles of IR rows x (KR * lanes) columns; the last row tile and
// column tile are ragged (smaller template instances, masked last vector).
void pm1_tiles_avx512(const float* T, int64_t I, int64_t G, const uint8_t* nib, int64_t ldn, int64_t K, float* C,
                      int64_t ldc, bool accumulate) {
  constexpr int64_t KB = 16 * kKR512;
  const int64_t ti = (I + kIR512 - 1) / kIR512, tk = (K + KB - 1) / KB;
#pragma omp parallel for schedule(static) collapse(2) if (I * K * G > kParallelWork)
  for (int64_t a = 0; a < ti; ++a)
    for (int64_t c = 0; c < tk; ++c) {
      const int64_t i0 = a * kIR512, k0 = c * KB;
      const int64_t ir = std::min<int64_t>(kIR512, I - i0), kw = std::min(KB, K - k0);
      const int64_t kr = (kw + 15) / 16, tail = kw - 16 * (kr - 1);
      const __mmask16 last = tail == 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
      kTiles512[ir - 1][kr - 1](T + i0 * G * 16, G, nib + k0, ldn, C + i0 * ldc + k0, ldc, last, accumulate);
    }
}

void pm1_tiles_avx2(const float* T, int64_t I, int64_t G, const uint8_t* nib, int64_t ldn, int64_t K, float* C,
                    int64_t ldc, bool accumulate) {
  constexpr int64_t KB = 8 * kKR256;
  const int64_t ti = (I + kIR256 - 1) / kIR256, tk = (K + KB - 1) / KB;
#pragma omp parallel for schedule(static) collapse(2) if (I * K * G > kParallelWork)
  for (int64_t a = 0; a < ti; ++a)
    for (int64_t c = 0; c < tk; ++c) {
      const int64_t i0 = a * kIR256, k0 = c * KB;
      const int64_t ir = std::min<int64_t>(kIR256, I - i0), kw = std::min(KB, K - k0);
      const int64_t kr = (kw + 7) / 8;
      kTiles256[ir - 1][kr - 1](T + i0 * G * 16, G, nib + k0, ldn, C + i0 * ldc + k0, ldc, int(kw - 8 * (kr - 1)),
                                accumulate);
    }
}

}  // namespace qnn::kernels::detail

#else  // not x86: the dispatcher never picks these (kernels/isa.h)

namespace qnn::kernels::detail {
void pm1_tiles_avx512(const float* T, int64_t I, int64_t G, const uint8_t* nib, int64_t ldn, int64_t K, float* C,
                      int64_t ldc, bool accumulate) {
  pm1_tiles_scalar(T, I, G, nib, ldn, K, C, ldc, accumulate);
}
void pm1_tiles_avx2(const float* T, int64_t I, int64_t G, const uint8_t* nib, int64_t ldn, int64_t K, float* C,
                    int64_t ldc, bool accumulate) {
  pm1_tiles_scalar(T, I, G, nib, ldn, K, C, ldc, accumulate);
}
}  // namespace qnn::kernels::detail

#endif
