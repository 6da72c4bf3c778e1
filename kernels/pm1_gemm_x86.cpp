// kernels/pm1_gemm_x86.cpp — the AVX2 and AVX-512 panels of pm1_gemm (the
// table look-up product; contract and summation order in pm1_gemm.h, the
// panel's definition in its detail section, the blocking in pm1_gemm.cpp).
//
// A tile is IR rows x KR vectors of C, held in registers for a whole chunk
// of groups:
//   per group g:  load the KR index vectors (one byte per column -> dword lanes),
//                 then for each row r: load its table t[g][r] and
//                 acc[r][b] += table_lookup(t[g][r], index[b])
// AVX-512: vpermps (_mm512_permutexvar_ps) looks up all 16 entries at once.
// AVX2:    vpermps covers 8 entries. The table is odd-symmetric (t_p =
//          -t_{15-p}, pm1_gemm.h), so the nibbles come pre-coded: the low 3
//          bits index t_0..t_7 and the byte's sign bit (sign-extended to the
//          lane's) says "negate": one vpermps + one xor + one add per 8
//          look-ups of 4 terms each (the blend of two halves cost 4 ops).
#include "kernels/pm1_gemm.h"
#include "kernels/simd_target.h"

#if QNN_X86
#include <algorithm>
#include <array>
#include <utility>

namespace qnn::kernels::detail {

namespace {

// ---- AVX-512: 4 rows x 4 vectors of 16 ----------------------------------------------------

constexpr int kKR512 = 4;

template <int IR, int KR>
QNN_TARGET_AVX512 void tile512(const float* T, const int64_t* goff, int64_t G, const uint8_t* nib, int64_t ldn,
                               const float* acc_in, float* out, int64_t ldc, __mmask16 last, bool add_out) {
  __m512 acc[IR][KR];
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) {
      const __mmask16 m = b == KR - 1 ? last : __mmask16(0xFFFF);
      acc[r][b] = acc_in ? _mm512_maskz_loadu_ps(m, acc_in + r * ldc + 16 * b) : _mm512_setzero_ps();
    }
  for (int64_t g = 0; g < G; ++g) {
    __m512i ix[KR];
    for (int b = 0; b < KR; ++b)
      ix[b] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nib + g * ldn + 16 * b)));
    const float* tg = T + goff[g];
    for (int r = 0; r < IR; ++r) {
      const __m512 t = _mm512_load_ps(tg + 16 * r);
      for (int b = 0; b < KR; ++b) acc[r][b] = _mm512_add_ps(acc[r][b], _mm512_permutexvar_ps(ix[b], t));
    }
  }
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) {
      const __mmask16 m = b == KR - 1 ? last : __mmask16(0xFFFF);
      float* c = out + r * ldc + 16 * b;
      __m512 v = acc[r][b];
      if (add_out) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), v);  // C + acc
      _mm512_mask_storeu_ps(c, m, v);
    }
}

using Tile512Fn = void (*)(const float*, const int64_t*, int64_t, const uint8_t*, int64_t, const float*, float*,
                           int64_t, __mmask16, bool);

template <int IR, int... KRs>
constexpr auto row512(std::integer_sequence<int, KRs...>) {
  return std::array<Tile512Fn, sizeof...(KRs)>{&tile512<IR, KRs + 1>...};
}
// kTiles512[ir - 1][kr - 1]: the tile for the ragged edges too.
constexpr std::array<std::array<Tile512Fn, kKR512>, 4> kTiles512 = {
    row512<1>(std::make_integer_sequence<int, kKR512>{}), row512<2>(std::make_integer_sequence<int, kKR512>{}),
    row512<3>(std::make_integer_sequence<int, kKR512>{}), row512<4>(std::make_integer_sequence<int, kKR512>{})};

// ---- AVX2: 4 rows x 2 vectors of 8 ------------------------------------------------------------

constexpr int kKR256 = 2;

