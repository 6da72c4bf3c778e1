// tests/test_kernels.cpp — bit packing, XNOR GEMM, bit-serial GEMM (kernels/).
//
// Every SIMD variant the CPU supports is checked bit-exactly against plain
// references written here from ±1 floats / odd integers (not from packed data).
#include <doctest/doctest.h>

#include <omp.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/denormals.h"
#include "kernels/fma_peak.h"
#include "kernels/isa.h"
#include "tests/isa_util.h"
#include "kernels/sgemm.h"
#include "kernels/xnor_gemm.h"

namespace k = qnn::kernels;

namespace {

const std::vector<int64_t> kKs = {1, 63, 64, 65, 511, 784, 1000};

using qnn::test::IsaGuard;
using qnn::test::supported_isas;

std::vector<float> random_pm1(std::mt19937& rng, int64_t n) {
  std::vector<float> v(size_t(std::max<int64_t>(n, 0)));
  for (float& x : v) x = (rng() & 1) ? 1.0f : -1.0f;
  return v;
}

// Reference: C[m][n] = sum_k a[m][k] * b[n][k] on ±1 floats.
std::vector<int32_t> ref_dot(const std::vector<float>& a, const std::vector<float>& b, int64_t M,
                             int64_t N, int64_t K) {
  std::vector<int32_t> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t kk = 0; kk < K; ++kk) s += double(a[m * K + kk]) * double(b[n * K + kk]);
      c[m * N + n] = int32_t(s);
    }
  return c;
}

k::PackedVector pack(const std::vector<float>& x, int64_t rows, int64_t K) {
  k::PackedVector p = k::make_packed(rows, K);
  k::pack_rows(x.data(), rows, K, K, p.data());
  return p;
}

bool pads_zero(const uint64_t* p, int64_t rows, int64_t K) {
  const int64_t W = k::packed_words(K);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < W; ++w) {
      uint64_t mask = 0;  // bits at element index >= K
      const int64_t first = w * 64;
      if (first >= K) mask = ~uint64_t(0);
      else if (K - first < 64) mask = ~uint64_t(0) << (K - first);
      if (p[r * W + w] & mask) return false;
    }
  return true;
}

// value of element (r, k) in a packed buffer: +1 or -1
int packed_value(const uint64_t* p, int64_t K, int64_t r, int64_t kk) {
  const int64_t W = k::packed_words(K);
  return ((p[r * W + kk / 64] >> (kk % 64)) & 1) ? -1 : 1;
}

}  // namespace

TEST_CASE("bitpack: packed_words rounds up to whole 512-bit chunks") {
  CHECK(k::packed_words(0) == 0);
  CHECK(k::packed_words(1) == 8);
  CHECK(k::packed_words(512) == 8);
  CHECK(k::packed_words(513) == 16);
  CHECK(k::packed_words(4096) == 64);
  CHECK_THROWS_AS(k::packed_words(-1), std::invalid_argument);
}

TEST_CASE("bitpack: convention — bit 1 is -1, little-endian, zeros and NaN are +1") {
  IsaGuard guard;
  for (k::Isa isa : supported_isas()) {
    CAPTURE(std::string(k::isa_name(isa)));
    k::set_isa(isa);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> x(70, 1.0f);
    x[0] = -1.0f;     // bit 0 of word 0 set
    x[1] = 0.0f;      // +1
    x[2] = -0.0f;     // +1 (sign(0) = +1)
    x[3] = nan;       // +1 (documented)
    x[4] = -1e-30f;   // -1
    x[5] = -inf;      // -1
    x[6] = inf;       // +1
    x[63] = -2.5f;    // top bit of word 0
    x[64] = -3.0f;    // bit 0 of word 1
    x[69] = -1.0f;    // last element
    k::PackedVector p(size_t(k::packed_words(70)), ~uint64_t(0));  // garbage: pads must be cleared
    k::pack_rows(x.data(), 1, 70, 70, p.data());
    CHECK(p[0] == ((uint64_t(1) << 0) | (uint64_t(1) << 4) | (uint64_t(1) << 5) | (uint64_t(1) << 63)));
    CHECK(p[1] == ((uint64_t(1) << 0) | (uint64_t(1) << 5)));
    for (size_t w = 2; w < p.size(); ++w) CHECK(p[w] == 0);
    std::vector<float> back(70, 7.0f);
    k::unpack_rows(p.data(), 1, 70, back.data(), 70);
    CHECK(back[0] == -1.0f);
    CHECK(back[1] == 1.0f);
    CHECK(back[2] == 1.0f);
    CHECK(back[3] == 1.0f);
    CHECK(back[4] == -1.0f);
    CHECK(back[6] == 1.0f);
    CHECK(back[69] == -1.0f);
  }
}

