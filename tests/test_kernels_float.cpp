// tests/test_kernels_float.cpp — the float side of kernels/: sgemm's
// column-panel split and the OpenBLAS core it restarts with, the FMA-peak
// probe (every variant the same bits), and flushing subnormal floats.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/denormals.h"
#include "kernels/fma_peak.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "tests/isa_util.h"

namespace k = qnn::kernels;

using qnn::test::supported_isas;

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
