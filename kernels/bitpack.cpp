// kernels/bitpack.cpp — packing floats to bits and back (convention: bitpack.h).
#include "kernels/bitpack.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/isa.h"
#include "kernels/simd_target.h"

namespace qnn::kernels {

int64_t packed_words(int64_t K) {
  if (K < 0) throw std::invalid_argument("packed_words: K must be >= 0, got " + std::to_string(K));
  return (K + 511) / 512 * 8;
}

namespace {

// Parallelise over rows only when there is enough work to pay for the fork.
constexpr int64_t kParallelElems = int64_t(1) << 17;

// ---------------------------------------------------------------------------
// One row: x[0..K) -> o[0..W), pads zero. W >= ceil(K/64).
void pack_row_scalar(const float* x, int64_t K, uint64_t* o, int64_t W) {
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    uint64_t word = 0;
    for (int64_t i = 0; i < n; ++i) word |= uint64_t(x[k0 + i] < 0.0f) << i;
    o[w] = word;
  }
  for (; w < W; ++w) o[w] = 0;
}

void unpack_row_scalar(const uint64_t* p, int64_t K, float* out) {
  for (int64_t k = 0; k < K; ++k) out[k] = ((p[k >> 6] >> (k & 63)) & 1) ? -1.0f : 1.0f;
}

#if QNN_X86
QNN_TARGET_AVX2 void pack_row_avx2(const float* x, int64_t K, uint64_t* o, int64_t W) {
  const __m256 z = _mm256_setzero_ps();
  const int64_t full = K / 64;
  int64_t w = 0;
  for (; w < full; ++w) {
    const float* p = x + 64 * w;
    uint64_t word = 0;
    for (int c = 0; c < 8; ++c) {
      const __m256 v = _mm256_loadu_ps(p + 8 * c);
      word |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(v, z, _CMP_LT_OQ)))) << (8 * c);
    }
    o[w] = word;
  }
  if (K > 64 * full) {
    const float* p = x + 64 * w;
    const int64_t n = K - 64 * full;
    uint64_t word = 0;
    for (int64_t i = 0; i < n; ++i) word |= uint64_t(p[i] < 0.0f) << i;
    o[w++] = word;
  }
  for (; w < W; ++w) o[w] = 0;
}

QNN_TARGET_AVX2 void unpack_row_avx2(const uint64_t* p, int64_t K, float* out) {
  const __m256 plus = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const int64_t full8 = K / 8;
  for (int64_t g = 0; g < full8; ++g) {
    const uint32_t byte = uint32_t(p[g >> 3] >> ((g & 7) * 8)) & 0xFF;
    const __m256i bits = _mm256_and_si256(_mm256_set1_epi32(int(byte)), sel);
    const __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, sel));
    _mm256_storeu_ps(out + 8 * g, _mm256_blendv_ps(plus, minus, m));
  }
  for (int64_t k = 8 * full8; k < K; ++k) out[k] = ((p[k >> 6] >> (k & 63)) & 1) ? -1.0f : 1.0f;
}

QNN_TARGET_AVX512 void pack_row_avx512(const float* x, int64_t K, uint64_t* o, int64_t W) {
  const __m512 z = _mm512_setzero_ps();
  const int64_t full = K / 64;
  int64_t w = 0;
  for (; w < full; ++w) {
    const float* p = x + 64 * w;
    const uint64_t m0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p), z, _CMP_LT_OQ);
    const uint64_t m1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 16), z, _CMP_LT_OQ);
    const uint64_t m2 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 32), z, _CMP_LT_OQ);
    const uint64_t m3 = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 48), z, _CMP_LT_OQ);
    o[w] = m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
  }
  const int64_t rem = K - 64 * full;
  if (rem > 0) {
    const float* p = x + 64 * w;
    uint64_t word = 0;
    for (int c = 0; c < 4; ++c) {
      const int64_t n = rem - 16 * c;
      if (n <= 0) break;
      const __mmask16 lm = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(lm, p + 16 * c);  // masked lanes read 0 -> bit 0
      word |= uint64_t(_mm512_cmp_ps_mask(v, z, _CMP_LT_OQ)) << (16 * c);
    }
    o[w++] = word;
  }
  for (; w < W; ++w) o[w] = 0;
}

QNN_TARGET_AVX512 void unpack_row_avx512(const uint64_t* p, int64_t K, float* out) {
  const __m512 plus = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
  const int64_t full16 = K / 16;
  for (int64_t g = 0; g < full16; ++g) {
    const __mmask16 m = __mmask16(p[g >> 2] >> ((g & 3) * 16));
    _mm512_storeu_ps(out + 16 * g, _mm512_mask_blend_ps(m, plus, minus));
  }
  const int64_t rem = K - 16 * full16;
  if (rem > 0) {
    const int64_t g = full16;
    const __mmask16 m = __mmask16(p[g >> 2] >> ((g & 3) * 16));
    const __mmask16 lm = __mmask16((1u << rem) - 1);
    _mm512_mask_storeu_ps(out + 16 * g, lm, _mm512_mask_blend_ps(m, plus, minus));
  }
}
#endif

