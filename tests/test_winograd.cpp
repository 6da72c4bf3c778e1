// tests/test_winograd.cpp — Winograd F(2x2, 3x3) (kernels/winograd.h), the
// algorithm conv2d runs for 3x3 stride-1 convolutions with C >= 16:
//   * the plan chooses it exactly there, and the switch turns it off; auto
//     (the default) only at batches that give the products enough columns;
//     QNN_WINOGRAD's values;
//   * forward, dx, dw and db equal the im2col + sgemm path (the same op with
//     the switch off) and a double reference, on odd shapes: pad 0 and 1,
//     odd and non-square maps, batch 1, ragged image groups, 1 and 2 threads;
//   * central-difference gradient checks with it on;
//   * +-1 inputs and weights give the exact integer sums (a binarized product
//     is the same whichever algorithm runs it);
//   * the AVX2 / AVX-512 compilations of the transforms are bit-identical to
//     the baseline one.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <utility>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/conv_f32.h"
#include "kernels/sgemm.h"
#include "kernels/winograd.h"
#include "tests/grad_check.h"
#include "tests/isa_util.h"

using namespace qnn;
using namespace qnn::testing;

namespace {

struct Restore {
  int threads = kernels::num_threads();
  kernels::WinogradMode mode = kernels::winograd_mode();
  ~Restore() {
    kernels::set_num_threads(threads);
    kernels::set_winograd_mode(mode);
  }
};

struct Case {
  int64_t N, C, H, W, O, pad;
  std::string str() const {
    std::ostringstream os;
    os << "N" << N << " C" << C << " " << H << "x" << W << " O" << O << " p" << pad;
    return os.str();
  }
};

// Odd and non-square maps (odd OH / OW leave half-empty edge tiles), pad 0
// and 1, batch 1, a 1x1 output, groups of small images with a ragged last
// group, C not a multiple of 8, a large map (one image per GEMM).
const Case kCases[] = {{3, 16, 7, 9, 5, 1},  {1, 17, 5, 4, 3, 0},  {5, 16, 8, 8, 16, 1}, {2, 20, 3, 3, 4, 1},
                       {4, 24, 11, 6, 7, 0}, {7, 16, 4, 5, 6, 1},  {2, 16, 33, 17, 3, 1}, {3, 18, 3, 3, 2, 0}};

struct Run {
  std::vector<float> y, gx, gw, gb;
};

// y = conv2d(x, w, b, 1, pad); L = sum(y * R): the gradients are R pulled back.
Run run(const Case& c, const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& R) {
  Tensor x = x0.detach().clone().set_requires_grad(), w = w0.detach().clone().set_requires_grad(),
         b = b0.detach().clone().set_requires_grad();
  Tensor y = conv2d(x, w, b, 1, c.pad);
  y.backward(R);
  return {y.to_vector(), x.grad().to_vector(), w.grad().to_vector(), b.grad().to_vector()};
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (double)std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("winograd: the conv plan takes it for 3x3 stride-1 convolutions with C >= 16 only, and the switch turns it off") {
  Restore r;
  kernels::set_winograd(true);
  auto plan = [](int64_t C, int64_t k, int64_t stride) {
    return kernels::ConvPlan(4, kernels::make_patch_geom(C, 8, 8, k, k, stride, 1), 8).winograd;
  };
  CHECK(plan(16, 3, 1));
  CHECK(plan(64, 3, 1));
  CHECK_FALSE(plan(15, 3, 1));  // the first layer of an RGB net: im2col + sgemm
  CHECK_FALSE(plan(3, 3, 1));
  CHECK_FALSE(plan(16, 3, 2));
  CHECK_FALSE(plan(16, 1, 1));
  CHECK_FALSE(plan(16, 5, 1));
  kernels::set_winograd(false);
  CHECK_FALSE(plan(64, 3, 1));
}

TEST_CASE("winograd: auto takes it only where every thread's products are kWinogradMinCols tiles wide") {
  Restore r;
  kernels::set_winograd_mode(kernels::WinogradMode::auto_size);
  auto plan = [](int64_t N, int64_t H, int threads) {
    kernels::set_num_threads(threads);
    return kernels::ConvPlan(N, kernels::make_patch_geom(64, H, H, 3, 3, 1, 1), 64).winograd;
  };
  // one thread: N * tiles >= 256 (a 32x32 map has 256 tiles of 2x2, 16x16 64, 8x8 16)
  CHECK(plan(1, 32, 1));
  CHECK_FALSE(plan(1, 16, 1));
  CHECK_FALSE(plan(3, 16, 1));
  CHECK(plan(4, 16, 1));
  CHECK_FALSE(plan(15, 8, 1));
  CHECK(plan(16, 8, 1));
  CHECK(plan(1, 31, 1));        // a 31x31 map (padding 1): 16 x 16 tiles, the last ones ragged
  CHECK_FALSE(plan(1, 30, 1));  // 15 x 15 tiles
  // two threads: a batch below the thread count would give threaded sgemm 16 thin products
  CHECK_FALSE(plan(1, 32, 2));
  CHECK_FALSE(plan(1, 64, 2));
  CHECK(plan(2, 32, 2));
  CHECK_FALSE(plan(16, 8, 2));  // 8 images a thread: 128 tiles
  CHECK(plan(32, 8, 2));
  CHECK(plan(50, 8, 2));  // the training batch: every BinaryNet layer
  // always ignores the size; off never takes it; the geometry rule holds in every mode
  kernels::set_winograd(true);
  CHECK(plan(1, 8, 2));
  CHECK_FALSE(kernels::ConvPlan(64, kernels::make_patch_geom(64, 8, 8, 3, 3, 2, 1), 64).winograd);
  kernels::set_winograd(false);
  CHECK_FALSE(plan(64, 32, 1));
}

TEST_CASE("winograd: QNN_WINOGRAD is 0, 1 or auto; anything else is refused naming the variable") {
  Restore r;
  const char* old = std::getenv("QNN_WINOGRAD");
  const std::string saved = old ? old : "";
  for (auto [value, mode] : {std::pair{"0", kernels::WinogradMode::off}, std::pair{"1", kernels::WinogradMode::always},
                             std::pair{"auto", kernels::WinogradMode::auto_size}}) {
    setenv("QNN_WINOGRAD", value, 1);
    kernels::apply_winograd_env();
    CHECK(kernels::winograd_mode() == mode);
  }
  unsetenv("QNN_WINOGRAD");
  kernels::set_winograd(false);
  kernels::apply_winograd_env();
  CHECK(kernels::winograd_mode() == kernels::WinogradMode::auto_size);
  setenv("QNN_WINOGRAD", "yes", 1);
  try {
    kernels::apply_winograd_env();
    FAIL("QNN_WINOGRAD=yes was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("QNN_WINOGRAD=yes") != std::string::npos);
  }
  if (old) setenv("QNN_WINOGRAD", saved.c_str(), 1);
  else unsetenv("QNN_WINOGRAD");
}

TEST_CASE("winograd: forward, dx, dw, db equal im2col + sgemm and a double reference on odd shapes, 1 and 2 threads") {
  Restore r;
  Rng rng(2024);
  for (const Case& c : kCases) {
    const Tensor x = Tensor::uniform({c.N, c.C, c.H, c.W}, -1.f, 1.f, rng);
    const Tensor w = Tensor::uniform({c.O, c.C, 3, 3}, -1.f, 1.f, rng);
    const Tensor b = Tensor::uniform({c.O}, -1.f, 1.f, rng);
    const int64_t OH = c.H + 2 * c.pad - 2, OW = c.W + 2 * c.pad - 2;
    const Tensor R = Tensor::uniform({c.N, c.O, OH, OW}, -1.f, 1.f, rng);
    for (int threads : {1, 2}) {
      kernels::set_num_threads(threads);
      kernels::set_winograd(true);  // always: these shapes are below auto's size rule
      REQUIRE(kernels::ConvPlan(c.N, kernels::make_patch_geom(c.C, c.H, c.W, 3, 3, 1, c.pad), c.O).winograd);
      kernels::set_winograd(false);
      const Run direct = run(c, x, w, b, R);
      kernels::set_winograd(true);
      const Run wino = run(c, x, w, b, R);
      // sums of up to 9*C (forward, dx) or N*OH*OW (dw, db) products of values in [-1, 1]
      CHECK_MESSAGE(max_diff(wino.y, direct.y) < 2e-5 * c.C, c.str() << " threads " << threads << " y");
      CHECK_MESSAGE(max_diff(wino.gx, direct.gx) < 2e-5 * c.O, c.str() << " threads " << threads << " dx");
      CHECK_MESSAGE(max_diff(wino.gw, direct.gw) < 2e-5 * c.N * OH * OW, c.str() << " threads " << threads << " dw");
      CHECK(wino.gb == direct.gb);  // the bias gradient does not go through the transforms

      // and the forward against a double reference
      double worst = 0;
      const float *px = x.data(), *pw = w.data();
      for (int64_t n = 0; n < c.N; ++n)
        for (int64_t o = 0; o < c.O; ++o)
          for (int64_t oy = 0; oy < OH; ++oy)
            for (int64_t ox = 0; ox < OW; ++ox) {
              double acc = b.data()[o];
              for (int64_t ci = 0; ci < c.C; ++ci)
                for (int ky = 0; ky < 3; ++ky)
                  for (int kx = 0; kx < 3; ++kx) {
                    const int64_t iy = oy - c.pad + ky, ix = ox - c.pad + kx;
                    if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
                    acc += (double)pw[((o * c.C + ci) * 3 + ky) * 3 + kx] * px[((n * c.C + ci) * c.H + iy) * c.W + ix];
                  }
              const double got = wino.y[size_t(((n * c.O + o) * OH + oy) * OW + ox)];
              worst = std::max(worst, std::fabs(got - acc));
            }
      CHECK_MESSAGE(worst < 2e-5 * c.C, c.str() << " threads " << threads << ": max err " << worst);
    }
  }
}

TEST_CASE("grad: conv2d through Winograd (C = 16, pad 0 and 1, odd maps, with and without bias)") {
  Restore r;
  kernels::set_winograd(true);
  Rng rng(2025);
  for (const Case& c : {Case{2, 16, 5, 4, 3, 1}, Case{1, 16, 4, 5, 2, 0}, Case{3, 16, 3, 3, 2, 1}}) {
    REQUIRE(kernels::ConvPlan(c.N, kernels::make_patch_geom(c.C, c.H, c.W, 3, 3, 1, c.pad), c.O).winograd);
    Tensor x = leaf({c.N, c.C, c.H, c.W}, rng, -1, 1);
    Tensor w = leaf({c.O, c.C, 3, 3}, rng, -1, 1);
    Tensor b = leaf({c.O}, rng, -1, 1);
    const int64_t p = c.pad;
    Fn with_b = [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], 1, p); };
    Fn no_b = [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), 1, p); };
    // conv2d is linear in each input, so a larger step costs no truncation
    // error and divides the float rounding of the transformed sums (larger
    // than im2col's: the transforms add before they multiply) by 10.
    GradCheckOpts o;
    o.h = 1e-2;
    expect_grad("winograd conv2d bias " + c.str(), with_b, {x, w, b}, o);
    expect_grad("winograd conv2d no bias " + c.str(), no_b, {x, w}, o);
    expect_grad("winograd conv2d const x " + c.str(), with_b, {x.detach().clone(), w, b}, o);
    expect_grad("winograd conv2d const w " + c.str(), no_b, {x, w.detach().clone()}, o);
  }
}

