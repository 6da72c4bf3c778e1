// kernels/packed_model.cpp — the .qnnx file and its runner (see packed_model.h).
#include "kernels/packed_model.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "kernels/level_planes.h"
#include "kernels/pm1_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/simd_target.h"
#include "kernels/xnor_gemm.h"
#include "kernels/xnor_internal.h"

namespace qnn::kernels {

namespace {

constexpr char kMagic[4] = {'Q', 'N', 'N', 'X'};
// Version 1: fp and bnn models; version 2 adds dense_levels (k-bit) layers and
// is written only when a model has one, so fp / bnn files stay version 1.
// Version 3 adds a metadata block and is written only when a model has
// metadata, so files without it still load in builds that predate it.
// Version 4 adds the spatial layers (conv / pool) and is written exactly for
// models that have one.
constexpr uint32_t kVersionBase = 1, kVersionLevels = 2, kVersionMeta = 3, kVersionSpatial = 4;
constexpr int64_t kSpatialHeaderBytes = 10 * 4;  // conv / pool payload: the geometry
constexpr int64_t kMaxDim = int64_t(1) << 26;      // per layer in / out
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxPixelsIn = ((int64_t(1) << 24) - 1) / 255;  // V = sum (2p-255) w exact in float
constexpr int64_t kLayerHeaderBytes = 4 * 4 + 3 * 8;
constexpr int64_t kLevelsHeaderBytes = 3 * 4;  // dense_levels payload: weight_alpha, input_bits, input_alpha
constexpr int kRealInputBits = 32;              // dense_levels input_bits for real input (no quantizer)
enum Flags : uint32_t { kSignOut = 1, kBias = 2, kAffine = 4, kRelu = 8, kAllFlags = 15 };

std::string dims_str(const PackedLayer& L) {
  return std::string(layer_type_name(L.type)) + " " + std::to_string(L.in) + " -> " + std::to_string(L.out);
}

int64_t words64(int64_t K) { return (K + 63) / 64; }  // file row: ceil(K / 64) words

// Payload bytes of a layer record: from type, in, out and wbits (dense
// layers) or the geometry (spatial layers), and the flags.
int64_t payload_bytes(const PackedLayer& L, uint32_t flags) {
  const int64_t in = L.in, out = L.out;
  int64_t b, ch = out;
  switch (L.type) {
    case LayerType::dense_f32: b = 4 * in * out; break;
    case LayerType::dense_binary: b = 8 * words64(in) * out; break;
    case LayerType::dense_levels: b = kLevelsHeaderBytes + 8 * words64(in) * out * L.wbits; break;
    case LayerType::conv_f32: b = kSpatialHeaderBytes + 4 * L.geom.O * L.geom.taps(), ch = L.geom.O; break;
    case LayerType::conv_binary: b = kSpatialHeaderBytes + 8 * words64(L.geom.taps()) * L.geom.O, ch = L.geom.O; break;
    default: b = kSpatialHeaderBytes, ch = 0; break;  // max_pool
  }
  if (flags & kBias) b += 4 * ch;
  if (flags & kAffine) b += 12 * ch;
  if (flags & kSignOut) b += 5 * ch;
  return b;
}

uint32_t flags_of(const PackedLayer& L) {
  return (L.sign_out ? kSignOut : 0u) | (!L.bias.empty() ? kBias : 0u) | (L.affine ? kAffine : 0u) |
         (L.relu ? kRelu : 0u);
}

// Exact integer sums for a dense_levels layer with levels input: every
// partial sum of u . v below 2^24, as layers/quant uniform_linear_exact
// requires of the training product (so it took this path there too).
bool levels_exact(int64_t in, int in_bits, int wbits) {
  return double(in) * double((1 << in_bits) - 1) * double((1 << wbits) - 1) < 16777216.0;
}

// Largest |V| of a binary layer's integer dot product.
int64_t vmax_of(const PackedLayer& L) {
  const int64_t K = L.type == LayerType::conv_binary ? L.geom.taps() : L.in;
  return L.input == LayerInput::pixels8 ? 255 * K : K;
}

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
void put_array(std::string& s, const T* p, size_t n) {
  s.append(reinterpret_cast<const char*>(p), n * sizeof(T));
}

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

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

struct EpilogueFns {
  void (*combine)(const int32_t*, int64_t, int, int64_t, int32_t, int32_t*) = combine_scalar;
  void (*threshold_pack)(const int32_t*, const int32_t*, const uint8_t*, int64_t, uint64_t*) = threshold_pack_scalar;
};
EpilogueFns epilogue_fns() {
  EpilogueFns f;
#if QNN_X86
  if (active_isa() == Isa::avx512) {
    f.combine = combine_avx512;
    f.threshold_pack = threshold_pack_avx512;
  }
#endif
  return f;
}

// A dense_levels layer with +-1 weights (1 bit, range 1: Sign) on a float
// input (real or levels_f32) is, in training, QuantLinear's sign_weight path
// (no input quantizer, a +-1 weight quantizer): sign_weight_linear, whose
// product is kernels::pm1_gemm's table look-up with its own summation order.
// The runner must sum in that order too (not sgemm's) to match it bit for bit.
bool pm1_product(const PackedLayer& L) {
  return L.type == LayerType::dense_levels && L.wbits == 1 && L.w_alpha == 1.0f &&
         (L.input == LayerInput::real || L.input == LayerInput::levels_f32);
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

// uint8 input needs the pixel scaling the model was trained with.
void check_pixels_input(const PackedModel& m) {
  if (m.input_scale == InputScale::none)
    throw std::invalid_argument("packed model: the model takes float input (input scaling 'none'); use logits_f32");
}

}  // namespace

// ---- names ----------------------------------------------------------------------

const char* input_scale_name(InputScale s) {
  switch (s) {
    case InputScale::none: return "none";
    case InputScale::odd_over_256: return "(2p-255)/256";
    case InputScale::minus_one_to_one: return "p/127.5-1";
    case InputScale::zero_to_one: return "p/255";
  }
  return "unknown";
}

float scale_input_pixel(InputScale s, uint8_t p) {
  switch (s) {
    case InputScale::odd_over_256: return (float)(2 * (int)p - 255) / 256.0f;
    case InputScale::minus_one_to_one: return (float)((double)p / 127.5 - 1.0);
    case InputScale::zero_to_one: return (float)((double)p / 255.0);
    case InputScale::none: break;
  }
  throw std::invalid_argument("scale_input_pixel: the model has no pixel scaling (float input)");
}

const char* layer_type_name(LayerType t) {
  switch (t) {
    case LayerType::dense_f32: return "dense_f32";
    case LayerType::dense_binary: return "dense_binary";
    case LayerType::dense_levels: return "dense_levels";
    case LayerType::conv_f32: return "conv_f32";
    case LayerType::conv_binary: return "conv_binary";
    case LayerType::max_pool: return "max_pool";
  }
  return "unknown";
}

const char* layer_input_name(LayerInput i) {
  switch (i) {
    case LayerInput::real: return "real";
    case LayerInput::packed: return "packed";
    case LayerInput::pixels8: return "pixels8";
    case LayerInput::sign: return "sign";
    case LayerInput::levels: return "levels";
    case LayerInput::levels_f32: return "levels_f32";
  }
  return "unknown";
}

uint32_t crc32_zlib(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

void pack_pixel_planes(const uint8_t* x, int64_t n, int64_t K, uint64_t* out) {
  if (n < 0 || K < 0) throw std::invalid_argument("pack_pixel_planes: negative size");
  const int64_t W = packed_words(K);
  if (n == 0 || W == 0) return;
  if (x == nullptr || out == nullptr) throw std::invalid_argument("pack_pixel_planes: null pointer");
  auto fn = pixel_planes_row_scalar;
#if QNN_X86
  if (active_isa() == Isa::avx512) fn = pixel_planes_row_avx512;
#endif
#pragma omp parallel for schedule(static) if (n * K >= (1 << 17))
  for (int64_t r = 0; r < n; ++r) fn(x + r * K, K, out + r * 8 * W, W);
}

// ---- PackedLayer / PackedModel -----------------------------------------------------

std::string meta_problem(const std::string& meta) {
  if (meta.size() > kMaxMetaBytes)
    return "is " + std::to_string(meta.size()) + " bytes (at most " + std::to_string(kMaxMetaBytes) + ")";
  const auto* p = reinterpret_cast<const unsigned char*>(meta.data());
  const size_t n = meta.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c == 0) return "has a NUL byte at offset " + std::to_string(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Lead byte: sequence length and the smallest code point it may encode
    // (anything below is an overlong form).
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else {
      char m[80];
      std::snprintf(m, sizeof m, "is not valid UTF-8 (byte 0x%02x at offset %zu)", c, i);
      return m;
    }
    if (i + len > n) return "is not valid UTF-8 (a sequence cut short at offset " + std::to_string(i) + ")";
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return "is not valid UTF-8 (bad continuation byte at offset " + std::to_string(i + k) + ")";
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return "is not valid UTF-8 (code point " + std::to_string(cp) + " at offset " + std::to_string(i) + ")";
    i += len;
  }
  return "";
}

int64_t PackedLayer::file_bytes() const { return kLayerHeaderBytes + payload_bytes(*this, flags_of(*this)); }

int64_t PackedLayer::out_h() const {
  const int64_t h = type == LayerType::max_pool ? geom.H : geom.OH();
  return geom.pool_k > 0 ? (h - geom.pool_k) / geom.pool_s + 1 : h;
}
int64_t PackedLayer::out_w() const {
  const int64_t w = type == LayerType::max_pool ? geom.W : geom.OW();
  return geom.pool_k > 0 ? (w - geom.pool_k) / geom.pool_s + 1 : w;
}

std::vector<float> PackedLayer::level_weights() const {
  if (type != LayerType::dense_levels)
    throw std::invalid_argument(std::string("level_weights: a ") + layer_type_name(type) + " layer has no k-bit weights");
  if (wbits < 1 || wbits > 16 || (int64_t)w_planes.size() != plane_packed_words(out, in, wbits))
    throw std::invalid_argument("level_weights: inconsistent dense_levels layer (validate() it first)");
  std::vector<int32_t> v(static_cast<size_t>(in * out));
  unpack_planes(w_planes.data(), out, in, wbits, v.data());
  std::vector<float> w(v.size());
  for (size_t i = 0; i < v.size(); ++i) w[i] = level_value(v[i], wbits, w_alpha);
  return w;
}

bool PackedModel::is_binary() const {
  for (const auto& L : layers)
    if (L.type == LayerType::dense_binary || L.type == LayerType::conv_binary) return true;
  return false;
}
bool PackedModel::is_spatial() const {
  for (const auto& L : layers)
    if (L.spatial()) return true;
  return false;
}
bool PackedModel::has_levels() const {
  for (const auto& L : layers)
    if (L.type == LayerType::dense_levels) return true;
  return false;
}
int64_t PackedModel::in_features() const { return layers.empty() ? 0 : layers.front().in; }
int64_t PackedModel::num_classes() const { return layers.empty() ? 0 : layers.back().out; }
int64_t PackedModel::weight_count() const {
  int64_t n = 0;
  for (const auto& L : layers) n += L.weight_count();
  return n;
}
int64_t PackedModel::weight_storage_bits() const {
  int64_t n = 0;
  for (const auto& L : layers) n += L.weight_count() * L.weight_bits();
  return n;
}

namespace {
// The checks of a spatial layer (PackedModel::validate; throws
// std::invalid_argument("<at>: ...")).
void validate_spatial(const PackedModel& m, const PackedLayer& L, const PackedLayer* prev, size_t i,
                      const std::string& at) {
  const std::vector<int64_t>& input_dims = m.input_dims;
  const InputScale input_scale = m.input_scale;
  auto lbad = [&](const std::string& msg) { throw std::invalid_argument(at + ": " + msg); };
  const SpatialGeom& g = L.geom;
  auto in_range = [](int64_t v, int64_t lo) { return v >= lo && v <= kMaxDim; };
  if (!in_range(g.C, 1) || !in_range(g.H, 1) || !in_range(g.W, 1)) lbad("input map sizes out of range");
  if (g.C * g.H * g.W != L.in)
    lbad("input map " + std::to_string(g.C) + "x" + std::to_string(g.H) + "x" + std::to_string(g.W) + " is not " +
         std::to_string(L.in) + " values");
  if (L.type == LayerType::max_pool) {
    if (g.O != 0 || g.K != 0 || g.pad != 0 || g.pad_one || g.stride != 1) lbad("a max_pool layer has conv fields");
    if (g.pool_k < 1) lbad("a max_pool layer needs a window (pool_k >= 1)");
    if (L.input != LayerInput::real && L.input != LayerInput::packed)
      lbad(std::string("a max_pool layer takes real or packed input, not ") + layer_input_name(L.input));
    if (!L.w_f32.empty() || !L.w_bits.empty()) lbad("a max_pool layer has weights");
  } else {
    if (!in_range(g.O, 1) || g.K < 1 || g.K > 64 || g.stride < 1 || g.stride > 64 || g.pad < 0 || g.pad >= g.K)
      lbad("conv geometry out of range (O " + std::to_string(g.O) + ", K " + std::to_string(g.K) + ", stride " +
           std::to_string(g.stride) + ", pad " + std::to_string(g.pad) + ")");
    if (g.H + 2 * g.pad < g.K || g.W + 2 * g.pad < g.K) lbad("the window is larger than the padded image");
    if (g.taps() >= (int64_t(1) << 24)) lbad("too many taps per output");
  }
  if (g.pool_k < 0 || g.pool_k > 64 || (g.pool_k > 0 && (g.pool_s < 1 || g.pool_s > 64)) ||
      (g.pool_k == 0 && g.pool_s != 0))
    lbad("pool geometry out of range (pool_k " + std::to_string(g.pool_k) + ", pool_s " + std::to_string(g.pool_s) + ")");
  const int64_t h = L.type == LayerType::max_pool ? g.H : g.OH(), w = L.type == LayerType::max_pool ? g.W : g.OW();
  if (g.pool_k > 0 && (h < g.pool_k || w < g.pool_k)) lbad("the pool window is larger than the map");
  if (L.out != L.out_channels() * L.out_h() * L.out_w())
    lbad("gives " + std::to_string(L.out) + " outputs, its geometry " +
         std::to_string(L.out_channels() * L.out_h() * L.out_w()));
  // Where the input map comes from.
  if (prev == nullptr) {
    if (input_dims != std::vector<int64_t>{g.C, g.H, g.W})
      lbad("the model's input dims are not the first conv's input map [" + std::to_string(g.C) + ", " +
           std::to_string(g.H) + ", " + std::to_string(g.W) + "]");
  } else {
    if (!prev->spatial()) lbad("a conv / pool layer after a dense layer (not supported)");
    if (prev->out_channels() != g.C || prev->out_h() != g.H || prev->out_w() != g.W)
      lbad("its input map does not match layer " + std::to_string(i - 1) + "'s output map");
  }
  const bool prev_packed = prev && prev->packed_out();
  if (L.input == LayerInput::packed && !prev_packed) lbad("takes packed signs but the previous layer does not output them");
  if (L.input == LayerInput::real && prev_packed) lbad("takes real input but the previous layer outputs packed signs");
  if (L.type == LayerType::conv_f32) {
    if (L.input != LayerInput::real) lbad(std::string("a conv_f32 layer takes real input, not ") + layer_input_name(L.input));
    if (g.pad_one) lbad("a conv_f32 layer pads with 0 (pad_one is for packed input)");
    if ((int64_t)L.w_f32.size() != g.O * g.taps()) lbad("weight array has " + std::to_string(L.w_f32.size()) + " floats");
    if (!L.w_bits.empty()) lbad("has packed weights");
  } else if (L.type == LayerType::conv_binary) {
    if (L.input == LayerInput::pixels8) {
      if (i != 0) lbad("pixels8 input is only for the first layer");
      if (input_scale != InputScale::odd_over_256)
        lbad(std::string("pixels8 input needs input scaling (2p-255)/256, the model has ") + input_scale_name(input_scale));
      if (g.pad_one) lbad("a conv on pixels pads with 0 (pad_one is for packed input)");
      if (255 * g.taps() >= (int64_t(1) << 24)) lbad("too many taps for exact 8-bit products");
    } else if (L.input != LayerInput::packed) {
      lbad(std::string("a conv_binary layer takes pixels8 or packed input, not ") + layer_input_name(L.input));
    }
    if (!L.w_f32.empty()) lbad("has float weights");
    const int64_t K = g.taps(), W = packed_words(K), used = words64(K);
    if ((int64_t)L.w_bits.size() != g.O * W) lbad("packed weight array has " + std::to_string(L.w_bits.size()) + " words");
    const uint64_t tail = (K % 64) ? (uint64_t(1) << (K % 64)) - 1 : ~uint64_t(0);
    for (int64_t r = 0; r < g.O; ++r) {
      const uint64_t* row = L.w_bits.data() + r * W;
      bool ok = (row[used - 1] & ~tail) == 0;
      for (int64_t q = used; q < W; ++q) ok = ok && row[q] == 0;
      if (!ok) lbad("packed weight row " + std::to_string(r) + " has nonzero padding bits");
    }
  }
}
}  // namespace

void PackedModel::validate(const std::string& what) const {
  auto bad = [&](const std::string& msg) { throw std::invalid_argument(what + ": " + msg); };
  if (layers.empty()) bad("no layers");
  if ((int64_t)layers.size() > kMaxLayers) bad(std::to_string(layers.size()) + " layers (at most 4096)");
  const uint32_t sc = static_cast<uint32_t>(input_scale);
  if (sc > 3) bad("unknown input scaling " + std::to_string(sc));
  if (input_dims.empty() || input_dims.size() > 8) bad("input has " + std::to_string(input_dims.size()) + " dims (1..8)");
  int64_t numel = 1;
  for (int64_t d : input_dims) {
    if (d < 1 || d > kMaxDim) bad("input dim " + std::to_string(d) + " out of range");
    numel *= d;
    if (numel > kMaxDim) bad("input too large");
  }
  if (numel != layers[0].in)
    bad("input dims give " + std::to_string(numel) + " values but layer 0 takes " + std::to_string(layers[0].in));
  for (size_t i = 0; i < layers.size(); ++i) {
    const PackedLayer& L = layers[i];
    const std::string at = "layer " + std::to_string(i) + " (" + dims_str(L) + ")";
    auto lbad = [&](const std::string& msg) { bad(at + ": " + msg); };
    if (static_cast<uint32_t>(L.type) < 1 || static_cast<uint32_t>(L.type) > 6)
      bad("layer " + std::to_string(i) + ": unknown type " + std::to_string(static_cast<uint32_t>(L.type)));
    if (L.in < 1 || L.in > kMaxDim || L.out < 1 || L.out > kMaxDim) lbad("sizes out of range [1, 2^26]");
    const PackedLayer* prev = i > 0 ? &layers[i - 1] : nullptr;
    if (prev && prev->out != L.in)
      lbad("takes " + std::to_string(L.in) + " inputs but layer " + std::to_string(i - 1) + " gives " +
           std::to_string(prev->out));
    const bool prev_packed = prev && prev->packed_out();
    if (!L.spatial() && L.geom.C + L.geom.H + L.geom.W + L.geom.O + L.geom.K + L.geom.pool_k != 0)
      lbad("has a conv / pool geometry (only spatial layers do)");
    if (L.spatial()) {
      try {
        validate_spatial(*this, L, prev, i, at);
      } catch (const std::invalid_argument& e) {
        bad(e.what());
      }
    }
    // Padding bits must be 0 (bitpack.h rule 4), else dot products are wrong:
    // `rows` packed rows of packed_words(in) words each.
    auto check_pads = [&](const PackedVector& P, int64_t rows, auto&& what) {
      const int64_t W = packed_words(L.in), used = words64(L.in);
      const uint64_t tail = (L.in % 64) ? (uint64_t(1) << (L.in % 64)) - 1 : ~uint64_t(0);
      for (int64_t r = 0; r < rows; ++r) {
        const uint64_t* row = P.data() + r * W;
        bool ok = (row[used - 1] & ~tail) == 0;
        for (int64_t w = used; w < W; ++w) ok = ok && row[w] == 0;
        if (!ok) lbad(what(r) + " has nonzero padding bits");
      }
    };
    if (L.type != LayerType::dense_levels && (!L.w_planes.empty() || L.wbits != 0))
      lbad("has k-bit weight fields (only dense_levels layers do)");
    if (L.type == LayerType::dense_f32) {
      if (L.input != LayerInput::real) lbad(std::string("a dense_f32 layer takes real input, not ") + layer_input_name(L.input));
      if (prev_packed) lbad("full-precision layer after a layer with packed sign outputs (not supported)");
      if ((int64_t)L.w_f32.size() != L.in * L.out) lbad("weight array has " + std::to_string(L.w_f32.size()) + " floats");
      if (!L.w_bits.empty()) lbad("has packed weights");
      if (L.sign_out) lbad("a dense_f32 layer cannot have a sign epilogue");
    } else if (L.type == LayerType::dense_levels) {
      if (L.wbits < 1 || L.wbits > 16) lbad(std::to_string(L.wbits) + "-bit weights (dense_levels has 1..16)");
      if (!std::isfinite(L.w_alpha) || !(L.w_alpha > 0.f))
        lbad("weight alpha " + std::to_string(L.w_alpha) + " (must be finite and > 0)");
      switch (L.input) {
        case LayerInput::real:
          if (L.in_bits != kRealInputBits || L.in_alpha != 0.f)
            lbad("real input but input quantizer fields (bits " + std::to_string(L.in_bits) + ", alpha " +
                 std::to_string(L.in_alpha) + "); real input has bits 32, alpha 0");
          break;
        case LayerInput::levels:
        case LayerInput::levels_f32:
          if (L.in_bits < 1 || L.in_bits > 16)
            lbad(std::to_string(L.in_bits) + "-bit input quantizer (" + layer_input_name(L.input) + " input has 1..16)");
          if (!std::isfinite(L.in_alpha) || !(L.in_alpha > 0.f))
            lbad("input alpha " + std::to_string(L.in_alpha) + " (must be finite and > 0)");
          if (L.input == LayerInput::levels && !levels_exact(L.in, L.in_bits, L.wbits))
            lbad(std::to_string(L.in) + " inputs at " + std::to_string(L.in_bits) + " x " + std::to_string(L.wbits) +
                 " bits can reach 2^24, where the integer sums stop being exact floats (the training framework "
                 "computes such a layer as levels_f32)");
          break;
        default: lbad(std::string("a dense_levels layer cannot take ") + layer_input_name(L.input) + " input");
      }
      if (prev_packed) lbad("k-bit layer after a layer with packed sign outputs (not supported)");
      if (!L.w_f32.empty() || !L.w_bits.empty()) lbad("has float or 1-bit packed weights");
      if ((int64_t)L.w_planes.size() != plane_packed_words(L.out, L.in, L.wbits))
        lbad("weight plane array has " + std::to_string(L.w_planes.size()) + " words, expected " +
             std::to_string(plane_packed_words(L.out, L.in, L.wbits)));
      check_pads(L.w_planes, L.out * L.wbits, [&](int64_t r) {
        return "weight row " + std::to_string(r / L.wbits) + " plane " + std::to_string(r % L.wbits);
      });
    } else if (L.type == LayerType::dense_binary) {
      switch (L.input) {
        case LayerInput::packed:
          if (!prev_packed) lbad("takes packed signs but the previous layer does not output them");
          break;
        case LayerInput::pixels8:
          if (i != 0) lbad("pixels8 input is only for the first layer");
          if (input_scale != InputScale::odd_over_256)
            lbad(std::string("pixels8 input needs input scaling (2p-255)/256, the model has ") + input_scale_name(input_scale));
          if (L.in > kMaxPixelsIn) lbad("too many inputs for exact 8-bit products (at most 65793)");
          break;
        case LayerInput::sign:
          if (prev_packed) lbad("sign input after packed signs (use packed)");
          break;
        default: lbad(std::string("a dense_binary layer cannot take ") + layer_input_name(L.input) + " input");
      }
      if (L.in >= (int64_t(1) << 31)) lbad("too many inputs");
      const int64_t W = packed_words(L.in);
      if ((int64_t)L.w_bits.size() != L.out * W) lbad("packed weight array has " + std::to_string(L.w_bits.size()) + " words");
      if (!L.w_f32.empty()) lbad("has float weights");
      check_pads(L.w_bits, L.out, [&](int64_t r) { return "packed weight row " + std::to_string(r); });
    }
    const size_t n = static_cast<size_t>(L.channels());
    if (L.type == LayerType::max_pool && (L.sign_out || !L.bias.empty() || L.affine || L.relu))
      lbad("a max_pool layer has no epilogue (no sign, bias, affine or relu)");
    if (L.sign_out) {
      if (L.type != LayerType::dense_binary && L.type != LayerType::conv_binary) lbad("sign epilogue needs a binary layer");
      if (L.thresh.size() != n || L.flip.size() != n) lbad("threshold / flip arrays do not have one entry per output");
      if (!L.bias.empty() || L.affine || L.relu) lbad("a sign epilogue has no bias, affine or relu (they are folded)");
      const int64_t vm = vmax_of(L) + 1;
      for (size_t j = 0; j < n; ++j) {
        if (L.flip[j] > 1) lbad("flip of channel " + std::to_string(j) + " is " + std::to_string(L.flip[j]));
        if (L.thresh[j] < -vm || L.thresh[j] > vm)
          lbad("threshold of channel " + std::to_string(j) + " (" + std::to_string(L.thresh[j]) +
               ") is outside the dot product's range +-" + std::to_string(vm));
      }
    } else {
      if (!L.thresh.empty() || !L.flip.empty()) lbad("thresholds without a sign epilogue");
      if (!L.bias.empty() && L.bias.size() != n) lbad("bias array has " + std::to_string(L.bias.size()) + " entries");
      if (L.affine && (L.center.size() != n || L.scale.size() != n || L.shift.size() != n))
        lbad("affine arrays do not have one entry per output");
      if (!L.affine && (!L.center.empty() || !L.scale.empty() || !L.shift.empty())) lbad("affine arrays without the flag");
    }
  }
  if (layers.back().sign_out) bad("the last layer outputs signs; it must output logits (float)");
  if (layers.back().spatial()) bad("the last layer is a conv / pool layer; it must be a dense layer giving logits");
  const std::string mp = meta_problem(meta);
  if (!mp.empty()) bad("metadata " + mp);
}

std::string PackedModel::to_bytes() const {
  validate("export");
  std::string s;
  int64_t total = 4 + 4 + 8 + 4 + 4 + 4 + 4 + 8 * (int64_t)input_dims.size() + 4;
  const bool v4 = is_spatial();
  if (!meta.empty() || v4) total += 4 + (int64_t)meta.size();
  for (const auto& L : layers) total += L.file_bytes();
  s.reserve(static_cast<size_t>(total));
  s.append(kMagic, 4);
  put<uint32_t>(s, v4 ? kVersionSpatial : !meta.empty() ? kVersionMeta : has_levels() ? kVersionLevels : kVersionBase);
  put<uint64_t>(s, static_cast<uint64_t>(total));
  put<uint32_t>(s, has_levels() ? 2u : is_binary() ? 1u : 0u);
  put<uint32_t>(s, static_cast<uint32_t>(layers.size()));
  put<uint32_t>(s, static_cast<uint32_t>(input_scale));
  put<uint32_t>(s, static_cast<uint32_t>(input_dims.size()));
  for (int64_t d : input_dims) put<uint64_t>(s, static_cast<uint64_t>(d));
  if (!meta.empty() || v4) {  // version 4: always, possibly 0 bytes
    put<uint32_t>(s, static_cast<uint32_t>(meta.size()));
    s += meta;
  }
  for (const auto& L : layers) {
    const uint32_t flags = flags_of(L);
    put<uint32_t>(s, static_cast<uint32_t>(L.type));
    put<uint32_t>(s, static_cast<uint32_t>(L.input));
    put<uint32_t>(s, static_cast<uint32_t>(L.weight_bits()));
    put<uint32_t>(s, flags);
    put<uint64_t>(s, static_cast<uint64_t>(L.in));
    put<uint64_t>(s, static_cast<uint64_t>(L.out));
    put<uint64_t>(s, static_cast<uint64_t>(payload_bytes(L, flags)));
    if (L.spatial()) {
      const SpatialGeom& g = L.geom;
      for (int64_t v : {g.C, g.H, g.W, g.O, g.K, g.stride, g.pad, int64_t(g.pad_one), g.pool_k, g.pool_s})
        put<uint32_t>(s, static_cast<uint32_t>(v));
      if (L.type == LayerType::conv_f32) {
        put_array(s, L.w_f32.data(), L.w_f32.size());
      } else if (L.type == LayerType::conv_binary) {
        const int64_t W = packed_words(g.taps()), used = words64(g.taps());
        for (int64_t r = 0; r < g.O; ++r) put_array(s, L.w_bits.data() + r * W, static_cast<size_t>(used));
      }
    } else if (L.type == LayerType::dense_f32) {
      put_array(s, L.w_f32.data(), L.w_f32.size());
    } else if (L.type == LayerType::dense_levels) {
      put<float>(s, L.w_alpha);
      put<uint32_t>(s, static_cast<uint32_t>(L.in_bits));
      put<float>(s, L.in_alpha);
      const int64_t W = packed_words(L.in), used = words64(L.in);
      for (int64_t r = 0; r < L.out * L.wbits; ++r) put_array(s, L.w_planes.data() + r * W, static_cast<size_t>(used));
    } else {
      const int64_t W = packed_words(L.in), used = words64(L.in);
      for (int64_t r = 0; r < L.out; ++r) put_array(s, L.w_bits.data() + r * W, static_cast<size_t>(used));
    }
    if (!L.bias.empty()) put_array(s, L.bias.data(), L.bias.size());
    if (L.affine) {
      put_array(s, L.center.data(), L.center.size());
      put_array(s, L.scale.data(), L.scale.size());
      put_array(s, L.shift.data(), L.shift.size());
    }
    if (L.sign_out) {
      put_array(s, L.thresh.data(), L.thresh.size());
      put_array(s, L.flip.data(), L.flip.size());
    }
  }
  put<uint32_t>(s, crc32_zlib(s.data(), s.size()));
  if ((int64_t)s.size() != total) throw std::logic_error("PackedModel::to_bytes: size bookkeeping is wrong");
  return s;
}

PackedModel PackedModel::from_bytes(const std::string& buf, const std::string& name) {
  const std::string who = "'" + name + "'";
  auto fail = [&](const std::string& msg) -> void { throw std::runtime_error(who + ": " + msg); };
  const size_t size = buf.size();
  if (size >= 4 && std::memcmp(buf.data(), kMagic, 4) != 0)
    fail("not a qnn exported model (bad magic: expected \"QNNX\")");
  if (size < 16) fail("truncated: " + std::to_string(size) + " bytes, too short for a model header");
  uint32_t version;
  std::memcpy(&version, buf.data() + 4, 4);
  if (version < kVersionBase || version > kVersionSpatial)
    fail("format version " + std::to_string(version) + ", this build reads versions " + std::to_string(kVersionBase) +
         " to " + std::to_string(kVersionSpatial));
  uint64_t declared;
  std::memcpy(&declared, buf.data() + 8, 8);
  if (declared > size)
    fail("truncated: the header declares " + std::to_string(declared) + " bytes but the file has " +
         std::to_string(size));
  if (declared < size)
    fail(std::to_string(size - declared) + " trailing bytes after the model (the header declares " +
         std::to_string(declared) + " bytes, the file has " + std::to_string(size) + ")");
  const size_t kMinBytes = 4 + 4 + 8 + 4 * 4 + 4;
  if (size < kMinBytes) fail("truncated: " + std::to_string(size) + " bytes, too short for a model header");
  uint32_t stored;
  std::memcpy(&stored, buf.data() + size - 4, 4);
  const uint32_t crc = crc32_zlib(buf.data(), size - 4);
  if (crc != stored) {
    char m[160];
    std::snprintf(m, sizeof m, "CRC mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt", stored, crc);
    fail(m);
  }

  // The bytes are what was written; now check that the header tells the truth.
  const size_t end = size - 4;
  size_t pos = 16;
  auto get = [&](auto& v, const char* what) {
    if (pos + sizeof v > end)
      fail(std::string("header inconsistent: ") + what + " at offset " + std::to_string(pos) +
           " runs past the end of the data");
    std::memcpy(&v, buf.data() + pos, sizeof v);
    pos += sizeof v;
  };
  PackedModel m;
  uint32_t kind, count, scale, ndim;
  get(kind, "model kind");
  get(count, "layer count");
  get(scale, "input scaling");
  get(ndim, "input rank");
  if (kind > 2) fail("header inconsistent: unknown model kind " + std::to_string(kind));
  if (count < 1 || count > kMaxLayers) fail("header inconsistent: layer count " + std::to_string(count));
  if (scale > 3) fail("header inconsistent: unknown input scaling " + std::to_string(scale));
  if (ndim < 1 || ndim > 8) fail("header inconsistent: input rank " + std::to_string(ndim));
  m.input_scale = static_cast<InputScale>(scale);
  for (uint32_t i = 0; i < ndim; ++i) {
    uint64_t d;
    get(d, "input dims");
    if (d < 1 || d > uint64_t(kMaxDim)) fail("header inconsistent: input dim " + std::to_string(d));
    m.input_dims.push_back(static_cast<int64_t>(d));
  }
  if (version >= kVersionMeta) {
    uint32_t len;
    get(len, "metadata size");
    const uint32_t min_len = version == kVersionSpatial ? 0 : 1;  // version 4: 0 = no metadata
    if (len < min_len || len > kMaxMetaBytes || pos + len > end)
      fail("bad metadata block: " + std::to_string(len) + " bytes declared at offset " + std::to_string(pos) + ", " +
           std::to_string(end - pos) + " bytes of data left (" + std::to_string(min_len) + ".." +
           std::to_string(kMaxMetaBytes) + " allowed)");
    m.meta = buf.substr(pos, len);
    pos += len;
    const std::string mp = meta_problem(m.meta);
    if (!mp.empty()) fail("bad metadata block: the metadata " + mp);
  }
  for (uint32_t i = 0; i < count; ++i) {
    const std::string at = "layer " + std::to_string(i);
    uint32_t type, input, wbits, flags;
    uint64_t in, out, declared_payload;
    get(type, "layer type");
    get(input, "layer input kind");
    get(wbits, "weight bits");
    get(flags, "layer flags");
    get(in, "layer inputs");
    get(out, "layer outputs");
    get(declared_payload, "layer payload size");
    const bool v2 = version >= kVersionLevels;  // k-bit layers: versions 2 to 4
    const bool v4 = version >= kVersionSpatial;  // conv / pool layers: version 4
    if (type < 1 || type > (v4 ? 6u : v2 ? 3u : 2u))
      fail("header inconsistent: " + at + " has unknown type " + std::to_string(type) +
           (type == 3 ? " (dense_levels needs format version 2)"
            : type >= 4 && type <= 6 ? " (conv / pool layers need format version 4)"
                                     : ""));
    if (input > (v2 ? 5u : 3u))
      fail("header inconsistent: " + at + " has unknown input kind " + std::to_string(input) +
           (input == 4 || input == 5 ? " (k-bit inputs need format version 2)" : ""));
    if (type == 3) {
      if (wbits < 1 || wbits > 16)
        fail(at + ": " + std::to_string(wbits) + "-bit weights; dense_levels layers have 1..16-bit weights");
    } else {
      const int expect_bits = type == 1 || type == 4 ? 32 : type == 6 ? 0 : 1;
      const char* names[] = {"", "32-bit dense_f32", "1-bit dense_binary", "", "32-bit conv_f32", "1-bit conv_binary",
                             "0-bit (weightless) max_pool"};
      if (wbits != (uint32_t)expect_bits)
        fail(at + ": " + std::to_string(wbits) + "-bit weights; this build reads " + names[type] + " layers only");
    }
    if (flags & ~uint32_t(kAllFlags)) fail("header inconsistent: " + at + " has unknown flags " + std::to_string(flags));
    if (in < 1 || in > uint64_t(kMaxDim) || out < 1 || out > uint64_t(kMaxDim))
      fail("header inconsistent: " + at + " has sizes " + std::to_string(in) + " -> " + std::to_string(out));
    PackedLayer L;
    L.type = static_cast<LayerType>(type);
    L.input = static_cast<LayerInput>(input);
    L.in = static_cast<int64_t>(in);
    L.out = static_cast<int64_t>(out);
    if (L.type == LayerType::dense_levels) L.wbits = static_cast<int>(wbits);
    if (L.spatial()) {
      // The geometry comes first; the rest of the payload's size depends on it.
      if (declared_payload < uint64_t(kSpatialHeaderBytes) || pos + kSpatialHeaderBytes > end)
        fail("header inconsistent: " + at + " (" + dims_str(L) + ") is a conv / pool layer but has no room for its " +
             "geometry (" + std::to_string(declared_payload) + " payload bytes declared)");
      uint32_t gv[10];
      std::memcpy(gv, buf.data() + pos, sizeof gv);
      for (int q = 0; q < 10; ++q)
        if (gv[q] > uint32_t(kMaxDim))
          fail(at + " (" + dims_str(L) + "): conv / pool geometry value " + std::to_string(gv[q]) + " out of range");
      if (gv[7] > 1) fail(at + " (" + dims_str(L) + "): pad_one is " + std::to_string(gv[7]) + " (0 or 1)");
      SpatialGeom& g = L.geom;
      g.C = gv[0], g.H = gv[1], g.W = gv[2], g.O = gv[3], g.K = gv[4], g.stride = gv[5], g.pad = gv[6];
      g.pad_one = gv[7] != 0, g.pool_k = gv[8], g.pool_s = gv[9];
      // Weight bytes in double first: a lying geometry must not overflow the count.
      const double taps = double(g.C) * double(g.K) * double(g.K);
      const double wb = L.type == LayerType::conv_f32 ? 4.0 * double(g.O) * taps : 8.0 * double(g.O) * (taps / 64.0);
      if (wb > double(end - pos))
        fail("header inconsistent: " + at + " (" + dims_str(L) + ")'s geometry needs more weight bytes than the file has");
    }
    const int64_t need = payload_bytes(L, flags);
    if ((uint64_t)need != declared_payload)
      fail("header inconsistent: " + at + " (" + dims_str(L) + ") needs " + std::to_string(need) +
           " payload bytes for its sizes and flags but declares " + std::to_string(declared_payload));
    if (pos + (size_t)need > end)
      fail("header inconsistent: " + at + " (" + dims_str(L) + ") needs " + std::to_string(need) +
           " payload bytes at offset " + std::to_string(pos) + " but only " + std::to_string(end - pos) +
           " bytes of data are left");
    const char* p = buf.data() + pos;
    auto take = [&](auto* dst, size_t n) {
      std::memcpy(dst, p, n * sizeof(*dst));
      p += n * sizeof(*dst);
    };
    const size_t N = static_cast<size_t>(L.channels());
    if (L.spatial()) {
      p += kSpatialHeaderBytes;  // read above
      const SpatialGeom& g = L.geom;
      if (L.type == LayerType::conv_f32) {
        L.w_f32.resize(static_cast<size_t>(g.O * g.taps()));
        take(L.w_f32.data(), L.w_f32.size());
      } else if (L.type == LayerType::conv_binary) {
        const int64_t W = packed_words(g.taps()), used = words64(g.taps());
        L.w_bits = make_packed(g.O, g.taps());
        for (int64_t r = 0; r < g.O; ++r) take(L.w_bits.data() + r * W, static_cast<size_t>(used));
      }
    } else if (L.type == LayerType::dense_f32) {
      L.w_f32.resize(static_cast<size_t>(L.in * L.out));
      take(L.w_f32.data(), L.w_f32.size());
    } else if (L.type == LayerType::dense_levels) {
      uint32_t in_bits;
      take(&L.w_alpha, 1);
      take(&in_bits, 1);
      take(&L.in_alpha, 1);
      if (!(in_bits >= 1 && in_bits <= 16) && in_bits != uint32_t(kRealInputBits))
        fail(at + ": " + std::to_string(in_bits) + "-bit input quantizer; dense_levels inputs have 1..16 bits, or 32 "
             "for real input");
      L.in_bits = static_cast<int>(in_bits);
      const int64_t W = packed_words(L.in), used = words64(L.in);
      L.w_planes = PackedVector(static_cast<size_t>(plane_packed_words(L.out, L.in, L.wbits)));
      for (int64_t r = 0; r < L.out * L.wbits; ++r) take(L.w_planes.data() + r * W, static_cast<size_t>(used));
    } else {
      const int64_t W = packed_words(L.in), used = words64(L.in);
      L.w_bits = make_packed(L.out, L.in);
      for (int64_t r = 0; r < L.out; ++r) take(L.w_bits.data() + r * W, static_cast<size_t>(used));
    }
    L.sign_out = flags & kSignOut;
    L.affine = flags & kAffine;
    L.relu = flags & kRelu;
    if (flags & kBias) {
      L.bias.resize(N);
      take(L.bias.data(), N);
    }
    if (L.affine) {
      L.center.resize(N), L.scale.resize(N), L.shift.resize(N);
      take(L.center.data(), N);
      take(L.scale.data(), N);
      take(L.shift.data(), N);
    }
    if (L.sign_out) {
      L.thresh.resize(N), L.flip.resize(N);
      take(L.thresh.data(), N);
      take(L.flip.data(), N);
    }
    pos += static_cast<size_t>(need);
    m.layers.push_back(std::move(L));
  }
  if (pos != end)
    fail("header inconsistent: " + std::to_string(end - pos) + " bytes after the last layer are not described by it");
  const char* kind_names[] = {"fp", "bnn", "qnn"};
  if (kind_names[kind] != m.kind())
    fail(std::string("header inconsistent: the header says ") + kind_names[kind] + " but the layers are " + m.kind());
  if (version < kVersionMeta && (version == kVersionLevels) != m.has_levels())
    fail("header inconsistent: format version " + std::to_string(version) + " for " + m.kind() +
         " layers (version 2 is written exactly for models with dense_levels layers)");
  if ((version == kVersionSpatial) != m.is_spatial())
    fail("header inconsistent: format version " + std::to_string(version) +
         (m.is_spatial() ? " with conv / pool layers (they need version 4)"
                         : " without conv / pool layers (version 4 is written exactly for models with them)"));
  try {
    m.validate("model");
  } catch (const std::invalid_argument& e) {
    fail(std::string("inconsistent model: ") + e.what());
  }
  return m;
}

PackedModel PackedModel::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("'" + path + "': cannot open (" + std::strerror(errno) + ")");
  std::string buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw std::runtime_error("'" + path + "': read error");
  return from_bytes(buf, path);
}

// ---- runner ----------------------------------------------------------------------------

PackedRunner::PackedRunner(PackedModel m) : m_(std::move(m)) {
  m_.validate("PackedRunner");
  (void)active_isa();  // decide the kernel variant now, outside any parallel region
  // The one-region path handles chains of binary layers whose activations
  // stay packed (only the first layer may take pixels or signs of floats).
  chain_ = true;
  for (size_t i = 0; i < m_.layers.size(); ++i) {
    const PackedLayer& L = m_.layers[i];
    chain_ = chain_ && L.type == LayerType::dense_binary && (i == 0 || L.input == LayerInput::packed);
  }
  thresh_off_.assign(m_.layers.size(), 0);
  wdec_.resize(m_.layers.size());
  cw_.resize(m_.layers.size());
  for (size_t i = 0; i < m_.layers.size(); ++i) {
    const PackedLayer& L = m_.layers[i];
    max_width_ = std::max({max_width_, L.in, L.out});
    max_pwords_ = std::max(max_pwords_, packed_words(std::max(L.in, L.out)));
    if (L.spatial()) {  // packed NHWC maps in and out
      const SpatialGeom& g = L.geom;
      max_pwords_ = std::max({max_pwords_, g.H * g.W * pixel_words(g.C),
                              L.out_h() * L.out_w() * pixel_words(L.out_channels())});
    }
    if (L.type == LayerType::conv_f32) sgemm_ = true;
    if (L.type == LayerType::conv_binary && L.input == LayerInput::packed) {
      // The (c, ky, kx) rows as +-1 floats, repacked in the NHWC tap order of packed_conv.h.
      const SpatialGeom& g = L.geom;
      std::vector<float> w(static_cast<size_t>(g.O * g.taps()));
      unpack_rows(L.w_bits.data(), g.O, g.taps(), w.data(), g.taps());
      cw_[i] = pack_conv_weights(w.data(), g.O, g.C, g.K, g.K);
    }
    if (L.type == LayerType::dense_f32) sgemm_ = true;
    if (L.type == LayerType::dense_levels) {
      if (L.input == LayerInput::levels) {
        lplane_words_ = std::max(lplane_words_, plane_packed_words(1, L.in, L.in_bits));
      } else if (!pm1_product(L)) {  // a float product on the weights the training framework's quantizer outputs
        wdec_[i] = L.level_weights();
        sgemm_ = true;
      }
    }
    if (!L.sign_out) continue;
    thresh_off_[i] = (int64_t)thresh_f_.size();
    // |t| < 2^24: exact; a conv on pixels compares its sums V / 256 with T / 256 (exact too).
    const bool pix_conv = L.type == LayerType::conv_binary && L.input == LayerInput::pixels8;
    for (int32_t t : L.thresh) thresh_f_.push_back(pix_conv ? float(t) / 256.0f : float(t));
  }
}

void PackedRunner::reserve(int64_t n) {
  if (n <= cap_) return;
  const size_t nf = static_cast<size_t>(n * max_width_);
  for (auto& f : f_) f.assign(nf, 0.f);
  for (auto& p : p_) p = PackedVector(static_cast<size_t>(n * max_pwords_));
  const PackedLayer& L0 = m_.layers.front();
  if (L0.input == LayerInput::pixels8 && L0.type == LayerType::dense_binary) planes_ = PackedVector(static_cast<size_t>(plane_packed_words(n, L0.in, 8)));
  if (lplane_words_ > 0) lplanes_ = PackedVector(static_cast<size_t>(n * lplane_words_));
  cap_ = n;
}

void PackedRunner::logits_u8(const uint8_t* x, int64_t n, float* logits) {
  if (n < 0) throw std::invalid_argument("PackedRunner: negative batch");
  if (n == 0) return;
  if (!x || !logits) throw std::invalid_argument("PackedRunner: null pointer");
  check_pixels_input(m_);
  reserve(n);
  const PackedLayer& L0 = m_.layers.front();
  if (L0.input == LayerInput::pixels8 && L0.type == LayerType::dense_binary) {
    // Small batches take the bit planes; larger ones the floats (2p - 255) / 256
    // (run_large's look-up product for this layer), never both.
    pix_f32_ = n > kSmallBatch;
    if (pix_f32_) {
      float* f = f_[0].data();
      const int64_t cnt = n * L0.in;
      for (int64_t i = 0; i < cnt; ++i) f[i] = float(2 * int(x[i]) - 255) / 256.0f;  // exact
    } else {
      pack_pixel_planes(x, n, L0.in, planes_.data());
    }
  } else {
    float lut[256];
    for (int p = 0; p < 256; ++p) lut[p] = scale_input_pixel(m_.input_scale, (uint8_t)p);
    float* f = f_[0].data();
    const int64_t cnt = n * L0.in;
    for (int64_t i = 0; i < cnt; ++i) f[i] = lut[x[i]];
  }
  fcur_ = 0;
  run(n, logits);
}

void PackedRunner::logits_f32(const float* x, int64_t n, float* logits) {
  if (n < 0) throw std::invalid_argument("PackedRunner: negative batch");
  if (n == 0) return;
  if (!x || !logits) throw std::invalid_argument("PackedRunner: null pointer");
  reserve(n);
  const PackedLayer& L0 = m_.layers.front();
  const int64_t cnt = n * L0.in;
  if (L0.input == LayerInput::pixels8) {
    // The exact values (2p - 255) / 256 only: anything else has no 8-bit form.
    std::vector<uint8_t> px(static_cast<size_t>(cnt));
    for (int64_t i = 0; i < cnt; ++i) {
      const double p = (double(x[i]) * 256.0 + 255.0) / 2.0;
      const bool ok = p >= 0.0 && p <= 255.0 && p == std::floor(p) &&
                      scale_input_pixel(InputScale::odd_over_256, uint8_t(p)) == x[i];
      if (!ok)
        throw std::invalid_argument("PackedRunner: input value " + std::to_string(x[i]) + " at index " +
                                    std::to_string(i) +
                                    " is not a pixel (2p-255)/256; this model's first layer computes on 8-bit pixels");
      px[static_cast<size_t>(i)] = uint8_t(p);
    }
    pix_f32_ = n > kSmallBatch || L0.type == LayerType::conv_binary;  // as logits_u8: floats or planes, not both
    if (pix_f32_)
      std::copy(x, x + cnt, f_[0].data());  // checked above: exactly (2p - 255) / 256
    else
      pack_pixel_planes(px.data(), n, L0.in, planes_.data());
  } else {
    std::copy(x, x + cnt, f_[0].data());
  }
  fcur_ = 0;
  run(n, logits);
}

void PackedRunner::predict_u8(const uint8_t* x, int64_t n, int32_t* labels) {
  const int64_t C = m_.num_classes();
  if ((int64_t)logits_.size() < n * C) logits_.resize(static_cast<size_t>(n * C));
  float* lg = logits_.data();
  logits_u8(x, n, lg);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = lg + i * C;
    int32_t best = 0;
    for (int64_t j = 1; j < C; ++j)
      if (r[j] > r[best] || (std::isnan(r[best]) && !std::isnan(r[j]))) best = (int32_t)j;
    labels[i] = best;
  }
}

