// kernels/packed_conv.cpp — binary conv on NHWC bit-packed data (see packed_conv.h).
#include "kernels/packed_conv.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/xnor_internal.h"

namespace qnn::kernels {

namespace {

// Below this many words moved, one thread is faster than a fork.
constexpr int64_t kParallelWords = int64_t(1) << 14;

std::string s(int64_t v) { return std::to_string(v); }

void check_dims(const char* fn, int64_t N, int64_t C, int64_t H, int64_t W) {
  if (N < 0 || C < 0 || H < 0 || W < 0)
    throw std::invalid_argument(std::string(fn) + ": negative size (N=" + s(N) + ", C=" + s(C) + ", H=" + s(H) +
                                ", W=" + s(W) + ")");
}

// The geometry must be a valid conv and agree with its own OH/OW.
void check_geom(const char* fn, const PatchGeom& g) {
  if (g.C < 1 || g.H < 1 || g.W < 1 || g.KH < 1 || g.KW < 1 || g.stride < 1 || g.pad < 0)
    throw std::invalid_argument(std::string(fn) + ": bad geometry (C=" + s(g.C) + ", H=" + s(g.H) + ", W=" +
                                s(g.W) + ", kernel " + s(g.KH) + "x" + s(g.KW) + ", stride=" + s(g.stride) +
                                ", pad=" + s(g.pad) + ")");
  if (g.H + 2 * g.pad < g.KH || g.W + 2 * g.pad < g.KW)
    throw std::invalid_argument(std::string(fn) + ": kernel " + s(g.KH) + "x" + s(g.KW) +
                                " larger than the padded image " + s(g.H + 2 * g.pad) + "x" +
                                s(g.W + 2 * g.pad));
  if (g.OH != conv_out_size(g.H, g.KH, g.stride, g.pad) || g.OW != conv_out_size(g.W, g.KW, g.stride, g.pad))
    throw std::invalid_argument(std::string(fn) + ": OH/OW (" + s(g.OH) + "x" + s(g.OW) +
                                ") disagree with the geometry (use make_patch_geom)");
}

// Valid taps of output row/column o along one axis form an interval [k0, k1):
// in = o*stride - pad + k is increasing in k.
struct TapRange {
  int64_t k0, k1;
};
TapRange valid_taps(int64_t o, int64_t in, int64_t k, int64_t stride, int64_t pad) {
  const int64_t base = o * stride - pad;
  return {std::clamp<int64_t>(-base, 0, k), std::clamp<int64_t>(in - base, 0, k)};
}

// One image: patches of every output pixel (see packed_im2col).
void im2col_image(const uint64_t* xp, const PatchGeom& g, int64_t CW, int64_t RW, uint64_t* patches) {
  const int64_t used = g.KH * g.KW * CW;
  for (int64_t oy = 0; oy < g.OH; ++oy) {
    const TapRange ry = valid_taps(oy, g.H, g.KH, g.stride, g.pad);
    for (int64_t ox = 0; ox < g.OW; ++ox) {
      const TapRange rx = valid_taps(ox, g.W, g.KW, g.stride, g.pad);
      uint64_t* d = patches + (oy * g.OW + ox) * RW;
      const int64_t ix0 = ox * g.stride - g.pad + rx.k0, run = (rx.k1 - rx.k0) * CW;
      for (int64_t ky = 0; ky < g.KH; ++ky) {
        uint64_t* dr = d + ky * g.KW * CW;
        if (ky < ry.k0 || ky >= ry.k1 || run == 0) {  // a padded row of taps
          std::memset(dr, 0, size_t(g.KW * CW) * 8);
          continue;
        }
        const int64_t iy = oy * g.stride - g.pad + ky;
        // Taps kx0..kx1-1 are consecutive pixels of input row iy: one copy.
        std::memset(dr, 0, size_t(rx.k0 * CW) * 8);
        std::memcpy(dr + rx.k0 * CW, xp + (iy * g.W + ix0) * CW, size_t(run) * 8);
        std::memset(dr + rx.k1 * CW, 0, size_t((g.KW - rx.k1) * CW) * 8);
      }
      std::memset(d + used, 0, size_t(RW - used) * 8);
    }
  }
}

}  // namespace

int64_t pixel_words(int64_t C) {
  if (C < 0) throw std::invalid_argument("pixel_words: C must be >= 0, got " + s(C));
  return (C + 63) / 64;
}

int64_t patch_words(int64_t C, int64_t KH, int64_t KW) {
  if (KH < 0 || KW < 0) throw std::invalid_argument("patch_words: negative kernel size");
  return (KH * KW * pixel_words(C) + 7) / 8 * 8;
}

// ---- activations ----------------------------------------------------------------------

void pack_nhwc(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, uint64_t* xp) {
  check_dims("pack_nhwc", N, C, H, W);
  const int64_t HW = H * W, CW = pixel_words(C);
  if (N * HW * CW == 0) return;
  if (x == nullptr || xp == nullptr) throw std::invalid_argument("pack_nhwc: null pointer");
  // pack_cols packs the transpose of an image viewed as [C x HW]: one packed
  // row of C channels per pixel (stride packed_words(C)); keep its first CW words.
  const int64_t PW = packed_words(C);
#pragma omp parallel if (N > 1 && N * HW * CW >= kParallelWords)
  {
    PackedVector tmp(size_t(HW * PW));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      pack_cols(x + n * C * HW, C, HW, HW, tmp.data());
      uint64_t* o = xp + n * HW * CW;
      for (int64_t p = 0; p < HW; ++p) std::memcpy(o + p * CW, tmp.data() + p * PW, size_t(CW) * 8);
    }
  }
}

