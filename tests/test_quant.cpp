// tests/test_quant.cpp — layers/quant/: quantizers (Sign, Uniform,
// StochasticSign, the factory) and surrogate gradients; the quantized layers
// are in test_quant_layers.cpp.
//
// Forward levels are checked against the formulas of docs/design.md §3 written out
// independently here (in double); surrogate gradients against their formulas
// and against central differences of the functions they are derivatives of
// (tanh(Kx), and f3 of the student report "Investigation and Analysis on Quantized Neural Networks" (after Hubara et al., JMLR 2018)).
#include <doctest/doctest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/bitserial.h"
#include "kernels/level_planes.h"
#include "layers/quant/quant.h"
#include "tests/isa_util.h"
#include "tests/quant_test_util.h"

using namespace qnn;
using qnn::test::IsaGuard;
using qnn::test::randv;
using qnn::test::supported_isas;

namespace {

// dL/dx for L = sum(q(x) * G): runs q on a leaf copy of x and backward(G).
std::vector<float> grad_through(Quantizer& q, const std::vector<float>& xs, const std::vector<float>& G) {
  Tensor x = Tensor::from_vector({(int64_t)xs.size()}, xs);
  x.set_requires_grad(true);
  Tensor y = q(x);
  REQUIRE(y.requires_grad());
  y.backward(Tensor::from_vector({(int64_t)G.size()}, G));
  return x.grad().to_vector();
}

std::vector<float> forward_of(Quantizer& q, const std::vector<float>& xs) {
  return q(Tensor::from_vector({(int64_t)xs.size()}, xs)).to_vector();
}

// The spec's k-bit quantizer in double: q(x) = -a + D * round((clip(x)+a)/D),
// ties rounding up (towards +a).
double uniform_ref(double x, int bits, double a) {
  const double n1 = std::pow(2.0, bits) - 1.0, D = 2.0 * a / n1;
  const double c = std::fmin(std::fmax(x, -a), a);
  return -a + D * std::floor((c + a) / D + 0.5);
}

// The QNN report's eq. 18 in double: f3(u) = f2(u - 2 round(u/2)) + 2 round(u/2).
double f3(double u, double K) {
  const double r = std::round(u / 2.0);
  return std::tanh(K * (u - 2.0 * r)) + 2.0 * r;
}

}  // namespace

// ---- surrogate specs -----------------------------------------------------------------

TEST_CASE("parse_surrogate: valid forms round-trip through str()") {
  CHECK(parse_surrogate("hardtanh") == Surrogate::hardtanh());
  CHECK(parse_surrogate("ste") == Surrogate::hardtanh());
  CHECK(parse_surrogate("ste:2") == Surrogate::hardtanh(2.0f));
  CHECK(parse_surrogate("tanh:3") == Surrogate::tanh(3.0f));
  CHECK(parse_surrogate("tanh:0.5") == Surrogate::tanh(0.5f));
  CHECK(parse_surrogate("periodic:4") == Surrogate::periodic(4.0f));
  CHECK(parse_surrogate("identity") == Surrogate::identity());
  for (const char* s : {"hardtanh", "hardtanh:2", "tanh:3", "tanh:0.25", "periodic:5", "identity"})
    CHECK(parse_surrogate(s).str() == s);
}

