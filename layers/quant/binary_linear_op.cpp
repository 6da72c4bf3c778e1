// layers/quant/binary_linear_op.cpp — binary_linear, sign_weight_linear and
// uniform_linear: fused quantized linear ops on the bit-packed kernels.
// Design, saved state and the "identical results" contract:
// binary_linear_op.h. Tested in tests/test_quant_kernels*.cpp.
//
// Compiled without trapping math so the elementwise loops vectorise, like the
// quantizers whose arithmetic they must reproduce bit for bit
// (see layers/quant/vec_math.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "layers/quant/binary_linear_op.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "core/autograd.h"
#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "kernels/level_planes.h"
#include "kernels/pm1_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/simd_target.h"
#include "kernels/xnor_gemm.h"

namespace qnn {

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elementwise loops: below this one thread is faster

// ---- the switch ----------------------------------------------------------------------

std::atomic<int> g_default{-1};  // -1: not read yet, 0 off, 1 on
std::mutex g_env_mu;

bool parse_on_off(const char* v) {
  const std::string s(v);
  if (s == "on" || s == "1" || s == "true") return true;
  if (s == "off" || s == "0" || s == "false") return false;
  fail("QNN_QUANT_KERNELS='" + s + "': expected on or off (also 1/0, true/false)");
}

// ---- statistics ---------------------------------------------------------------------

std::atomic<int64_t> g_calls{0}, g_unfused_bytes{0}, g_fused_bytes{0};

// ---- sign + mask packing ------------------------------------------------------------

void pack_sign_mask_row_scalar(const float* x, int64_t K, float clip, uint64_t* s, uint64_t* m, int64_t W) {
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    uint64_t sw = 0, mw = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[k0 + i];
      sw |= uint64_t(v < 0.0f) << i;
      mw |= uint64_t(std::fabs(v) <= clip) << i;
    }
    if (s) s[w] = sw;
    if (m) m[w] = mw;
  }
  for (; w < W; ++w) {
    if (s) s[w] = 0;
    if (m) m[w] = 0;
  }
}

#if QNN_X86
QNN_TARGET_AVX2 void pack_sign_mask_row_avx2(const float* x, int64_t K, float clip, uint64_t* s, uint64_t* m,
                                             int64_t W) {
  const __m256 z = _mm256_setzero_ps(), c = _mm256_set1_ps(clip);
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const int64_t full = K / 64;
  int64_t w = 0;
  for (; w < full; ++w) {
    const float* p = x + 64 * w;
    uint64_t sw = 0, mw = 0;
    for (int q = 0; q < 8; ++q) {
      const __m256 v = _mm256_loadu_ps(p + 8 * q);
      sw |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(v, z, _CMP_LT_OQ)))) << (8 * q);
      const __m256 a = _mm256_and_ps(v, absmask);
      mw |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(a, c, _CMP_LE_OQ)))) << (8 * q);
    }
    if (s) s[w] = sw;
    if (m) m[w] = mw;
  }
  if (K > 64 * full) {
    pack_sign_mask_row_scalar(x + 64 * full, K - 64 * full, clip, s ? s + w : nullptr, m ? m + w : nullptr, W - w);
    return;
  }
  for (; w < W; ++w) {
    if (s) s[w] = 0;
    if (m) m[w] = 0;
  }
}

QNN_TARGET_AVX512 void pack_sign_mask_row_avx512(const float* x, int64_t K, float clip, uint64_t* s, uint64_t* m,
                                                 int64_t W) {
  const __m512 z = _mm512_setzero_ps(), c = _mm512_set1_ps(clip);
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  int64_t w = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 64, ++w) {
    const int64_t n = std::min<int64_t>(64, K - k0);
    uint64_t sw = 0, mw = 0;
    for (int q = 0; q < 4; ++q) {
      const int64_t rem = n - 16 * q;
      if (rem <= 0) break;
      const __mmask16 lm = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(lm, x + k0 + 16 * q);  // absent lanes: 0 -> sign bit 0
      sw |= uint64_t(_mm512_cmp_ps_mask(v, z, _CMP_LT_OQ)) << (16 * q);
      const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), absmask));
      mw |= uint64_t(_mm512_mask_cmp_ps_mask(lm, a, c, _CMP_LE_OQ)) << (16 * q);  // absent lanes: 0
    }
    if (s) s[w] = sw;
    if (m) m[w] = mw;
  }
  for (; w < W; ++w) {
    if (s) s[w] = 0;
    if (m) m[w] = 0;
  }
}
#endif

using PackSignMaskFn = void (*)(const float*, int64_t, float, uint64_t*, uint64_t*, int64_t);