TEST_CASE("bitpack: round trip, strided rows, padding bits zero, pack_cols = transpose") {
  IsaGuard guard;
  std::mt19937 rng(7);
  std::normal_distribution<float> G(0.0f, 1.0f);
  for (k::Isa isa : supported_isas()) {
    CAPTURE(std::string(k::isa_name(isa)));
    k::set_isa(isa);
    for (int64_t K : {int64_t(0), int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(63),
                      int64_t(64), int64_t(65), int64_t(511), int64_t(512), int64_t(784), int64_t(1000)}) {
      CAPTURE(K);
      const int64_t rows = 5, ldx = K + 3;
      std::vector<float> x(size_t(rows * ldx));
      for (float& v : x) v = G(rng);
      const int64_t W = k::packed_words(K);
      k::PackedVector p(size_t(rows * W), ~uint64_t(0));
      k::pack_rows(x.data(), rows, K, ldx, p.data());
      CHECK(pads_zero(p.data(), rows, K));
      bool ok = true;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t kk = 0; kk < K; ++kk)
          ok &= packed_value(p.data(), K, r, kk) == (x[r * ldx + kk] < 0 ? -1 : 1);
      CHECK(ok);
      // unpack into a strided buffer, then repack: identical bits, gaps untouched
      const int64_t ldo = K + 2;
      std::vector<float> u(size_t(rows * ldo), 5.0f);
      k::unpack_rows(p.data(), rows, K, u.data(), ldo);
      bool pm1 = true, gaps = true;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t kk = 0; kk < K; ++kk) {
          const float e = x[r * ldx + kk] < 0 ? -1.0f : 1.0f;
          pm1 &= u[r * ldo + kk] == e;
        }
        for (int64_t kk = K; kk < ldo; ++kk) gaps &= u[r * ldo + kk] == 5.0f;
      }
      CHECK(pm1);
      CHECK(gaps);
      k::PackedVector q(size_t(rows * W));
      k::pack_rows(u.data(), rows, K, ldo, q.data());
      CHECK(q == p);
      // pack_cols: X is [K x N]; packed row n = column n
      const int64_t N = 70, ldc = N + 5;
      std::vector<float> X(size_t(std::max<int64_t>(K, 1) * ldc));
      for (float& v : X) v = G(rng);
      k::PackedVector pc(size_t(N * W), ~uint64_t(0));
      k::pack_cols(X.data(), K, N, ldc, pc.data());
      std::vector<float> T(size_t(N * K));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t kk = 0; kk < K; ++kk) T[n * K + kk] = X[kk * ldc + n];
      if (W > 0) CHECK(pc == pack(T, N, K));
    }
  }
}

TEST_CASE("bitpack: large inputs take the OpenMP path and agree") {
  std::mt19937 rng(11);
  const int64_t rows = 300, K = 1000;
  std::vector<float> x = random_pm1(rng, rows * K);
  k::PackedVector p = pack(x, rows, K);
  CHECK(pads_zero(p.data(), rows, K));
  bool ok = true;
  for (int64_t r = 0; r < rows; r += 37)
    for (int64_t kk = 0; kk < K; ++kk) ok &= packed_value(p.data(), K, r, kk) == int(x[r * K + kk]);
  CHECK(ok);
  std::vector<float> X(size_t(K * rows));  // [K x rows], pack_cols gives rows packed rows
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t kk = 0; kk < K; ++kk) X[kk * rows + r] = x[r * K + kk];
  k::PackedVector pc = k::make_packed(rows, K);
  k::pack_cols(X.data(), K, rows, rows, pc.data());
  CHECK(pc == p);
}

