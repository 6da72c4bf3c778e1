// kernels/packed_cnn.cpp — the runner's conv / pool layers (PackedRunner,
// kernels/packed_model.h, format version 4): one spatial layer of a batch.
//
// Exactness, layer by layer (what the training framework computes in eval
// mode, and how the runner gets the same floats):
//   conv_f32     core/ops_conv.cpp conv2d: both call conv2d_f32_forward
//                (kernels/conv_f32.h) with the same ConvPlan (same M, N, K,
//                strides, threads), so OpenBLAS rounds every sum alike.
//   conv_binary  packed input: integer sums by XNOR-popcount
//                (packed_conv_forward, exact zero-padding correction), the
//                values QuantConv2d's XNOR path — or its float path on +-1 and
//                0 taps — produces, as every partial sum is an integer below
//                2^24. pixels8: rows of (2p - 255)/256 (zero padded) times
//                +-1 by the pm1 look-up product: multiples of 1/256 below
//                2^16, so exact in any order, = V / 256 with V the integer
//                dot — the value QuantConv2d's pm1 path (or conv2d) gives.
//   sign out     a conv_binary followed by a sign (every binary conv of
//                BinaryNet) keeps its sums as integers, pixel-major, and
//                pools / thresholds / packs along the channels
//                (sign_conv_layer); the float planes below remain the
//                reference path (set_reference_conv) and serve float outputs.
//   pool         max of the sums (exact: comparisons only); then the
//                epilogue: sign (V against the integer threshold; here as
//                floats y >= T (/ 256), exact) or the float epilogue with the
//                float expressions of the dense layers.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "kernels/conv_f32.h"
#include "kernels/im2col.h"
#include "kernels/isa.h"
#include "kernels/level_planes.h"
#include "kernels/packed_conv.h"
#include "kernels/packed_model.h"
#include "kernels/packed_model_internal.h"
#include "kernels/pm1_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/simd_target.h"
#include "kernels/xnor_internal.h"