void unpack_nhwc(const uint64_t* xp, int64_t N, int64_t C, int64_t H, int64_t W, float* x) {
  check_dims("unpack_nhwc", N, C, H, W);
  const int64_t HW = H * W, CW = pixel_words(C);
  if (N * HW * C == 0) return;
  if (x == nullptr || xp == nullptr) throw std::invalid_argument("unpack_nhwc: null pointer");
#pragma omp parallel for schedule(static) if (N > 1 && N * HW * CW >= kParallelWords)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const uint64_t* src = xp + n * HW * CW + c / 64;
      float* dst = x + (n * C + c) * HW;
      for (int64_t p = 0; p < HW; ++p) dst[p] = ((src[p * CW] >> (c % 64)) & 1) ? -1.0f : 1.0f;
    }
}

// ---- weights ---------------------------------------------------------------------------

PackedConvWeights pack_conv_weights(const float* w, int64_t O, int64_t C, int64_t KH, int64_t KW) {
  if (O < 0 || C < 1 || KH < 1 || KW < 1)
    throw std::invalid_argument("pack_conv_weights: bad shape (O=" + s(O) + ", C=" + s(C) + ", KH=" + s(KH) +
                                ", KW=" + s(KW) + "; need O >= 0, C, KH, KW >= 1)");
  if (O > 0 && w == nullptr) throw std::invalid_argument("pack_conv_weights: null weights");
  PackedConvWeights r;
  r.O = O, r.C = C, r.KH = KH, r.KW = KW;
  r.CW = pixel_words(C);
  r.row_words = patch_words(C, KH, KW);
  r.bits = PackedVector(size_t(O * r.row_words));  // zeroed: pads stay 0
  r.tap_sum.assign(size_t(O * KH * KW), 0);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t ky = 0; ky < KH; ++ky)
        for (int64_t kx = 0; kx < KW; ++kx) {
          const int64_t t = ky * KW + kx;
          const bool neg = w[((o * C + c) * KH + ky) * KW + kx] < 0.0f;  // bitpack.h rule 1
          r.bits[size_t(o * r.row_words + t * r.CW + c / 64)] |= uint64_t(neg) << (c % 64);
          r.tap_sum[size_t(o * KH * KW + t)] += neg ? -1 : 1;
        }
  return r;
}

// ---- forward ---------------------------------------------------------------------------

void packed_im2col(const uint64_t* xp, int64_t N, const PatchGeom& g, uint64_t* patches) {
  check_geom("packed_im2col", g);
  if (N < 0) throw std::invalid_argument("packed_im2col: negative N=" + s(N));
  const int64_t CW = pixel_words(g.C), RW = patch_words(g.C, g.KH, g.KW), P = g.pixels();
  if (N == 0 || P == 0) return;
  if (xp == nullptr || patches == nullptr) throw std::invalid_argument("packed_im2col: null pointer");
  const int64_t in_img = g.H * g.W * CW, out_img = P * RW;
#pragma omp parallel for schedule(static) if (N > 1 && N * out_img >= kParallelWords)
  for (int64_t n = 0; n < N; ++n) im2col_image(xp + n * in_img, g, CW, RW, patches + n * out_img);
}

