// tests/test_packed_conv.cpp — kernels/packed_conv.h: binary conv on NHWC
// bit-packed data, every SIMD variant bit-exact against a plain float conv
// of the ±1 data (written out here as seven loops), zero padding (with the
// border correction) and one-padding, odd shapes; pooling and the fused
// pool -> threshold -> packed output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/im2col.h"
#include "kernels/isa.h"
#include "kernels/packed_conv.h"
#include "tests/isa_util.h"

namespace k = qnn::kernels;

namespace {

using qnn::test::IsaGuard;

float sgn(float v) { return v < 0.0f ? -1.0f : 1.0f; }  // sign(0) = +1

// The float conv of sign(x) with sign(w): out [N, O, OH, OW]; padded taps
// read pad_value (0 = zero padding, +1 = one-padding).
std::vector<float> reference_conv(const std::vector<float>& x, const std::vector<float>& w, int64_t N,
                                  int64_t O, const k::PatchGeom& g, float pad_value) {
  std::vector<float> out(size_t(N * O * g.OH * g.OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < g.OH; ++oy)
        for (int64_t ox = 0; ox < g.OW; ++ox) {
          float acc = 0.0f;  // |acc| <= C*KH*KW < 2^24: every partial sum is exact
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t ky = 0; ky < g.KH; ++ky)
              for (int64_t kx = 0; kx < g.KW; ++kx) {
                const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                const bool in = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                const float xv = in ? sgn(x[size_t(((n * g.C + c) * g.H + iy) * g.W + ix)]) : pad_value;
                acc += xv * sgn(w[size_t(((o * g.C + c) * g.KH + ky) * g.KW + kx)]);
              }
          out[size_t(((n * O + o) * g.OH + oy) * g.OW + ox)] = acc;
        }
  return out;
}

std::vector<float> random_values(size_t n, std::mt19937& rng, bool pm1) {
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = pm1 ? sgn(U(rng)) : U(rng);
  return v;
}

struct ConvCase {
  int64_t N, C, H, W, O, K, stride, pad;
};

// The odd shapes of the task: C in {1,3,63,64,65,130}, stride 1/2, pad 0/1,
// 1x1 and 3x3, 1-pixel and non-square images, batch 1 and 3, O not a multiple
// of the 3 x 8 register tile (nor of 64).
std::vector<ConvCase> odd_cases() {
  std::vector<ConvCase> v;
  const int64_t Cs[] = {1, 3, 63, 64, 65, 130};
  const int64_t HWs[][2] = {{1, 1}, {5, 7}, {6, 4}};
  const int64_t Os[] = {1, 5, 13, 70};
  int i = 0;
  for (int64_t C : Cs)
    for (auto hw : HWs)
      for (int64_t K : {1, 3})
        for (int64_t stride : {1, 2})
          for (int64_t pad : {0, 1}) {
            if (hw[0] + 2 * pad < K || hw[1] + 2 * pad < K) continue;
            const int64_t N = (i % 2) ? 3 : 1;
            v.push_back({N, C, hw[0], hw[1], Os[i % 4], K, stride, pad});
            ++i;
          }
  return v;
}

}  // namespace

TEST_CASE("pack_nhwc: channel c of pixel (n, y, x) at bit c%64 of word c/64, by sign, tail bits 0") {
  std::mt19937 rng(3);
  for (int64_t C : {1, 3, 63, 64, 65, 130}) {
    CAPTURE(C);
    const int64_t N = 2, H = 3, W = 5, CW = k::pixel_words(C);
    CHECK(CW == (C + 63) / 64);
    std::vector<float> x = random_values(size_t(N * C * H * W), rng, false);
    x[0] = 0.0f;   // sign(0) = +1 -> bit 0
    x[1 % x.size()] = -0.0f;
    std::vector<uint64_t> xp(size_t(N * H * W * CW), ~uint64_t(0));  // every word must be written
    k::pack_nhwc(x.data(), N, C, H, W, xp.data());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < H * W; ++p)
        for (int64_t b = 0; b < CW * 64; ++b) {
          const bool bit = (xp[size_t((n * H * W + p) * CW + b / 64)] >> (b % 64)) & 1;
          const bool want = b < C && x[size_t((n * C + b) * H * W + p)] < 0.0f;
          if (bit != want) {
            FAIL_CHECK("n=" << n << " p=" << p << " bit " << b);
            break;
          }
        }
    std::vector<float> back(x.size());
    k::unpack_nhwc(xp.data(), N, C, H, W, back.data());
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(back[i] == sgn(x[i]));
  }
}

