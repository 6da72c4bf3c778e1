// tests/test_pm1_gemm.cpp — kernels/pm1_gemm.h: real x (+-1) products by
// table look-up. The summation order is spelled out again here, from the
// header's formula, and every variant must give its bits exactly.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/isa.h"
#include "tests/isa_util.h"
#include "kernels/pm1_gemm.h"

namespace k = qnn::kernels;

namespace {

using qnn::test::IsaGuard;
std::vector<k::Isa> isas() { return qnn::test::supported_isas(); }

bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

// The header's formula, one element at a time (A row-major [I x J], S [J x K]).
float by_formula(const std::vector<float>& A, const std::vector<float>& S, int64_t J, int64_t K, int64_t i,
                 int64_t kk) {
  float acc = 0.0f;
  for (int64_t g = 0; 4 * g < J; ++g) {
    float u[4];
    for (int r = 0; r < 4; ++r) {
      const int64_t j = 4 * g + r;
      u[r] = j < J ? S[j * K + kk] * A[i * J + j] : 0.0f;
    }
    acc = acc + ((u[0] + u[1]) + (u[2] + u[3]));
  }
  return acc;
}

struct Case {
  int64_t I, J, K;
};

}  // namespace

TEST_CASE("pm1_gemm_reference: the documented summation order, and close to the exact product") {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (Case c : {Case{1, 1, 1}, Case{3, 5, 7}, Case{2, 8, 33}, Case{5, 130, 17}}) {
    CAPTURE(c.I);
    CAPTURE(c.J);
    CAPTURE(c.K);
    std::vector<float> A(size_t(c.I * c.J)), S(size_t(c.J * c.K)), C(size_t(c.I * c.K));
    for (float& v : A) v = nd(rng);
    for (float& v : S) v = (rng() & 1) ? 1.0f : -1.0f;
    k::pm1_gemm_reference(c.I, c.J, c.K, A.data(), c.J, 1, S.data(), c.K, C.data(), c.K, false);
    for (int64_t i = 0; i < c.I; ++i)
      for (int64_t kk = 0; kk < c.K; ++kk) {
        CHECK(same_bits(C[i * c.K + kk], by_formula(A, S, c.J, c.K, i, kk)));
        double exact = 0;
        for (int64_t j = 0; j < c.J; ++j) exact += double(A[i * c.J + j]) * S[j * c.K + kk];
        CHECK(std::fabs(C[i * c.K + kk] - exact) <= 1e-5 * (1.0 + std::fabs(exact)) * c.J);
      }
  }
  // Its order is not sgemm's left-to-right one: (1e8 + 1) - 1e8 ... in groups.
  std::vector<float> A = {1e8f, 1.0f, -1e8f, 1.0f, 1.0f}, S = {1, 1, 1, 1, 1}, C(1);
  k::pm1_gemm_reference(1, 5, 1, A.data(), 5, 1, S.data(), 1, C.data(), 1, false);
  // t_0 = (1e8 + 1) + (-1e8 + 1) = 1e8 + -1e8 = 0 (both 1s are lost); t_1 = 1.
  CHECK(C[0] == 1.0f);
}