void zero_pad_corrections(const PatchGeom& g, const PackedConvWeights& w, int32_t* corr) {
  check_geom("zero_pad_corrections", g);
  if (w.C != g.C || w.KH != g.KH || w.KW != g.KW)
    throw std::invalid_argument("zero_pad_corrections: weights packed for C=" + s(w.C) + ", " + s(w.KH) + "x" +
                                s(w.KW) + ", geometry has C=" + s(g.C) + ", " + s(g.KH) + "x" + s(g.KW));
  const int64_t O = w.O, P = g.pixels(), KK = g.KH * g.KW;
  if (O * P == 0) return;
  if (corr == nullptr) throw std::invalid_argument("zero_pad_corrections: null corr");
  // Border cases along each axis: distinct valid-tap intervals. Case 0 along
  // an axis is the full interval when some output row/column has it.
  auto cases = [](int64_t out, int64_t in, int64_t k, int64_t stride, int64_t pad, std::vector<TapRange>& list,
                  std::vector<int64_t>& idx) {
    idx.resize(size_t(out));
    for (int64_t o = 0; o < out; ++o) {
      const TapRange r = valid_taps(o, in, k, stride, pad);
      int64_t c = 0;
      while (c < int64_t(list.size()) && (list[size_t(c)].k0 != r.k0 || list[size_t(c)].k1 != r.k1)) ++c;
      if (c == int64_t(list.size())) list.push_back(r);
      idx[size_t(o)] = c;
    }
  };
  std::vector<TapRange> yl, xl;
  std::vector<int64_t> yc, xc;
  cases(g.OH, g.H, g.KH, g.stride, g.pad, yl, yc);
  cases(g.OW, g.W, g.KW, g.stride, g.pad, xl, xc);
  const int64_t nx = int64_t(xl.size());
  // table[(ycase*nx + xcase)*O + o] = sum of tap_sum over the taps outside.
  std::vector<int32_t> table(yl.size() * xl.size() * size_t(O), 0);
  for (size_t a = 0; a < yl.size(); ++a)
    for (size_t b = 0; b < xl.size(); ++b) {
      int32_t* t = table.data() + (int64_t(a) * nx + int64_t(b)) * O;
      for (int64_t ky = 0; ky < g.KH; ++ky)
        for (int64_t kx = 0; kx < g.KW; ++kx) {
          const bool inside = ky >= yl[a].k0 && ky < yl[a].k1 && kx >= xl[b].k0 && kx < xl[b].k1;
          if (inside) continue;
          for (int64_t o = 0; o < O; ++o) t[o] += w.tap_sum[size_t(o * KK + ky * g.KW + kx)];
        }
    }
  for (int64_t o = 0; o < O; ++o)
    for (int64_t oy = 0; oy < g.OH; ++oy)
      for (int64_t ox = 0; ox < g.OW; ++ox)
        corr[o * P + oy * g.OW + ox] = table[size_t((yc[size_t(oy)] * nx + xc[size_t(ox)]) * O + o)];
}

void packed_conv_forward(const uint64_t* xp, int64_t N, const PatchGeom& g, const PackedConvWeights& w,
                         ConvPad pad, float* out) {
  check_geom("packed_conv_forward", g);
  if (N < 0) throw std::invalid_argument("packed_conv_forward: negative N=" + s(N));
  if (w.C != g.C || w.KH != g.KH || w.KW != g.KW)
    throw std::invalid_argument("packed_conv_forward: weights packed for C=" + s(w.C) + ", " + s(w.KH) + "x" +
                                s(w.KW) + ", geometry has C=" + s(g.C) + ", " + s(g.KH) + "x" + s(g.KW));
  const int64_t K = g.taps();
  if (K >= (int64_t(1) << 24))
    throw std::invalid_argument("packed_conv_forward: C*KH*KW=" + s(K) +
                                " >= 2^24, the float sums would not be exact");
  const int64_t O = w.O, P = g.pixels(), RW = w.row_words, M = N * P;
  if (M == 0 || O == 0) return;
  if (xp == nullptr || out == nullptr) throw std::invalid_argument("packed_conv_forward: null pointer");

  // Per-thread scratch, kept between calls (a layer calls with the same shape every step).
  thread_local PackedVector patches;
  if (patches.size() < size_t(M * RW)) patches = PackedVector(size_t(M * RW));
  packed_im2col(xp, N, g, patches.data());

  // base[o*P + p] = K - correction: the sum is base - 2*popcount.
  const bool correct = pad == ConvPad::zero && g.pad > 0;
  std::vector<int32_t> base;
  if (correct) {
    base.resize(size_t(O * P));
    zero_pad_corrections(g, w, base.data());
    for (int32_t& b : base) b = int32_t(K) - b;
  }
  const int32_t k32 = int32_t(K);
  // A = weights (row o), B = patches (column m = n*P + p): a block's row of
  // sums is a run of consecutive pixels, i.e. contiguous NCHW stores.
  detail::drive(w.bits.data(), 1, patches.data(), 1, O, M, RW,
                [&](int64_t o0, int64_t oc, int64_t m0, int64_t mc, const int32_t* pop, int64_t ldp) {
                  for (int64_t i = 0; i < oc; ++i) {
                    const int64_t o = o0 + i;
                    const int32_t* pr = pop + i * ldp;
                    for (int64_t j = 0; j < mc;) {
                      const int64_t m = m0 + j, n = m / P, p = m % P;
                      const int64_t len = std::min(mc - j, P - p);
                      float* dst = out + (n * O + o) * P + p;
                      const int32_t* q = pr + j;
                      if (correct) {
                        const int32_t* b = base.data() + o * P + p;
                        for (int64_t t = 0; t < len; ++t) dst[t] = float(b[t] - 2 * q[t]);
                      } else {
                        for (int64_t t = 0; t < len; ++t) dst[t] = float(k32 - 2 * q[t]);
                      }
                      j += len;
                    }
                  }
                });
}