void PackedRunner::run(int64_t n, float* logits) {
  const bool small = chain_ && n <= kSmallBatch && !omp_in_parallel();
  const int T = omp_get_max_threads();
  if (T <= 1 || policy_ != ThreadPolicy::adaptive || sgemm_) {
    execute(small, T > 1 && policy_ != ThreadPolicy::one, n, logits);
    return;
  }
  // Adaptive (see packed_model.h): windows of the best choice, short trials of
  // the other. The first trial call is a warm-up (the other thread count
  // finds colder caches) and is not counted.
  const int64_t kTrialCalls = small ? 48 : 2, kMinInterval = small ? 512 : 6, kMaxInterval = small ? 1 << 17 : 1 << 10;
  Tuner& tu = tune_[small ? 0 : 1];
  if (tu.best < 0) {  // start on one thread for small batches, all threads for large ones
    tu.best = small ? 0 : 1;
    tu.interval = small ? 64 : 2;  // a first, short window, then a trial
  }
  const bool trial = tu.trial_left > 0;
  const int mode = trial ? 1 - tu.best : tu.best;
  const auto t0 = std::chrono::steady_clock::now();
  execute(small, mode == 1, n, logits);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!trial) {
    tu.win_sum += dt;
    tu.win_rows += n;
    if (++tu.win_calls < tu.interval) return;
    const double cost = tu.win_sum / double(tu.win_rows);
    tu.win_sum = 0, tu.win_rows = 0, tu.win_calls = 0;
    if (tu.probation) {  // the window after a switch: was it really better?
      tu.probation = false;
      if (cost > tu.prev_cost) {  // no: go back, and try again later than before
        tu.best = 1 - tu.best;
        tu.best_cost = tu.prev_cost;
        tu.interval = std::min(2 * tu.prev_interval, kMaxInterval);
        return;
      }
    }
    tu.best_cost = cost;
    tu.trial_left = int(kTrialCalls) + 1;
    tu.trial_sum = 0, tu.trial_rows = 0;
    return;
  }
  const bool warmup = tu.trial_left == kTrialCalls + 1;
  if (!warmup) tu.trial_sum += dt, tu.trial_rows += n;
  --tu.trial_left;
  const bool hopeless = !warmup && tu.trial_sum > 3.0 * tu.best_cost * double(tu.trial_rows);
  if (tu.trial_left > 0 && !hopeless) return;
  tu.trial_left = 0;
  if (!hopeless && tu.trial_rows > 0 && tu.trial_sum / double(tu.trial_rows) < tu.best_cost) {
    tu.prev_cost = tu.best_cost;  // switch, on probation for one window
    tu.prev_interval = tu.interval;
    tu.best = mode;
    tu.probation = true;
    tu.interval = kMinInterval;
  } else {
    tu.interval = std::min(std::max(2 * tu.interval, kMinInterval), kMaxInterval);
  }
}