namespace qnn::kernels {

namespace {

PatchGeom conv_geom(const SpatialGeom& g) { return make_patch_geom(g.C, g.H, g.W, g.K, g.K, g.stride, g.pad); }

// Float epilogue over NCHW planes: y (+ bias[o]); (y - c) * s + t; relu — the
// dense layers' float expressions (no FMA: -ffp-contract=off). The bias is
// added here for conv_binary only (to exact integer sums, after the pool:
// max(V) + b = max(V + b), rounding being monotone); conv_f32 and
// conv_levels add it inside their product, before the pool, as training did.
void plane_epilogue(const PackedLayer& L, float* y, int64_t n, int64_t P) {
  const int64_t O = L.geom.O;
  const bool b = !L.bias.empty() && L.type == LayerType::conv_binary;
  if (!b && !L.affine && !L.relu) return;
#pragma omp parallel for schedule(static) if (n * O * P >= (1 << 16))
  for (int64_t q = 0; q < n * O; ++q) {
    const int64_t o = q % O;
    float* v = y + q * P;
    if (b)
      for (int64_t p = 0; p < P; ++p) v[p] = v[p] + L.bias[o];
    if (L.affine) {
      const float c = L.center[o], s = L.scale[o], t = L.shift[o];
      for (int64_t p = 0; p < P; ++p) v[p] = (v[p] - c) * s + t;
    }
    if (L.relu)
      for (int64_t p = 0; p < P; ++p) v[p] = v[p] > 0.f ? v[p] : 0.f;
  }
}

// Packed NHWC maps [n, H, W, CW words] -> max-pooled packed NHWC: the max of
// +-1 values is +1 unless all are -1, i.e. the AND of their bits (bit 1 = -1).
void and_pool_nhwc(const uint64_t* x, int64_t n, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s,
                   uint64_t* out) {
  const int64_t CW = pixel_words(C), OH = (H - k) / s + 1, OW = (W - k) / s + 1;
#pragma omp parallel for schedule(static) if (n * OH * OW * CW >= (1 << 14))
  for (int64_t q = 0; q < n * OH; ++q) {
    const int64_t b = q / OH, oy = q % OH;
    for (int64_t ox = 0; ox < OW; ++ox) {
      uint64_t* o = out + ((b * OH + oy) * OW + ox) * CW;
      for (int64_t w = 0; w < CW; ++w) o[w] = ~uint64_t(0);
      for (int64_t ky = 0; ky < k; ++ky)
        for (int64_t kx = 0; kx < k; ++kx) {
          const uint64_t* px = x + ((b * H + oy * s + ky) * W + ox * s + kx) * CW;
          for (int64_t w = 0; w < CW; ++w) o[w] &= px[w];
        }
    }
  }
}

}  // namespace

// ---- binary convolutions with a sign epilogue ------------------------------------
// The sums of a sign-out conv never leave integers: pixel-major rows (all O
// channels of one output pixel side by side), so the max-pool, the threshold
// and the packing into the next layer's NHWC words all run along the
// channels, 8 at a time (threshold_pack) — no float NCHW planes, no per-bit
// scatter. Same integers, same comparisons as the float path above: the
// logits do not change.
namespace pmodel {

void pixel_rows_scalar(const int32_t* X, int64_t P, int64_t T, const int32_t* S, int64_t O, int64_t OP, int32_t* V) {
  for (int64_t p = 0; p < P; ++p) {
    int32_t* v = V + p * O;
    std::fill(v, v + O, 0);
    for (int64_t t = 0; t < T; ++t) {
      const int32_t x = X[p * T + t];
      const int32_t* w = S + t * OP;
      for (int64_t o = 0; o < O; ++o) v[o] += x * w[o];
    }
  }
}

#if QNN_X86
// Up to 32 channels per pass in 4 accumulators; x * (+-1) is vpsignd (x times
// the sign of the weight lane; the 0 lanes past O give 0).
QNN_TARGET_AVX2 void pixel_rows_avx2(const int32_t* X, int64_t P, int64_t T, const int32_t* S, int64_t O, int64_t OP,
                                     int32_t* V) {
  for (int64_t p = 0; p < P; ++p) {
    const int32_t* x = X + p * T;
    int32_t* v = V + p * O;
    for (int64_t o0 = 0; o0 < OP; o0 += 32) {
      const int64_t nv = std::min<int64_t>(4, (OP - o0) / 8);
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      const int32_t* w = S + o0;
      for (int64_t t = 0; t < T; ++t, w += OP) {
        const __m256i b = _mm256_set1_epi32(x[t]);
        a0 = _mm256_add_epi32(a0, _mm256_sign_epi32(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))));
        if (nv > 1) a1 = _mm256_add_epi32(a1, _mm256_sign_epi32(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 8))));
        if (nv > 2) a2 = _mm256_add_epi32(a2, _mm256_sign_epi32(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16))));
        if (nv > 3) a3 = _mm256_add_epi32(a3, _mm256_sign_epi32(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 24))));
      }
      alignas(32) int32_t buf[32];
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf), a0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 8), a1);
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 16), a2);
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 24), a3);
      const int64_t cnt = std::min<int64_t>(32, O - o0);
      std::copy(buf, buf + cnt, v + o0);
    }
  }
}
#else
void pixel_rows_avx2(const int32_t* X, int64_t P, int64_t T, const int32_t* S, int64_t O, int64_t OP, int32_t* V) {
  pixel_rows_scalar(X, P, T, S, O, OP, V);
}
#endif

PixelRowsFn pixel_rows_fn() {
  const Isa isa = active_isa();
  return isa == Isa::avx2 || isa == Isa::avx512 ? pixel_rows_avx2 : pixel_rows_scalar;
}