TEST_CASE("pack_conv_weights: tap order (ky, kx, c), tap sums, pad words 0") {
  std::mt19937 rng(4);
  const int64_t O = 3, C = 65, KH = 3, KW = 2;
  const std::vector<float> w = random_values(size_t(O * C * KH * KW), rng, false);
  const k::PackedConvWeights pw = k::pack_conv_weights(w.data(), O, C, KH, KW);
  CHECK(pw.CW == 2);
  CHECK(pw.row_words == 16);  // 6 taps x 2 words = 12 -> 16
  for (int64_t o = 0; o < O; ++o)
    for (int64_t ky = 0; ky < KH; ++ky)
      for (int64_t kx = 0; kx < KW; ++kx) {
        int32_t sum = 0;
        for (int64_t c = 0; c < 128; ++c) {
          const int64_t t = ky * KW + kx;
          const bool bit = (pw.bits[size_t(o * 16 + t * 2 + c / 64)] >> (c % 64)) & 1;
          const bool want = c < C && w[size_t(((o * C + c) * KH + ky) * KW + kx)] < 0.0f;
          REQUIRE(bit == want);
          if (c < C) sum += want ? -1 : 1;
        }
        CHECK(pw.tap_sum[size_t((o * KH + ky) * KW + kx)] == sum);
      }
  for (int64_t o = 0; o < O; ++o)
    for (int64_t wd = 12; wd < 16; ++wd) CHECK(pw.bits[size_t(o * 16 + wd)] == 0);
}