TEST_CASE("bitpack: argument errors throw std::invalid_argument") {
  std::vector<float> x(10);
  k::PackedVector p(8);
  CHECK_THROWS_AS(k::pack_rows(x.data(), 1, 10, 5, p.data()), std::invalid_argument);  // ldx < K
  CHECK_THROWS_AS(k::pack_rows(x.data(), -1, 10, 10, p.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_rows(nullptr, 1, 10, 10, p.data()), std::invalid_argument);
  CHECK_THROWS_AS(k::unpack_rows(p.data(), 1, 10, x.data(), 9), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_cols(x.data(), 2, 5, 4, p.data()), std::invalid_argument);
  CHECK_NOTHROW(k::pack_rows(nullptr, 0, 10, 10, nullptr));  // empty is fine
}

TEST_CASE("xnor reference: hand-computed tiny case") {
  // a = [+1 -1 +1], b0 = [+1 +1 +1] -> 1 - 1 + 1 = 1; b1 = [-1 +1 -1] -> -3
  const std::vector<float> a = {1, -1, 1}, b = {1, 1, 1, -1, 1, -1};
  const std::vector<int32_t> r = ref_dot(a, b, 1, 2, 3);
  REQUIRE(r.size() == 2);
  CHECK(r[0] == 1);
  CHECK(r[1] == -3);
  IsaGuard guard;
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    k::PackedVector pa = pack(a, 1, 3), pb = pack(b, 2, 3);
    int32_t c[2] = {99, 99};
    k::xnor_gemm_i32(pa.data(), pb.data(), 1, 2, 3, c, 2);
    CHECK(c[0] == 1);
    CHECK(c[1] == -3);
  }
}

TEST_CASE("xnor_gemm_i32 / f32: every variant bit-exact vs the float reference") {
  IsaGuard guard;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> U(-2.0f, 2.0f);
  const std::vector<std::pair<int64_t, int64_t>> MN = {{1, 1}, {1, 37}, {5, 1}, {7, 19}, {50, 70}};
  for (int64_t K : kKs)
    for (auto [M, N] : MN) {
      const std::vector<float> a = random_pm1(rng, M * K), b = random_pm1(rng, N * K);
      const std::vector<int32_t> ref = ref_dot(a, b, M, N, K);
      const k::PackedVector pa = pack(a, M, K), pb = pack(b, N, K);
      std::vector<float> scale(static_cast<size_t>(N)), bias(static_cast<size_t>(N));
      for (float& s : scale) s = U(rng);
      for (float& s : bias) s = U(rng);
      for (k::Isa isa : supported_isas()) {
        CAPTURE(std::string(k::isa_name(isa)));
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        k::set_isa(isa);
        const int64_t ldc = N + 2;
        std::vector<int32_t> c(size_t(M * ldc), -12345);
        k::xnor_gemm_i32(pa.data(), pb.data(), M, N, K, c.data(), ldc);
        bool ok = true, gap = true;
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < N; ++n) ok &= c[m * ldc + n] == ref[m * N + n];
          gap &= c[m * ldc + N] == -12345 && c[m * ldc + N + 1] == -12345;
        }
        CHECK(ok);
        CHECK(gap);
        std::vector<float> f(size_t(M * N)), f1(size_t(M * N));
        k::xnor_gemm_f32(pa.data(), pb.data(), M, N, K, f.data(), N, scale.data(), bias.data());
        k::xnor_gemm_f32(pa.data(), pb.data(), M, N, K, f1.data(), N, nullptr, nullptr);
        bool okf = true, okf1 = true;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            const float d = float(ref[m * N + n]);
            okf &= f[m * N + n] == scale[n] * d + bias[n];
            okf1 &= f1[m * N + n] == d;
          }
        CHECK(okf);
        CHECK(okf1);
      }
    }
}

