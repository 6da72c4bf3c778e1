// kernels/bitserial.cpp — bit-plane packing and bit-serial GEMM (see bitserial.h).
#include "kernels/bitserial.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/simd_target.h"
#include "kernels/xnor_internal.h"

namespace qnn::kernels {

namespace {

constexpr int kMaxBits = 16;
constexpr int64_t kParallelElems = int64_t(1) << 17;

void check_bits(const char* fn, int bits) {
  if (bits < 1 || bits > kMaxBits)
    throw std::invalid_argument(std::string(fn) + ": bits=" + std::to_string(bits) +
                                " out of range [1, 16]");
}

void check_rows(const char* fn, int64_t rows, int64_t K) {
  if (rows < 0 || K < 0)
    throw std::invalid_argument(std::string(fn) + ": negative size (rows=" + std::to_string(rows) +
                                ", K=" + std::to_string(K) + ")");
}

// ---- quantize + pack, one row ---------------------------------------------
// Writes `bits` plane rows of W words at o + i*W.
void qpack_row_scalar(const float* x, int64_t K, int bits, float alpha, uint64_t* o, int64_t W) {
  const float L = float((1 << bits) - 1);
  uint64_t words[kMaxBits];
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    std::fill(words, words + bits, ~uint64_t(0) >> (64 - n));  // bit 1 where c_i = 0
    for (int64_t e = 0; e < n; ++e) {
      float xv = x[k0 + e];
      if (std::isnan(xv)) xv = 0.0f;
      xv = std::min(std::max(xv, -alpha), alpha);
      const uint32_t c = uint32_t(std::round((xv + alpha) * L / (2.0f * alpha)));
      for (int i = 0; i < bits; ++i) words[i] ^= uint64_t((c >> i) & 1) << e;
    }
    for (int i = 0; i < bits; ++i) o[i * W + w] = words[i];
  }
  for (; w < W; ++w)
    for (int i = 0; i < bits; ++i) o[i * W + w] = 0;
}

#if QNN_X86
QNN_TARGET_AVX512 void qpack_row_avx512(const float* x, int64_t K, int bits, float alpha,
                                        uint64_t* o, int64_t W) {
  const __m512 va = _mm512_set1_ps(alpha), vna = _mm512_set1_ps(-alpha);
  const __m512 vL = _mm512_set1_ps(float((1 << bits) - 1)), v2a = _mm512_set1_ps(2.0f * alpha);
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    uint64_t words[kMaxBits] = {};
    for (int q = 0; q < 4; ++q) {
      const int64_t rem = n - 16 * q;
      if (rem <= 0) break;
      const __mmask16 lm = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
      __m512 xv = _mm512_maskz_loadu_ps(lm, x + k0 + 16 * q);
      xv = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q), xv, _mm512_setzero_ps());
      xv = _mm512_min_ps(_mm512_max_ps(xv, vna), va);
      const __m512 t = _mm512_div_ps(_mm512_mul_ps(_mm512_add_ps(xv, va), vL), v2a);
      // round half away from zero (t >= 0): floor(t) + (t - floor(t) >= 0.5)
      const __m512 f = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m512 r = _mm512_mask_add_ps(f, _mm512_cmp_ps_mask(_mm512_sub_ps(t, f), half, _CMP_GE_OQ), f, one);
      const __m512i c = _mm512_cvttps_epi32(r);
      for (int i = 0; i < bits; ++i) {
        const __mmask16 zero_bit = _mm512_mask_testn_epi32_mask(lm, c, _mm512_set1_epi32(1 << i));
        words[i] |= uint64_t(zero_bit) << (16 * q);
      }
    }
    for (int i = 0; i < bits; ++i) o[i * W + w] = words[i];
  }
  for (; w < W; ++w)
    for (int i = 0; i < bits; ++i) o[i * W + w] = 0;
}
#endif