// ---- pooling ---------------------------------------------------------------------------

namespace {
void check_pool(const char* fn, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t st) {
  if (planes < 0 || H < 1 || W < 1 || k < 1 || st < 1 || k > H || k > W)
    throw std::invalid_argument(std::string(fn) + ": bad pooling (planes=" + s(planes) + ", " + s(H) + "x" +
                                s(W) + ", window " + s(k) + ", stride " + s(st) +
                                "; need 1 <= window <= H, W and stride >= 1)");
}

inline float window_max(const float* xp, int64_t W, int64_t y0, int64_t x0, int64_t k) {
  float m = xp[y0 * W + x0];
  for (int64_t ky = 0; ky < k; ++ky)
    for (int64_t kx = 0; kx < k; ++kx) m = std::max(m, xp[(y0 + ky) * W + x0 + kx]);
  return m;
}
}  // namespace

void max_pool_sums(const float* x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t st, float* out) {
  check_pool("max_pool_sums", planes, H, W, k, st);
  const int64_t OH = (H - k) / st + 1, OW = (W - k) / st + 1;
  if (planes == 0) return;
  if (x == nullptr || out == nullptr) throw std::invalid_argument("max_pool_sums: null pointer");
#pragma omp parallel for schedule(static) if (planes > 1 && planes * H * W >= kParallelWords)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* op = out + pl * OH * OW;
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) op[oy * OW + ox] = window_max(xp, W, oy * st, ox * st, k);
  }
}

void sign_max_pool_nhwc(const float* x, int64_t N, int64_t O, int64_t H, int64_t W, int64_t k, int64_t st,
                        const float* thresh, const uint8_t* flip, uint64_t* out) {
  if (N < 0 || O < 0) throw std::invalid_argument("sign_max_pool_nhwc: negative N or O");
  check_pool("sign_max_pool_nhwc", N * O, H, W, k, st);
  const int64_t OH = (H - k) / st + 1, OW = (W - k) / st + 1, PP = OH * OW, OCW = pixel_words(O);
  if (N * O == 0) return;
  if (x == nullptr || thresh == nullptr || out == nullptr)
    throw std::invalid_argument("sign_max_pool_nhwc: null pointer");
  // Task (n, word): channels 64*word .. +63 of image n own exactly that word of
  // every pooled pixel, so tasks never share an output word.
  const int64_t tasks = N * OCW;
#pragma omp parallel for schedule(static) if (tasks > 1 && N * O * H * W >= kParallelWords)
  for (int64_t tk = 0; tk < tasks; ++tk) {
    const int64_t n = tk / OCW, ow = tk % OCW;
    uint64_t* ob = out + n * PP * OCW + ow;
    for (int64_t q = 0; q < PP; ++q) ob[q * OCW] = 0;  // pad bits (channels >= O) stay 0
    const int64_t c1 = std::min(O, 64 * ow + 64);
    for (int64_t o = 64 * ow; o < c1; ++o) {
      const float* xp = x + (n * O + o) * H * W;
      const float t = thresh[o];
      const bool f = flip != nullptr && flip[o] != 0;
      const uint64_t bit = uint64_t(1) << (o % 64);
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const bool plus = (window_max(xp, W, oy * st, ox * st, k) >= t) != f;
          if (!plus) ob[(oy * OW + ox) * OCW] |= bit;  // bit 1 = -1
        }
    }
  }
}

}  // namespace qnn::kernels