TEST_CASE("xnor_gemm: adversarial rows fill the popcount counters (XOR all ones: dot = -K; equal rows: +K)") {
  // Random rows give byte popcounts near 4, so a kernel whose narrow
  // counters (AVX2: bytes, flushed every 31 steps of 256 bits) could
  // overflow still passes random tests. Rows whose XOR is all ones make every
  // byte count 8 at every step: one step more between flushes and a counter
  // wraps. K >= 8192 fills a whole 128-word K chunk of the driver; odd K and
  // K past a chunk boundary check the pads and the chunk accumulation.
  IsaGuard guard;
  const int64_t M = 7, N = 5;  // more rows / columns than one register tile
  for (int64_t K : {8192, 8193, 8191, 16384 + 511, 3 * 8192 + 1}) {
    CAPTURE(K);
    // Row signs: A row m all s_a[m], B row n all s_b[n]; dot = K s_a s_b.
    const int sa[M] = {1, -1, 1, 1, -1, -1, 1}, sb[N] = {-1, 1, 1, -1, -1};
    std::vector<float> a((size_t)(M * K)), b((size_t)(N * K));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t kk = 0; kk < K; ++kk) a[(size_t)(m * K + kk)] = (float)sa[m];
    for (int64_t n = 0; n < N; ++n)
      for (int64_t kk = 0; kk < K; ++kk) b[(size_t)(n * K + kk)] = (float)sb[n];
    const k::PackedVector pa = pack(a, M, K), pb = pack(b, N, K);
    for (k::Isa isa : supported_isas()) {
      CAPTURE(std::string(k::isa_name(isa)));
      k::set_isa(isa);
      std::vector<int32_t> c((size_t)(M * N), 0);
      k::xnor_gemm_i32(pa.data(), pb.data(), M, N, K, c.data(), N);
      std::vector<float> f((size_t)(M * N), 0.0f);
      k::xnor_gemm_f32(pa.data(), pb.data(), M, N, K, f.data(), N, nullptr, nullptr);
      int64_t bad = 0, minus = 0, plus = 0;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          const int32_t want = (int32_t)K * sa[m] * sb[n];
          bad += c[(size_t)(m * N + n)] != want || f[(size_t)(m * N + n)] != (float)want;
          (want < 0 ? minus : plus) += 1;
        }
      CHECK(bad == 0);
      CHECK(c[0] == -(int32_t)K);  // XOR all ones
      CHECK(c[2] == (int32_t)K);   // all equal
      CHECK(minus > 0);
      CHECK(plus > 0);
    }
  }
}

TEST_CASE("xnor_gemm: multi-threaded, M = 1 over N, large-output streaming path") {
  IsaGuard guard;
  std::mt19937 rng(5);
  const int saved = k::num_threads();
  k::set_num_threads(2);
  struct Case {
    int64_t M, N, K, ldc;
  };
  // 2048 x 1024 int32 = 8 MiB: non-temporal stores; ldc = N + 3 makes rows unaligned
  for (Case cs : {Case{1, 1500, 1000, 1500}, Case{130, 300, 1000, 303}, Case{2048, 1024, 64, 1027},
                  Case{3, 70, 20000, 70}}) {
    const auto [M, N, K, ldc] = cs;
    CAPTURE(M);
    CAPTURE(N);
    CAPTURE(K);
    const std::vector<float> a = random_pm1(rng, M * K), b = random_pm1(rng, N * K);
    const std::vector<int32_t> ref = ref_dot(a, b, M, N, K);
    const k::PackedVector pa = pack(a, M, K), pb = pack(b, N, K);
    for (k::Isa isa : supported_isas()) {
      CAPTURE(std::string(k::isa_name(isa)));
      k::set_isa(isa);
      std::vector<int32_t> c(size_t(M * ldc));
      k::xnor_gemm_i32(pa.data(), pb.data(), M, N, K, c.data(), ldc);
      std::vector<float> f(size_t(M * ldc));
      k::xnor_gemm_f32(pa.data(), pb.data(), M, N, K, f.data(), ldc, nullptr, nullptr);
      bool ok = true;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n)
          ok &= c[m * ldc + n] == ref[m * N + n] && f[m * ldc + n] == float(ref[m * N + n]);
      CHECK(ok);
    }
  }
  k::set_num_threads(saved);
}

TEST_CASE("xnor_gemm: empty shapes do not crash, K = 0 gives dot 0") {
  IsaGuard guard;
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    int32_t c[6] = {7, 7, 7, 7, 7, 7};
    float f[6] = {7, 7, 7, 7, 7, 7};
    CHECK_NOTHROW(k::xnor_gemm_i32(nullptr, nullptr, 0, 3, 10, c, 3));
    CHECK_NOTHROW(k::xnor_gemm_i32(nullptr, nullptr, 2, 0, 10, c, 0));
    CHECK(c[0] == 7);
    k::xnor_gemm_i32(nullptr, nullptr, 2, 3, 0, c, 3);
    for (int i = 0; i < 6; ++i) CHECK(c[i] == 0);
    const float s[3] = {2, 2, 2}, b[3] = {0.5f, 1, 1.5f};
    k::xnor_gemm_f32(nullptr, nullptr, 2, 3, 0, f, 3, s, b);
    CHECK(f[0] == 0.5f);
    CHECK(f[5] == 1.5f);
    // sign with K = 0: dot 0 >= thresh?
    const float th[3] = {0.0f, 0.5f, -1.0f};
    k::PackedVector out(size_t(2 * k::packed_words(3)), ~uint64_t(0));
    k::xnor_gemm_sign(nullptr, nullptr, 2, 3, 0, th, nullptr, out.data());
    // 0>=0 -> +1 (bit 0), 0>=0.5 false -> -1 (bit 1), 0>=-1 -> +1
    CHECK(out[0] == 0b010);
    CHECK(out[8] == 0b010);
    CHECK(pads_zero(out.data(), 2, 3));
    CHECK_NOTHROW(k::xnor_gemm_sign(nullptr, nullptr, 0, 3, 5, th, nullptr, nullptr));
    CHECK_NOTHROW(k::bitserial_gemm_i32(nullptr, 2, nullptr, 2, 0, 0, 0, nullptr, 0));
  }
}