PackSignMaskFn pack_sign_mask_fn() {
#if QNN_X86
  switch (kernels::active_isa()) {
    case kernels::Isa::avx512: return pack_sign_mask_row_avx512;
    case kernels::Isa::avx2: return pack_sign_mask_row_avx2;
    case kernels::Isa::scalar: break;
  }
#endif
  return pack_sign_mask_row_scalar;
}

// ---- gradient helpers -----------------------------------------------------------------

// The hardtanh surrogate with the mask from the forward pass, one row:
//   g[k] = base + (mask bit k ? 1 : 0) * d[k],   base = g[k] (accumulate) or 0 (fresh),
// i.e. exactly surrogate_backward's "gx += (|x| <= C ? 1 : 0) * g" on an
// existing or a zero-filled buffer (same float operations, so the same bits,
// also for -0, inf and NaN in d). d may alias g.
void masked_row_scalar(const uint64_t* mr, int64_t K, const float* d, float* g, bool acc) {
  for (int64_t k = 0; k < K; ++k) {
    const float f = ((mr[k >> 6] >> (k & 63)) & 1) ? 1.0f : 0.0f;
    g[k] = (acc ? g[k] : 0.0f) + f * d[k];
  }
}

#if QNN_X86
QNN_TARGET_AVX2 void masked_row_avx2(const uint64_t* mr, int64_t K, const float* d, float* g, bool acc) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const uint32_t byte = uint32_t(mr[k >> 6] >> (k & 63)) & 0xFF;
    const __m256i bits = _mm256_and_si256(_mm256_set1_epi32(int(byte)), sel);
    const __m256 f = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, sel)), one);
    const __m256 base = acc ? _mm256_loadu_ps(g + k) : zero;
    _mm256_storeu_ps(g + k, _mm256_add_ps(base, _mm256_mul_ps(f, _mm256_loadu_ps(d + k))));
  }
  for (; k < K; ++k) {
    const float f = ((mr[k >> 6] >> (k & 63)) & 1) ? 1.0f : 0.0f;
    g[k] = (acc ? g[k] : 0.0f) + f * d[k];
  }
}

QNN_TARGET_AVX512 void masked_row_avx512(const uint64_t* mr, int64_t K, const float* d, float* g, bool acc) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const int64_t rem = K - k;
    const __mmask16 lm = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
    const __m512 f = _mm512_maskz_mov_ps(__mmask16(mr[k >> 6] >> (k & 63)), one);
    const __m512 base = acc ? _mm512_maskz_loadu_ps(lm, g + k) : zero;
    const __m512 r = _mm512_add_ps(base, _mm512_mul_ps(f, _mm512_maskz_loadu_ps(lm, d + k)));
    _mm512_mask_storeu_ps(g + k, lm, r);
  }
}
#endif

using MaskedRowFn = void (*)(const uint64_t*, int64_t, const float*, float*, bool);

MaskedRowFn masked_row_fn() {
#if QNN_X86
  switch (kernels::active_isa()) {
    case kernels::Isa::avx512: return masked_row_avx512;
    case kernels::Isa::avx2: return masked_row_avx2;
    case kernels::Isa::scalar: break;
  }
#endif
  return masked_row_scalar;
}

void masked_grad_rows(const uint64_t* mask, int64_t rows, int64_t K, const float* d, float* gx, bool accumulate) {
  const int64_t W = kernels::packed_words(K);
  const MaskedRowFn fn = masked_row_fn();
#pragma omp parallel for schedule(static) if (rows * K > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) fn(mask + r * W, K, d + r * K, gx + r * K, accumulate);
}

// Packed bits kept in a Tensor's storage: the caching allocator
// (core/storage.cpp) hands the same sizes back every step, without the page
// faults a fresh malloc of this size would cost. 64-byte aligned; only ever
// accessed as uint64_t.
struct PackedBuf {
  Tensor t;
  explicit PackedBuf(int64_t words) : t(Tensor::empty({2 * std::max<int64_t>(words, 1)})) {}
  uint64_t* data() const { return reinterpret_cast<uint64_t*>(t.impl()->storage->data); }
};

// Are the mask bits of all `rows` packed rows of K elements set (pads excluded)?
bool all_ones(const uint64_t* m, int64_t rows, int64_t K) {
  const int64_t W = kernels::packed_words(K), full = K / 64, rem = K % 64;
  const uint64_t last = rem ? (~uint64_t(0) >> (64 - rem)) : 0;
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t* p = m + r * W;
    for (int64_t w = 0; w < full; ++w)
      if (p[w] != ~uint64_t(0)) return false;
    if (rem && p[full] != last) return false;
  }
  return true;
}