TEST_CASE("parse_surrogate: clear errors") {
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh:-1"), doctest::Contains("finite number > 0"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh:0"), doctest::Contains("finite number > 0"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh:inf"), doctest::Contains("finite number > 0"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh"), doctest::Contains("needs its slope K"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("periodic"), doctest::Contains("needs its slope K"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh:abc"), doctest::Contains("not a number"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh:3x"), doctest::Contains("not a number"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("tanh:"), doctest::Contains("not a number"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("identity:2"), doctest::Contains("takes no parameter"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate("sigmoid"), doctest::Contains("unknown surrogate 'sigmoid'"), Error);
  CHECK_THROWS_WITH_AS(parse_surrogate(""), doctest::Contains("valid surrogates"), Error);
}

// ---- Sign ----------------------------------------------------------------------------------

TEST_CASE("Sign: values +-1, sign(0) = +1, hardtanh gradient with |x| = 1 included") {
  Sign q;
  CHECK(q.bits() == 1);
  CHECK(q.name() == "sign");
  CHECK(q.levels() == std::vector<float>{-1.0f, 1.0f});
  const std::vector<float> xs{-3.0f, -1.0f, -1e-30f, -0.0f, 0.0f, 1e-30f, 0.4f, 1.0f, 1.0001f, NAN};
  const std::vector<float> want{-1, -1, -1, 1, 1, 1, 1, 1, 1, 1};
  CHECK(forward_of(q, xs) == want);
  std::vector<float> G(xs.size());
  for (size_t i = 0; i < G.size(); ++i) G[i] = 0.5f + (float)i;
  const auto gx = grad_through(q, xs, G);
  for (size_t i = 0; i + 1 < xs.size(); ++i) {
    const float expect = std::fabs(xs[i]) <= 1.0f ? G[i] : 0.0f;
    CHECK_MESSAGE(gx[i] == expect, "x = " << xs[i]);
  }
  CHECK(gx[1] == G[1]);  // x = -1: boundary passes
  CHECK(gx[7] == G[7]);  // x = +1
  CHECK(gx[8] == 0.0f);  // x = 1.0001: cancelled
}

TEST_CASE("Sign: large tensors (OpenMP path) agree with the scalar rule") {
  Rng rng(5);
  const int64_t n = (1 << 17) + 3;
  auto xs = randv(n, -2.0f, 2.0f, rng);
  Sign q(Surrogate::tanh(3.0f));
  Tensor x = Tensor::from_vector({n}, xs);
  x.set_requires_grad(true);
  Tensor y = q(x);
  Tensor G = Tensor::ones({n});
  y.backward(G);
  const float* py = y.data();
  const float* gx = x.grad().data();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (py[i] != (xs[i] < 0 ? -1.0f : 1.0f)) ++bad;
    const double th = std::tanh(3.0 * xs[i]);
    if (std::fabs(gx[i] - 3.0 * (1 - th * th)) > 1e-5) ++bad;
  }
  CHECK(bad == 0);
}

// ---- Uniform ----------------------------------------------------------------------------------

TEST_CASE("Uniform bits=2, a=1: levels exactly {-1, -1/3, 1/3, 1}") {
  Uniform q(2, 1.0f);
  const std::vector<float> want{-1.0f, -1.0f / 3.0f, 1.0f / 3.0f, 1.0f};
  CHECK(q.levels() == want);
  Rng rng(1);
  auto xs = randv(5000, -1.5f, 1.5f, rng);
  std::set<float> seen;
  for (float v : forward_of(q, xs)) seen.insert(v);
  CHECK(std::vector<float>(seen.begin(), seen.end()) == want);
  // thresholds at -2/3, 0, 2/3; ties round up (towards +a)
  CHECK(forward_of(q, {0.0f}) == std::vector<float>{1.0f / 3.0f});
  CHECK(forward_of(q, {-1e-7f}) == std::vector<float>{-1.0f / 3.0f});
  CHECK(forward_of(q, {-0.67f, -0.66f, 0.66f, 0.67f}) == std::vector<float>{-1.0f, -1.0f / 3, 1.0f / 3, 1.0f});
  // clip boundaries
  CHECK(forward_of(q, {-7.0f, -1.0f, 1.0f, 7.0f}) == std::vector<float>{-1, -1, 1, 1});
}

TEST_CASE("Uniform bits=3 and general bits/a match the spec formula") {
  Uniform q3(3, 1.0f);
  const auto lv = q3.levels();
  REQUIRE(lv.size() == 8);
  for (int j = 0; j < 8; ++j) CHECK(lv[j] == doctest::Approx((2.0 * j - 7.0) / 7.0).epsilon(1e-7));
  CHECK(forward_of(q3, {0.0f})[0] == doctest::Approx(1.0 / 7.0));
  CHECK(forward_of(q3, {2.0f / 7.0f + 1e-4f})[0] == doctest::Approx(3.0 / 7.0));
  CHECK(forward_of(q3, {2.0f / 7.0f - 1e-4f})[0] == doctest::Approx(1.0 / 7.0));

  Rng rng(2);
  for (int bits : {1, 2, 3, 4, 5, 8, 12, 16}) {
    for (float a : {1.0f, 0.5f, 2.5f}) {
      Uniform q(bits, a);
      auto xs = randv(3000, -1.3f * a, 1.3f * a, rng);
      xs.push_back(a);
      xs.push_back(-a);
      xs.push_back(0.0f);
      const auto ys = forward_of(q, xs);
      const double D = 2.0 * a / (std::pow(2.0, bits) - 1.0);
      int64_t bad = 0;
      for (size_t i = 0; i < xs.size(); ++i) {
        // skip values within float rounding of a threshold
        const double t = (std::fmin(std::fmax((double)xs[i], -a), a) + a) / D;
        if (std::fabs(t - std::floor(t) - 0.5) < 1e-4 + 5e-7 * a / D && xs[i] != 0.0f) continue;
        if (std::fabs(ys[i] - uniform_ref(xs[i], bits, a)) > 1e-6 * a) ++bad;
      }
      CHECK_MESSAGE(bad == 0, "bits " << bits << " a " << a);
      CHECK(ys[ys.size() - 3] == doctest::Approx(a));   // q(a) = a
      CHECK(ys[ys.size() - 2] == doctest::Approx(-a));  // q(-a) = -a
    }
  }
}

// The level of float x decided exactly: the odd v with (v-1) a <= clip(x) L <
// (v+1) a. long double has a 64-bit significand on x86-64, so clip(x) L (24 +
// 16 bits) and 2 j a (17 + 24 bits) are exact products; the thresholds are
// searched (largest j with 2 j a <= clip(x) L), no division, no rounding.
int exact_level(float x, int bits, float a) {
  const int L = (1 << bits) - 1;
  const long double c = std::fmin(std::fmax((long double)x, -(long double)a), (long double)a);
  const long double cl = c * (long double)L;
  int lo = -(L + 1) / 2, hi = (L - 1) / 2;  // 2 lo a = -(L+1) a <= cl always
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (2.0L * (long double)mid * (long double)a <= cl) lo = mid;
    else hi = mid - 1;
  }
  return 2 * lo + 1;
}

