// tests/test_ops_conv.cpp — convolution and pooling ops (core/ops_conv.cpp,
// kernels/im2col.h) and batch norm on [N, C, H, W]:
//   * the patch kernels against the index formulas, and col2im as the exact
//     adjoint of im2col;
//   * central-difference gradient checks of every op on small odd shapes;
//   * conv2d against a direct 7-loop double reference and against
//     rows_to_nchw(linear(im2col(x), w2d) + b), on the serial and the
//     threaded paths;
//   * max-pool ties, and the shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <iterator>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/im2col.h"
#include "kernels/sgemm.h"
#include "tests/grad_check.h"

using namespace qnn;
using namespace qnn::testing;

namespace {

// One convolution geometry of the test grid.
struct ConvCase {
  int64_t N, C, H, W, O, K, stride, pad;
  std::string str() const {
    std::ostringstream os;
    os << "N" << N << " C" << C << " " << H << "x" << W << " O" << O << " k" << K << " s" << stride << " p" << pad;
    return os.str();
  }
};

// Small odd shapes: stride 1 and 2, pad 0 and 1, non-square, C = 3 / 5, batch 1,
// 1x1 and 3x3 kernels, output sizes that floor.
const ConvCase kCases[] = {
    {1, 3, 5, 4, 2, 3, 1, 1}, {2, 5, 6, 5, 3, 3, 2, 1}, {2, 3, 4, 5, 4, 1, 1, 0},
    {1, 5, 5, 7, 3, 3, 2, 0}, {2, 3, 5, 3, 2, 1, 2, 1}, {3, 2, 3, 4, 2, 3, 1, 0},
};

// y[n, o, oy, ox] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] * x[n, c, iy, ix] (0 outside), in double.
std::vector<double> conv_reference(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), KH = w.dim(2), KW = w.dim(3);
  const int64_t OH = (H + 2 * p - KH) / s + 1, OW = (W + 2 * p - KW) / s + 1;
  std::vector<double> y((size_t)(N * O * OH * OW));
  const float* px = x.data();
  const float* pw = w.data();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          double acc = b.defined() ? b.data()[o] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ky = 0; ky < KH; ++ky)
              for (int64_t kx = 0; kx < KW; ++kx) {
                const int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += (double)pw[((o * C + c) * KH + ky) * KW + kx] * px[((n * C + c) * H + iy) * W + ix];
              }
          y[(size_t)(((n * O + o) * OH + oy) * OW + ox)] = acc;
        }
  return y;
}

// The patch value of tap (c, ky, kx) for output pixel (oy, ox), by the formula.
float tap(const float* img, const kernels::PatchGeom& g, int64_t oy, int64_t ox, int64_t c, int64_t ky, int64_t kx,
          float pad_value) {
  const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
  if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) return pad_value;
  return img[(c * g.H + iy) * g.W + ix];
}

// Restores the thread count at scope exit.
struct ThreadGuard {
  int saved = kernels::num_threads();
  ~ThreadGuard() { kernels::set_num_threads(saved); }
};

}  // namespace

// =============================================================================
// kernels/im2col: index formulas and adjointness
// =============================================================================