TEST_CASE("xnor_gemm: argument errors throw std::invalid_argument") {
  k::PackedVector a(8), b(8);
  int32_t c[4];
  float th[2] = {0, 0};
  CHECK_THROWS_AS(k::xnor_gemm_i32(a.data(), b.data(), -1, 1, 1, c, 1), std::invalid_argument);
  CHECK_THROWS_AS(k::xnor_gemm_i32(a.data(), b.data(), 1, 2, 1, c, 1), std::invalid_argument);
  CHECK_THROWS_AS(k::xnor_gemm_i32(nullptr, b.data(), 1, 1, 1, c, 1), std::invalid_argument);
  CHECK_THROWS_AS(k::xnor_gemm_i32(a.data(), b.data(), 1, 1, 1, nullptr, 1), std::invalid_argument);
  CHECK_THROWS_AS(k::xnor_gemm_sign(a.data(), b.data(), 1, 1, 1, nullptr, nullptr, a.data()),
                  std::invalid_argument);
  CHECK_THROWS_AS(k::xnor_gemm_sign(a.data(), b.data(), 1, 2, 1, th, nullptr, nullptr),
                  std::invalid_argument);
}

TEST_CASE("xnor_gemm_sign: threshold epilogue vs reference, ties and flip") {
  IsaGuard guard;
  std::mt19937 rng(99);
  const std::vector<std::pair<int64_t, int64_t>> MN = {{1, 1}, {3, 64}, {4, 65}, {9, 200}, {1, 700}};
  for (int64_t K : kKs)
    for (auto [M, N] : MN) {
      const std::vector<float> a = random_pm1(rng, M * K), b = random_pm1(rng, N * K);
      const std::vector<int32_t> ref = ref_dot(a, b, M, N, K);
      const k::PackedVector pa = pack(a, M, K), pb = pack(b, N, K);
      // thresholds: exact ties with row 0's dot, half-integers, infinities, NaN
      std::vector<float> th(static_cast<size_t>(N));
      std::vector<uint8_t> flip(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n) {
        switch (rng() % 6) {
          case 0: th[n] = float(ref[n]); break;  // tie for row 0
          case 1: th[n] = float(ref[n]) + 0.5f; break;
          case 2: th[n] = float(ref[n]) - 0.5f; break;
          case 3: th[n] = float(int(rng() % 41) - 20); break;
          case 4: th[n] = (rng() & 1) ? std::numeric_limits<float>::infinity()
                                      : -std::numeric_limits<float>::infinity(); break;
          default: th[n] = std::numeric_limits<float>::quiet_NaN(); break;
        }
        flip[n] = uint8_t(rng() % 3 == 0 ? (1 + rng() % 200) : 0);  // any non-zero flips
      }
      for (k::Isa isa : supported_isas()) {
        CAPTURE(std::string(k::isa_name(isa)));
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        k::set_isa(isa);
        const int64_t WO = k::packed_words(N);
        for (int use_flip = 0; use_flip < 2; ++use_flip) {
          k::PackedVector out(size_t(M * WO), ~uint64_t(0));
          k::xnor_gemm_sign(pa.data(), pb.data(), M, N, K, th.data(),
                            use_flip ? flip.data() : nullptr, out.data());
          CHECK(pads_zero(out.data(), M, N));
          bool ok = true;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              const bool ge = double(ref[m * N + n]) >= double(th[n]);  // NaN: false
              const bool f = use_flip && flip[n] != 0;
              ok &= packed_value(out.data(), N, m, n) == ((ge != f) ? 1 : -1);
            }
          CHECK(ok);
        }
      }
    }
}