TEST_CASE("winograd: +-1 inputs and weights give the exact integer sums, equal to im2col + sgemm bit for bit") {
  Restore r;
  Rng rng(2026);
  auto signs = [&rng](const Shape& s) {
    Tensor t = Tensor::uniform(s, -1.f, 1.f, rng);
    float* p = t.data();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] >= 0 ? 1.f : -1.f;
    return t;
  };
  for (const Case& c : kCases) {
    const Tensor x = signs({c.N, c.C, c.H, c.W}), w = signs({c.O, c.C, 3, 3});
    kernels::set_winograd(false);
    const std::vector<float> direct = conv2d(x, w, Tensor(), 1, c.pad).to_vector();
    kernels::set_winograd(true);
    const std::vector<float> wino = conv2d(x, w, Tensor(), 1, c.pad).to_vector();
    CHECK_MESSAGE(wino == direct, c.str());
    for (float v : wino) REQUIRE(v == std::round(v));
  }
}

TEST_CASE("winograd: the transforms' SIMD variants are bit-identical to the baseline one (forward and backward)") {
  Restore r;
  test::IsaGuard ig;
  kernels::set_winograd(true);
  Rng rng(2027);
  for (const Case& c : kCases) {
    const Tensor x = Tensor::uniform({c.N, c.C, c.H, c.W}, -1.f, 1.f, rng);
    const Tensor w = Tensor::uniform({c.O, c.C, 3, 3}, -1.f, 1.f, rng);
    const Tensor b = Tensor::uniform({c.O}, -1.f, 1.f, rng);
    const Tensor R = Tensor::uniform({c.N, c.O, c.H + 2 * c.pad - 2, c.W + 2 * c.pad - 2}, -1.f, 1.f, rng);
    kernels::set_isa(kernels::Isa::scalar);
    const Run ref = run(c, x, w, b, R);
    for (kernels::Isa isa : test::supported_isas()) {
      kernels::set_isa(isa);
      const Run got = run(c, x, w, b, R);
      CHECK_MESSAGE(got.y == ref.y, c.str() << " " << kernels::isa_name(isa));
      CHECK_MESSAGE(got.gx == ref.gx, c.str() << " " << kernels::isa_name(isa));
      CHECK_MESSAGE(got.gw == ref.gw, c.str() << " " << kernels::isa_name(isa));
    }
  }
}