TEST_CASE("pm1_gemm, pm1_gemm_cols: every variant bit-exact vs the reference; odd shapes, strides, accumulate") {
  IsaGuard guard;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const std::vector<Case> cases = {{1, 1, 1},    {1, 4, 64},   {4, 64, 96},   {5, 63, 97},   {3, 65, 15},
                                   {7, 100, 200}, {17, 3, 513}, {1, 784, 65}, {9, 130, 1000}, {2, 2, 17}};
  for (Case c : cases)
    for (bool transposed : {false, true})
      for (bool accumulate : {false, true}) {
        CAPTURE(c.I);
        CAPTURE(c.J);
        CAPTURE(c.K);
        CAPTURE(transposed);
        CAPTURE(accumulate);
        // A as stored: [I x J] or (transposed) [J x I] read as its transpose.
        std::vector<float> Astore(size_t(c.I * c.J)), Arow(size_t(c.I * c.J));
        for (float& v : Astore) v = nd(rng);
        Astore[0] = -0.0f;  // signed zeros must come out as the formula says
        if (Astore.size() > 2) Astore[2] = 0.0f;
        const int64_t a_i = transposed ? 1 : c.J, a_j = transposed ? c.I : 1;
        for (int64_t i = 0; i < c.I; ++i)
          for (int64_t j = 0; j < c.J; ++j) Arow[i * c.J + j] = Astore[i * a_i + j * a_j];
        std::vector<float> S(size_t(c.J * c.K));
        for (float& v : S) v = (rng() & 1) ? 1.0f : -1.0f;
        k::PackedVector Sp = k::make_packed(c.J, c.K);
        k::pack_rows(S.data(), c.J, c.K, c.K, Sp.data());
        // S by columns (pm1_gemm_cols): K packed rows of J, from S's transpose.
        std::vector<float> St(size_t(c.K * c.J));
        for (int64_t j = 0; j < c.J; ++j)
          for (int64_t kk = 0; kk < c.K; ++kk) St[kk * c.J + j] = S[j * c.K + kk];
        k::PackedVector Sc = k::make_packed(c.K, c.J);
        k::pack_rows(St.data(), c.K, c.J, c.J, Sc.data());
        const int64_t ldc = c.K + 3;
        std::vector<float> C0(size_t(c.I * ldc));
        for (float& v : C0) v = nd(rng);
        std::vector<float> want = C0;
        k::pm1_gemm_reference(c.I, c.J, c.K, Astore.data(), a_i, a_j, S.data(), c.K, want.data(), ldc, accumulate);
        // Spot check the reference itself against the formula.
        for (int64_t i = 0; i < c.I; i += 3) {
          const float f = by_formula(Arow, S, c.J, c.K, i, c.K - 1);
          CHECK(same_bits(want[i * ldc + c.K - 1], accumulate ? C0[i * ldc + c.K - 1] + f : f));
        }
        for (k::Isa isa : isas()) {
          CAPTURE(std::string(k::isa_name(isa)));
          k::set_isa(isa);
          std::vector<float> got = C0;
          k::pm1_gemm(c.I, c.J, c.K, Astore.data(), a_i, a_j, Sp.data(), got.data(), ldc, accumulate);
          std::vector<float> got_cols = C0;
          k::pm1_gemm_cols(c.I, c.J, c.K, Astore.data(), a_i, a_j, Sc.data(), got_cols.data(), ldc, accumulate);
          int64_t bad = 0, bad_cols = 0;
          for (int64_t i = 0; i < c.I; ++i)
            for (int64_t kk = 0; kk < ldc; ++kk) {  // kk >= K: the padding columns must be untouched
              bad += !same_bits(got[i * ldc + kk], want[i * ldc + kk]);
              bad_cols += !same_bits(got_cols[i * ldc + kk], want[i * ldc + kk]);
            }
          CHECK(bad == 0);
          CHECK(bad_cols == 0);
        }
      }
}

TEST_CASE("pm1_gemm: large products take the threaded tiles and still agree") {
  IsaGuard guard;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  // 37 x 777 and a tall, thin 1030 x 7 x 2048 (a dW-like shape): threaded tiles, ragged edges.
  for (auto [I, J, K] : {std::array<int64_t, 3>{37, 301, 777}, std::array<int64_t, 3>{1030, 7, 2048}}) {
    CAPTURE(I);
    std::vector<float> A(size_t(I * J)), S(size_t(J * K)), want(size_t(I * K));
    for (float& v : A) v = nd(rng);
    for (float& v : S) v = (rng() & 1) ? 1.0f : -1.0f;
    k::PackedVector Sp = k::make_packed(J, K);
    k::pack_rows(S.data(), J, K, K, Sp.data());
    k::pm1_gemm_reference(I, J, K, A.data(), J, 1, S.data(), K, want.data(), K, false);
    for (k::Isa isa : isas()) {
      CAPTURE(std::string(k::isa_name(isa)));
      k::set_isa(isa);
      std::vector<float> got(size_t(I * K), std::numeric_limits<float>::quiet_NaN());
      k::pm1_gemm(I, J, K, A.data(), J, 1, Sp.data(), got.data(), K, false);
      CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
    }
  }
}