// p[0..n) = +0. Large buffers (a weight-sized gradient about to be written by
// sgemm) are zeroed with streaming stores: no read-for-ownership, and the
// sgemm that follows reads them once anyway.
#if QNN_X86
// One thread's share, n a multiple of 8. (No OpenMP inside: clang outlines a
// parallel region into a function without this target attribute.)
QNN_TARGET_AVX2 void zero_stream_avx2_chunk(float* p, int64_t n) {
  const __m256 z = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) _mm256_stream_ps(p + i, z);
  _mm_sfence();
}
void zero_stream_avx2(float* p, int64_t n) {
  const int64_t chunk = int64_t(1) << 16;  // floats, a multiple of 8
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += chunk) zero_stream_avx2_chunk(p + c, std::min(chunk, n - c));
}
#endif

void zero_fill(float* p, int64_t n) {
#if QNN_X86
  const int64_t head = (int64_t)((64 - (reinterpret_cast<uintptr_t>(p) & 63)) & 63) / 4;
  if (n >= (int64_t(1) << 20) && kernels::active_isa() != kernels::Isa::scalar &&
      (reinterpret_cast<uintptr_t>(p) & 3) == 0 && head < n) {
    for (int64_t i = 0; i < head; ++i) p[i] = 0.0f;
    const int64_t body = (n - head) / 8 * 8;
    zero_stream_avx2(p + head, body);
    for (int64_t i = head + body; i < n; ++i) p[i] = 0.0f;
    return;
  }
#endif
#pragma omp parallel for simd if (parallel: n > (int64_t(1) << 20))
  for (int64_t i = 0; i < n; ++i) p[i] = 0.0f;
}

// dW += S'_W(W) * dq_W for a sign-quantized weight (levels +-1), given the
// forward's packed mask of |W| <= C (hardtanh; null for other surrogates) and
// whether it was all ones. product(C, accumulate) computes dq_W = g^T xb into
// C (overwrite or add). Reproduces the unfused graph — the product into a
// fresh buffer, then the quantizer's "dW += S' * dq" into a zero-filled
// (fresh) or existing gradient — bit for bit.
//   `no_minus_zero`: the product never yields -0 (pm1_gemm: its sum starts
//   at +0), so "0 + dq" is dq itself and the zero fill can be skipped.
template <class Product>
void sign_weight_grad(const Tensor& W, const PackedBuf* wm, bool w_all, const Surrogate& sur, int64_t out,
                      int64_t in, bool no_minus_zero, const Product& product) {
  const bool fresh = !W.has_grad();
  if (wm && fresh) {  // dq_W straight into the new grad buffer
    float beta;
    float* gW = grad_for_gemm(W, beta);
    if (w_all) {
      // All S' = 1: the unfused result is "0 + dq". Either the product adds
      // onto zeros (C + dq: exactly that, and the zero fill replaces the one
      // sgemm does for beta = 0), or it cannot produce -0 and writes dq.
      if (no_minus_zero) {
        product(gW, false);
      } else {
        zero_fill(gW, out * in);
        product(gW, true);
      }
    } else {
      product(gW, false);
      masked_grad_rows(wm->data(), out, in, gW, gW, false);
    }
    return;
  }
  Tensor dq = Tensor::empty({out, in});
  product(dq.data(), false);
  if (wm)
    masked_grad_rows(wm->data(), out, in, dq.data(), W.grad_data(), true);
  else
    surrogate_backward(sur, QuantGeometry{1, 1.0f}, W.data(), dq.data(), W.grad_data(), out * in);
}

// y[i][j] = b[j] for every row when b is defined (the products then add onto
// it: "b + dot", one rounding, as linear() does); nothing otherwise.
void fill_bias_rows(const Tensor& b, int64_t N, int64_t out, float* y) {
  if (!b.defined()) return;
  const float* pb = b.data();
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < out; ++j) y[i * out + j] = pb[j];
}

// db[j] += sum_i g[i][j], rows in order (linear's and add's loop order).
void bias_grad(const float* g, int64_t N, int64_t out, float* gb) {
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < out; ++j) gb[j] += g[i * out + j];
}

// Surrogate clip of a 1-bit quantizer with levels +-1 (geometry bits 1, a 1):
// surrogate.cpp's params_of computes it as param * a.
float sign_clip(const Surrogate& s) { return s.param * 1.0f; }

