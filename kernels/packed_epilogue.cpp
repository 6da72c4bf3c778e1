// kernels/packed_epilogue.cpp — the runner's binary dense layers: the XNOR /
// bit-serial product with its epilogue fused (integer sums -> packed signs or
// floats, per ISA), the float epilogues, and the 8-bit pixel planes of a
// first layer. Declared in kernels/packed_model_internal.h (pack_pixel_planes:
// kernels/packed_model.h).
#include <omp.h>

#include <algorithm>
#include <stdexcept>

#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/packed_model_internal.h"
#include "kernels/simd_target.h"
#include "kernels/xnor_internal.h"

namespace qnn::kernels {

namespace pmodel {

namespace {

// ---- fused epilogues of a binary layer ------------------------------------------
// The products run on the blocked popcount driver of the XNOR kernels
// (kernels/xnor_internal.h detail::drive), which hands each block's raw
// popcounts to an epilogue; these turn them into outputs without an int32
// round trip through memory.

// V[j] = base - 2 * sum_i 2^i pop_i[j] for j < nc, pop_i = p + i * ldp
// (abits planes of one output row; base = (2^abits - 1) * K).
void combine_scalar(const int32_t* p, int64_t ldp, int abits, int64_t nc, int32_t base, int32_t* V) {
  for (int64_t j = 0; j < nc; ++j) V[j] = p[j];
  for (int i = 1; i < abits; ++i)
    for (int64_t j = 0; j < nc; ++j) V[j] += p[i * ldp + j] << i;
  for (int64_t j = 0; j < nc; ++j) V[j] = base - 2 * V[j];
}

}  // namespace

// bit j of out[j / 64] = 1 (-1) unless (V[j] >= T[j]) XOR F[j], for j < cnt;
// whole words (bits >= cnt of the last word are 0).
void threshold_pack_scalar(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt, uint64_t* out) {
  for (int64_t j0 = 0; j0 < cnt; j0 += 64) {
    const int64_t c = std::min<int64_t>(64, cnt - j0);
    uint64_t w = 0;
    for (int64_t j = 0; j < c; ++j) {
      const bool pos = (V[j0 + j] >= T[j0 + j]) != (F[j0 + j] != 0);
      w |= uint64_t(!pos) << j;
    }
    out[j0 / 64] = w;
  }
}

// The same, 8 comparisons per step: "V < T" by cmpgt(T, V), flips as a byte
// mask widened to the lanes, and movemask gives 8 bits of the word at once.
void threshold_pack_avx2(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt, uint64_t* out);

namespace {

#if QNN_X86
QNN_TARGET_AVX512 void combine_avx512(const int32_t* p, int64_t ldp, int abits, int64_t nc, int32_t base,
                                      int32_t* V) {
  const __m512i vb = _mm512_set1_epi32(base);
  for (int64_t j = 0; j < nc; j += 16) {
    const __mmask16 lm = nc - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (nc - j)) - 1);
    __m512i acc = _mm512_maskz_loadu_epi32(lm, p + j);
    for (int i = 1; i < abits; ++i)
      acc = _mm512_add_epi32(acc, _mm512_slli_epi32(_mm512_maskz_loadu_epi32(lm, p + i * ldp + j), unsigned(i)));
    _mm512_mask_storeu_epi32(V + j, lm, _mm512_sub_epi32(vb, _mm512_add_epi32(acc, acc)));
  }
}

QNN_TARGET_AVX512 void threshold_pack_avx512(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt,
                                             uint64_t* out) {
  for (int64_t j0 = 0; j0 < cnt; j0 += 64) {
    const int64_t c = std::min<int64_t>(64, cnt - j0);
    uint64_t ge = 0, fl = 0;
    for (int q = 0; q < 4 && 16 * q < c; ++q) {
      const int64_t r = c - 16 * q;
      const __mmask16 lm = r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << r) - 1);
      const int64_t j = j0 + 16 * q;
      const __m512i v = _mm512_maskz_loadu_epi32(lm, V + j);
      const __m512i t = _mm512_maskz_loadu_epi32(lm, T + j);
      ge |= uint64_t(_mm512_mask_cmpge_epi32_mask(lm, v, t)) << (16 * q);
      const __m128i f = _mm_maskz_loadu_epi8(lm, F + j);
      fl |= uint64_t(_mm_test_epi8_mask(f, f)) << (16 * q);
    }
    const uint64_t valid = c == 64 ? ~uint64_t(0) : (uint64_t(1) << c) - 1;
    out[j0 / 64] = ~(ge ^ fl) & valid;
  }
}
#endif