TEST_CASE("Uniform: both float neighbours of every threshold, 1..16 bits, against an exact reference") {
  REQUIRE(std::numeric_limits<long double>::digits >= 64);
  // The float just below a negative threshold used to get the upper level
  // (u = clip(x) L / a rounded onto the even integer, ties up): -0.66666669
  // < -2/3 read as -1/3 at 2 bits.
  Uniform q2(2, 1.0f);
  CHECK(-0.66666669f < -2.0L / 3.0L);
  CHECK(forward_of(q2, {-0.66666669f, -0.66666663f}) == std::vector<float>{-1.0f, -1.0f / 3.0f});
  IsaGuard guard;
  int64_t values = 0;
  for (float a : {1.0f, 0.75f, 3.0f, 0.1f, 1e-3f}) {
    for (int bits = 1; bits <= 16; ++bits) {
      CAPTURE(a);
      CAPTURE(bits);
      const int L = (1 << bits) - 1;
      // First whole blocks of random values (kernels::uniform_odd_levels
      // decides those in float), then the thresholds' neighbours (the blocks
      // it redoes in double).
      std::vector<float> xs;
      Rng rng(7);
      for (int64_t i = 0; i < 8 * kernels::kLevelBlock; ++i) xs.push_back(rng.uniform(-1.2f * a, 1.2f * a));
      xs.insert(xs.end(), {0.0f, -0.0f, a, -a, std::nextafter(a, 0.0f), std::nextafter(-a, 0.0f), 2.0f * a,
                           -2.0f * a});
      for (int j = -(L - 1) / 2; j <= (L - 1) / 2; ++j) {  // thresholds 2 j a / L, all of them
        const float t = (float)((2.0L * j * (long double)a) / (long double)L);  // the nearest float
        const float below = std::nextafter(t, -INFINITY), above = std::nextafter(t, INFINITY);
        xs.insert(xs.end(), {std::nextafter(below, -INFINITY), below, t, above});
      }
      const int64_t n = (int64_t)xs.size();
      values += n;
      std::vector<int32_t> want((size_t)n);
      for (int64_t i = 0; i < n; ++i) want[(size_t)i] = exact_level(xs[(size_t)i], bits, a);
      // The quantizer itself: output (a v) / L, bit for bit.
      Uniform q(bits, a);
      const std::vector<float> got = forward_of(q, xs);
      int64_t bad = 0, first = -1;
      for (int64_t i = 0; i < n; ++i) {
        const float ref = bits == 1 ? (want[(size_t)i] < 0 ? -a : a) : (a * (float)want[(size_t)i]) / (float)L;
        if (std::memcmp(&got[(size_t)i], &ref, 4) != 0 && bad++ == 0) first = i;
      }
      CHECK_MESSAGE(bad == 0, bad << " misplaced, first x = " << (first >= 0 ? xs[(size_t)first] : 0.0f));
      // The same levels from the kernels' entry points (uniform_levels, the
      // plane packer on every ISA), which the exported runner uses.
      std::vector<float> lv((size_t)n);
      kernels::uniform_levels(xs.data(), n, bits, a, lv.data());
      bool levels_ok = true;
      for (int64_t i = 0; i < n; ++i) levels_ok = levels_ok && lv[(size_t)i] == (float)want[(size_t)i];
      CHECK(levels_ok);
      const int64_t K = 67, rows = n / K;
      kernels::PackedVector ref_planes((size_t)kernels::plane_packed_words(rows, K, bits));
      kernels::pack_planes(want.data(), rows, K, bits, ref_planes.data());
      for (kernels::Isa isa : supported_isas()) {
        kernels::set_isa(isa);
        kernels::PackedVector planes((size_t)kernels::plane_packed_words(rows, K, bits), ~uint64_t(0));
        kernels::pack_level_planes(xs.data(), rows, K, bits, a, planes.data());
        CHECK_MESSAGE(planes == ref_planes, "pack_level_planes, isa " << kernels::isa_name(isa));
      }
    }
  }
  MESSAGE(values << " values next to thresholds checked");
}