TEST_CASE("pm1_gemm, pm1_gemm_zeros: long J in chunks, zero entries by column block; bit-exact on every ISA") {
  IsaGuard guard;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  // J past one chunk of groups (256 values) and ragged; Kq odd, a multiple
  // of 16, wider than K; I not a multiple of the 4-row panel; accumulate.
  struct ZCase {
    int64_t I, J, K, Kq;
  };
  for (ZCase c : {ZCase{5, 1031, 37, 5}, ZCase{7, 300, 192, 64}, ZCase{1, 513, 70, 16}, ZCase{9, 257, 33, 100},
                  ZCase{66, 2000, 130, 64}})
    for (bool accumulate : {false, true}) {
      CAPTURE(c.I);
      CAPTURE(c.J);
      CAPTURE(c.K);
      CAPTURE(c.Kq);
      CAPTURE(accumulate);
      const int64_t Q = (c.K + c.Kq - 1) / c.Kq, ZW = (Q + 63) / 64;
      std::vector<float> A(size_t(c.I * c.J)), S(size_t(c.J * c.K)), S0;
      for (float& v : A) v = nd(rng);
      A[1] = -0.0f;
      for (float& v : S) v = (rng() & 1) ? 1.0f : -1.0f;
      // Zero entries: whole rows of some blocks, in runs (like padded taps).
      std::vector<uint64_t> zeros(size_t(c.J * ZW), 0);
      for (int64_t j = 0; j < c.J; ++j)
        for (int64_t q = 0; q < Q; ++q)
          if ((j / 3 + q) % 4 == 0 || rng() % 7 == 0) zeros[size_t(j * ZW + q / 64)] |= uint64_t(1) << (q % 64);
      S0 = S;
      for (int64_t j = 0; j < c.J; ++j)
        for (int64_t kk = 0; kk < c.K; ++kk)
          if ((zeros[size_t(j * ZW + (kk / c.Kq) / 64)] >> ((kk / c.Kq) % 64)) & 1) S0[size_t(j * c.K + kk)] = 0.0f;
      k::PackedVector Sp = k::make_packed(c.J, c.K);
      k::pack_rows(S.data(), c.J, c.K, c.K, Sp.data());
      const int64_t ldc = c.K + 1;
      std::vector<float> C0(size_t(c.I * ldc));
      for (float& v : C0) v = nd(rng);
      std::vector<float> want = C0, want0 = C0;
      k::pm1_gemm_reference(c.I, c.J, c.K, A.data(), c.J, 1, S.data(), c.K, want.data(), ldc, accumulate);
      k::pm1_gemm_reference(c.I, c.J, c.K, A.data(), c.J, 1, S0.data(), c.K, want0.data(), ldc, accumulate);
      CHECK(same_bits(want0[0], accumulate ? C0[0] + by_formula(A, S0, c.J, c.K, 0, 0) : by_formula(A, S0, c.J, c.K, 0, 0)));
      for (k::Isa isa : isas()) {
        CAPTURE(std::string(k::isa_name(isa)));
        k::set_isa(isa);
        std::vector<float> got = C0, got0 = C0;
        k::pm1_gemm(c.I, c.J, c.K, A.data(), c.J, 1, Sp.data(), got.data(), ldc, accumulate);
        k::pm1_gemm_zeros(c.I, c.J, c.K, A.data(), c.J, 1, Sp.data(), c.Kq, zeros.data(), got0.data(), ldc,
                          accumulate);
        int64_t bad = 0, bad0 = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          bad += !same_bits(got[i], want[i]);
          bad0 += !same_bits(got0[i], want0[i]);
        }
        CHECK(bad == 0);
        CHECK(bad0 == 0);
      }
    }
  std::vector<float> A(4, 1.0f), C(4);
  k::PackedVector Sp = k::make_packed(2, 2);
  uint64_t z = 0;
  CHECK_THROWS_AS(k::pm1_gemm_zeros(1, 2, 2, A.data(), 2, 1, Sp.data(), 0, &z, C.data(), 2, false),
                  std::invalid_argument);
  CHECK_THROWS_AS(k::pm1_gemm_zeros(1, 2, 2, A.data(), 2, 1, Sp.data(), 1, nullptr, C.data(), 2, false),
                  std::invalid_argument);
}

TEST_CASE("pm1_gemm: empty shapes, J = 0, argument errors") {
  IsaGuard guard;
  std::vector<float> A(8, 1.0f), C(8, 5.0f);
  k::PackedVector Sp = k::make_packed(4, 2);
  for (k::Isa isa : isas()) {
    k::set_isa(isa);
    C.assign(8, 5.0f);
    k::pm1_gemm(0, 4, 2, A.data(), 4, 1, Sp.data(), C.data(), 2, false);
    k::pm1_gemm(2, 4, 0, A.data(), 4, 1, Sp.data(), C.data(), 2, false);
    CHECK(C[0] == 5.0f);
    k::pm1_gemm(2, 0, 2, A.data(), 0, 1, Sp.data(), C.data(), 2, true);  // + 0
    CHECK(C[0] == 5.0f);
    k::pm1_gemm(2, 0, 2, A.data(), 0, 1, Sp.data(), C.data(), 2, false);  // = +0
    CHECK(C[0] == 0.0f);
    CHECK_FALSE(std::signbit(C[0]));
  }
  CHECK_THROWS_AS(k::pm1_gemm(-1, 1, 1, A.data(), 1, 1, Sp.data(), C.data(), 1, false), std::invalid_argument);
  CHECK_THROWS_AS(k::pm1_gemm(1, 1, 4, A.data(), 1, 1, Sp.data(), C.data(), 3, false), std::invalid_argument);
  CHECK_THROWS_AS(k::pm1_gemm(1, 1, 1, A.data(), 1, 1, nullptr, C.data(), 1, false), std::invalid_argument);
  CHECK_THROWS_AS(k::pm1_gemm_reference(1, 1, 4, A.data(), 1, 1, A.data(), 3, C.data(), 4, false),
                  std::invalid_argument);
}