TEST_CASE("packed_conv_forward: every variant equals the float conv of the ±1 data, odd shapes") {
  IsaGuard guard;
  std::mt19937 rng(7);
  const std::vector<ConvCase> cases = odd_cases();
  REQUIRE(cases.size() > 100);
  for (const ConvCase& c : cases) {
    CAPTURE(c.N);
    CAPTURE(c.C);
    CAPTURE(c.H);
    CAPTURE(c.W);
    CAPTURE(c.O);
    CAPTURE(c.K);
    CAPTURE(c.stride);
    CAPTURE(c.pad);
    const k::PatchGeom g = k::make_patch_geom(c.C, c.H, c.W, c.K, c.K, c.stride, c.pad);
    // Real-valued inputs: pack_nhwc and pack_conv_weights take the sign.
    const std::vector<float> x = random_values(size_t(c.N * c.C * c.H * c.W), rng, false);
    const std::vector<float> w = random_values(size_t(c.O * c.C * c.K * c.K), rng, false);
    std::vector<uint64_t> xp(size_t(c.N * c.H * c.W * k::pixel_words(c.C)));
    k::pack_nhwc(x.data(), c.N, c.C, c.H, c.W, xp.data());
    const k::PackedConvWeights pw = k::pack_conv_weights(w.data(), c.O, c.C, c.K, c.K);
    for (k::ConvPad mode : {k::ConvPad::zero, k::ConvPad::one}) {
      const float pad_value = mode == k::ConvPad::zero ? 0.0f : 1.0f;
      CAPTURE(pad_value);
      const std::vector<float> want = reference_conv(x, w, c.N, c.O, g, pad_value);
      for (k::Isa isa : qnn::test::supported_isas()) {
        CAPTURE(k::isa_name(isa));
        k::set_isa(isa);
        std::vector<float> got(want.size(), 12345.0f);
        k::packed_conv_forward(xp.data(), c.N, g, pw, mode, got.data());
        size_t bad = 0;
        for (size_t i = 0; i < want.size(); ++i) bad += got[i] != want[i];
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("packed_conv_forward: larger layers cross row/column blocks and K chunks") {
  IsaGuard guard;
  std::mt19937 rng(8);
  // C=256: 36 words per patch, O = 100 rows span three 48-row blocks of the
  // driver, 2 x 144 = 288 patches two 256-column blocks (split inside image 1).
  // C=1030: 17 words per pixel, 153 (-> 160) per patch: two 128-word K chunks.
  struct L {
    int64_t N, C, H, W, O;
  };
  for (L l : {L{2, 256, 12, 12, 100}, L{1, 1030, 6, 5, 20}})
    for (int64_t stride : {1, 2}) {
      CAPTURE(l.C);
      CAPTURE(stride);
      const k::PatchGeom g = k::make_patch_geom(l.C, l.H, l.W, 3, 3, stride, 1);
      const std::vector<float> x = random_values(size_t(l.N * l.C * l.H * l.W), rng, true);
      const std::vector<float> w = random_values(size_t(l.O * l.C * 9), rng, true);
      std::vector<uint64_t> xp(size_t(l.N * l.H * l.W * k::pixel_words(l.C)));
      k::pack_nhwc(x.data(), l.N, l.C, l.H, l.W, xp.data());
      const k::PackedConvWeights pw = k::pack_conv_weights(w.data(), l.O, l.C, 3, 3);
      const std::vector<float> want = reference_conv(x, w, l.N, l.O, g, 0.0f);
      for (k::Isa isa : qnn::test::supported_isas()) {
        CAPTURE(k::isa_name(isa));
        k::set_isa(isa);
        std::vector<float> got(want.size());
        k::packed_conv_forward(xp.data(), l.N, g, pw, k::ConvPad::zero, got.data());
        CHECK(got == want);
      }
    }
}

TEST_CASE("zero_pad_corrections: 0 inside, the padded taps' weight sums on the border") {
  std::mt19937 rng(9);
  const int64_t C = 5, O = 4, H = 4, W = 3;
  const k::PatchGeom g = k::make_patch_geom(C, H, W, 3, 3, 1, 1);
  const std::vector<float> w = random_values(size_t(O * C * 9), rng, true);
  const k::PackedConvWeights pw = k::pack_conv_weights(w.data(), O, C, 3, 3);
  std::vector<int32_t> corr(size_t(O * g.pixels()));
  k::zero_pad_corrections(g, pw, corr.data());
  // The correction is one-padding's sum minus zero padding's, for any input.
  const std::vector<float> x = random_values(size_t(C * H * W), rng, true);
  const std::vector<float> a = reference_conv(x, w, 1, O, g, 1.0f), b = reference_conv(x, w, 1, O, g, 0.0f);
  for (size_t i = 0; i < corr.size(); ++i) CHECK(float(corr[i]) == a[i] - b[i]);
  CHECK(corr[size_t(1 * W + 1)] == 0);  // (1, 1) of channel 0 is inside
}

TEST_CASE("max_pool_sums and sign_max_pool_nhwc: max, then threshold, as the float chain") {
  IsaGuard guard;
  std::mt19937 rng(10);
  std::uniform_int_distribution<int> D(-9, 9);
  for (int64_t O : {1, 5, 64, 70, 130}) {
    for (auto [pk, ps] : {std::pair<int64_t, int64_t>{2, 2}, {3, 2}, {1, 1}, {2, 1}}) {
      CAPTURE(O);
      CAPTURE(pk);
      CAPTURE(ps);
      const int64_t N = 3, H = 5, W = 6, OH = (H - pk) / ps + 1, OW = (W - pk) / ps + 1;
      std::vector<float> x(size_t(N * O * H * W));
      for (float& v : x) v = float(D(rng));
      std::vector<float> pooled(size_t(N * O * OH * OW));
      k::max_pool_sums(x.data(), N * O, H, W, pk, ps, pooled.data());
      std::vector<float> thresh(static_cast<size_t>(O));
      std::vector<uint8_t> flip(static_cast<size_t>(O));
      for (int64_t o = 0; o < O; ++o) {
        thresh[size_t(o)] = float(D(rng)) + (o % 3 == 0 ? 0.5f : 0.0f);  // integer ties too
        flip[size_t(o)] = uint8_t(o % 2);
      }
      const int64_t OCW = k::pixel_words(O);
      std::vector<uint64_t> bits(size_t(N * OH * OW * OCW), ~uint64_t(0));
      k::sign_max_pool_nhwc(x.data(), N, O, H, W, pk, ps, thresh.data(), flip.data(), bits.data());
      std::vector<float> vals(pooled.size());
      k::unpack_nhwc(bits.data(), N, O, OH, OW, vals.data());
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t oy = 0; oy < OH; ++oy)
            for (int64_t ox = 0; ox < OW; ++ox) {
              float m = -1e30f;  // the window max, written again
              for (int64_t ky = 0; ky < pk; ++ky)
                for (int64_t kx = 0; kx < pk; ++kx)
                  m = std::max(m, x[size_t(((n * O + o) * H + oy * ps + ky) * W + ox * ps + kx)]);
              const size_t i = size_t(((n * O + o) * OH + oy) * OW + ox);
              REQUIRE(pooled[i] == m);
              const bool plus = (m >= thresh[size_t(o)]) != (flip[size_t(o)] != 0);
              REQUIRE(vals[i] == (plus ? 1.0f : -1.0f));
            }
      // channel-tail bits of every pooled pixel are 0 (bitpack.h rule 4)
      if (O % 64 != 0)
        for (int64_t q = 0; q < N * OH * OW; ++q)
          REQUIRE((bits[size_t(q * OCW + OCW - 1)] >> (O % 64)) == 0);
    }
  }
}

TEST_CASE("conv -> pool -> threshold -> packed NHWC feeds the next packed conv unchanged") {
  IsaGuard guard;
  std::mt19937 rng(12);
  const int64_t N = 2, C = 3, H = 8, W = 6, O = 70, O2 = 9;
  const k::PatchGeom g1 = k::make_patch_geom(C, H, W, 3, 3, 1, 1);
  const std::vector<float> x = random_values(size_t(N * C * H * W), rng, true);
  const std::vector<float> w1 = random_values(size_t(O * C * 9), rng, true);
  const std::vector<float> w2 = random_values(size_t(O2 * O * 9), rng, true);
  std::vector<uint64_t> xp(size_t(N * H * W));
  k::pack_nhwc(x.data(), N, C, H, W, xp.data());
  const k::PackedConvWeights p1 = k::pack_conv_weights(w1.data(), O, C, 3, 3);
  const k::PackedConvWeights p2 = k::pack_conv_weights(w2.data(), O2, O, 3, 3);
  std::vector<float> s1(size_t(N * O * g1.pixels()));
  k::packed_conv_forward(xp.data(), N, g1, p1, k::ConvPad::zero, s1.data());
  std::vector<float> thresh(size_t(O), 0.0f);
  const int64_t PH = g1.OH / 2, PW = g1.OW / 2;
  std::vector<uint64_t> h(size_t(N * PH * PW * k::pixel_words(O)));
  k::sign_max_pool_nhwc(s1.data(), N, O, g1.OH, g1.OW, 2, 2, thresh.data(), nullptr, h.data());
  // float chain: reference conv, max-pool, sign (>= 0 -> +1), reference conv
  const std::vector<float> r1 = reference_conv(x, w1, N, O, g1, 0.0f);
  std::vector<float> pooled(size_t(N * O * PH * PW));
  std::vector<int32_t> arg(pooled.size());
  k::max_pool_forward(r1.data(), N * O, g1.OH, g1.OW, 2, 2, pooled.data(), arg.data());
  for (float& v : pooled) v = v >= 0.0f ? 1.0f : -1.0f;
  const k::PatchGeom g2 = k::make_patch_geom(O, PH, PW, 3, 3, 1, 1);
  const std::vector<float> want = reference_conv(pooled, w2, N, O2, g2, 0.0f);
  for (k::Isa isa : qnn::test::supported_isas()) {
    CAPTURE(k::isa_name(isa));
    k::set_isa(isa);
    std::vector<float> got(want.size());
    k::packed_conv_forward(h.data(), N, g2, p2, k::ConvPad::zero, got.data());
    CHECK(got == want);
  }
}

TEST_CASE("packed conv: bad shapes and pointers throw std::invalid_argument") {
  const std::vector<float> w(3 * 2 * 9, 1.0f);
  const k::PackedConvWeights pw = k::pack_conv_weights(w.data(), 3, 2, 3, 3);
  std::vector<uint64_t> xp(64, 0);
  std::vector<float> out(3 * 16, 0.0f);
  const k::PatchGeom g = k::make_patch_geom(2, 4, 4, 3, 3, 1, 1);
  CHECK_NOTHROW(k::packed_conv_forward(xp.data(), 1, g, pw, k::ConvPad::one, out.data()));
  CHECK_THROWS_AS(k::packed_conv_forward(xp.data(), -1, g, pw, k::ConvPad::one, out.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::packed_conv_forward(nullptr, 1, g, pw, k::ConvPad::one, out.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::packed_conv_forward(xp.data(), 1, g, pw, k::ConvPad::one, nullptr), std::invalid_argument);
  // weights packed for another channel count
  CHECK_THROWS_AS(k::packed_conv_forward(xp.data(), 1, k::make_patch_geom(3, 4, 4, 3, 3, 1, 1), pw,
                                         k::ConvPad::one, out.data()),
                  std::invalid_argument);
  k::PatchGeom bad = g;
  bad.OH = 5;  // disagrees with the geometry
  CHECK_THROWS_AS(k::packed_conv_forward(xp.data(), 1, bad, pw, k::ConvPad::one, out.data()), std::invalid_argument);
  bad = g;
  bad.pad = 0;
  bad.H = 2;  // kernel larger than the image
  bad.OH = k::conv_out_size(2, 3, 1, 0);
  CHECK_THROWS_AS(k::packed_conv_forward(xp.data(), 1, bad, pw, k::ConvPad::one, out.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_conv_weights(w.data(), 3, 0, 3, 3), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_nhwc(nullptr, 1, 2, 4, 4, xp.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_nhwc(out.data(), 1, -2, 4, 4, xp.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::max_pool_sums(out.data(), 1, 4, 4, 5, 1, out.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::sign_max_pool_nhwc(out.data(), 1, 3, 4, 4, 2, 0, out.data(), nullptr, xp.data()),
                  std::invalid_argument);
}