using PackRowFn = void (*)(const float*, int64_t, uint64_t*, int64_t);
using UnpackRowFn = void (*)(const uint64_t*, int64_t, float*);

PackRowFn pack_row_fn() {
#if QNN_X86
  switch (active_isa()) {
    case Isa::avx512: return pack_row_avx512;
    case Isa::avx2: return pack_row_avx2;
    case Isa::scalar: break;
  }
#endif
  return pack_row_scalar;
}

UnpackRowFn unpack_row_fn() {
#if QNN_X86
  switch (active_isa()) {
    case Isa::avx512: return unpack_row_avx512;
    case Isa::avx2: return unpack_row_avx2;
    case Isa::scalar: break;
  }
#endif
  return unpack_row_scalar;
}

// In-place transpose of a 64x64 bit matrix: on entry bit c of a[r] is element
// (r, c); on exit bit r of a[c] is element (r, c). Six block-swap stages.
void transpose64(uint64_t a[64]) {
  uint64_t m = 0x00000000FFFFFFFFull;
  for (int j = 32; j != 0; j >>= 1, m ^= (m << j)) {
    for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
      // swap the high-j bits of row k with the low-j bits of row k+j
      const uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
      a[k] ^= t << j;
      a[k | j] ^= t;
    }
  }
}

void check_common(const char* fn, const void* in, const void* out, int64_t rows, int64_t K,
                  int64_t ld, const char* ldname) {
  if (rows < 0 || K < 0)
    throw std::invalid_argument(std::string(fn) + ": negative size (rows=" + std::to_string(rows) +
                                ", K=" + std::to_string(K) + ")");
  if (ld < K)
    throw std::invalid_argument(std::string(fn) + ": " + ldname + "=" + std::to_string(ld) +
                                " is smaller than K=" + std::to_string(K));
  if (rows > 0 && K > 0 && (in == nullptr || out == nullptr))
    throw std::invalid_argument(std::string(fn) + ": null pointer");
}

}  // namespace

void pack_rows(const float* X, int64_t rows, int64_t K, int64_t ldx, uint64_t* out) {
  check_common("pack_rows", X, out, rows, K, ldx, "ldx");
  const int64_t W = packed_words(K);
  if (rows == 0 || W == 0) return;
  const PackRowFn fn = pack_row_fn();
#pragma omp parallel for schedule(static) if (rows * K >= kParallelElems && rows > 1)
  for (int64_t r = 0; r < rows; ++r) fn(X + r * ldx, K, out + r * W, W);
}

void unpack_rows(const uint64_t* P, int64_t rows, int64_t K, float* out, int64_t ldo) {
  check_common("unpack_rows", P, out, rows, K, ldo, "ldo");
  const int64_t W = packed_words(K);
  if (rows == 0 || K == 0) return;
  const UnpackRowFn fn = unpack_row_fn();
#pragma omp parallel for schedule(static) if (rows * K >= kParallelElems && rows > 1)
  for (int64_t r = 0; r < rows; ++r) fn(P + r * W, K, out + r * ldo);
}

void pack_cols(const float* X, int64_t K, int64_t N, int64_t ldx, uint64_t* out) {
  if (N < 0 || K < 0)
    throw std::invalid_argument("pack_cols: negative size (K=" + std::to_string(K) +
                                ", N=" + std::to_string(N) + ")");
  if (ldx < N)
    throw std::invalid_argument("pack_cols: ldx=" + std::to_string(ldx) +
                                " is smaller than N=" + std::to_string(N));
  if (N > 0 && K > 0 && (X == nullptr || out == nullptr))
    throw std::invalid_argument("pack_cols: null pointer");
  const int64_t W = packed_words(K);
  if (N == 0 || W == 0) return;
  const PackRowFn fn = pack_row_fn();
  const int64_t nblk = (N + 63) / 64;
  // Each block of 64 output rows (columns of X) is owned by one thread.
#pragma omp parallel for schedule(static) if (N * K >= kParallelElems && nblk > 1)
  for (int64_t jb = 0; jb < nblk; ++jb) {
    const int64_t j0 = jb * 64, nc = std::min<int64_t>(64, N - j0);
    uint64_t tile[64];
    for (int64_t kw = 0; kw < W; ++kw) {
      const int64_t k0 = kw * 64, nk = std::max<int64_t>(0, std::min<int64_t>(64, K - k0));
      // rows of the tile: element (k0+r, j0+c) at bit c of tile[r]; absent rows 0
      for (int64_t r = 0; r < nk; ++r) fn(X + (k0 + r) * ldx + j0, nc, &tile[r], 1);
      for (int64_t r = nk; r < 64; ++r) tile[r] = 0;
      if (nk > 0) transpose64(tile);
      for (int64_t c = 0; c < nc; ++c) out[(j0 + c) * W + kw] = tile[c];
    }
  }
}

}  // namespace qnn::kernels