TEST_CASE("im2col kernels: rows and cols layouts follow the index formulas; col2im is the adjoint") {
  Rng rng(101);
  std::vector<ConvCase> cases(std::begin(kCases), std::end(kCases));
  cases.push_back({2, 19, 5, 6, 2, 3, 1, 1});  // col2im_rows_add_batch: blocks of 2 channels, ragged last
  cases.push_back({1, 40, 4, 9, 2, 3, 2, 1});  // blocks of 5
  for (const ConvCase& cc : cases) {
    for (float pv : {0.f, 1.f, -0.5f}) {
      const kernels::PatchGeom g = kernels::make_patch_geom(cc.C, cc.H, cc.W, cc.K, cc.K, cc.stride, cc.pad);
      const int64_t P = g.pixels(), T = g.taps();
      Tensor x = Tensor::uniform({cc.N, cc.C, cc.H, cc.W}, -1.f, 1.f, rng);
      std::vector<float> rows(cc.N * P * T, 7.f), cols(P * T, 7.f);
      kernels::im2col_rows_batch(x.data(), cc.N, g, pv, rows.data());
      int64_t bad = 0;
      for (int64_t n = 0; n < cc.N; ++n) {
        const float* img = x.data() + n * g.image_size();
        kernels::im2col_cols(img, g, pv, cols.data());
        for (int64_t oy = 0; oy < g.OH; ++oy)
          for (int64_t ox = 0; ox < g.OW; ++ox)
            for (int64_t c = 0; c < g.C; ++c)
              for (int64_t ky = 0; ky < g.KH; ++ky)
                for (int64_t kx = 0; kx < g.KW; ++kx) {
                  const float want = tap(img, g, oy, ox, c, ky, kx, pv);
                  const int64_t p = oy * g.OW + ox, t = (c * g.KH + ky) * g.KW + kx;
                  bad += rows[(n * P + p) * T + t] != want;
                  bad += cols[t * P + p] != want;
                }
      }
      CHECK_MESSAGE(bad == 0, cc.str() << " pad_value " << pv << ": " << bad << " wrong taps");

      // <im2col(x), r> == <x, col2im(r)> for zero padding, in both layouts.
      if (pv == 0.f) {
        std::vector<float> r(cc.N * P * T);
        for (auto& v : r) v = rng.uniform() * 2.f - 1.f;
        std::vector<float> back(cc.N * g.image_size(), 0.f), back2(cc.N * g.image_size(), 0.f);
        kernels::col2im_rows_add_batch(r.data(), cc.N, g, back.data());
        for (int64_t n = 0; n < cc.N; ++n) {
          // the cols layout of image n's rows: cols[t*P + p] = rows[p*T + t]
          for (int64_t p = 0; p < P; ++p)
            for (int64_t t = 0; t < T; ++t) cols[t * P + p] = r[(n * P + p) * T + t];
          kernels::col2im_cols_add(cols.data(), g, back2.data() + n * g.image_size());
        }
        double lhs = 0, rhs = 0;
        for (size_t i = 0; i < r.size(); ++i) lhs += (double)rows[i] * r[i];
        for (int64_t i = 0; i < x.numel(); ++i) rhs += (double)x.data()[i] * back[i];
        CHECK_MESSAGE(std::fabs(lhs - rhs) < 1e-4 * (1 + std::fabs(lhs)), cc.str() << ": " << lhs << " vs " << rhs);
        int64_t differ = 0;
        for (size_t i = 0; i < back.size(); ++i) differ += std::fabs(back[i] - back2[i]) > 1e-5f;
        CHECK_MESSAGE(differ == 0, cc.str() << ": col2im rows vs cols layouts differ in " << differ << " pixels");
      }
    }
  }
}

// =============================================================================
// Gradient checks
// =============================================================================

TEST_CASE("grad: conv2d, with and without bias, stride 1/2, pad 0/1, 1x1 and 3x3") {
  Rng rng(102);
  for (const ConvCase& cc : kCases) {
    Tensor x = leaf({cc.N, cc.C, cc.H, cc.W}, rng, -1, 1);
    Tensor w = leaf({cc.O, cc.C, cc.K, cc.K}, rng, -1, 1);
    Tensor b = leaf({cc.O}, rng, -1, 1);
    const int64_t s = cc.stride, p = cc.pad;
    Fn with_b = [s, p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], s, p); };
    Fn no_b = [s, p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), s, p); };
    expect_grad("conv2d bias " + cc.str(), with_b, {x, w, b});
    expect_grad("conv2d no bias " + cc.str(), no_b, {x, w});
    // only some inputs want gradients
    expect_grad("conv2d const x " + cc.str(), with_b, {x.detach().clone(), w, b});
    expect_grad("conv2d const w " + cc.str(), no_b, {x, w.detach().clone()});
  }
}

TEST_CASE("grad: im2col with pad_value 0 and 1") {
  Rng rng(103);
  for (const ConvCase& cc : kCases) {
    for (float pv : {0.f, 1.f}) {
      Tensor x = leaf({cc.N, cc.C, cc.H, cc.W}, rng, -1, 1);
      Fn f = [cc, pv](const std::vector<Tensor>& in) { return im2col(in[0], cc.K, cc.K, cc.stride, cc.pad, pv); };
      expect_grad("im2col pad_value " + std::to_string(pv) + " " + cc.str(), f, {x});
    }
  }
  // non-square kernel
  Tensor x = leaf({2, 3, 5, 4}, rng, -1, 1);
  expect_grad("im2col 3x2 kernel", [](const std::vector<Tensor>& in) { return im2col(in[0], 3, 2, 1, 1, 1.f); }, {x});
}

