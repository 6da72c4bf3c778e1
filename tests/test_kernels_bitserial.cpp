// tests/test_kernels_bitserial.cpp — bit-serial GEMM on odd-integer levels
// (kernels/bitserial.h): bit-plane packing and the quantizer that feeds it,
// and every SIMD variant exact against a float reference written here.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "kernels/xnor_gemm.h"
#include "tests/isa_util.h"
#include "tests/kernels_test_util.h"

namespace k = qnn::kernels;

namespace {

using qnn::test::IsaGuard;
using qnn::test::kKs;
using qnn::test::pads_zero;
using qnn::test::supported_isas;

std::vector<int32_t> random_odd(std::mt19937& rng, int64_t n, int bits) {
  const int L = (1 << bits) - 1;
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = 2 * int32_t(rng() % uint32_t(L + 1)) - L;  // 2c - L, c in [0, L]
  return v;
}

}  // namespace

TEST_CASE("bitserial: plane identity on a hand-made case") {
  // 2 bits: v in {-3,-1,1,3}; c = (v+3)/2 in {0,1,2,3}; plane i packed bit = NOT bit i of c.
  const std::vector<int32_t> v = {-3, -1, 1, 3};
  k::PackedVector p(size_t(k::plane_packed_words(1, 4, 2)));
  k::pack_planes(v.data(), 1, 4, 2, p.data());
  const int64_t W = k::packed_words(4);
  CHECK(p[0] == 0b0101);      // plane 0: c bit0 = 0,1,0,1 -> packed 1,0,1,0
  CHECK(p[W] == 0b0011);      // plane 1: c bit1 = 0,0,1,1 -> packed 1,1,0,0
  // dot([-3,-1,1,3], [3,1,-1,-3]) = -9 -1 -1 -9 = -20
  const std::vector<int32_t> w = {3, 1, -1, -3};
  k::PackedVector q(size_t(k::plane_packed_words(1, 4, 2)));
  k::pack_planes(w.data(), 1, 4, 2, q.data());
  int32_t c = 0;
  k::bitserial_gemm_i32(p.data(), 2, q.data(), 2, 1, 1, 4, &c, 1);
  CHECK(c == -20);
}