// The float m steps (ulps) above t (below for m < 0): floats ordered as the
// integers of a sign-magnitude to two's-complement map.
float ulps_away(float t, int64_t m) {
  const int32_t b = std::bit_cast<int32_t>(t);
  int64_t key = b < 0 ? int64_t(INT32_MIN) - b : b;  // monotone in t; -0 and +0 both map to 0
  key += m;
  const int32_t nb = key < 0 ? int32_t(int64_t(INT32_MIN) - key) : int32_t(key);
  return std::bit_cast<float>(nb);
}

TEST_CASE("uniform_odd_levels: the float fast path is exact up to its margin (values 2^k ulps from thresholds)") {
  // One value per call, so each value takes the path its own distance to a
  // threshold selects: ulps 1..4 go to the exact double arithmetic, larger
  // distances to the float estimate, which must still be exact there.
  int64_t fast_checked = 0;
  for (float a : {1.0f, 0.75f, 3.0f, 1e-3f, 1e30f, 1e-30f}) {
    for (int bits = 2; bits <= 12; ++bits) {
      CAPTURE(a);
      CAPTURE(bits);
      const int L = (1 << bits) - 1;
      const float n1 = (float)L, w = n1 * 0x1p-22f;
      int64_t bad = 0;
      for (int j = -(L - 1) / 2; j <= (L - 1) / 2; j += std::max(1, L / 64)) {
        const float t = (float)((2.0L * j * (long double)a) / (long double)L);
        for (int k = 0; k <= 16; ++k)
          for (int dir : {-1, 1}) {
            const float x = ulps_away(t, dir > 0 ? (int64_t(1) << k) : -(int64_t(1) << k));
            float v = 0.0f;
            kernels::uniform_odd_levels(&x, 1, a, n1, &v);
            bad += v != (float)exact_level(x, bits, a);
            const float h = 0.5f * (std::fmin(std::fmax(x, -a), a) * (n1 / a));
            const float f = h - std::floor(h);
            fast_checked += f >= w && f <= 1.0f - w;
          }
      }
      CHECK(bad == 0);
    }
  }
  MESSAGE(fast_checked << " values decided by the float estimate");
  CHECK(fast_checked > 10000);
}