TEST_CASE("grad: rows_to_nchw and flatten") {
  Rng rng(104);
  Tensor r = leaf({2 * 3 * 5, 4}, rng);
  expect_grad("rows_to_nchw", [](const std::vector<Tensor>& in) { return rows_to_nchw(in[0], 2, 3, 5); }, {r});
  Tensor r1 = leaf({7, 3}, rng);
  expect_grad("rows_to_nchw batch 1", [](const std::vector<Tensor>& in) { return rows_to_nchw(in[0], 1, 7, 1); },
              {r1});
  Tensor x = leaf({2, 3, 2, 5}, rng);
  expect_grad("flatten", [](const std::vector<Tensor>& in) { return flatten(in[0]); }, {x});

  // values: rows_to_nchw(rows)[n, o, oy, ox] == rows[(n*OH + oy)*OW + ox, o]
  Tensor y = rows_to_nchw(r, 2, 3, 5);
  CHECK(y.shape() == Shape{2, 4, 3, 5});
  CHECK(y.at({1, 2, 0, 3}) == r.at({(1 * 3 + 0) * 5 + 3, 2}));
  CHECK(y.at({0, 3, 2, 4}) == r.at({(0 * 3 + 2) * 5 + 4, 3}));
  Tensor f = flatten(x);
  CHECK(f.shape() == Shape{2, 30});
  CHECK(f.impl()->storage == x.impl()->storage);  // shares storage
}

// Distinct values spaced far apart relative to the finite-difference step, so no
// window's arg-max changes when one value moves by h.
static Tensor distinct_leaf(const Shape& s, Rng& rng) {
  Tensor t = Tensor::empty(s);
  const int64_t n = t.numel();
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[(int64_t)rng.below((uint64_t)(i + 1))]);
  for (int64_t i = 0; i < n; ++i) t.data()[i] = 0.05f * (float)(perm[i] - n / 2);
  t.set_requires_grad();
  return t;
}

TEST_CASE("grad: max_pool2d and avg_pool2d (overlapping, floored, non-square)") {
  Rng rng(105);
  struct P { Shape s; int64_t k, stride; };
  for (const P& pc : {P{{2, 3, 4, 6}, 2, 2}, P{{1, 5, 7, 5}, 3, 2}, P{{2, 2, 5, 4}, 2, 1}, P{{1, 3, 5, 5}, 2, 3},
                      P{{2, 1, 3, 3}, 3, 1}, P{{1, 2, 3, 4}, 1, 1}}) {
    const std::string tag = shape_str(pc.s) + " k" + std::to_string(pc.k) + " s" + std::to_string(pc.stride);
    const int64_t k = pc.k, st = pc.stride;
    Tensor x = distinct_leaf(pc.s, rng);
    expect_grad("max_pool2d " + tag, [k, st](const std::vector<Tensor>& in) { return max_pool2d(in[0], k, st); },
                {x});
    Tensor xa = leaf(pc.s, rng);
    expect_grad("avg_pool2d " + tag, [k, st](const std::vector<Tensor>& in) { return avg_pool2d(in[0], k, st); },
                {xa});
    const Tensor y = max_pool2d(x, k, st);
    CHECK(y.shape() == Shape{pc.s[0], pc.s[1], (pc.s[2] - k) / st + 1, (pc.s[3] - k) / st + 1});
  }
}