void check_gemm(const char* fn, const uint64_t* Ap, int abits, const uint64_t* Bp, int bbits,
                int64_t M, int64_t N, int64_t K, const void* C, int64_t ldc) {
  check_bits(fn, abits);
  check_bits(fn, bbits);
  if (M < 0 || N < 0 || K < 0)
    throw std::invalid_argument(std::string(fn) + ": negative size (M=" + std::to_string(M) +
                                ", N=" + std::to_string(N) + ", K=" + std::to_string(K) + ")");
  if (ldc < N)
    throw std::invalid_argument(std::string(fn) + ": ldc=" + std::to_string(ldc) + " < N=" +
                                std::to_string(N));
  if (K >= (int64_t(1) << 31))
    throw std::invalid_argument(std::string(fn) + ": K too large");
  if (M > 0 && N > 0) {
    if (C == nullptr) throw std::invalid_argument(std::string(fn) + ": null C");
    if (K > 0 && (Ap == nullptr || Bp == nullptr))
      throw std::invalid_argument(std::string(fn) + ": null A or B");
  }
}

// Runs the fused plane-pair GEMM and hands each block's exact int64 dots to
// store(m, n0, nc, dots): dots[j] is the dot of output (m, n0 + j).
template <class Store>
void bitserial_run(const uint64_t* Ap, int abits, const uint64_t* Bp, int bbits, int64_t M,
                   int64_t N, int64_t K, Store&& store) {
  const int64_t La = (int64_t(1) << abits) - 1, Lb = (int64_t(1) << bbits) - 1;
  const int64_t base = K * La * Lb;  // sum_{ij} 2^(i+j) * K
  detail::drive(Ap, abits, Bp, bbits, M, N, packed_words(K),
                [&](int64_t m0, int64_t mc, int64_t n0, int64_t nc, const int32_t* pop, int64_t ldp) {
                  // dot = base - 2 * S, S = sum_{i,j} 2^(i+j) pop(a_i, b_j); for a
                  // fixed plane pair the block's columns are contiguous in pop.
                  int64_t S[detail::kMaxBlockCols];  // nc <= kMaxBlockCols
                  for (int64_t mi = 0; mi < mc; ++mi) {
                    for (int64_t n = 0; n < nc; ++n) S[n] = 0;
                    for (int i = 0; i < abits; ++i)
                      for (int j = 0; j < bbits; ++j) {
                        const int32_t* p = pop + (mi * abits + i) * ldp + j * nc;
                        const int sh = i + j;
                        for (int64_t n = 0; n < nc; ++n) S[n] += int64_t(p[n]) << sh;
                      }
                    for (int64_t n = 0; n < nc; ++n) S[n] = base - 2 * S[n];
                    store(m0 + mi, n0, nc, static_cast<const int64_t*>(S));
                  }
                });
}

}  // namespace

int64_t plane_packed_words(int64_t rows, int64_t K, int bits) {
  check_bits("plane_packed_words", bits);
  check_rows("plane_packed_words", rows, K);
  return rows * bits * packed_words(K);
}

void pack_planes(const int32_t* v, int64_t rows, int64_t K, int bits, uint64_t* out) {
  check_bits("pack_planes", bits);
  check_rows("pack_planes", rows, K);
  const int64_t W = packed_words(K);
  if (rows == 0 || W == 0) return;
  if (v == nullptr || out == nullptr) throw std::invalid_argument("pack_planes: null pointer");
  const int32_t L = (1 << bits) - 1;
  // Validate first (exceptions must not escape an OpenMP region).
  for (int64_t e = 0; e < rows * K; ++e) {
    const int32_t x = v[e];
    if ((x & 1) == 0 || x < -L || x > L)
      throw std::invalid_argument("pack_planes: value " + std::to_string(x) + " at row " +
                                  std::to_string(e / K) + ", column " + std::to_string(e % K) +
                                  " is not an odd integer in [-" + std::to_string(L) + ", " +
                                  std::to_string(L) + "] (bits=" + std::to_string(bits) + ")");
  }
#pragma omp parallel for schedule(static) if (rows * K * bits >= kParallelElems && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* x = v + r * K;
    uint64_t* o = out + r * bits * W;
    int64_t w = 0;
    for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
      const int64_t n = std::min<int64_t>(64, K - k0);
      uint64_t words[kMaxBits];
      std::fill(words, words + bits, ~uint64_t(0) >> (64 - n));
      for (int64_t e = 0; e < n; ++e) {
        const uint32_t c = uint32_t(x[k0 + e] + L) >> 1;
        for (int i = 0; i < bits; ++i) words[i] ^= uint64_t((c >> i) & 1) << e;
      }
      for (int i = 0; i < bits; ++i) o[i * W + w] = words[i];
    }
    for (; w < W; ++w)
      for (int i = 0; i < bits; ++i) o[i * W + w] = 0;
  }
}