// One binary layer, rows [0, M) x output columns [n0, n1) (n0 a multiple of
// 64), popcounts by the XNOR kernels' blocked driver (parallel inside unless
// called from a parallel region), epilogue fused: packed signs into P (row
// stride packed_words(out)) or floats into Fo (row stride out).
// detail::drive's blocking (B blocks of kMaxBlockCols rows outside, A blocks
// of 48 plane rows inside, K in chunks of 128 words) without its OpenMP
// region: for the small-batch path, where each thread already owns a slice
// (a nested region per layer per thread costs more than the work at batch 1).
template <class Epi>
void drive_serial(const uint64_t* A, int abits, const uint64_t* B, int64_t M, int64_t N, int64_t W, Epi&& epi) {
  constexpr int64_t NB = detail::kMaxBlockCols, KC = 128, kRows = 48;
  const detail::PopBlockFn pop = detail::pop_block_fn(active_isa());
  const int64_t MB = std::max<int64_t>(1, kRows / abits);
  alignas(64) int32_t buf[kRows * NB];
  for (int64_t n0 = 0; n0 < N; n0 += NB) {
    const int64_t nc = std::min(NB, N - n0);
    for (int64_t m0 = 0; m0 < M; m0 += MB) {
      const int64_t mc = std::min(MB, M - m0);
      if (W == 0) std::fill(buf, buf + mc * abits * NB, 0);
      for (int64_t k0 = 0; k0 < W; k0 += KC)
        pop(A + m0 * abits * W + k0, mc * abits, W, B + n0 * W + k0, nc, W, std::min(KC, W - k0), buf, NB, k0 > 0);
      epi(m0, mc, n0, nc, static_cast<const int32_t*>(buf), NB);
    }
  }
}

// ---- pixel planes ------------------------------------------------------------------
// Plane i of v = 2p - 255: s_i = +1 iff bit i of p is 1 (c = (v + 255) / 2 = p),
// packed bit 1 (= -1) iff bit i of p is 0.
void pixel_planes_row_scalar(const uint8_t* x, int64_t K, uint64_t* o, int64_t W) {
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t cnt = std::min<int64_t>(64, K - k0);
    uint64_t set[8] = {};
    for (int64_t e = 0; e < cnt; ++e) {
      const unsigned p = x[k0 + e];
      for (int i = 0; i < 8; ++i) set[i] |= uint64_t((p >> i) & 1u) << e;
    }
    const uint64_t valid = cnt == 64 ? ~uint64_t(0) : (uint64_t(1) << cnt) - 1;
    for (int i = 0; i < 8; ++i) o[i * W + w] = ~set[i] & valid;
  }
  for (; w < W; ++w)
    for (int i = 0; i < 8; ++i) o[i * W + w] = 0;
}

#if QNN_X86
QNN_TARGET_AVX512 void pixel_planes_row_avx512(const uint8_t* x, int64_t K, uint64_t* o, int64_t W) {
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t cnt = std::min<int64_t>(64, K - k0);
    const __mmask64 lm = cnt == 64 ? ~__mmask64(0) : (__mmask64(1) << cnt) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(lm, x + k0);
    for (int i = 0; i < 8; ++i) {
      const __mmask64 zero = _mm512_mask_testn_epi8_mask(lm, v, _mm512_set1_epi8(char(1 << i)));
      o[i * W + w] = uint64_t(zero);
    }
  }
  for (; w < W; ++w)
    for (int i = 0; i < 8; ++i) o[i * W + w] = 0;
}
#endif

}  // namespace

#if QNN_X86
QNN_TARGET_AVX2 void threshold_pack_avx2(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt,
                                         uint64_t* out) {
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t j0 = 0; j0 < cnt; j0 += 64) {
    const int64_t c = std::min<int64_t>(64, cnt - j0);
    uint64_t neg = 0;  // bit j: the value is -1
    int64_t j = 0;
    for (; j + 8 <= c; j += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(V + j0 + j));
      const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(T + j0 + j));
      const __m256i lt = _mm256_cmpgt_epi32(t, v);  // V < T: "not >="
      const __m256i f = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(F + j0 + j)));
      const __m256i nf = _mm256_cmpeq_epi32(f, zero);  // no flip
      // -1 iff (V >= T) == flip, i.e. lt == nf
      const __m256i m = _mm256_cmpeq_epi32(lt, nf);
      neg |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(m)))) << j;
    }
    for (; j < c; ++j) {
      const bool pos = (V[j0 + j] >= T[j0 + j]) != (F[j0 + j] != 0);
      neg |= uint64_t(!pos) << j;
    }
    out[j0 / 64] = neg;
  }
}
#else
void threshold_pack_avx2(const int32_t* V, const int32_t* T, const uint8_t* F, int64_t cnt, uint64_t* out) {
  threshold_pack_scalar(V, T, F, cnt, out);
}
#endif

EpilogueFns epilogue_fns() {
  EpilogueFns f{combine_scalar, threshold_pack_scalar};
#if QNN_X86
  if (active_isa() == Isa::avx512) {
    f.combine = combine_avx512;
    f.threshold_pack = threshold_pack_avx512;
  } else if (active_isa() == Isa::avx2) {
    f.threshold_pack = threshold_pack_avx2;
  }
#endif
  return f;
}