TEST_CASE("max_pool2d: values, ties go to the first maximum, overlapping windows add") {
  // one 3x3 plane; 2x2 windows, stride 1 -> 2x2 output
  //   1 5 5
  //   5 2 0
  //   3 3 3
  Tensor x = Tensor::from_vector({1, 1, 3, 3}, {1, 5, 5, 5, 2, 0, 3, 3, 3});
  x.set_requires_grad();
  Tensor y = max_pool2d(x, 2, 1);
  expect_near_vec(y, {5, 5, 5, 3}, 0.f);
  y.backward(Tensor::from_vector({1, 1, 2, 2}, {1, 10, 100, 1000}));
  // window (0,0) {1,5,5,2}: first max is (0,1); window (0,1) {5,5,2,0}: (0,1) too -> 1 + 10;
  // window (1,0) {5,2,3,3}: (1,0) gets 100; window (1,1) {2,0,3,3}: first max (2,1) gets 1000.
  expect_near_vec(x.grad(), {0, 11, 0, 100, 0, 0, 0, 1000, 0}, 0.f);

  // all equal: the gradient goes to the window's first tap only
  Tensor e = Tensor::full({1, 2, 2, 2}, 0.5f);
  e.set_requires_grad();
  max_pool2d(e, 2, 2).backward(Tensor::from_vector({1, 2, 1, 1}, {3, 4}));
  expect_near_vec(e.grad(), {3, 0, 0, 0, 4, 0, 0, 0}, 0.f);

  // avg_pool values
  expect_near_vec(avg_pool2d(x.detach(), 2, 1), {13.f / 4, 12.f / 4, 13.f / 4, 8.f / 4}, 1e-6f);
}

TEST_CASE("max_pool_forward: the 2x2 / stride-2 fast path keeps the first-maximum rule (ties, NaN, odd sizes)") {
  // kernels::max_pool_forward takes a branch-free loop for k = 2, s = 2; its
  // values and arg-max must be the documented rule's: strict ">" in the
  // window's row-major order, so ties and NaNs keep the earliest tap. Values
  // from a 4-value set make ties common; a few NaNs sit in every position.
  Rng rng(11);
  for (auto [planes, H, W] : {std::tuple<int64_t, int64_t, int64_t>{3, 5, 7}, {2, 4, 4}, {70, 33, 32}, {1, 2, 3}}) {
    std::vector<float> x((size_t)(planes * H * W));
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = (float)((int)(rng.uniform(0.f, 4.f))) - 1.5f;
      if (i % 37 == 5) x[i] = std::nanf("");
    }
    const int64_t OH = H / 2, OW = W / 2;
    std::vector<float> y((size_t)(planes * OH * OW), -7.f);
    std::vector<int32_t> arg(y.size(), -1);
    kernels::max_pool_forward(x.data(), planes, H, W, 2, 2, y.data(), arg.data());
    int64_t bad = 0, nans = 0;
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const float* xp = x.data() + p * H * W;
          int64_t best = 2 * oy * W + 2 * ox;
          for (int64_t t : {2 * oy * W + 2 * ox + 1, (2 * oy + 1) * W + 2 * ox, (2 * oy + 1) * W + 2 * ox + 1})
            if (xp[t] > xp[best]) best = t;
          const size_t o = (size_t)((p * OH + oy) * OW + ox);
          const bool same_value = std::isnan(xp[best]) ? std::isnan(y[o]) : y[o] == xp[best];
          nans += std::isnan(xp[best]);
          if (arg[o] != (int32_t)best || !same_value) ++bad;
        }
    CHECK_MESSAGE(bad == 0, "planes " << planes << " " << H << "x" << W);
    if (planes == 70) CHECK(nans > 0);  // a NaN first tap was met and kept
  }
}

// =============================================================================
// conv2d against references
// =============================================================================

