// tests/test_kernels.cpp — bit packing, XNOR GEMM, ISA selection (kernels/).
// Bit-serial GEMM: test_kernels_bitserial.cpp; sgemm, the FMA-peak probe and
// subnormal flushing: test_kernels_float.cpp.
//
// Every SIMD variant the CPU supports is checked bit-exactly against plain
// references written here from ±1 floats / odd integers (not from packed data).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "tests/isa_util.h"
#include "kernels/sgemm.h"
#include "kernels/xnor_gemm.h"
#include "tests/kernels_test_util.h"

namespace k = qnn::kernels;

namespace {

using qnn::test::IsaGuard;
using qnn::test::kKs;
using qnn::test::pads_zero;
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