void check_linear_shapes(const char* op, const Tensor& x, const Tensor& W, const Tensor& b) {
  QNN_CHECK(x.defined() && W.defined(), std::string(op) + ": undefined input");
  QNN_CHECK(x.ndim() == 2 && W.ndim() == 2, std::string(op) + ": x must be [N, in] and W [out, in], got " +
                                                shape_str(x.shape()) + " and " + shape_str(W.shape()));
  QNN_CHECK(W.dim(1) == x.dim(1), std::string(op) + ": x is " + shape_str(x.shape()) + " but W is " +
                                      shape_str(W.shape()) + " (in-features differ)");
  if (b.defined())
    QNN_CHECK(b.ndim() == 1 && b.dim(0) == W.dim(0), std::string(op) + ": bias is " + shape_str(b.shape()) +
                                                         ", expected [" + std::to_string(W.dim(0)) + "]");
}

}  // namespace

// ---- switch ---------------------------------------------------------------------------

bool quant_kernels_default() {
  int v = g_default.load(std::memory_order_relaxed);
  if (v < 0) {
    std::lock_guard<std::mutex> lock(g_env_mu);
    v = g_default.load();
    if (v < 0) {
      const char* e = std::getenv("QNN_QUANT_KERNELS");
      v = (e == nullptr || *e == '\0') ? 1 : (parse_on_off(e) ? 1 : 0);
      g_default.store(v);
    }
  }
  return v == 1;
}

void set_quant_kernels_default(bool on) { g_default.store(on ? 1 : 0); }

// ---- memory accounting -------------------------------------------------------------------

SavedBytes binary_linear_unfused_bytes(int64_t N, int64_t in, int64_t out, const BinaryLinearSpec& spec) {
  // linear(xq, wq) keeps both operands; pre-quantized operands are the
  // quantizer's outputs in both paths (the graph holds them either way).
  SavedBytes s;
  if (spec.quantize_input) s.activation = N * in * 4;
  if (spec.quantize_weight) s.weight = out * in * 4;
  return s;
}

SavedBytes binary_linear_fused_bytes(int64_t N, int64_t in, int64_t out, const BinaryLinearSpec& spec) {
  const int64_t row = kernels::packed_words(in) * 8;
  SavedBytes s;
  s.activation = N * row;  // sign(x), for dW (also when x is pre-quantized)
  if (spec.quantize_input && spec.input_surrogate.kind == SurrogateKind::hardtanh) s.activation += N * row;  // mask
  s.weight = out * row;  // sign(W), for dx
  if (spec.quantize_weight && spec.weight_surrogate.kind == SurrogateKind::hardtanh) s.weight += out * row;  // mask
  return s;
}

BinaryLinearStats binary_linear_stats() {
  return {g_calls.load(), g_unfused_bytes.load(), g_fused_bytes.load()};
}

void reset_binary_linear_stats() {
  g_calls = 0;
  g_unfused_bytes = 0;
  g_fused_bytes = 0;
}

namespace detail {
void pack_sign_mask(const float* x, int64_t rows, int64_t K, int64_t ldx, float clip, uint64_t* sign,
                    uint64_t* mask) {
  QNN_CHECK(rows >= 0 && K >= 0 && ldx >= K, "pack_sign_mask: bad sizes");
  const int64_t W = kernels::packed_words(K);
  if (rows == 0 || W == 0) return;
  const PackSignMaskFn fn = pack_sign_mask_fn();
#pragma omp parallel for schedule(static) if (rows * K >= (int64_t(1) << 17) && rows > 1)
  for (int64_t r = 0; r < rows; ++r)
    fn(x + r * ldx, K, clip, sign ? sign + r * W : nullptr, mask ? mask + r * W : nullptr, W);
}

void masked_add_rows(const uint64_t* mask, int64_t rows, int64_t K, const float* d, float* gx) {
  masked_grad_rows(mask, rows, K, d, gx, /*accumulate=*/true);
}
}  // namespace detail