void sign_pool_rows(const int32_t* V, int64_t H, int64_t W, int64_t O, int64_t k, int64_t s, const int32_t* T,
                    const uint8_t* F, uint64_t* out, const EpilogueFns& fn) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1, OCW = pixel_words(O);
  if (k == 1) {
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) fn.threshold_pack(V + (oy * s * W + ox * s) * O, T, F, O, out + (oy * OW + ox) * OCW);
    return;
  }
  std::vector<int32_t> m(static_cast<size_t>(O));
  for (int64_t oy = 0; oy < OH; ++oy)
    for (int64_t ox = 0; ox < OW; ++ox) {
      const int32_t* r0 = V + (oy * s * W + ox * s) * O;
      std::copy(r0, r0 + O, m.begin());
      for (int64_t ky = 0; ky < k; ++ky)
        for (int64_t kx = 0; kx < k; ++kx) {
          const int32_t* r = V + ((oy * s + ky) * W + ox * s + kx) * O;
          for (int64_t o = 0; o < O; ++o) m[size_t(o)] = std::max(m[size_t(o)], r[o]);
        }
      fn.threshold_pack(m.data(), T, F, O, out + (oy * OW + ox) * OCW);
    }
}

}  // namespace pmodel

// At construction: the border cases of the zero-padding correction (distinct
// columns of zero_pad_corrections' table) and, for pixels8, the int32 weights.
void PackedRunner::prepare_sign_conv(size_t i) {
  const PackedLayer& L = m_.layers[i];
  const SpatialGeom& g = L.geom;
  SignConv& sc = sc_[i];
  const int64_t O = g.O, P = g.OH() * g.OW(), K = g.taps();
  sc.pcase.assign(size_t(P), 0);
  if (L.input == LayerInput::pixels8) {
    // Zero-padded taps hold v = 0 in the integer patch rows: no correction, base 0.
    sc.base.assign(size_t(O), 0);
    sc.opad = (O + 7) / 8 * 8;
    sc.pm1.assign(size_t(K * sc.opad), 0);
    const int64_t RW = packed_words(K);
    for (int64_t o = 0; o < O; ++o)
      for (int64_t t = 0; t < K; ++t)
        sc.pm1[size_t(t * sc.opad + o)] = ((L.w_bits[size_t(o * RW + t / 64)] >> (t % 64)) & 1u) ? -1 : 1;
    return;
  }
  sc.base.assign(size_t(O), int32_t(K));
  if (g.pad_one || g.pad == 0) return;  // +1 padding (or none): dot = K - 2 * popcount
  std::vector<int32_t> corr(size_t(O * P));
  zero_pad_corrections(conv_geom(g), cw_[i], corr.data());
  sc.base.clear();
  std::vector<int32_t> col(static_cast<size_t>(O));
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t o = 0; o < O; ++o) col[size_t(o)] = int32_t(K) - corr[size_t(o * P + p)];
    const int64_t cases = int64_t(sc.base.size()) / O;
    int64_t c = 0;
    while (c < cases && !std::equal(col.begin(), col.end(), sc.base.begin() + c * O)) ++c;
    if (c == cases) sc.base.insert(sc.base.end(), col.begin(), col.end());
    sc.pcase[size_t(p)] = int32_t(c);
  }
}