TEST_CASE("Uniform bits=1 is sign with levels +-a (q(0) = +a); bits=32 is the identity") {
  Uniform q1(1, 0.5f);
  CHECK(q1.levels() == std::vector<float>{-0.5f, 0.5f});
  CHECK(forward_of(q1, {-2.0f, -1e-30f, 0.0f, 1e-30f, 3.0f}) == std::vector<float>{-0.5f, -0.5f, 0.5f, 0.5f, 0.5f});
  Sign s;
  Uniform u1(1, 1.0f);
  Rng rng(3);
  auto xs = randv(1000, -2, 2, rng);
  xs.push_back(0.0f);
  CHECK(forward_of(u1, xs) == forward_of(s, xs));

  Uniform q32(32, 1.0f, Surrogate::hardtanh());
  CHECK(q32.is_identity());
  CHECK(q32.levels().empty());
  const std::vector<float> v{-5.0f, -0.3f, 0.0f, 0.7f, 9.0f};
  CHECK(forward_of(q32, v) == v);
  // true gradient 1 everywhere, whatever the surrogate says
  CHECK(grad_through(q32, v, {1, 2, 3, 4, 5}) == std::vector<float>{1, 2, 3, 4, 5});
}

TEST_CASE("Uniform surrogates scale to the range a") {
  // hardtanh: passes |x| <= a (boundary included)
  Uniform q(2, 2.0f, Surrogate::hardtanh());
  CHECK(grad_through(q, {-2.5f, -2.0f, 0.3f, 2.0f, 2.01f}, {1, 1, 1, 1, 1}) == std::vector<float>{0, 1, 1, 1, 0});
  Uniform qc(2, 2.0f, Surrogate::hardtanh(0.5f));  // clip at 0.5 * a = 1
  CHECK(grad_through(qc, {-1.5f, -1.0f, 1.0f, 1.5f}, {1, 1, 1, 1}) == std::vector<float>{0, 1, 1, 0});
  // tanh:K -> derivative of a * tanh(K x / a)
  const double a = 2.0, K = 3.0;
  Uniform qt(2, (float)a, Surrogate::tanh((float)K));
  for (double x : {-2.5, -1.0, -0.1, 0.0, 0.4, 1.7}) {
    const double h = 1e-5;
    const double fd = (a * std::tanh(K * (x + h) / a) - a * std::tanh(K * (x - h) / a)) / (2 * h);
    CHECK(grad_through(qt, {(float)x}, {1})[0] == doctest::Approx(fd).epsilon(1e-4));
  }
}

// ---- surrogate gradients vs finite differences -----------------------------------------------------

TEST_CASE("tanh:K surrogate = d/dx tanh(Kx) (finite differences), K = 3, 4, 5, 0.7") {
  for (double K : {3.0, 4.0, 5.0, 0.7}) {
    Sign q(Surrogate::tanh((float)K));
    std::vector<float> xs;
    for (double x = -1.6; x <= 1.6; x += 0.137) xs.push_back((float)x);
    const auto g = grad_through(q, xs, std::vector<float>(xs.size(), 1.0f));
    for (size_t i = 0; i < xs.size(); ++i) {
      const double x = xs[i], h = 1e-6;
      const double fd = (std::tanh(K * (x + h)) - std::tanh(K * (x - h))) / (2 * h);
      CHECK_MESSAGE(g[i] == doctest::Approx(fd).epsilon(1e-4).scale(1.0), "K " << K << " x " << x);
      const double th = std::tanh(K * x);
      CHECK(g[i] == doctest::Approx(K * (1 - th * th)).epsilon(1e-5));
    }
  }
}