void PackedRunner::execute(bool small, bool all_threads, int64_t n, float* logits) {
  ++calls_[all_threads ? 1 : 0];
  const int T = omp_get_max_threads();
  if (small) {
    run_small(n, logits, all_threads ? T : 1);
    return;
  }
  if (all_threads || T == 1) {
    run_large(n, logits);
    return;
  }
  // One thread for the kernels' own parallel regions (and BLAS), restored after.
  struct Restore {
    int t;
    ~Restore() { omp_set_num_threads(t); }
  } restore{T};
  omp_set_num_threads(1);
  run_large(n, logits);
}

// A first layer on 8-bit pixels, for a large batch: the products
// (2p - 255)/256 x (+-1) are multiples of 1/256 below 2^16, so every partial
// sum is exact in float, in any order: the table look-up product
// (kernels/pm1_gemm.h; about twice as fast here as the eight bit-serial
// planes) gives y = V / 256 exactly, V the integer dot of the bit-serial path.
// Y receives y [n x out]; then per row V = y * 256 and the layer's epilogue:
// packed signs into P (sign_out) or floats written over Y.
static void pixel_layer_pm1(const PackedLayer& L, const float* X, int64_t n, uint64_t* P, float* Y,
                            const EpilogueFns& fn) {
  pm1_gemm_cols(n, L.in, L.out, X, L.in, 1, L.w_bits.data(), Y, L.out, false);
  const int64_t WO = packed_words(L.out);
#pragma omp parallel for schedule(static) if (n * L.out >= (int64_t(1) << 16))
  for (int64_t r = 0; r < n; ++r) {
    std::vector<int32_t> V(static_cast<size_t>(L.out));
    float* y = Y + r * L.out;
    for (int64_t j = 0; j < L.out; ++j) V[static_cast<size_t>(j)] = int32_t(y[j] * 256.0f);  // exact
    if (P) {
      uint64_t* row = P + r * WO;
      fn.threshold_pack(V.data(), L.thresh.data(), L.flip.data(), L.out, row);
      for (int64_t w = (L.out + 63) / 64; w < WO; ++w) row[w] = 0;  // pad words (bitpack.h rule 4)
    } else {
      float_epilogue_binary(L, V.data(), 0, L.out, y);
    }
  }
}