// conv_binary -> (pool) -> sign, packed NHWC out: layer i of a batch of n.
void PackedRunner::sign_conv_layer(size_t i, int64_t n, int& fi, int& pi) {
  const PackedLayer& L = m_.layers[i];
  const SpatialGeom& g = L.geom;
  const SignConv& sc = sc_[i];
  const int64_t O = g.O, OH = g.OH(), OW = g.OW(), P = OH * OW, M = n * P, K = g.taps();
  if ((int64_t)vsum_.size() < M * O) vsum_.resize(size_t(M * O));
  int32_t* V = vsum_.data();
  const PatchGeom pg = conv_geom(g);
  if (L.input == LayerInput::pixels8) {
    // Integer patch rows of v = 2p - 255 = x * 256 (exact: x = (2p - 255) / 256), 0 in padded taps.
    if ((int64_t)itaps_.size() < M * K) itaps_.resize(size_t(M * K));
    const float* X = f_[fi].data();
    int32_t* R = itaps_.data();
    const pmodel::PixelRowsFn rows = pmodel::pixel_rows_fn();
#pragma omp parallel for schedule(static) if (n > 1 && M * K * O >= (int64_t(1) << 20))
    for (int64_t b = 0; b < n; ++b) {
      const float* img = X + b * g.C * g.H * g.W;
      int32_t* rb = R + b * P * K;
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          int32_t* r = rb + (oy * OW + ox) * K;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t ky = 0; ky < g.K; ++ky) {
              const int64_t iy = oy * g.stride - g.pad + ky;
              for (int64_t kx = 0; kx < g.K; ++kx) {
                const int64_t ix = ox * g.stride - g.pad + kx;
                const bool in = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                *r++ = in ? int32_t(img[(c * g.H + iy) * g.W + ix] * 256.0f) : 0;
              }
            }
        }
      rows(rb, P, K, sc.pm1.data(), O, sc.opad, V + b * P * O);
    }
  } else {
    const int64_t RW = cw_[i].row_words;
    if (patches_.size() < size_t(M * RW)) patches_ = PackedVector(size_t(M * RW));
    packed_im2col(p_[pi].data(), n, pg, patches_.data());
    // A = patches (row m = output pixel), B = weights (column o): a block's row
    // of popcounts is a run of channels of one pixel: V = base - 2 * pop.
    const int32_t* base = sc.base.data();
    const int32_t* pcase = sc.pcase.data();
    detail::drive(patches_.data(), 1, cw_[i].bits.data(), 1, M, O, RW,
                  [&](int64_t m0, int64_t mc, int64_t o0, int64_t oc, const int32_t* pop, int64_t ldp) {
                    for (int64_t r = 0; r < mc; ++r) {
                      const int64_t m = m0 + r;
                      const int32_t* b = base + int64_t(pcase[m % P]) * O + o0;
                      const int32_t* q = pop + r * ldp;
                      int32_t* v = V + m * O + o0;
                      for (int64_t j = 0; j < oc; ++j) v[j] = b[j] - 2 * q[j];
                    }
                  });
  }
  // Pool (k = s = 1: none), threshold, pack NHWC.
  const int po = pi < 0 ? 0 : pi ^ 1;
  const int64_t k = g.pool_k > 0 ? g.pool_k : 1, s = g.pool_k > 0 ? g.pool_s : 1;
  const int64_t PP = L.out_h() * L.out_w(), OCW = pixel_words(O);
  const pmodel::EpilogueFns fn = pmodel::epilogue_fns();
  uint64_t* out = p_[po].data();
#pragma omp parallel for schedule(static) if (n > 1 && M * O >= (int64_t(1) << 16))
  for (int64_t b = 0; b < n; ++b)
    pmodel::sign_pool_rows(V + b * P * O, OH, OW, O, k, s, L.thresh.data(), L.flip.data(), out + b * PP * OCW, fn);
  pi = po;
  (void)fi;
}

// Packed NHWC maps -> packed rows in NCHW flatten order (feature c*H*W + y*W + x),
// row stride packed_words(C*H*W): the input of a dense layer after a conv.
void nhwc_to_flat_rows(const uint64_t* x, int64_t n, int64_t C, int64_t H, int64_t W, uint64_t* rows) {
  const int64_t CW = pixel_words(C), HW = H * W, K = C * HW, RW = packed_words(K);
#pragma omp parallel for schedule(static) if (n * K >= (1 << 16))
  for (int64_t b = 0; b < n; ++b) {
    uint64_t* r = rows + b * RW;
    std::fill(r, r + RW, uint64_t(0));
    const uint64_t* img = x + b * HW * CW;
    for (int64_t p = 0; p < HW; ++p)
      for (int64_t c = 0; c < C; ++c)
        if ((img[p * CW + c / 64] >> (c % 64)) & 1u) {
          const int64_t f = c * HW + p;
          r[f / 64] |= uint64_t(1) << (f % 64);
        }
  }
}