// ---- binary_linear -------------------------------------------------------------------------
// y[N, out] = sign(x)[N, in] sign(W)[out, in]^T + b[out]
// backward: dq_x[N, in]    = g sign(W)      dx += S'_x(x) * dq_x
//           dq_W[out, in]  = g^T sign(x)    dW += S'_W(W) * dq_W
//           db[out]       += sum over rows of g
Tensor binary_linear(const Tensor& x, const Tensor& W, const Tensor& b, const BinaryLinearSpec& spec) {
  check_linear_shapes("binary_linear", x, W, b);
  const int64_t N = x.dim(0), in = x.dim(1), out = W.dim(0);
  const int64_t PW = kernels::packed_words(in);
  const bool rec = needs_grad(x, W, b);
  const bool want_dx = rec && x.requires_grad();
  const bool want_dW = rec && W.requires_grad();

  // Input bits (always: the forward product), plus the surrogate's mask when
  // the input's gradient will go through hardtanh.
  const bool x_mask = want_dx && spec.quantize_input && spec.input_surrogate.kind == SurrogateKind::hardtanh;
  auto xp = std::make_shared<PackedBuf>(N * PW);
  std::shared_ptr<PackedBuf> xm;
  if (x_mask) xm = std::make_shared<PackedBuf>(N * PW);
  detail::pack_sign_mask(x.data(), N, in, in, sign_clip(spec.input_surrogate), xp->data(),
                         xm ? xm->data() : nullptr);
  // Weight bits, and the weight surrogate's mask likewise. If every |W| <= C
  // (always so for BinaryNet's clipped weights) the mask is all ones and
  // backward can skip applying it.
  const bool w_mask = want_dW && spec.quantize_weight && spec.weight_surrogate.kind == SurrogateKind::hardtanh;
  auto wp = std::make_shared<PackedBuf>(out * PW);
  std::shared_ptr<PackedBuf> wm;
  if (w_mask) wm = std::make_shared<PackedBuf>(out * PW);
  detail::pack_sign_mask(W.data(), out, in, in, sign_clip(spec.weight_surrogate), wp->data(),
                         wm ? wm->data() : nullptr);
  const bool w_all = wm && all_ones(wm->data(), out, in);

  Tensor y = Tensor::empty({N, out});
  // dot is exact; with a bias, 1 * dot + b: the one rounding of "dot + b".
  kernels::xnor_gemm_f32(xp->data(), wp->data(), N, out, in, y.data(), out, nullptr,
                         b.defined() ? b.data() : nullptr);

  if (rec) {
    g_calls.fetch_add(1, std::memory_order_relaxed);
    g_unfused_bytes.fetch_add(binary_linear_unfused_bytes(N, in, out, spec).total(), std::memory_order_relaxed);
    g_fused_bytes.fetch_add(binary_linear_fused_bytes(N, in, out, spec).total(), std::memory_order_relaxed);
    // Keep only what backward reads: W's bits for dx, x's bits for dW.
    if (!want_dx) wp.reset();
    if (!want_dW) xp.reset();
    std::vector<Tensor> inputs{x, W};
    if (b.defined()) inputs.push_back(b);
    record(y, "binary_linear", std::move(inputs),
           [x, W, b, xp, xm, wp, wm, w_all, spec, N, in, out](const Tensor& gout) {
      const float* pg = gout.data();
      Tensor g0;
      if (b.defined()) {
        float* gb = b.requires_grad() ? b.grad_data() : nullptr;
        if (gb) bias_grad(pg, N, out, gb);
        // The unfused path is add(linear(xq, wq), b): add's backward hands
        // linear the gradient "0 + g" (it adds into a zero-filled buffer),
        // which differs from g in the sign of zeros. Mirror it.
        g0 = Tensor::empty({N, out});
        float* p0 = g0.data();
        for (int64_t i = 0; i < N * out; ++i) p0[i] = 0.0f + pg[i];
        pg = p0;
      }
      // The two products with a +-1 operand are pm1_gemm's table look-ups
      // (kernels/pm1_gemm.h) on the packed bits kept from the forward; the
      // unfused graph computes the same sums with pm1_linear's plain loops.
      if (x.requires_grad()) {  // dq_x = g sign(W):  A = g [N x out], S = sign(W) [out x in]
        auto product = [&](float* C, bool acc) { kernels::pm1_gemm(N, out, in, pg, out, 1, wp->data(), C, in, acc); };
        const bool fresh = !x.has_grad();
        if (!spec.quantize_input) {  // as pm1_linear(): dx (+)= g sign(W)
          float beta;
          float* gx = grad_for_gemm(x, beta);
          product(gx, beta != 0.f);
        } else if (xm && fresh) {  // dq_x straight into the new grad buffer, mask in place
          float beta;
          float* gx = grad_for_gemm(x, beta);
          product(gx, false);
          masked_grad_rows(xm->data(), N, in, gx, gx, false);
        } else {
          Tensor dq = Tensor::empty({N, in});
          product(dq.data(), false);
          if (xm)
            masked_grad_rows(xm->data(), N, in, dq.data(), x.grad_data(), true);
          else
            surrogate_backward(spec.input_surrogate, QuantGeometry{1, 1.0f}, x.data(), dq.data(), x.grad_data(),
                               N * in);
        }
      }
      if (W.requires_grad()) {  // dq_W = g^T sign(x):  A = g^T (strides 1, out), S = sign(x) [N x in]
        auto product = [&](float* C, bool acc) { kernels::pm1_gemm(out, N, in, pg, 1, out, xp->data(), C, in, acc); };
        if (!spec.quantize_weight) {  // as pm1_linear(): dW (+)= g^T sign(x)
          float beta;
          float* gW = grad_for_gemm(W, beta);
          product(gW, beta != 0.f);
        } else {
          sign_weight_grad(W, wm.get(), w_all, spec.weight_surrogate, out, in, true, product);
        }
      }
    });
  }
  return y;
}