// Layer by layer; every kernel parallelises internally.
void PackedRunner::run_large(int64_t n, float* logits) {
  const size_t nl = m_.layers.size();
  const EpilogueFns fn = epilogue_fns();
  int fi = fcur_;  // f_ buffer holding the current float activations (if any)
  int pi = -1;     // p_ buffer holding the current packed activations (if any)
  for (size_t i = 0; i < nl; ++i) {
    const PackedLayer& L = m_.layers[i];
    const bool last = i + 1 == nl;
    float* fout = last ? logits : f_[fi ^ 1].data();
    if (L.spatial()) {
      spatial_layer(i, n, fi, pi);
      continue;
    }
    if (i > 0 && m_.layers[i - 1].spatial() && m_.layers[i - 1].packed_out()) {
      // Flatten: packed NHWC maps -> packed rows in the NCHW order the weights were trained on.
      const PackedLayer& Lp = m_.layers[i - 1];
      nhwc_to_flat_rows(p_[pi].data(), n, Lp.out_channels(), Lp.out_h(), Lp.out_w(), p_[pi ^ 1].data());
      pi ^= 1;
    }
    if (L.type == LayerType::dense_levels && L.input == LayerInput::levels) {
      // uniform_linear: levels of x, exact integer dot, then y = s * dot (+ b).
      pack_level_planes(f_[fi].data(), n, L.in, L.in_bits, L.in_alpha, lplanes_.data());
      bitserial_gemm_f32(lplanes_.data(), L.in_bits, L.w_planes.data(), L.wbits, n, L.out, L.in, fout, L.out, nullptr,
                         nullptr);
      scale_bias_f32(L, level_step(L.in_bits, L.in_alpha) * level_step(L.wbits, L.w_alpha), fout, n);
      float_epilogue_f32(L, fout, n);
      fi ^= 1;
      continue;
    }
    if (L.type == LayerType::dense_f32 || L.type == LayerType::dense_levels) {
      float* X = f_[fi].data();
      // levels_f32: the input becomes what a QuantAct outputs (in place: this
      // buffer is not read again in this call).
      if (L.input == LayerInput::levels_f32) uniform_values(X, n * L.in, L.in_bits, L.in_alpha, X);
      const bool has_b = !L.bias.empty();
      if (has_b)
        for (int64_t r = 0; r < n; ++r) std::copy(L.bias.begin(), L.bias.end(), fout + r * L.out);
      if (pm1_product(L)) {
        // sign_weight_linear's product: table look-ups in pm1_gemm.h's order,
        // S's columns = the weight rows (1 plane of sign bits = pack_rows).
        pm1_gemm_cols(n, L.in, L.out, X, L.in, 1, L.w_planes.data(), fout, L.out, has_b);
      } else {
        // The call of core/ops_linear.cpp `linear`, so the sums round alike.
        const float* Wt = L.type == LayerType::dense_f32 ? L.w_f32.data() : wdec_[i].data();
        sgemm(false, true, n, L.out, L.in, 1.f, X, L.in, Wt, L.in, has_b ? 1.f : 0.f, fout, L.out);
      }
      float_epilogue_f32(L, fout, n);
      fi ^= 1;
      continue;
    }
    if (L.input == LayerInput::pixels8 && pix_f32_) {
      pixel_layer_pm1(L, f_[fi].data(), n, L.sign_out ? p_[0].data() : nullptr,
                      L.sign_out ? f_[fi ^ 1].data() : fout, fn);
      if (L.sign_out)
        pi = 0;
      else
        fi ^= 1;
      continue;
    }
    const uint64_t* A;
    int po;  // output packed buffer
    if (L.input == LayerInput::pixels8) {
      A = planes_.data();
      po = 0;
    } else if (L.input == LayerInput::sign) {
      pack_rows(f_[fi].data(), n, L.in, L.in, p_[0].data());
      A = p_[0].data();
      po = 1;
    } else {
      A = p_[pi].data();
      po = pi ^ 1;
    }
    if (L.sign_out && L.input != LayerInput::pixels8)  // the fused XNOR + threshold kernel
      xnor_gemm_sign(A, L.w_bits.data(), n, L.out, L.in, thresh_f_.data() + thresh_off_[i], L.flip.data(),
                     p_[po].data());
    else  // bit-serial 8-bit x 1-bit, or float outputs
      binary_layer(L, A, n, 0, L.out, p_[po].data(), fout, fn, false);
    if (L.sign_out)
      pi = po;
    else
      fi ^= 1;
  }
}