TEST_CASE("conv2d: matches a direct 7-loop double reference (serial and threaded paths)") {
  ThreadGuard tg;
  Rng rng(106);
  // Covers every blocking of ops_conv.cpp: one image per GEMM (P >= 256), groups of
  // small images side by side (ragged last group), batch 1 with threaded GEMMs,
  // and a 1x1 output map (a CNV's last convolutions).
  const ConvCase big[] = {{4, 5, 9, 11, 7, 3, 1, 1}, {3, 3, 10, 7, 8, 3, 2, 1}, {1, 13, 6, 6, 5, 1, 1, 0},
                          {5, 16, 8, 8, 16, 3, 1, 1}, {3, 4, 17, 16, 5, 3, 1, 1}, {7, 6, 3, 3, 5, 3, 1, 0},
                          {1, 7, 20, 18, 9, 3, 1, 1}};
  for (int threads : {1, 2}) {
    kernels::set_num_threads(threads);
    for (const ConvCase& cc : big) {
      Tensor x = Tensor::uniform({cc.N, cc.C, cc.H, cc.W}, -1.f, 1.f, rng);
      Tensor w = Tensor::uniform({cc.O, cc.C, cc.K, cc.K}, -1.f, 1.f, rng);
      Tensor b = Tensor::uniform({cc.O}, -1.f, 1.f, rng);
      for (bool bias : {true, false}) {
        const Tensor bb = bias ? b : Tensor();
        const Tensor y = conv2d(x, w, bb, cc.stride, cc.pad);
        const std::vector<double> ref = conv_reference(x, w, bb, cc.stride, cc.pad);
        REQUIRE(y.numel() == (int64_t)ref.size());
        CHECK(y.shape() == Shape{cc.N, cc.O, (cc.H + 2 * cc.pad - cc.K) / cc.stride + 1,
                                 (cc.W + 2 * cc.pad - cc.K) / cc.stride + 1});
        double worst = 0;
        for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(y.data()[i] - ref[i]));
        CHECK_MESSAGE(worst < 1e-4, cc.str() << " threads " << threads << " bias " << bias << ": max err " << worst);
      }
    }
  }
}

TEST_CASE("conv2d == rows_to_nchw(linear(im2col(x), w2d, b)), forward and gradients") {
  ThreadGuard tg;
  Rng rng(107);
  const ConvCase cases[] = {{3, 5, 7, 6, 4, 3, 1, 1}, {2, 3, 9, 8, 6, 3, 2, 0}, {4, 8, 5, 5, 3, 1, 2, 1},
                            {3, 4, 17, 16, 5, 3, 1, 1}, {5, 6, 3, 3, 4, 3, 1, 0}};
  for (int threads : {1, 2}) {
    kernels::set_num_threads(threads);
    for (const ConvCase& cc : cases) {
      const int64_t OH = (cc.H + 2 * cc.pad - cc.K) / cc.stride + 1, OW = (cc.W + 2 * cc.pad - cc.K) / cc.stride + 1;
      Tensor x1 = leaf({cc.N, cc.C, cc.H, cc.W}, rng, -1, 1), w1 = leaf({cc.O, cc.C, cc.K, cc.K}, rng, -1, 1),
             b1 = leaf({cc.O}, rng, -1, 1);
      Tensor x2 = x1.detach().clone(), w2 = w1.detach().clone(), b2 = b1.detach().clone();
      x2.set_requires_grad();
      w2.set_requires_grad();
      b2.set_requires_grad();
      Tensor ya = conv2d(x1, w1, b1, cc.stride, cc.pad);
      Tensor yb = rows_to_nchw(
          linear(im2col(x2, cc.K, cc.K, cc.stride, cc.pad), w2.reshape({cc.O, -1}), b2), cc.N, OH, OW);
      REQUIRE(ya.shape() == yb.shape());
      Tensor r = Tensor::normal(ya.shape(), 0.f, 1.f, rng);
      ya.backward(r);
      yb.backward(r);
      auto maxdiff = [](const Tensor& a, const Tensor& b) {
        double m = 0;
        for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, (double)std::fabs(a.data()[i] - b.data()[i]));
        return m;
      };
      const std::string tag = cc.str() + " threads " + std::to_string(threads);
      CHECK_MESSAGE(maxdiff(ya, yb) < 1e-4, tag);
      CHECK_MESSAGE(maxdiff(x1.grad(), x2.grad()) < 1e-4, tag);
      CHECK_MESSAGE(maxdiff(w1.grad(), w2.grad()) < 1e-3, tag);
      CHECK_MESSAGE(maxdiff(b1.grad(), b2.grad()) < 1e-3, tag);
    }
  }
}

TEST_CASE("conv2d and pooling: batch of 1 and no-grad mode record no node") {
  Rng rng(108);
  Tensor x = leaf({1, 3, 5, 5}, rng), w = leaf({2, 3, 3, 3}, rng);
  {
    NoGradGuard ng;
    CHECK_FALSE(conv2d(x, w, Tensor(), 1, 1).requires_grad());
    CHECK_FALSE(max_pool2d(x, 2, 2).requires_grad());
    CHECK_FALSE(im2col(x, 3, 3, 1, 1).requires_grad());
  }
  CHECK(conv2d(x, w, Tensor(), 1, 1).requires_grad());
  CHECK(graph_size(conv2d(x, w, Tensor(), 1, 1)) == 1);  // one fused node
}