// conv2d's forward: the same kernel (conv_f32.h) core/ops_conv.cpp conv2d
// runs, with the same plan, so the sums match it bit for bit.
void PackedRunner::conv_f32_forward(const PackedLayer& L, const float* w, const float* px, int64_t N, float* py) {
  const PatchGeom g = conv_geom(L.geom);
  const ConvPlan plan(N, g, L.geom.O);
  if ((int64_t)cols_.size() < plan.scratch_size()) cols_.resize(size_t(plan.scratch_size()));
  conv2d_f32_forward(px, N, g, L.geom.O, w, L.bias.empty() ? nullptr : L.bias.data(), py, plan, cols_.data());
}

// QuantConv2d's levels path (uniform_linear on its patch rows): the levels u
// of x (in place: x is not read again), patch rows with the top level +Lx in
// padded taps (one-padding), the integer dot with the weight levels v — exact
// in float (validate: |dot| < 2^24), so sgemm's order does not matter — then
// y = s * dot + bias per pixel (uniform_linear's expression), written NCHW.
void PackedRunner::conv_levels_exact(size_t i, float* x, int64_t n, float* y) {
  const PackedLayer& L = m_.layers[i];
  const SpatialGeom& g = L.geom;
  const PatchGeom pg = conv_geom(g);
  const int64_t CKK = pg.taps(), O = g.O, P = g.OH() * g.OW();
  uniform_levels(x, n * L.in, L.in_bits, L.in_alpha, x);
  if ((int64_t)rows_.size() < n * P * CKK) rows_.resize(size_t(n * P * CKK));
  if ((int64_t)pooled_.size() < n * P * O) pooled_.resize(size_t(n * P * O));
  const float top = float((1 << L.in_bits) - 1);
  im2col_rows_batch(x, n, pg, g.pad_one ? top : 0.f, rows_.data());
  float* D = pooled_.data();  // [n*P, O] pixel-major dots
  sgemm(false, true, n * P, O, CKK, 1.f, rows_.data(), CKK, wdec_[i].data(), CKK, 0.f, D, O);
  const float s = level_step(L.in_bits, L.in_alpha) * level_step(L.wbits, L.w_alpha);
  const float* b = L.bias.empty() ? nullptr : L.bias.data();
#pragma omp parallel for schedule(static) if (n * O * P >= (1 << 16))
  for (int64_t q = 0; q < n * O; ++q) {  // pixel-major -> NCHW
    const int64_t img = q / O, o = q % O;
    float* out = y + q * P;
    const float* d = D + img * P * O + o;
    if (b)
      for (int64_t p = 0; p < P; ++p) out[p] = s * d[p * O] + b[o];
    else
      for (int64_t p = 0; p < P; ++p) out[p] = s * d[p * O];
  }
}