TEST_CASE("xnor_gemm_sign: tie convention on a hand-made case") {
  // a = b = [+1 +1 -1]: dot = 3. thresh 3 -> +1 (>=), with flip -> -1; thresh 3.5 -> -1.
  const std::vector<float> a = {1, 1, -1};
  const k::PackedVector pa = pack(a, 1, 3);
  std::vector<float> bb;
  for (int i = 0; i < 3; ++i) bb.insert(bb.end(), a.begin(), a.end());
  const k::PackedVector pb = pack(bb, 3, 3);
  const float th[3] = {3.0f, 3.0f, 3.5f};
  const uint8_t fl[3] = {0, 1, 0};
  k::PackedVector out(8);
  k::xnor_gemm_sign(pa.data(), pb.data(), 1, 3, 3, th, fl, out.data());
  CHECK(out[0] == 0b110);  // n=0: +1 (bit 0), n=1: -1, n=2: -1
}

TEST_CASE("fold_affine_sign: equals sign(a*dot + b) with sign(0) = +1, for every integer dot") {
  std::mt19937 rng(3);
  std::vector<float> a = {2.0f, -2.0f, 0.0f, 0.0f, 0.5f, -0.25f, 3.0f, -3.0f,
                          std::numeric_limits<float>::quiet_NaN(), 1e-30f};
  std::vector<float> b = {-6.0f, 6.0f, 1.0f, -1.0f, 0.25f, -0.75f, 1.0f, 1.0f, 1.0f, 1.0f};
  std::uniform_real_distribution<float> U(-3, 3);
  for (int i = 0; i < 200; ++i) {
    a.push_back(U(rng));
    b.push_back(float(int(rng() % 21) - 10) * ((rng() & 1) ? 0.5f : 1.0f));
  }
  const int64_t N = int64_t(a.size());
  std::vector<float> th(static_cast<size_t>(N));
  std::vector<uint8_t> fl(static_cast<size_t>(N));
  k::fold_affine_sign(N, a.data(), b.data(), th.data(), fl.data());
  bool ok = true;
  for (int64_t n = 0; n < N; ++n)
    for (int dot = -40; dot <= 40; ++dot) {
      const double y = double(a[n]) * dot + double(b[n]);
      const bool want_plus = std::isnan(y) || y >= 0.0;
      const bool got_plus = (double(dot) >= double(th[n])) != (fl[n] != 0);
      if (want_plus != got_plus) {
        ok = false;
        MESSAGE("n=" << n << " a=" << a[n] << " b=" << b[n] << " dot=" << dot);
      }
    }
  CHECK(ok);
}

TEST_CASE("isa: names, set_isa, QNN_KERNEL") {
  IsaGuard guard;
  CHECK(std::string(k::isa_name(k::Isa::scalar)) == "scalar");
  CHECK(k::parse_isa("avx2") == k::Isa::avx2);
  CHECK(k::parse_isa("avx512") == k::Isa::avx512);
  CHECK_THROWS_AS(k::parse_isa("sse9"), std::invalid_argument);
  CHECK(k::isa_supported(k::Isa::scalar));
  for (k::Isa isa : {k::Isa::scalar, k::Isa::avx2, k::Isa::avx512}) {
    if (k::isa_supported(isa)) {
      k::set_isa(isa);
      CHECK(k::active_isa() == isa);
    } else {
      CHECK_THROWS_AS(k::set_isa(isa), std::invalid_argument);
    }
  }
  ::setenv("QNN_KERNEL", "scalar", 1);
  k::reload_isa_from_env();
  CHECK(k::active_isa() == k::Isa::scalar);
  ::setenv("QNN_KERNEL", "bogus", 1);
  CHECK_THROWS_AS(k::reload_isa_from_env(), std::invalid_argument);
  CHECK(k::active_isa() == k::Isa::scalar);  // a bad value keeps the current choice
  if (!k::isa_supported(k::Isa::avx512)) {
    ::setenv("QNN_KERNEL", "avx512", 1);
    CHECK_THROWS_AS(k::reload_isa_from_env(), std::invalid_argument);
  }
  ::unsetenv("QNN_KERNEL");
  k::reload_isa_from_env();
  CHECK(k::active_isa() == k::best_isa());
}