TEST_CASE("periodic:K surrogate = finite differences of (D/2) f3(x / (D/2)) on [-a, a], 0 outside") {
  for (int bits : {1, 2, 3, 4}) {
    for (double a : {1.0, 0.5}) {
      for (double K : {3.0, 5.0}) {
        Uniform q(bits, (float)a, Surrogate::periodic((float)K));
        const double n1 = std::pow(2.0, bits) - 1.0, half = a / n1;  // D/2
        std::vector<float> xs;
        for (double x = -a; x <= a; x += a / 97.0) xs.push_back((float)x);
        const auto g = grad_through(q, xs, std::vector<float>(xs.size(), 1.0f));
        int checked = 0;
        for (size_t i = 0; i < xs.size(); ++i) {
          const double x = xs[i], u = x / half;
          const double t = u - 2.0 * std::round(u / 2.0);
          if (std::fabs(t) > 0.95) continue;  // f3 jumps by 2 - 2 tanh(K) at odd u (the levels)
          const double h = 1e-6 * half;
          const double fd = (half * f3((x + h) / half, K) - half * f3((x - h) / half, K)) / (2 * h);
          CHECK_MESSAGE(g[i] == doctest::Approx(fd).epsilon(1e-3).scale(1.0),
                        "bits " << bits << " a " << a << " K " << K << " x " << x);
          ++checked;
        }
        CHECK(checked > 50);
        // slope K on every decision threshold: x = 2k * D/2, |2k| <= n-2
        for (int k = -((int)n1 - 1) / 2; k <= ((int)n1 - 1) / 2; ++k) {
          const float thr = (float)(2.0 * k * half);
          CHECK(grad_through(q, {thr}, {1})[0] == doctest::Approx(K).epsilon(1e-4));
        }
        // beyond +-a: cancelled
        CHECK(grad_through(q, {(float)(1.2 * a), (float)(-3 * a)}, {1, 1}) == std::vector<float>{0, 0});
      }
    }
  }
  // bits = 1: periodic equals tanh:K on [-a, a]
  Sign p(Surrogate::periodic(3.0f)), t(Surrogate::tanh(3.0f));
  const std::vector<float> xs{-1.0f, -0.5f, 0.0f, 0.2f, 0.99f};
  const std::vector<float> G(xs.size(), 1.0f);
  const auto gp = grad_through(p, xs, G), gt = grad_through(t, xs, G);
  for (size_t i = 0; i < xs.size(); ++i) CHECK(gp[i] == doctest::Approx(gt[i]).epsilon(1e-5));
}

TEST_CASE("surrogate_value is the function surrogate_grad differentiates") {
  Rng rng(9);
  for (const char* spec : {"tanh:3", "periodic:4", "hardtanh", "identity"}) {
    const Surrogate s = parse_surrogate(spec);
    for (QuantGeometry geo : {QuantGeometry{1, 1.0f}, QuantGeometry{2, 1.0f}, QuantGeometry{3, 0.5f}}) {
      for (int i = 0; i < 200; ++i) {
        const float x = rng.uniform(-0.95f * geo.a, 0.95f * geo.a);
        if (s.kind == SurrogateKind::periodic) {
          const float u = x * (float)((1 << geo.bits) - 1) / geo.a;
          if (std::fabs(u - 2.0f * std::round(u / 2.0f)) > 0.95f) continue;
        }
        const float h = 1e-3f * geo.a;
        const double fd =
            ((double)surrogate_value(s, geo, x + h) - (double)surrogate_value(s, geo, x - h)) / (2.0 * h);
        CHECK_MESSAGE(surrogate_grad(s, geo, x) == doctest::Approx(fd).epsilon(2e-2).scale(1.0),
                      spec << " bits " << geo.bits << " x " << x);
      }
    }
  }
}

TEST_CASE("identity surrogate passes the gradient unchanged, even outside the range") {
  Sign q(Surrogate::identity());
  CHECK(grad_through(q, {-5.0f, 0.0f, 3.0f}, {2, 3, 4}) == std::vector<float>{2, 3, 4});
}

// ---- StochasticSign ---------------------------------------------------------------------------