// ---- pm1_linear ----------------------------------------------------------------------------
// y[N, out] = xq[N, in] wq[out, in]^T + b[out]   (xq, wq hold +-1: the kernels-off twin of binary_linear)
// backward: dxq (+)= g ·4 wq ;  dwq (+)= g^T ·4 xq ;  db += sum over rows of g
// "·4" is pm1_gemm.h's summation in groups of four, here by its plain loops.
Tensor pm1_linear(const Tensor& xq, const Tensor& wq, const Tensor& b) {
  check_linear_shapes("pm1_linear", xq, wq, b);
  const int64_t N = xq.dim(0), in = xq.dim(1), out = wq.dim(0);
  Tensor y = Tensor::empty({N, out});
  float* py = y.data();
  fill_bias_rows(b, N, out, py);  // linear()'s arithmetic: bias rows, then sgemm with beta 1
  kernels::sgemm(false, true, N, out, in, 1.f, xq.data(), in, wq.data(), in, b.defined() ? 1.f : 0.f, py, out);
  if (needs_grad(xq, wq, b)) {
    record(y, "pm1_linear", {xq, wq, b}, [xq, wq, b, N, in, out](const Tensor& g) {
      float beta;
      if (xq.requires_grad()) {
        float* gx = grad_for_gemm(xq, beta);
        kernels::pm1_gemm_reference(N, out, in, g.data(), out, 1, wq.data(), in, gx, in, beta != 0.f);
      }
      if (wq.requires_grad()) {
        float* gW = grad_for_gemm(wq, beta);
        kernels::pm1_gemm_reference(out, N, in, g.data(), 1, out, xq.data(), in, gW, in, beta != 0.f);
      }
      if (b.defined() && b.requires_grad()) bias_grad(g.data(), N, out, b.grad_data());
    });
  }
  return y;
}

// ---- sign_weight_linear ------------------------------------------------------------------
// y[N, out] = x[N, in] sign(W)[out, in]^T + b[out]        (x real: a BNN's first layer)
// backward: dx += g sign(W);  dW += S'_W(W) * (g^T x);  db += sum over rows of g
Tensor sign_weight_linear(const Tensor& x, const Tensor& W, const Tensor& b, const Surrogate& weight_surrogate) {
  check_linear_shapes("sign_weight_linear", x, W, b);
  const int64_t N = x.dim(0), in = x.dim(1), out = W.dim(0);
  const bool rec = needs_grad(x, W, b);
  const bool want_dx = rec && x.requires_grad();
  const bool want_dW = rec && W.requires_grad();
  // One pass over W: sign(W) packed (the +-1 operand of the forward product
  // and of dx), and the hardtanh surrogate's mask when dW will need it.
  auto wp = std::make_shared<PackedBuf>(out * kernels::packed_words(in));
  std::shared_ptr<PackedBuf> wm;
  if (want_dW && weight_surrogate.kind == SurrogateKind::hardtanh)
    wm = std::make_shared<PackedBuf>(out * kernels::packed_words(in));
  detail::pack_sign_mask(W.data(), out, in, in, sign_clip(weight_surrogate), wp->data(), wm ? wm->data() : nullptr);
  const bool w_all = wm && all_ones(wm->data(), out, in);
  // pm1_weight_linear's arithmetic: bias rows, then the grouped sums of
  // x · sign(W)^T added on (sign(W)'s packed rows are the columns of S).
  Tensor y = Tensor::empty({N, out});
  float* py = y.data();
  fill_bias_rows(b, N, out, py);
  kernels::pm1_gemm_cols(N, in, out, x.data(), in, 1, wp->data(), py, out, b.defined());
  if (rec) {
    if (!want_dx) wp.reset();  // only dx reads sign(W) again: otherwise free it now
    std::vector<Tensor> inputs{x, W};
    if (b.defined()) inputs.push_back(b);
    record(y, "sign_weight_linear", std::move(inputs),
           [x, W, b, wp, wm, w_all, weight_surrogate, N, in, out](const Tensor& gout) {
             const float* pg = gout.data();
             if (x.requires_grad()) {  // dx (+)= g sign(W): A = g [N x out], S = sign(W) [out x in]
               float beta;
               float* gx = grad_for_gemm(x, beta);
               kernels::pm1_gemm(N, out, in, pg, out, 1, wp->data(), gx, in, beta != 0.f);
             }
             if (W.requires_grad()) {  // dq_W = g^T x: real x real, sgemm (as linear() does)
               auto product = [&](float* C, bool acc) {
                 kernels::sgemm(true, false, out, in, N, 1.f, pg, out, x.data(), in, acc ? 1.f : 0.f, C, in);
               };
               sign_weight_grad(W, wm.get(), w_all, weight_surrogate, out, in, false, product);
             }
             if (b.defined() && b.requires_grad()) bias_grad(pg, N, out, b.grad_data());
           });
  }
  return y;
}