TEST_CASE("bitserial: pack/unpack planes round trip, pads zero, invalid values throw") {
  std::mt19937 rng(8);
  for (int bits : {1, 2, 3, 4, 8}) {
    for (int64_t K : {int64_t(1), int64_t(65), int64_t(784)}) {
      const int64_t rows = 3;
      const std::vector<int32_t> v = random_odd(rng, rows * K, bits);
      k::PackedVector p(size_t(k::plane_packed_words(rows, K, bits)), ~uint64_t(0));
      k::pack_planes(v.data(), rows, K, bits, p.data());
      CHECK(pads_zero(p.data(), rows * bits, K));
      std::vector<int32_t> back(size_t(rows * K));
      k::unpack_planes(p.data(), rows, K, bits, back.data());
      CHECK(back == v);
    }
  }
  const std::vector<int32_t> even = {1, 2, 3};
  k::PackedVector p(64);
  CHECK_THROWS_AS(k::pack_planes(even.data(), 1, 3, 2, p.data()), std::invalid_argument);
  const std::vector<int32_t> big = {1, 5, 3};
  CHECK_THROWS_AS(k::pack_planes(big.data(), 1, 3, 2, p.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_planes(even.data(), 1, 3, 0, p.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_planes(even.data(), 1, 3, 17, p.data()), std::invalid_argument);
}

TEST_CASE("bitserial: quantize_pack_planes applies the docs/design.md §3 quantizer") {
  IsaGuard guard;
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> U(-1.6f, 1.6f);
  for (k::Isa isa : supported_isas()) {
    CAPTURE(std::string(k::isa_name(isa)));
    k::set_isa(isa);
    for (int bits : {1, 2, 3, 4}) {
      const float alpha = 1.25f;
      const int L = (1 << bits) - 1;
      const int64_t rows = 4, K = 100, ldx = 103;
      std::vector<float> x(size_t(rows * ldx));
      for (float& v : x) v = U(rng);
      x[0] = 0.0f;
      x[1] = std::numeric_limits<float>::quiet_NaN();  // counts as 0
      x[2] = 5.0f;                                     // clipped
      x[3] = -alpha;
      // exact level values pack to themselves
      for (int c = 0; c <= L && 10 + c < K; ++c) x[10 + c] = -alpha + 2.0f * alpha * float(c) / float(L);
      k::PackedVector p(size_t(k::plane_packed_words(rows, K, bits)), ~uint64_t(0));
      k::quantize_pack_planes(x.data(), rows, K, ldx, bits, alpha, p.data());
      CHECK(pads_zero(p.data(), rows * bits, K));
      std::vector<int32_t> v(size_t(rows * K));
      k::unpack_planes(p.data(), rows, K, bits, v.data());
      bool ok = true;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t kk = 0; kk < K; ++kk) {
          float xv = x[r * ldx + kk];
          if (std::isnan(xv)) xv = 0.0f;
          xv = std::min(std::max(xv, -alpha), alpha);
          const int c = int(std::round((xv + alpha) * float(L) / (2.0f * alpha)));
          ok &= v[r * K + kk] == 2 * c - L;
        }
      CHECK(ok);
      for (int c = 0; c <= L && 10 + c < K; ++c) CHECK(v[10 + c] == 2 * c - L);
      if (bits == 1) CHECK(v[0] == 1);  // 0 -> +1, like sign(0)
    }
  }
  std::vector<float> x(4);
  k::PackedVector p(64);
  CHECK_THROWS_AS(k::quantize_pack_planes(x.data(), 1, 4, 4, 2, 0.0f, p.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::quantize_pack_planes(x.data(), 1, 4, 4, 2, -1.0f, p.data()), std::invalid_argument);
}

TEST_CASE("bitserial_gemm: every variant exact vs float reference") {
  IsaGuard guard;
  std::mt19937 rng(77);
  const std::vector<std::pair<int, int>> bitpairs = {{1, 1}, {2, 2}, {2, 3}, {4, 4}, {3, 1}};
  const std::vector<std::pair<int64_t, int64_t>> MN = {{1, 1}, {1, 70}, {5, 3}, {13, 67}};
  for (auto [ab, bb] : bitpairs)
    for (int64_t K : kKs)
      for (auto [M, N] : MN) {
        const std::vector<int32_t> va = random_odd(rng, M * K, ab), vb = random_odd(rng, N * K, bb);
        // float reference on the real quantized values alpha*v/L
        const float aa = 0.75f, ba = 1.5f;
        const float La = float((1 << ab) - 1), Lb = float((1 << bb) - 1);
        // (values in double: alpha * v / L), and the exact integer dot
        std::vector<double> ref(size_t(M * N)), refabs(size_t(M * N));
        std::vector<int64_t> iref(size_t(M * N));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double s = 0, sa = 0;
            int64_t is = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
              const double t = (double(aa) * va[m * K + kk] / La) * (double(ba) * vb[n * K + kk] / Lb);
              s += t;
              sa += std::abs(t);
              is += int64_t(va[m * K + kk]) * vb[n * K + kk];
            }
            ref[m * N + n] = s;
            refabs[m * N + n] = sa;
            iref[m * N + n] = is;
          }
        k::PackedVector pa(size_t(k::plane_packed_words(M, K, ab)));
        k::PackedVector pb(size_t(k::plane_packed_words(N, K, bb)));
        k::pack_planes(va.data(), M, K, ab, pa.data());
        k::pack_planes(vb.data(), N, K, bb, pb.data());
        const double unit = double(aa) / La * double(ba) / Lb;
        std::vector<float> scale(static_cast<size_t>(N), float(unit)), bias(static_cast<size_t>(N));
        for (int64_t n = 0; n < N; ++n) bias[n] = float(n % 5) - 2.0f;
        for (k::Isa isa : supported_isas()) {
          CAPTURE(std::string(k::isa_name(isa)));
          CAPTURE(ab);
          CAPTURE(bb);
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(K);
          k::set_isa(isa);
          std::vector<int32_t> c(size_t(M * N));
          k::bitserial_gemm_i32(pa.data(), ab, pb.data(), bb, M, N, K, c.data(), N);
          std::vector<float> f(size_t(M * N));
          k::bitserial_gemm_f32(pa.data(), ab, pb.data(), bb, M, N, K, f.data(), N, scale.data(),
                                bias.data());
          bool ok = true, okf = true;
          for (int64_t i = 0; i < M * N; ++i) {
            // the integer result times the unit equals the float reference
            ok &= c[i] == iref[i];
            ok &= std::abs(double(c[i]) * unit - ref[i]) <= 1e-12 * (1.0 + refabs[i]);
            const float want = float(unit) * float(c[i]) + bias[i % N];
            okf &= f[i] == want;
          }
          CHECK(ok);
          CHECK(okf);
          if (ab == 1 && bb == 1) {  // 1 x 1 bits is exactly the XNOR GEMM
            std::vector<int32_t> x(size_t(M * N));
            k::xnor_gemm_i32(pa.data(), pb.data(), M, N, K, x.data(), N);
            CHECK(x == c);
          }
        }
      }
}

TEST_CASE("bitserial_gemm: int32 overflow guard and argument errors") {
  k::PackedVector p(64);
  int32_t c = 0;
  // (2^16-1)^2 * 1000 > 2^31
  CHECK_THROWS_AS(k::bitserial_gemm_i32(p.data(), 16, p.data(), 16, 1, 1, 1000, &c, 1),
                  std::invalid_argument);
  CHECK_THROWS_AS(k::bitserial_gemm_i32(p.data(), 0, p.data(), 2, 1, 1, 10, &c, 1),
                  std::invalid_argument);
  CHECK_THROWS_AS(k::bitserial_gemm_i32(p.data(), 2, p.data(), 2, 1, 2, 10, &c, 1),
                  std::invalid_argument);
}