// ---------------------------------------------------------------------------
// bit-serial

namespace {

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

// kernels::sgemm splits short-and-wide products into one column panel per
// thread. Check every transpose combination against a double-precision
// reference on shapes that take the split (M <= 256, N >= 256 * threads) with
// a ragged last panel, padded leading dimensions, beta = 0 (C holds NaN that
// must be ignored) and beta = 1; and that a repeated call gives the same bits
// (the 1-thread result may round differently: OpenBLAS's ragged-edge kernels).
TEST_CASE("sgemm: column-panel split (short, wide products) matches a reference and is repeatable") {
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  const int saved = omp_get_max_threads();
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (const auto [M, N, K] : {std::array<int64_t, 3>{1, 1037, 65}, {100, 613, 784}, {7, 1000, 1}}) {
        CAPTURE(ta);
        CAPTURE(tb);
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        std::vector<float> A((ta ? K : M) * lda), B((tb ? N : K) * ldb);
        for (auto& v : A) v = U(gen);
        for (auto& v : B) v = U(gen);
        auto a = [&](int64_t i, int64_t k) { return ta ? A[k * lda + i] : A[i * lda + k]; };
        auto b = [&](int64_t k, int64_t j) { return tb ? B[j * ldb + k] : B[k * ldb + j]; };
        for (float beta : {0.f, 1.f}) {
          std::vector<float> C1(M * ldc, beta == 0.f ? std::numeric_limits<float>::quiet_NaN() : 0.5f), C2 = C1;
          omp_set_num_threads(std::max(2, saved));
          k::sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, beta, C1.data(), ldc);
          k::sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, beta, C2.data(), ldc);
          omp_set_num_threads(saved);
          double worst = 0;
          bool same = true;
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              double ref = beta * 0.5;
              for (int64_t k = 0; k < K; ++k) ref += (double)a(i, k) * b(k, j);
              worst = std::max(worst, std::fabs(ref - C2[i * ldc + j]));
              same = same && C1[i * ldc + j] == C2[i * ldc + j];
            }
          CHECK(worst < 1e-4 * std::sqrt((double)K) + 1e-6);
          CHECK(same);
        }
      }
}

TEST_CASE("blas_core_to_restart_with: Haswell on Zen 4, SkylakeX on Zen 5, never over the user's setting") {
  auto pick = [](const char* loaded, k::CpuFacts cpu, const char* env = nullptr, const char* qnn = nullptr) {
    const char* c = k::blas_core_to_restart_with(loaded, cpu, env, qnn);
    return std::string(c ? c : "-");
  };
  const k::CpuFacts zen3{true, 0x19, true, false}, zen4{true, 0x19, true, true}, zen5{true, 0x1A, true, true};
  const k::CpuFacts intel{false, 6, true, true}, old_amd{true, 0x17, true, false};
  CHECK(pick("Cooperlake", zen4) == "Haswell");
  CHECK(pick("SKYLAKEX", zen4) == "Haswell");
  CHECK(pick("Haswell", zen4) == "-");      // already AVX2
  CHECK(pick("Zen", zen3) == "-");
  CHECK(pick("Haswell", zen5) == "SkylakeX");
  CHECK(pick("Zen", zen5) == "SkylakeX");
  CHECK(pick("SkylakeX", zen5) == "-");     // already AVX-512
  CHECK(pick("Haswell", k::CpuFacts{true, 0x1A, true, false}) == "-");  // no AVX-512 (masked by a VM)
  CHECK(pick("Cooperlake", intel) == "-");  // Intel: keep what OpenBLAS chose
  CHECK(pick("Haswell", intel) == "-");
  CHECK(pick("Zen", old_amd) == "-");
  CHECK(pick("Cooperlake", k::CpuFacts{true, 0x19, false, true}) == "-");  // no AVX2/FMA
  CHECK(pick("Cooperlake", zen4, "SkylakeX") == "-");  // OPENBLAS_CORETYPE set
  CHECK(pick("Haswell", zen5, "") == "-");             // set, even if empty
  CHECK(pick("Cooperlake", zen4, nullptr, "keep") == "-");  // QNN_BLAS_CORE=keep
  CHECK(pick("Haswell", zen5, nullptr, "keep") == "-");
  CHECK(pick("Cooperlake", zen4, nullptr, "auto") == "Haswell");
  CHECK(pick(nullptr, zen5) == "-");
  // This machine's facts are what CPUID says (a family is always found on x86).
  CHECK(k::cpu_facts().family > 0);
}