TEST_CASE("StochasticSign: mean over draws = 2 hard_sigmoid(x) - 1; eval is deterministic") {
  Rng rng(42);
  StochasticSign q(rng);
  CHECK(q.bits() == 1);
  const int64_t draws = 40000;
  for (float x : {-1.5f, -1.0f, -0.6f, -0.2f, 0.0f, 0.3f, 0.9f, 1.0f, 1.2f}) {
    Tensor t = Tensor::full({draws}, x);
    const auto y = q(t).to_vector();
    double mean = 0;
    for (float v : y) {
      REQUIRE((v == 1.0f || v == -1.0f));
      mean += v;
    }
    mean /= (double)draws;
    const double p = std::fmin(std::fmax((x + 1.0) / 2.0, 0.0), 1.0);
    const double expect = 2.0 * p - 1.0;
    // Var(y) = 1 - expect^2; 5 standard errors.
    const double tol = 5.0 * std::sqrt((1.0 - expect * expect) / (double)draws) + 1e-9;
    CHECK_MESSAGE(std::fabs(mean - expect) <= tol, "x " << x << " mean " << mean << " expected " << expect);
  }
  // fresh randomness per call
  Tensor t = Tensor::zeros({256});
  CHECK(q(t).to_vector() != q(t).to_vector());
  // evaluation mode: the deterministic sign
  q.train(false);
  CHECK(forward_of(q, {-0.3f, 0.0f, 0.2f, -1e-20f}) == std::vector<float>{-1, 1, 1, -1});
  CHECK(forward_of(q, {-0.3f, 0.0f, 0.2f}) == forward_of(q, {-0.3f, 0.0f, 0.2f}));
  q.train(true);
  // gradient: the surrogate (hardtanh by default)
  CHECK(grad_through(q, {-2.0f, -0.5f, 1.0f, 1.5f}, {1, 1, 1, 1}) == std::vector<float>{0, 1, 1, 0});
}

TEST_CASE("StochasticSign: reproducible from the seed and independent of the thread count") {
  const int64_t n = (1 << 17) + 11;  // large enough for the OpenMP path
  Rng data_rng(7);
  Tensor x = Tensor::from_vector({n}, randv(n, -1.2f, 1.2f, data_rng));
  const int saved = omp_get_max_threads();
  Rng r1(123), r2(123);
  StochasticSign a(r1), b(r2);
  omp_set_num_threads(1);
  const auto ya = a(x).to_vector();
  omp_set_num_threads(std::max(2, saved));
  const auto yb = b(x).to_vector();
  omp_set_num_threads(saved);
  CHECK(ya == yb);
}

// ---- factory -------------------------------------------------------------------------------------

TEST_CASE("make_quantizer / quantizer_for_bits: kinds, bits and clear errors") {
  Rng rng(1);
  CHECK(make_quantizer("sign", 1)->name() == "sign");
  CHECK(make_quantizer("stochastic", 1, {}, &rng)->name() == "stochastic_sign");
  auto u = make_quantizer("uniform", 4, Surrogate::tanh(3), nullptr, 0.5f);
  CHECK(u->bits() == 4);
  CHECK(u->scale() == 0.5f);
  CHECK(u->str() == "uniform(bits=4, a=0.5)[tanh:3]");
  CHECK(make_quantizer("uniform", 32)->is_identity());
  CHECK(make_quantizer("sign", 1, Surrogate::periodic(4))->str() == "sign[periodic:4]");

  CHECK_THROWS_WITH_AS(make_quantizer("uniform", 0), doctest::Contains("bits must be 1..16, or 32"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("uniform", 17), doctest::Contains("bits must be 1..16, or 32"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("uniform", 31), doctest::Contains("bits must be 1..16, or 32"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("uniform", 64), doctest::Contains("bits must be 1..16, or 32"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("sign", 2), doctest::Contains("1-bit quantizer"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("stochastic", 2, {}, &rng), doctest::Contains("1-bit quantizer"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("stochastic", 1), doctest::Contains("needs an Rng"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("ternary", 2), doctest::Contains("unknown quantizer kind 'ternary'"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("sign", 1, {}, nullptr, 2.0f), doctest::Contains("+-1"), Error);
  CHECK_THROWS_WITH_AS(Uniform(2, -1.0f), doctest::Contains("range a"), Error);
  CHECK_THROWS_WITH_AS(Uniform(0, 1.0f), doctest::Contains("bits must be"), Error);

  CHECK(quantizer_for_bits(32) == nullptr);
  CHECK(quantizer_for_bits(1)->name() == "sign");
  CHECK(quantizer_for_bits(1, {}, true, &rng)->name() == "stochastic_sign");
  CHECK(quantizer_for_bits(3)->bits() == 3);
  CHECK_THROWS_WITH_AS(quantizer_for_bits(2, {}, true, &rng), doctest::Contains("1 bit only"), Error);
  CHECK_THROWS_WITH_AS(quantizer_for_bits(0), doctest::Contains("bits must be"), Error);
}