// Layer i of a batch of n: reads f_[fi] (floats, NCHW) or p_[pi] (packed
// NHWC), writes the other buffer of the same kind and updates fi / pi.
void PackedRunner::spatial_layer(size_t i, int64_t n, int& fi, int& pi) {
  const PackedLayer& L = m_.layers[i];
  const SpatialGeom& g = L.geom;
  if (L.type == LayerType::conv_binary && L.sign_out && !ref_conv_) {
    sign_conv_layer(i, n, fi, pi);
    return;
  }
  if (L.type == LayerType::max_pool) {
    if (L.input == LayerInput::packed) {
      const int po = pi ^ 1;
      and_pool_nhwc(p_[pi].data(), n, g.C, g.H, g.W, g.pool_k, g.pool_s, p_[po].data());
      pi = po;
    } else {
      const int64_t OH = L.out_h(), OW = L.out_w();
      if ((int64_t)arg_.size() < n * g.C * OH * OW) arg_.resize(size_t(n * g.C * OH * OW));
      max_pool_forward(f_[fi].data(), n * g.C, g.H, g.W, g.pool_k, g.pool_s, f_[fi ^ 1].data(), arg_.data());
      fi ^= 1;
    }
    return;
  }
  const int64_t O = g.O, OH = g.OH(), OW = g.OW(), P = OH * OW;
  if ((int64_t)sums_.size() < n * O * P) sums_.resize(size_t(n * O * P));
  float* S = sums_.data();
  const bool pix = L.input == LayerInput::pixels8;
  if (L.type == LayerType::conv_f32) {
    conv_f32_forward(L, L.w_f32.data(), f_[fi].data(), n, S);
  } else if (L.type == LayerType::conv_levels) {
    float* X = f_[fi].data();  // not read again in this call: quantized in place
    if (L.input == LayerInput::levels) {
      conv_levels_exact(i, X, n, S);
    } else {
      // conv2d(x or the input quantizer's floats, the decoded weights) + bias.
      if (L.input == LayerInput::levels_f32) uniform_values(X, n * L.in, L.in_bits, L.in_alpha, X);
      conv_f32_forward(L, wdec_[i].data(), X, n, S);
    }
  } else if (pix) {
    // rows [n*P, CKK] of (2p - 255)/256 (0 in padded taps) x sign(W)^T -> [n*P, O] = V / 256, exact.
    const PatchGeom pg = conv_geom(g);
    const int64_t CKK = pg.taps();
    if ((int64_t)rows_.size() < n * P * std::max(CKK, O)) rows_.resize(size_t(n * P * std::max(CKK, O)));
    if ((int64_t)pooled_.size() < n * P * O) pooled_.resize(size_t(n * P * O));
    im2col_rows_batch(f_[fi].data(), n, pg, 0.f, rows_.data());
    pm1_gemm_cols(n * P, CKK, O, rows_.data(), CKK, 1, L.w_bits.data(), pooled_.data(), O, false);
    const float* Y = pooled_.data();
#pragma omp parallel for schedule(static) if (n * O * P >= (1 << 16))
    for (int64_t q = 0; q < n * O; ++q) {  // pixel-major -> NCHW
      const int64_t b = q / O, o = q % O;
      for (int64_t p = 0; p < P; ++p) S[q * P + p] = Y[(b * P + p) * O + o];
    }
  } else {
    packed_conv_forward(p_[pi].data(), n, conv_geom(g), cw_[i], g.pad_one ? ConvPad::one : ConvPad::zero, S);
  }
  // The max-pool of the sums (BinaryNet's conv -> max-pool -> BN order).
  int64_t H = OH, W = OW;
  if (g.pool_k > 0 && !L.sign_out) {
    H = L.out_h(), W = L.out_w();
    if ((int64_t)pooled_.size() < n * O * H * W) pooled_.resize(size_t(n * O * H * W));
    if ((int64_t)arg_.size() < n * O * H * W) arg_.resize(size_t(n * O * H * W));
    max_pool_forward(S, n * O, OH, OW, g.pool_k, g.pool_s, pooled_.data(), arg_.data());
    S = pooled_.data();
  }
  if (L.sign_out) {
    // Pool (k = s = 1: none), threshold, pack NHWC in one pass; thresholds as
    // floats on the sums' scale (T or T / 256: exact).
    const int po = pi < 0 ? 0 : pi ^ 1;
    const int64_t k = g.pool_k > 0 ? g.pool_k : 1, s = g.pool_k > 0 ? g.pool_s : 1;
    sign_max_pool_nhwc(S, n, O, OH, OW, k, s, thresh_f_.data() + thresh_off_[i], L.flip.data(), p_[po].data());
    pi = po;
    return;
  }
  // Float output, NCHW: y = sums (/ 256 is already in a pixel layer's sums).
  float* out = f_[fi ^ 1].data();
  std::copy(S, S + n * O * H * W, out);
  plane_epilogue(L, out, n, H * W);
  fi ^= 1;
}

}  // namespace qnn::kernels