// ---- float epilogues -----------------------------------------------------------
// z = y (+ bias); affine; relu, for columns [n, n + cnt) of one row. For
// dense_binary, y = float(V) (/ 256 for pixels8). Written as plain float
// expressions: the build uses -ffp-contract=off, so no FMA sneaks in and the
// result is batch_norm_apply's, bit for bit.
void float_epilogue_binary(const PackedLayer& L, const int32_t* V, int64_t n, int64_t cnt, float* out) {
  const bool pix = L.input == LayerInput::pixels8;
  const float* b = L.bias.empty() ? nullptr : L.bias.data() + n;
  const float* c = L.affine ? L.center.data() + n : nullptr;
  const float* s = L.affine ? L.scale.data() + n : nullptr;
  const float* t = L.affine ? L.shift.data() + n : nullptr;
  for (int64_t j = 0; j < cnt; ++j) {
    float y = float(V[j]);
    if (pix) y = y / 256.0f;
    if (b) y = y + b[j];
    if (c) y = (y - c[j]) * s[j] + t[j];
    if (L.relu) y = y > 0.f ? y : 0.f;
    out[j] = y;
  }
}

void float_epilogue_f32(const PackedLayer& L, float* Y, int64_t rows) {
  if (!L.affine && !L.relu) return;
  const int64_t N = L.out;
#pragma omp parallel for schedule(static) if (rows * N >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    float* y = Y + r * N;
    if (L.affine) {
      const float *c = L.center.data(), *s = L.scale.data(), *t = L.shift.data();
      for (int64_t j = 0; j < N; ++j) y[j] = (y[j] - c[j]) * s[j] + t[j];
    }
    if (L.relu)
      for (int64_t j = 0; j < N; ++j) y[j] = y[j] > 0.f ? y[j] : 0.f;
  }
}

// dense_levels with levels input, after the exact integer product Y = dot:
// Y = s * Y (+ bias) — uniform_linear's one rounding, the same float
// expressions (binary_linear_op.cpp), bias added to the scaled product.
void scale_bias_f32(const PackedLayer& L, float s, float* Y, int64_t rows) {
  const int64_t N = L.out;
  const float* b = L.bias.empty() ? nullptr : L.bias.data();
#pragma omp parallel for schedule(static) if (rows * N >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    float* y = Y + r * N;
    if (b)
      for (int64_t j = 0; j < N; ++j) y[j] = s * y[j] + b[j];
    else
      for (int64_t j = 0; j < N; ++j) y[j] = s * y[j];
  }
}

void binary_layer(const PackedLayer& L, const uint64_t* A, int64_t M, int64_t n0, int64_t n1, uint64_t* P,
                  float* Fo, const EpilogueFns& fn, bool serial) {
  const int abits = L.input == LayerInput::pixels8 ? 8 : 1;
  const int64_t W = packed_words(L.in), WO = packed_words(L.out);
  const int32_t base = int32_t(((1 << abits) - 1) * L.in);
  auto epi = [&](int64_t m0, int64_t mc, int64_t b0, int64_t nc, const int32_t* pop, int64_t ldp) {
                  alignas(64) int32_t V[detail::kMaxBlockCols];
                  const int64_t n = n0 + b0;  // absolute first column (a multiple of 64)
                  for (int64_t i = 0; i < mc; ++i) {
                    fn.combine(pop + i * abits * ldp, ldp, abits, nc, base, V);
                    if (L.sign_out) {
                      uint64_t* row = P + (m0 + i) * WO;
                      fn.threshold_pack(V, L.thresh.data() + n, L.flip.data() + n, nc, row + n / 64);
                      if (n + nc == L.out)  // the row's last block also zeroes the pad words (bitpack.h rule 4)
                        for (int64_t w = (L.out + 63) / 64; w < WO; ++w) row[w] = 0;
                    } else
                      float_epilogue_binary(L, V, n, nc, Fo + (m0 + i) * L.out + n);
                  }
  };
  if (serial)
    drive_serial(A, abits, L.w_bits.data() + n0 * W, M, n1 - n0, W, epi);
  else
    detail::drive(A, abits, L.w_bits.data() + n0 * W, 1, M, n1 - n0, W, epi);
}

}  // namespace pmodel

void pack_pixel_planes(const uint8_t* x, int64_t n, int64_t K, uint64_t* out) {
  if (n < 0 || K < 0) throw std::invalid_argument("pack_pixel_planes: negative size");
  const int64_t W = packed_words(K);
  if (n == 0 || W == 0) return;
  if (x == nullptr || out == nullptr) throw std::invalid_argument("pack_pixel_planes: null pointer");
  auto fn = pmodel::pixel_planes_row_scalar;
#if QNN_X86
  if (active_isa() == Isa::avx512) fn = pmodel::pixel_planes_row_avx512;
#endif
#pragma omp parallel for schedule(static) if (n * K >= (1 << 17))
  for (int64_t r = 0; r < n; ++r) fn(x + r * K, K, out + r * 8 * W, W);
}

}  // namespace qnn::kernels