void unpack_planes(const uint64_t* P, int64_t rows, int64_t K, int bits, int32_t* v) {
  check_bits("unpack_planes", bits);
  check_rows("unpack_planes", rows, K);
  const int64_t W = packed_words(K);
  if (rows == 0 || K == 0) return;
  if (P == nullptr || v == nullptr) throw std::invalid_argument("unpack_planes: null pointer");
  const int32_t L = (1 << bits) - 1;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      int32_t c = 0;
      for (int i = 0; i < bits; ++i) {
        const uint64_t bit = (P[(r * bits + i) * W + (k >> 6)] >> (k & 63)) & 1;
        c |= int32_t(bit ^ 1) << i;  // packed bit 1 = -1 = c_i 0
      }
      v[r * K + k] = 2 * c - L;
    }
}

void quantize_pack_planes(const float* x, int64_t rows, int64_t K, int64_t ldx, int bits,
                          float alpha, uint64_t* out) {
  check_bits("quantize_pack_planes", bits);
  check_rows("quantize_pack_planes", rows, K);
  if (ldx < K)
    throw std::invalid_argument("quantize_pack_planes: ldx=" + std::to_string(ldx) + " < K=" +
                                std::to_string(K));
  if (!(alpha > 0.0f) || !std::isfinite(alpha))
    throw std::invalid_argument("quantize_pack_planes: alpha must be finite and > 0, got " +
                                std::to_string(alpha));
  const int64_t W = packed_words(K);
  if (rows == 0 || W == 0) return;
  if (x == nullptr || out == nullptr)
    throw std::invalid_argument("quantize_pack_planes: null pointer");
  auto fn = qpack_row_scalar;
#if QNN_X86
  if (active_isa() == Isa::avx512) fn = qpack_row_avx512;
#endif
#pragma omp parallel for schedule(static) if (rows * K * bits >= kParallelElems && rows > 1)
  for (int64_t r = 0; r < rows; ++r) fn(x + r * ldx, K, bits, alpha, out + r * bits * W, W);
}

void bitserial_gemm_i32(const uint64_t* Ap, int abits, const uint64_t* Bp, int bbits, int64_t M,
                        int64_t N, int64_t K, int32_t* C, int64_t ldc) {
  check_gemm("bitserial_gemm_i32", Ap, abits, Bp, bbits, M, N, K, C, ldc);
  const double maxabs = double((int64_t(1) << abits) - 1) * double((int64_t(1) << bbits) - 1) * double(K);
  if (maxabs > 2147483647.0)
    throw std::invalid_argument("bitserial_gemm_i32: |dot| up to " + std::to_string(maxabs) +
                                " overflows int32 (use bitserial_gemm_f32)");
  if (M == 0 || N == 0) return;
  bitserial_run(Ap, abits, Bp, bbits, M, N, K,
                [&](int64_t m, int64_t n0, int64_t nc, const int64_t* dot) {
                  int32_t* c = C + m * ldc + n0;
                  for (int64_t j = 0; j < nc; ++j) c[j] = int32_t(dot[j]);
                });
}

void bitserial_gemm_f32(const uint64_t* Ap, int abits, const uint64_t* Bp, int bbits, int64_t M,
                        int64_t N, int64_t K, float* C, int64_t ldc, const float* col_scale,
                        const float* col_bias) {
  check_gemm("bitserial_gemm_f32", Ap, abits, Bp, bbits, M, N, K, C, ldc);
  if (M == 0 || N == 0) return;
  bitserial_run(Ap, abits, Bp, bbits, M, N, K,
                [&](int64_t m, int64_t n0, int64_t nc, const int64_t* dot) {
                  float* c = C + m * ldc + n0;
                  for (int64_t j = 0; j < nc; ++j) {
                    const float s = col_scale ? col_scale[n0 + j] : 1.0f;
                    const float b = col_bias ? col_bias[n0 + j] : 0.0f;
                    c[j] = s * float(dot[j]) + b;
                  }
                });
}

}  // namespace qnn::kernels
