// tests/test_small_gemm.cpp — kernels/small_gemm.h: the float product with a
// pre-packed B equals its std::fma definition bit for bit on odd shapes, in
// every ISA variant; the short-row XNOR equals xnor_gemm_i32.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/isa.h"
#include "kernels/small_gemm.h"
#include "kernels/xnor_gemm.h"

using namespace qnn::kernels;

namespace {

std::vector<float> randoms(size_t n, std::mt19937& g) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Restores the ISA choice on scope exit.
struct IsaScope {
  Isa saved = active_isa();
  ~IsaScope() { set_isa(saved); }
};

}  // namespace

TEST_CASE("small_gemm: bit-exact against the fma definition, odd shapes, both packings, every ISA") {
  IsaScope keep;
  std::mt19937 g(7);
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) continue;
    set_isa(isa);
    for (int64_t M : {1, 5, 6, 7, 13, 32})
      for (int64_t K : {1, 7, 100, 130})
        for (int64_t N : {1, 15, 17, 100, 400})
          for (bool trans : {false, true})
            for (bool acc : {false, true}) {
              CAPTURE(isa_name(isa));
              CAPTURE(M);
              CAPTURE(K);
              CAPTURE(N);
              CAPTURE(trans);
              CAPTURE(acc);
              const int64_t lda = K + 3, ldc = N + 2, ldb = (trans ? K : N) + 1;
              const auto A = randoms((size_t)(M * lda), g);
              const auto Bm = randoms((size_t)((trans ? N : K) * ldb), g);
              SmallGemmB B;
              pack_small_b(Bm.data(), K, N, ldb, trans, B);
              auto C = randoms((size_t)(M * ldc), g), R = C;
              small_gemm(A.data(), lda, M, B, C.data(), ldc, acc);
              small_gemm_reference(A.data(), lda, M, B, R.data(), ldc, acc);
              REQUIRE(same_bits(C, R));
            }
  }
}

TEST_CASE("small_gemm: computes the product (double reference), the padding of ldc untouched, the can-fail check") {
  std::mt19937 g(9);
  const int64_t M = 7, K = 33, N = 21, ldc = 24;
  const auto A = randoms((size_t)(M * K), g), Bm = randoms((size_t)(K * N), g);
  SmallGemmB B;
  pack_small_b(Bm.data(), K, N, N, false, B);
  std::vector<float> C((size_t)(M * ldc), 5.0f);
  small_gemm(A.data(), K, M, B, C.data(), ldc, false);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += (double)A[m * K + k] * Bm[k * N + n];
      CHECK(C[m * ldc + n] == doctest::Approx(s).epsilon(1e-5));
    }
    for (int64_t n = N; n < ldc; ++n) CHECK(C[m * ldc + n] == 5.0f);
  }
  // A sum in another order (plain multiply then add) differs in some last bit:
  // the bit-exact comparison above can fail.
  std::vector<float> D((size_t)(M * ldc), 5.0f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float s = 0;
      for (int64_t k = K - 1; k >= 0; --k) s += A[m * K + k] * Bm[k * N + n];
      D[m * ldc + n] = s;
    }
  CHECK_FALSE(same_bits(C, D));
  CHECK_THROWS_AS(small_gemm(A.data(), K - 1, M, B, C.data(), ldc, false), std::invalid_argument);
  CHECK_THROWS_AS(small_gemm(A.data(), K, M, B, C.data(), N - 1, false), std::invalid_argument);
}

TEST_CASE("xnor_small_i32: the integers of xnor_gemm_i32 on odd shapes, every ISA") {
  IsaScope keep;
  std::mt19937 g(11);
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) continue;
    set_isa(isa);
    for (int64_t M : {1, 3, 32})
      for (int64_t N : {1, 17, 400})
        for (int64_t K : {1, 63, 64, 100, 129, 600}) {
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(K);
          const auto A = randoms((size_t)(M * K), g), Bm = randoms((size_t)(N * K), g);
          PackedVector pa = make_packed(M, K), pb = make_packed(N, K);
          pack_rows(A.data(), M, K, K, pa.data());
          pack_rows(Bm.data(), N, K, K, pb.data());
          std::vector<int32_t> c((size_t)(M * N), -7), r((size_t)(M * N), -9);
          xnor_small_i32(pa.data(), pb.data(), M, N, K, c.data(), N);
          xnor_gemm_i32(pa.data(), pb.data(), M, N, K, r.data(), N);
          REQUIRE(c == r);
          int32_t d = 0;  // and the first entry is the dot product of the signs
          for (int64_t k = 0; k < K; ++k) d += (A[k] < 0 ? -1 : 1) * (Bm[k] < 0 ? -1 : 1);
          CHECK(c[0] == d);
        }
  }
}