// Small batches: one parallel region for the whole network, a fixed slice of
// output channels (whole 64-column words) per thread, barriers between layers.
void PackedRunner::run_small(int64_t n, float* logits, int nthreads) {
  const size_t nl = m_.layers.size();
  const EpilogueFns fn = epilogue_fns();
  int pi = -1;
  if (m_.layers[0].input == LayerInput::sign) {  // only the first layer may pack floats
    pack_rows(f_[fcur_].data(), n, m_.layers[0].in, m_.layers[0].in, p_[0].data());
    pi = 0;
  }
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int pcur = pi;
    for (size_t i = 0; i < nl; ++i) {
      const PackedLayer& L = m_.layers[i];
      const int64_t words = (L.out + 63) / 64;
      const int64_t n0 = 64 * (words * t / nt), n1 = std::min(L.out, 64 * (words * (t + 1) / nt));
      const bool pix = L.input == LayerInput::pixels8;
      const uint64_t* A = pix ? planes_.data() : p_[pcur].data();
      const int po = pix ? (pcur == 0 ? 1 : 0) : pcur ^ 1;
      if (n1 > n0) binary_layer(L, A, n, n0, n1, p_[po].data(), i + 1 == nl ? logits : f_[1].data(), fn, true);
      pcur = po;
      if (i + 1 < nl) {
#pragma omp barrier
      }
    }
  }
}

}  // namespace qnn::kernels