// ---- pm1_weight_linear -------------------------------------------------------------------
// y[N, out] = x[N, in] ·4 wq[out, in]^T + b[out]   (x real, wq holds +-1: sign_weight_linear's twin)
// backward: dx (+)= g ·4 wq ;  dwq (+)= g^T x (sgemm, as linear()) ;  db += sum over rows of g
Tensor pm1_weight_linear(const Tensor& x, const Tensor& wq, const Tensor& b) {
  check_linear_shapes("pm1_weight_linear", x, wq, b);
  const int64_t N = x.dim(0), in = x.dim(1), out = wq.dim(0);
  // The forward's S is wq^T [in x out]: the reference takes S row-major.
  std::vector<float> wt(size_t(in * out));
  {
    const float* pw = wq.data();
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) wt[size_t(i * out + o)] = pw[o * in + i];
  }
  Tensor y = Tensor::empty({N, out});
  float* py = y.data();
  fill_bias_rows(b, N, out, py);  // then the sums added on (b + acc: one rounding)
  kernels::pm1_gemm_reference(N, in, out, x.data(), in, 1, wt.data(), out, py, out, b.defined());
  if (needs_grad(x, wq, b)) {
    record(y, "pm1_weight_linear", {x, wq, b}, [x, wq, b, N, in, out](const Tensor& g) {
      float beta;
      if (x.requires_grad()) {
        float* gx = grad_for_gemm(x, beta);
        kernels::pm1_gemm_reference(N, out, in, g.data(), out, 1, wq.data(), in, gx, in, beta != 0.f);
      }
      if (wq.requires_grad()) {
        float* gW = grad_for_gemm(wq, beta);
        kernels::sgemm(true, false, out, in, N, 1.f, g.data(), out, x.data(), in, beta, gW, in);
      }
      if (b.defined() && b.requires_grad()) bias_grad(g.data(), N, out, b.grad_data());
    });
  }
  return y;
}

// ---- uniform_linear ------------------------------------------------------------------------

bool uniform_linear_exact(int64_t K, int xbits, int wbits) {
  if (xbits < 1 || xbits > 16 || wbits < 1 || wbits > 16 || K < 0) return false;
  const double bound = double(K) * double((1 << xbits) - 1) * double((1 << wbits) - 1);
  return bound < 16777216.0;  // 2^24
}

// The quantizer's own arithmetic (quantizer.cpp, QuantForward::uniform and,
// for bits = 1, QuantForward::sign), stopping at the odd integer: one copy of
// it, in kernels/level_planes.h, shared with the exported-model runner.
void uniform_levels(const float* x, int64_t n, const QuantGeometry& geo, float* v) {
  QNN_CHECK(geo.bits >= 1 && geo.bits <= 16, "uniform_levels: bits must be 1..16, got " + std::to_string(geo.bits));
  kernels::uniform_levels(x, n, geo.bits, geo.a, v);
}

namespace {

// x [rows, K] -> plane-packed levels (rows * bits * packed_words(K) words),
// the levels of uniform_levels (kernels/level_planes.h).
void pack_level_planes(const float* x, int64_t rows, int64_t K, const QuantGeometry& geo, uint64_t* out) {
  kernels::pack_level_planes(x, rows, K, geo.bits, geo.a, out);
}

float level_step(const QuantGeometry& geo) { return kernels::level_step(geo.bits, geo.a); }  // a / L

}  // namespace

