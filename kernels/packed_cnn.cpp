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
#include "kernels/packed_conv.h"
#include "kernels/packed_model.h"
#include "kernels/pm1_gemm.h"
#include "kernels/sgemm.h"

namespace qnn::kernels {

namespace {

PatchGeom conv_geom(const SpatialGeom& g) { return make_patch_geom(g.C, g.H, g.W, g.K, g.K, g.stride, g.pad); }

// Float epilogue over NCHW planes: y (+ bias[o]); (y - c) * s + t; relu — the
// dense layers' float expressions (no FMA: -ffp-contract=off).
void plane_epilogue(const PackedLayer& L, float* y, int64_t n, int64_t P) {
  const int64_t O = L.geom.O;
  const bool b = !L.bias.empty();
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
void PackedRunner::conv_f32_forward(const PackedLayer& L, const float* px, int64_t N, float* py) {
  const PatchGeom g = conv_geom(L.geom);
  const ConvPlan plan(N, g, L.geom.O);
  if ((int64_t)cols_.size() < plan.scratch_size()) cols_.resize(size_t(plan.scratch_size()));
  conv2d_f32_forward(px, N, g, L.geom.O, L.w_f32.data(), L.bias.empty() ? nullptr : L.bias.data(), py, plan,
                     cols_.data());
}

// Layer i of a batch of n: reads f_[fi] (floats, NCHW) or p_[pi] (packed
// NHWC), writes the other buffer of the same kind and updates fi / pi.
void PackedRunner::spatial_layer(size_t i, int64_t n, int& fi, int& pi) {
  const PackedLayer& L = m_.layers[i];
  const SpatialGeom& g = L.geom;
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
    conv_f32_forward(L, f_[fi].data(), n, S);
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