template <int IR, int KR>
QNN_TARGET_AVX2 void tile256(const float* T, const int64_t* goff, int64_t G, const uint8_t* nib, int64_t ldn,
                             const float* acc_in, float* out, int64_t ldc, int last_n, bool add_out) {
  __m256 acc[IR][KR];
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) {
      const int n = b == KR - 1 ? last_n : 8;
      if (!acc_in) {
        acc[r][b] = _mm256_setzero_ps();
      } else if (n == 8) {
        acc[r][b] = _mm256_loadu_ps(acc_in + r * ldc + 8 * b);
      } else {
        alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int q = 0; q < n; ++q) tmp[q] = acc_in[r * ldc + 8 * b + q];
        acc[r][b] = _mm256_load_ps(tmp);
      }
    }
  const __m256i sign = _mm256_set1_epi32(int(0x80000000u));
  for (int64_t g = 0; g < G; ++g) {
    __m256i ix[KR];
    __m256 neg[KR];
    for (int b = 0; b < KR; ++b) {
      ix[b] = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(nib + g * ldn + 8 * b)));
      neg[b] = _mm256_castsi256_ps(_mm256_and_si256(ix[b], sign));  // the code's bit 7, sign-extended
    }
    const float* tg = T + goff[g];
    for (int r = 0; r < IR; ++r) {
      const __m256 t = _mm256_load_ps(tg + 16 * r);  // t_0..t_7
      for (int b = 0; b < KR; ++b)
        acc[r][b] = _mm256_add_ps(acc[r][b], _mm256_xor_ps(_mm256_permutevar8x32_ps(t, ix[b]), neg[b]));
    }
  }
  for (int r = 0; r < IR; ++r)
    for (int b = 0; b < KR; ++b) {
      float* c = out + r * ldc + 8 * b;
      const int n = b == KR - 1 ? last_n : 8;
      if (n == 8) {
        __m256 v = acc[r][b];
        if (add_out) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
        _mm256_storeu_ps(c, v);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, acc[r][b]);
        for (int q = 0; q < n; ++q) c[q] = add_out ? c[q] + tmp[q] : tmp[q];
      }
    }
}

using Tile256Fn = void (*)(const float*, const int64_t*, int64_t, const uint8_t*, int64_t, const float*, float*,
                           int64_t, int, bool);

template <int IR, int... KRs>
constexpr auto row256(std::integer_sequence<int, KRs...>) {
  return std::array<Tile256Fn, sizeof...(KRs)>{&tile256<IR, KRs + 1>...};
}
constexpr std::array<std::array<Tile256Fn, kKR256>, 4> kTiles256 = {
    row256<1>(std::make_integer_sequence<int, kKR256>{}), row256<2>(std::make_integer_sequence<int, kKR256>{}),
    row256<3>(std::make_integer_sequence<int, kKR256>{}), row256<4>(std::make_integer_sequence<int, kKR256>{})};

}  // namespace

// A panel: its columns in tiles of KR vectors, the last one ragged (a
// smaller instance, masked last vector). ir <= 4 (pm1_gemm.cpp's kRows).
void pm1_panel_avx512(const float* T, const int64_t* goff, int64_t ir, int64_t G, const uint8_t* nib, int64_t ldn,
                      int64_t kw, const float* acc_in, float* out, int64_t ldc, bool add_out) {
  constexpr int64_t KB = 16 * kKR512;
  for (int64_t k0 = 0; k0 < kw; k0 += KB) {
    const int64_t w = std::min(KB, kw - k0), kr = (w + 15) / 16, tail = w - 16 * (kr - 1);
    const __mmask16 last = tail == 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    kTiles512[ir - 1][kr - 1](T, goff, G, nib + k0, ldn, acc_in ? acc_in + k0 : nullptr, out + k0, ldc, last,
                              add_out);
  }
}

void pm1_panel_avx2(const float* T, const int64_t* goff, int64_t ir, int64_t G, const uint8_t* nib, int64_t ldn,
                    int64_t kw, const float* acc_in, float* out, int64_t ldc, bool add_out) {
  constexpr int64_t KB = 8 * kKR256;
  for (int64_t k0 = 0; k0 < kw; k0 += KB) {
    const int64_t w = std::min(KB, kw - k0), kr = (w + 7) / 8;
    kTiles256[ir - 1][kr - 1](T, goff, G, nib + k0, ldn, acc_in ? acc_in + k0 : nullptr, out + k0, ldc,
                              int(w - 8 * (kr - 1)), add_out);
  }
}

}  // namespace qnn::kernels::detail

#else  // not x86: the dispatcher never picks these (kernels/isa.h)

namespace qnn::kernels::detail {
void pm1_panel_avx512(const float* T, const int64_t* goff, int64_t ir, int64_t G, const uint8_t* nib, int64_t ldn,
                      int64_t kw, const float* acc_in, float* out, int64_t ldc, bool add_out) {
  pm1_panel_scalar(T, goff, ir, G, nib, ldn, kw, acc_in, out, ldc, add_out);
}
void pm1_panel_avx2(const float* T, const int64_t* goff, int64_t ir, int64_t G, const uint8_t* nib, int64_t ldn,
                    int64_t kw, const float* acc_in, float* out, int64_t ldc, bool add_out) {
  pm1_panel_scalar(T, goff, ir, G, nib, ldn, kw, acc_in, out, ldc, add_out);
}
}  // namespace qnn::kernels::detail

#endif