TEST_CASE("fma_peak: every variant runs the same fused recurrence, bit for bit, and counts its flops") {
  // a <- fma(a, 1 - 2^-10, 2^-10) per lane: the scalar std::fma is the reference.
  for (const int64_t iters : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000)}) {
    const k::FmaProbe ref = k::fma_probe(k::Isa::scalar, iters);
    CHECK(ref.flops == 2.0 * 16 * k::kFmaChains * (double)iters);
    CHECK(std::isfinite(ref.checksum));
    for (const k::Isa isa : supported_isas()) {
      const k::FmaProbe p = k::fma_probe(isa, iters);
      INFO("isa " << std::string(k::isa_name(isa)) << ", iters " << iters);
      CHECK(p.flops == ref.flops);
      CHECK(p.checksum == ref.checksum);
    }
  }
  // The values move (a probe that the compiler could skip would not), and
  // stay in [0.5, 2): 192 chains converge to 1 from their start values.
  const float c0 = k::fma_probe(k::Isa::scalar, 0).checksum;
  const float c1 = k::fma_probe(k::Isa::scalar, 100000).checksum;
  CHECK(c0 != c1);
  CHECK(c1 == doctest::Approx(16.0 * k::kFmaChains).epsilon(1e-3));
  CHECK_THROWS_AS(k::fma_probe(k::Isa::scalar, -1), std::invalid_argument);
}

// ---- subnormal floats (kernels/denormals.h) ------------------------------------------

namespace {
// x * y computed at run time (volatile: no constant folding) on this thread.
float runtime_product(float x, float y) {
  volatile float a = x, b = y;
  return a * b;
}
}  // namespace

TEST_CASE("denormals: flushing turns subnormal results and inputs into 0 on every OpenMP thread; keep restores IEEE") {
  const bool before = qnn::kernels::flush_denormals();
  const float tiny = 1e-38f, sub = 1e-40f;  // 1e-38 is normal (> 2^-126); 1e-40 is subnormal
  REQUIRE(std::fpclassify(sub) == FP_SUBNORMAL);
#if defined(__x86_64__) || defined(__i386__)
  REQUIRE(qnn::kernels::set_flush_denormals(false));
  CHECK(std::fpclassify(runtime_product(tiny, 0.01f)) == FP_SUBNORMAL);  // gradual underflow
  CHECK(std::fpclassify(runtime_product(sub, 2.0f)) == FP_SUBNORMAL);  // a subnormal input counts
  CHECK(std::string(qnn::kernels::denormals_name()) == "kept (IEEE)");

  // The pool's threads exist before the switch (they keep their own MXCSR):
  // set_flush_denormals must reach them too, not only threads created later.
  omp_set_num_threads(3);
  int early = 0;
#pragma omp parallel reduction(+ : early)
  early += std::fpclassify(runtime_product(tiny, 0.01f)) == FP_SUBNORMAL;
  CHECK(early == 3);
  REQUIRE(qnn::kernels::set_flush_denormals(true));
  CHECK(qnn::kernels::flush_denormals());
  CHECK(std::string(qnn::kernels::denormals_name()) == "flushed");
  int threads = 0, flushed = 0;
#pragma omp parallel reduction(+ : threads, flushed)
  {
    threads += 1;
    flushed += runtime_product(tiny, 0.01f) == 0.0f && runtime_product(sub, 2.0f) == 0.0f;  // FTZ and DAZ
  }
  CHECK(threads == 3);
  CHECK(flushed == 3);

  ::setenv("QNN_DENORMALS", "keep", 1);
  CHECK_FALSE(qnn::kernels::apply_denormals_env());
  ::setenv("QNN_DENORMALS", "flush", 1);
  CHECK(qnn::kernels::apply_denormals_env());
  ::unsetenv("QNN_DENORMALS");
  CHECK(qnn::kernels::apply_denormals_env());  // unset: flush
#endif
  ::setenv("QNN_DENORMALS", "sometimes", 1);
  CHECK_THROWS_WITH_AS(qnn::kernels::apply_denormals_env(), doctest::Contains("QNN_DENORMALS must be keep or flush, got 'sometimes'"),
                       std::invalid_argument);
  ::unsetenv("QNN_DENORMALS");
  qnn::kernels::set_flush_denormals(before);
}