// y[N, out] = s * (v_x[N, in] v_W[out, in]^T) + b[out],  s = (a_x/L_x)(a_W/L_W)
// backward: dq_x = (g * a_W/L_W) v_W ;  dx += S'_x(x) * dq_x
//           dq_W = (g * a_x/L_x)^T v_x ; dW += S'_W(W) * dq_W
//           db  += sum over rows of g
Tensor uniform_linear(const Tensor& x, const Tensor& W, const Tensor& b, const UniformLinearSpec& spec) {
  check_linear_shapes("uniform_linear", x, W, b);
  const int64_t N = x.dim(0), in = x.dim(1), out = W.dim(0);
  const QuantGeometry gx = spec.input_geo, gw = spec.weight_geo;
  QNN_CHECK(gx.bits >= 1 && gx.bits <= 16 && gw.bits >= 1 && gw.bits <= 16,
            "uniform_linear: bits must be 1..16, got " + std::to_string(gx.bits) + " and " + std::to_string(gw.bits));
  QNN_CHECK(std::isfinite(gx.a) && gx.a > 0 && std::isfinite(gw.a) && gw.a > 0,
            "uniform_linear: ranges a must be finite and > 0");
  QNN_CHECK(uniform_linear_exact(in, gx.bits, gw.bits),
            "uniform_linear: " + std::to_string(in) + " inputs at " + std::to_string(gx.bits) + " x " +
                std::to_string(gw.bits) + " bits can reach 2^24, where float products stop being exact");
  const float sx = level_step(gx), sw = level_step(gw), s = sx * sw;

  Tensor y = Tensor::empty({N, out});
  float* py = y.data();
  if (spec.use_kernels) {
    const int64_t PW = kernels::packed_words(in);
    PackedBuf ap(N * gx.bits * PW), bp(out * gw.bits * PW);
    pack_level_planes(x.data(), N, in, gx, ap.data());
    pack_level_planes(W.data(), out, in, gw, bp.data());
    // 1 * float(dot) + 0: the exact integer dot (|dot| < 2^24), as sgemm gives it.
    kernels::bitserial_gemm_f32(ap.data(), gx.bits, bp.data(), gw.bits, N, out, in, py, out, nullptr, nullptr);
  } else {
    Tensor vx = Tensor::empty({N, in}), vw = Tensor::empty({out, in});
    uniform_levels(x.data(), N * in, gx, vx.data());
    uniform_levels(W.data(), out * in, gw, vw.data());
    kernels::sgemm(false, true, N, out, in, 1.f, vx.data(), in, vw.data(), in, 0.f, py, out);  // exact
  }
  // The one rounding: s * dot (+ b).
  if (b.defined()) {
    const float* pb = b.data();
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < out; ++j) py[i * out + j] = s * py[i * out + j] + pb[j];
  } else {
    for (int64_t i = 0; i < N * out; ++i) py[i] = s * py[i];
  }

  if (needs_grad(x, W, b)) {
    // hardtanh weight surrogate with every |W| <= C a (clipped weights): all
    // S'_W = 1, so backward can skip that pass (as binary_linear does).
    bool w_all = false;
    if (W.requires_grad() && spec.weight_surrogate.kind == SurrogateKind::hardtanh) {
      const float clip = spec.weight_surrogate.param * gw.a;  // surrogate.cpp's params_of
      const float* pw = W.data();
      const int64_t n = out * in;
      int64_t outside = 0;
#pragma omp parallel for simd reduction(+ : outside) if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) outside += std::fabs(pw[i]) <= clip ? 0 : 1;
      w_all = outside == 0;
    }
    std::vector<Tensor> inputs{x, W};
    if (b.defined()) inputs.push_back(b);
    record(y, "uniform_linear", std::move(inputs), [x, W, b, spec, N, in, out, sx, sw, w_all](const Tensor& gout) {
      const float* pg = gout.data();
      if (b.defined() && b.requires_grad()) bias_grad(pg, N, out, b.grad_data());
      auto scaled = [&](float f) {
        Tensor t = Tensor::empty({N, out});
        float* pt = t.data();
        for (int64_t i = 0; i < N * out; ++i) pt[i] = pg[i] * f;
        return t;
      };
      if (x.requires_grad()) {
        const Tensor G = scaled(sw);
        Tensor vw = Tensor::empty({out, in}), dq = Tensor::empty({N, in});
        uniform_levels(W.data(), out * in, spec.weight_geo, vw.data());
        kernels::sgemm(false, false, N, in, out, 1.f, G.data(), out, vw.data(), in, 0.f, dq.data(), in);
        surrogate_backward(spec.input_surrogate, spec.input_geo, x.data(), dq.data(), x.grad_data(), N * in);
      }
      if (W.requires_grad()) {
        const Tensor G = scaled(sx);
        Tensor vx = Tensor::empty({N, in});
        uniform_levels(x.data(), N * in, spec.input_geo, vx.data());
        if (w_all && !W.has_grad()) {  // "0 + 1 * dq" = sgemm with beta 1 on zeros
          float beta;
          float* gW = grad_for_gemm(W, beta);
          zero_fill(gW, out * in);
          kernels::sgemm(true, false, out, in, N, 1.f, G.data(), out, vx.data(), in, 1.f, gW, in);
        } else {
          Tensor dq = Tensor::empty({out, in});
          kernels::sgemm(true, false, out, in, N, 1.f, G.data(), out, vx.data(), in, 0.f, dq.data(), in);
          surrogate_backward(spec.weight_surrogate, spec.weight_geo, W.data(), dq.data(), W.grad_data(), out * in);
        }
      }
    });
  }
  return y;
}

}  // namespace qnn