TEST_CASE("im2col, rows_to_nchw, pooling: threaded paths give the single-thread results exactly") {
  // Large enough for the OpenMP paths (> 1<<15 values); copies and per-pixel
  // sums in a fixed order, so the thread count must not change a single bit.
  ThreadGuard tg;
  Rng rng(111);
  const Tensor x0 = Tensor::uniform({4, 17, 24, 20}, -1.f, 1.f, rng);
  auto run = [&](int threads) {
    kernels::set_num_threads(threads);
    std::vector<std::vector<float>> out;
    for (int op = 0; op < 4; ++op) {
      Tensor x = x0.clone();
      x.set_requires_grad();
      Tensor y = op == 0   ? im2col(x, 3, 3, 1, 0, 1.f)
                 : op == 1 ? max_pool2d(x, 3, 2)
                 : op == 2 ? avg_pool2d(x, 2, 2)
                           : rows_to_nchw(x.reshape({4 * 24 * 20, 17}), 4, 24, 20);
      Rng gr(7);
      y.backward(Tensor::uniform(y.shape(), -1.f, 1.f, gr));
      out.push_back(y.to_vector());
      out.push_back(x.grad().to_vector());
    }
    return out;
  };
  const auto one = run(1), two = run(2);
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) CHECK_MESSAGE(one[i] == two[i], "result " << i << " differs");
}

// =============================================================================
// Batch norm on [N, C, H, W]
// =============================================================================

TEST_CASE("grad: batch_norm on 4-D inputs (odd shapes), training and eval") {
  Rng rng(109);
  for (const Shape& s : {Shape{2, 5, 3, 4}, Shape{3, 3, 5, 1}, Shape{1, 2, 3, 3}}) {
    const int64_t C = s[1];
    Tensor x = leaf(s, rng, -2, 3);
    Tensor gamma = leaf({C}, rng, 0.5, 2), beta = leaf({C}, rng);
    Tensor rm = Tensor::uniform({C}, -0.5, 0.5, rng), rv = Tensor::uniform({C}, 0.5, 2, rng);
    for (bool training : {true, false}) {
      Fn f = [=](const std::vector<Tensor>& in) {
        Tensor m = rm.clone(), v = rv.clone();
        return batch_norm(in[0], in[1], in[2], m, v, training, 0.1f, 1e-5f);
      };
      GradCheckOpts o;
      o.atol = 3e-3;
      expect_grad("batch_norm 4-D " + shape_str(s) + (training ? " training" : " eval"), f, {x, gamma, beta}, o);
    }
  }
}

TEST_CASE("batch_norm: large [N,C,H,W] matches a naive double reference (OpenMP paths)") {
  ThreadGuard tg;
  kernels::set_num_threads(2);
  Rng rng(110);
  const int64_t N = 6, C = 11, H = 33, W = 35, HW = H * W, m = N * HW;  // > 1<<16 values
  Tensor x = Tensor::normal({N, C, H, W}, 3.f, 2.f, rng);
  x.set_requires_grad();
  Tensor gamma = Tensor::uniform({C}, 0.5f, 1.5f, rng), beta = Tensor::uniform({C}, -1.f, 1.f, rng);
  gamma.set_requires_grad();
  beta.set_requires_grad();
  Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
  Tensor y = batch_norm(x, gamma, beta, rm, rv, true, 0.1f, 1e-5f);
  Tensor dy = Tensor::normal(x.shape(), 0.f, 1.f, rng);
  y.backward(dy);
  const float* px = x.data();
  const float* pd = dy.data();
  double max_y = 0, max_dx = 0, max_dg = 0, max_db = 0, max_rs = 0;
  for (int64_t c = 0; c < C; ++c) {
    auto at = [&](const float* p, int64_t n, int64_t i) { return (double)p[(n * C + c) * HW + i]; };
    double mu = 0, var = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) mu += at(px, n, i);
    mu /= m;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) var += (at(px, n, i) - mu) * (at(px, n, i) - mu);
    var /= m;
    const double is = 1.0 / std::sqrt(var + 1e-5), g = gamma.data()[c], bt = beta.data()[c];
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double xh = (at(px, n, i) - mu) * is;
        max_y = std::max(max_y, std::fabs(at(y.data(), n, i) - (g * xh + bt)));
        sdy += at(pd, n, i);
        sdyx += at(pd, n, i) * xh;
      }
    max_dg = std::max(max_dg, std::fabs(gamma.grad().data()[c] - sdyx));
    max_db = std::max(max_db, std::fabs(beta.grad().data()[c] - sdy));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double xh = (at(px, n, i) - mu) * is;
        const double dx = g * is / m * (m * at(pd, n, i) - sdy - xh * sdyx);
        max_dx = std::max(max_dx, std::fabs(at(x.grad().data(), n, i) - dx));
      }
    max_rs = std::max(max_rs, std::fabs(rm.data()[c] - 0.1 * mu));
    max_rs = std::max(max_rs, std::fabs(rv.data()[c] - (0.9 + 0.1 * var * m / (m - 1))));
  }
  CHECK(max_y < 1e-4);
  CHECK(max_dx < 1e-4);
  CHECK(max_dg < 2e-3);
  CHECK(max_db < 2e-3);
  CHECK(max_rs < 1e-4);
}

// =============================================================================
// Errors
// =============================================================================

TEST_CASE("conv2d / im2col / pooling / rows_to_nchw / flatten: shape errors") {
  Tensor x = Tensor::zeros({2, 3, 5, 4});
  Tensor w = Tensor::zeros({4, 3, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros({4, 5, 3, 3}), Tensor(), 1, 0),
                       doctest::Contains("conv2d: x is [2, 3, 5, 4] but w is [4, 5, 3, 3] (input channels differ"),
                       qnn::Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros({4, 3, 7, 3}), Tensor(), 1, 0),
                       doctest::Contains("conv2d: kernel 7x3 is larger than the padded image 5x4"), qnn::Error);
  CHECK_NOTHROW(conv2d(x, Tensor::zeros({4, 3, 7, 3}), Tensor(), 1, 1));  // fits once padded
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 0, 1), doctest::Contains("conv2d: stride must be >= 1, got 0"),
                       qnn::Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, -1), doctest::Contains("conv2d: pad must be >= 0"), qnn::Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({3, 5, 4}), w, Tensor(), 1, 1),
                       doctest::Contains("conv2d: x must be [N, C, H, W], got [3, 5, 4]"), qnn::Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros({4, 27}), Tensor(), 1, 1),
                       doctest::Contains("conv2d: w must be [O, C, KH, KW], got [4, 27]"), qnn::Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor::zeros({3}), 1, 1),
                       doctest::Contains("conv2d: bias is [3], expected [4]"), qnn::Error);

  CHECK_THROWS_WITH_AS(im2col(x, 6, 3, 1, 0), doctest::Contains("im2col: kernel 6x3 is larger than the padded image"),
                       qnn::Error);
  CHECK_THROWS_WITH_AS(im2col(x, 3, 3, -2, 0), doctest::Contains("im2col: stride must be >= 1, got -2"), qnn::Error);
  CHECK_THROWS_WITH_AS(im2col(x, 0, 3, 1, 0), doctest::Contains("im2col: kernel must be at least 1x1"), qnn::Error);

  CHECK_THROWS_WITH_AS(rows_to_nchw(Tensor::zeros({10, 4}), 2, 2, 3),
                       doctest::Contains("rows_to_nchw: rows is [10, 4], expected [12, O]"), qnn::Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, 5, 1),
                       doctest::Contains("max_pool2d: window 5x5 is larger than the image [2, 3, 5, 4]"), qnn::Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, 2, 0), doctest::Contains("avg_pool2d: stride must be >= 1, got 0"), qnn::Error);
  CHECK_THROWS_WITH_AS(max_pool2d(Tensor::zeros({4, 4}), 2, 2),
                       doctest::Contains("max_pool2d: x must be [N, C, H, W], got [4, 4]"), qnn::Error);
  CHECK_THROWS_WITH_AS(flatten(Tensor::zeros({4})), doctest::Contains("flatten: x must be [N, ...]"), qnn::Error);
}
