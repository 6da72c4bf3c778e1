// tests/test_ops_grad.cpp — every differentiable op in core/ops.h against
// central finite differences, plus hand-computed values for a few ops.
//
// The checker (central differences, accumulation and leak checks) and the
// random-input helpers live in tests/grad_check.h, shared with test_ops_conv.cpp.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

using namespace qnn;

#include "tests/grad_check.h"

using namespace qnn::testing;

// =============================================================================
// The checker itself must be able to fail.
// =============================================================================

TEST_CASE("grad_check: passes a correct backward, fails a wrong one") {
  Rng rng(1);
  Tensor x = leaf({3, 4}, rng);
  auto cube = [](float v) { return v * v * v; };
  const GradCheckResult good = grad_check(
      [&](const std::vector<Tensor>& in) {
        return map_with_grad(in[0], "cube", cube, [](float v) { return 3 * v * v; });
      },
      {x});
  CHECK_MESSAGE(good.ok, good.msg);
  CHECK(good.checked == 12);

  const GradCheckResult bad = grad_check(
      [&](const std::vector<Tensor>& in) {
        return map_with_grad(in[0], "cube_wrong", cube, [](float v) { return 2 * v * v; });  // wrong df
      },
      {x});
  CHECK_FALSE(bad.ok);
  CHECK(bad.msg.find("analytic") != std::string::npos);
  // A derivative off by only 5% must be caught too.
  const GradCheckResult slightly = grad_check(
      [&](const std::vector<Tensor>& in) {
        return map_with_grad(in[0], "cube_5pc", cube, [](float v) { return 3.15f * v * v; });
      },
      {x});
  CHECK_FALSE(slightly.ok);
}

// A test-only op whose backward overwrites (=) instead of adding (+=).
static Tensor twice_overwriting(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.data()[i] = 2 * x.data()[i];
  if (needs_grad(x))
    record(out, "twice_overwriting", {x}, [x](const Tensor& g) {
      float* gx = x.grad_data();
      for (int64_t i = 0; i < x.numel(); ++i) gx[i] = 2 * g.data()[i];  // BUG on purpose
    });
  return out;
}

// A test-only op that writes a gradient into an input that did not ask for one.
static Tensor add_leaky(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape());
  for (int64_t i = 0; i < a.numel(); ++i) out.data()[i] = a.data()[i] + b.data()[i];
  if (needs_grad(a, b))
    record(out, "add_leaky", {a, b}, [a, b](const Tensor& g) {
      for (int64_t i = 0; i < a.numel(); ++i) {
        a.grad_data()[i] += g.data()[i];
        b.grad_data()[i] += g.data()[i];  // BUG on purpose: ignores requires_grad
      }
    });
  return out;
}

TEST_CASE("grad_check: catches a backward that overwrites or leaks gradients") {
  Rng rng(2);
  Tensor x = leaf({2, 3}, rng);
  const GradCheckResult r = grad_check([](const std::vector<Tensor>& in) { return twice_overwriting(in[0]); }, {x});
  CHECK_FALSE(r.ok);
  CHECK(r.msg.find("accumulate") != std::string::npos);

  Tensor c = leaf({2, 3}, rng, -1, 1, /*grad=*/false);
  const GradCheckResult r2 = grad_check([](const std::vector<Tensor>& in) { return add_leaky(in[0], in[1]); }, {x, c});
  CHECK_FALSE(r2.ok);
  CHECK(r2.msg.find("does not require grad") != std::string::npos);
}

// =============================================================================
// Elementwise arithmetic with broadcasting
// =============================================================================

TEST_CASE("grad: add/sub/mul/div, same shape and broadcast") {
  Rng rng(10);
  const int64_t N = rint(rng, 2, 4), C = rint(rng, 2, 5), H = rint(rng, 1, 3), W = rint(rng, 2, 3);
  struct Case {
    const char* name;
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {"same [N,C]", {N, C}, {N, C}},
      {"[N,C] op [C]", {N, C}, {C}},
      {"[C] op [N,C]", {C}, {N, C}},
      {"[N,C,H,W] op [1,C,1,1]", {N, C, H, W}, {1, C, 1, 1}},
      {"[N,C] op scalar", {N, C}, {}},
      {"scalar op [N,C]", {}, {N, C}},
      {"[N,1] op [1,C]", {N, 1}, {1, C}},
  };
  for (const Case& cs : cases) {
    Tensor a = leaf(cs.a, rng), b = leaf(cs.b, rng), bd = leaf_nonzero(cs.b, rng);
    const std::string tag = std::string(" ") + cs.name;
    expect_grad("add" + tag, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b});
    expect_grad("sub" + tag, [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b});
    expect_grad("mul" + tag, [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
    expect_grad("div" + tag, [](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, bd});
    // operators, and one side constant
    Tensor bc = leaf(cs.b, rng, -2, 2, /*grad=*/false);
    expect_grad("a*b+a-b (const b)" + tag,
                [](const std::vector<Tensor>& in) { return in[0] * in[1] + in[0] - in[1]; }, {a, bc});
  }
}

TEST_CASE("grad: add_scalar, mul_scalar, neg, square") {
  Rng rng(11);
  Tensor x = leaf({rint(rng, 2, 4), rint(rng, 2, 5)}, rng);
  expect_grad("add_scalar", [](const std::vector<Tensor>& in) { return add_scalar(in[0], 0.7f); }, {x});
  expect_grad("mul_scalar", [](const std::vector<Tensor>& in) { return mul_scalar(in[0], -1.3f); }, {x});
  expect_grad("2*x*3", [](const std::vector<Tensor>& in) { return 2.f * in[0] * 3.f; }, {x});
  expect_grad("neg", [](const std::vector<Tensor>& in) { return neg(in[0]); }, {x});
  expect_grad("unary -", [](const std::vector<Tensor>& in) { return -in[0]; }, {x});
  expect_grad("square", [](const std::vector<Tensor>& in) { return square(in[0]); }, {x});
  expect_grad("x*x (same input twice)", [](const std::vector<Tensor>& in) { return in[0] * in[0]; }, {x});
}

// =============================================================================
// Activations (inputs kept away from kinks)
// =============================================================================

TEST_CASE("grad: activations") {
  Rng rng(12);
  const Shape s = {rint(rng, 2, 4), rint(rng, 3, 6)};
  Tensor x = leaf(s, rng, -3, 3);
  expect_grad("relu", [](const std::vector<Tensor>& in) { return relu(in[0]); }, {away_from(x, {0.f})});
  expect_grad("tanh", [](const std::vector<Tensor>& in) { return qnn::tanh(in[0]); }, {x});
  expect_grad("sigmoid", [](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x});
  Tensor xk = leaf(s, rng, -3, 3);
  away_from(xk, {-1.f, 1.f});
  expect_grad("hardtanh", [](const std::vector<Tensor>& in) { return hardtanh(in[0]); }, {xk});
  expect_grad("hard_sigmoid", [](const std::vector<Tensor>& in) { return hard_sigmoid(in[0]); }, {xk});
  Tensor xc = leaf(s, rng, -3, 3);
  away_from(xc, {-0.5f, 2.f});
  expect_grad("hardtanh(-0.5, 2)", [](const std::vector<Tensor>& in) { return hardtanh(in[0], -0.5f, 2.f); }, {xc});
  expect_grad("clamp(-0.5, 2)", [](const std::vector<Tensor>& in) { return clamp(in[0], -0.5f, 2.f); }, {xc});
  expect_grad("map_with_grad x^3",
              [](const std::vector<Tensor>& in) {
                return map_with_grad(in[0], "cube", [](float v) { return v * v * v; },
                                     [](float v) { return 3 * v * v; });
              },
              {x});
}

// =============================================================================
// Reductions and shapes
// =============================================================================

TEST_CASE("grad: sum and mean, full and along dims") {
  Rng rng(13);
  Tensor x2 = leaf({rint(rng, 2, 4), rint(rng, 2, 5)}, rng);
  Tensor x4 = leaf({rint(rng, 2, 3), rint(rng, 2, 3), rint(rng, 2, 3), rint(rng, 1, 3)}, rng);
  for (const Tensor& x : {x2, x4}) {
    std::string sh = " ";
    sh += shape_str(x.shape());
    expect_grad("sum" + sh, [](const std::vector<Tensor>& in) { return sum(in[0]); }, {x});
    expect_grad("mean" + sh, [](const std::vector<Tensor>& in) { return mean(in[0]); }, {x});
    for (int64_t d = -x.ndim(); d < x.ndim(); ++d)
      for (bool keep : {false, true}) {
        const std::string tag = sh + " dim " + std::to_string(d) + (keep ? " keepdim" : "");
        expect_grad("sum" + tag, [d, keep](const std::vector<Tensor>& in) { return sum(in[0], d, keep); }, {x});
        expect_grad("mean" + tag, [d, keep](const std::vector<Tensor>& in) { return mean(in[0], d, keep); }, {x});
      }
  }
}

TEST_CASE("sum/mean values and shapes") {
  Tensor x = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x).item() == doctest::Approx(21));
  CHECK(mean(x).item() == doctest::Approx(3.5));
  CHECK(sum(x, 0).shape() == Shape{3});
  expect_near_vec(sum(x, 0), {5, 7, 9});
  CHECK(sum(x, 1, true).shape() == Shape{2, 1});
  expect_near_vec(sum(x, 1, true), {6, 15});
  expect_near_vec(mean(x, -1), {2, 5});
  expect_near_vec(mean(x, 0, true), {2.5f, 3.5f, 4.5f});
  CHECK(mean(x, 0, true).shape() == Shape{1, 3});
  Tensor y = Tensor::from_vector({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  expect_near_vec(sum(y, 1), {4, 6, 12, 14});
  CHECK_THROWS_WITH_AS(sum(x, 2), doctest::Contains("sum: dim 2"), qnn::Error);
  CHECK_THROWS_AS(mean(x, -3), qnn::Error);
}

TEST_CASE("grad: transpose, concat, slice, reshape, flatten") {
  Rng rng(14);
  const int64_t M = rint(rng, 2, 5), N = rint(rng, 2, 5);
  Tensor a = leaf({M, N}, rng);
  expect_grad("transpose", [](const std::vector<Tensor>& in) { return transpose(in[0]); }, {a});
  Tensor big = leaf({37, 45}, rng);  // crosses the 32x32 tile edges
  {
    Tensor t = transpose(big);
    CHECK(t.shape() == Shape{45, 37});
    CHECK(t.at({44, 36}) == big.at({36, 44}));
    CHECK(t.at({33, 2}) == big.at({2, 33}));
  }

  // concat along each dim of 3-D tensors, one input constant
  const int64_t A = rint(rng, 1, 3), B = rint(rng, 2, 3), Cc = rint(rng, 2, 3);
  for (int64_t d = 0; d < 3; ++d) {
    Shape s1 = {A, B, Cc}, s2 = s1, s3 = s1;
    s2[d] += 1;
    s3[d] += 2;
    Tensor x1 = leaf(s1, rng), x2 = leaf(s2, rng, -2, 2, false), x3 = leaf(s3, rng);
    expect_grad("concat dim " + std::to_string(d),
                [d](const std::vector<Tensor>& in) { return concat({in[0], in[1], in[2]}, d); }, {x1, x2, x3});
  }
  expect_grad("concat dim -1 [M,N]+[M,N]",
              [](const std::vector<Tensor>& in) { return concat({in[0], in[0]}, -1); }, {a});

  Tensor x = leaf({4, 5, 3}, rng);
  expect_grad("slice dim 0 [1,3)", [](const std::vector<Tensor>& in) { return slice(in[0], 0, 1, 3); }, {x});
  expect_grad("slice dim 1 [2,5)", [](const std::vector<Tensor>& in) { return slice(in[0], 1, 2, 5); }, {x});
  expect_grad("slice dim -1 [-2,-1)", [](const std::vector<Tensor>& in) { return slice(in[0], -1, -2, -1); }, {x});
  expect_grad("reshape", [](const std::vector<Tensor>& in) { return in[0].reshape({5, -1}); }, {x});
  expect_grad("flatten", [](const std::vector<Tensor>& in) { return in[0].flatten(); }, {x});
  expect_grad("reshape then square", [](const std::vector<Tensor>& in) { return square(in[0].reshape({12, 5})); }, {x});
}

TEST_CASE("concat and slice values and errors") {
  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::from_vector({2, 1}, {5, 6});
  Tensor c = concat({a, b}, 1);
  CHECK(c.shape() == Shape{2, 3});
  expect_near_vec(c, {1, 2, 5, 3, 4, 6});
  Tensor d = concat({a, a}, 0);
  expect_near_vec(d, {1, 2, 3, 4, 1, 2, 3, 4});
  expect_near_vec(slice(c, 1, 1, 3), {2, 5, 4, 6});
  expect_near_vec(slice(c, 0, -1, 2), {3, 4, 6});
  CHECK_THROWS_WITH_AS(concat({a, b}, 0), doctest::Contains("concat: tensor 1 is [2, 1]"), qnn::Error);
  CHECK_THROWS_AS(concat({}, 0), qnn::Error);
  CHECK_THROWS_WITH_AS(slice(c, 1, 2, 4), doctest::Contains("slice"), qnn::Error);
  CHECK_THROWS_AS(transpose(Tensor::zeros({2, 2, 2})), qnn::Error);
}

TEST_CASE("large tensors (OpenMP paths) match naive double references") {
  // numel > 1<<16 switches the kernels to their parallel branches.
  Rng rng(22);
  const int64_t A = 300, B = 700;
  Tensor x = Tensor::normal({A, B}, 0.5f, 1.f, rng);
  x.set_requires_grad();
  const float* px = x.data();
  double tot = 0;
  std::vector<double> col(B, 0.0), row(A, 0.0);
  for (int64_t i = 0; i < A; ++i)
    for (int64_t j = 0; j < B; ++j) {
      tot += px[i * B + j];
      col[j] += px[i * B + j];
      row[i] += px[i * B + j];
    }
  CHECK(sum(x).item() == doctest::Approx(tot).epsilon(1e-5));
  CHECK(mean(x).item() == doctest::Approx(tot / (A * B)).epsilon(1e-5));
  Tensor s0 = sum(x, 0), m1 = mean(x, 1, true);
  double e0 = 0, e1 = 0;
  for (int64_t j = 0; j < B; ++j) e0 = std::max(e0, std::fabs(s0.data()[j] - col[j]));
  for (int64_t i = 0; i < A; ++i) e1 = std::max(e1, std::fabs(m1.data()[i] - row[i] / B));
  CHECK(e0 < 1e-3);
  CHECK(e1 < 1e-5);
  // backward of sum(x, 0) weighted by w[j] and mean(x, 1) weighted by v[i]:
  // dL/dx[i, j] = w[j] + v[i] / B
  Tensor w = Tensor::normal({B}, 0, 1, rng), v = Tensor::normal({A, 1}, 0, 1, rng);
  s0.backward(w);
  m1.backward(v);
  double eg = 0;
  for (int64_t i = 0; i < A; ++i)
    for (int64_t j = 0; j < B; ++j)
      eg = std::max(eg, (double)std::fabs(x.grad().data()[i * B + j] - (w.data()[j] + v.data()[i] / B)));
  CHECK(eg < 1e-5);

  // cross_entropy and softmax on [A, B]
  std::vector<int32_t> labels = rand_labels(A, B, rng);
  x.zero_grad();
  Tensor L = cross_entropy(x, labels);
  double ref = 0;
  for (int64_t i = 0; i < A; ++i) {
    double mx = -1e30, se = 0;
    for (int64_t j = 0; j < B; ++j) mx = std::max(mx, (double)px[i * B + j]);
    for (int64_t j = 0; j < B; ++j) se += std::exp(px[i * B + j] - mx);
    ref += std::log(se) + mx - px[i * B + labels[i]];
  }
  CHECK(L.item() == doctest::Approx(ref / A).epsilon(1e-5));
  L.backward();
  Tensor p = softmax(x);
  double ep = 0;
  for (int64_t i = 0; i < A; ++i)
    for (int64_t j = 0; j < B; ++j) {
      const double want = (p.data()[i * B + j] - (j == labels[i] ? 1.0 : 0.0)) / A;
      ep = std::max(ep, std::fabs(x.grad().data()[i * B + j] - want));
    }
  CHECK(ep < 1e-7);

  // batch_norm [N, C, H, W] large: normalised channels have mean 0, biased var 1
  Tensor x4 = Tensor::normal({16, 8, 24, 24}, 2.f, 3.f, rng);
  Tensor rm = Tensor::zeros({8}), rv = Tensor::ones({8});
  Tensor y4 = batch_norm(x4, Tensor(), Tensor(), rm, rv, true, 0.1f, 0.f);
  const int64_t HW = 24 * 24;
  for (int64_t c = 0; c < 8; ++c) {
    double s = 0, q = 0;
    for (int64_t n = 0; n < 16; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double yv = y4.data()[(n * 8 + c) * HW + i];
        s += yv;
        q += yv * yv;
      }
    const double m = s / (16 * HW);
    CHECK(std::fabs(m) < 1e-4);
    CHECK(q / (16 * HW) - m * m == doctest::Approx(1.0).epsilon(1e-4));
  }
}

// =============================================================================
// Linear algebra
// =============================================================================

TEST_CASE("grad: matmul and linear") {
  Rng rng(15);
  const int64_t M = rint(rng, 2, 4), K = rint(rng, 2, 5), N = rint(rng, 2, 4);
  Tensor a = leaf({M, K}, rng), b = leaf({K, N}, rng);
  expect_grad("matmul", [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b});
  Tensor bc = leaf({K, N}, rng, -2, 2, false);
  expect_grad("matmul (const b)", [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, bc});
  Tensor x = leaf({M, K}, rng), W = leaf({N, K}, rng), bias = leaf({N}, rng);
  expect_grad("linear with bias", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
              {x, W, bias});
  expect_grad("linear without bias", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); },
              {x, W});
  Tensor xc = leaf({M, K}, rng, -2, 2, false);
  expect_grad("linear (const x)", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
              {xc, W, bias});
}

// =============================================================================
// Softmax family and losses
// =============================================================================

TEST_CASE("grad: log_softmax, softmax, cross_entropy, squared_hinge, mse") {
  Rng rng(16);
  const int64_t N = rint(rng, 2, 5), C = rint(rng, 2, 6);
  Tensor x = leaf({N, C}, rng, -3, 3);
  expect_grad("log_softmax", [](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
  expect_grad("softmax", [](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x});
  const std::vector<int32_t> labels = rand_labels(N, C, rng);
  expect_grad("cross_entropy", [labels](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels); }, {x});
  expect_grad("cross_entropy, large logits",
              [labels](const std::vector<Tensor>& in) { return cross_entropy(add_scalar(in[0], 80.f), labels); }, {x},
              GradCheckOpts{.h = 1e-2});  // x + 80 in float32 has a coarser grid
  Tensor xh = leaf({N, C}, rng, -2.5, 2.5);
  away_from(xh, {-1.f, 1.f});
  expect_grad("squared_hinge", [labels](const std::vector<Tensor>& in) { return squared_hinge(in[0], labels); },
              {xh});
  Tensor a = leaf({N, C, 2}, rng), b = leaf({N, C, 2}, rng);
  expect_grad("mse", [](const std::vector<Tensor>& in) { return mse(in[0], in[1]); }, {a, b});
  Tensor bc = leaf({N, C, 2}, rng, -2, 2, false);
  expect_grad("mse (const target)", [](const std::vector<Tensor>& in) { return mse(in[0], in[1]); }, {a, bc});
}

TEST_CASE("cross_entropy: hand-computed 2x3 value and gradient") {
  // row 0: logits [1, 2, 3], label 2: -log(e^3 / (e^1 + e^2 + e^3)) = log(1 + e^-1 + e^-2) = 0.4076059645
  // row 1: logits [1, 1, 1], label 0: log 3 = 1.0986122887
  // mean = 0.7531091266
  Tensor x = Tensor::from_vector({2, 3}, {1, 2, 3, 1, 1, 1});
  x.set_requires_grad();
  Tensor L = cross_entropy(x, {2, 0});
  CHECK(L.shape() == Shape{});
  CHECK(L.item() == doctest::Approx(0.7531091266).epsilon(1e-6));
  L.backward();
  // grad = (softmax - onehot) / N; softmax row 0 = [0.0900306, 0.2447285, 0.6652410]
  expect_near_vec(x.grad(), {0.0900306f / 2, 0.2447285f / 2, (0.6652410f - 1) / 2,  //
                             (1.f / 3 - 1) / 2, 1.f / 6, 1.f / 6},
                  1e-6f);
  // Stability: huge logits do not overflow
  Tensor big = Tensor::from_vector({1, 3}, {1000, 1001, 1002});
  CHECK(cross_entropy(big, {2}).item() == doctest::Approx(0.4076059645).epsilon(1e-5));
  // log_softmax / softmax agree with the same numbers
  Tensor ls = log_softmax(Tensor::from_vector({1, 3}, {1, 2, 3}));
  CHECK(ls.at({0, 2}) == doctest::Approx(-0.4076059645).epsilon(1e-6));
  Tensor sm = softmax(Tensor::from_vector({1, 3}, {1001, 1002, 1003}));
  expect_near_vec(sm, {0.0900306f, 0.2447285f, 0.6652410f}, 1e-6f);
}

TEST_CASE("cross_entropy: validates labels, survives NaN") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(cross_entropy(x, {0, 3}), doctest::Contains("cross_entropy: label 3 at row 1"), qnn::Error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, {-1, 0}), doctest::Contains("label -1"), qnn::Error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, {0}), doctest::Contains("1 labels (expected 2)"), qnn::Error);
  CHECK_THROWS_WITH_AS(squared_hinge(x, {0, 7}), doctest::Contains("squared_hinge: label 7"), qnn::Error);
  CHECK_THROWS_AS(cross_entropy(Tensor::zeros({6}), {0}), qnn::Error);
  CHECK_THROWS_AS(count_correct(x, {0, 5}), qnn::Error);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int pos : {0, 1, 2}) {
    std::vector<float> v = {0.5f, -1.f, 2.f, 0.f, 0.f, 0.f};
    v[pos] = nan;
    Tensor xn = Tensor::from_vector({2, 3}, v);
    xn.set_requires_grad();
    Tensor L;
    CHECK_NOTHROW(L = cross_entropy(xn, {1, 2}));
    CHECK(std::isnan(L.item()));
    CHECK_NOTHROW(L.backward());
  }
  Tensor inf = Tensor::from_vector({1, 2}, {std::numeric_limits<float>::infinity(), 0.f});
  CHECK_NOTHROW(cross_entropy(inf, {1}));
}

TEST_CASE("squared_hinge and mse: hand-computed values") {
  // row 0 (label 0): t = [+1, -1, -1], y = [0.5, -2, 0.3]:
  //   max(0, 1 - t*y) = [0.5, 0, 1.3] -> squares 0.25 + 0 + 1.69
  // row 1 (label 2): t = [-1, -1, +1], y = [2, 0, -0.5]:
  //   max(0, 1 - t*y) = [3, 1, 1.5]  -> squares 9 + 1 + 2.25
  // mean over 6 = 14.19 / 6 = 2.365
  Tensor y = Tensor::from_vector({2, 3}, {0.5f, -2.f, 0.3f, 2.f, 0.f, -0.5f});
  y.set_requires_grad();
  Tensor L = squared_hinge(y, {0, 2});
  CHECK(L.item() == doctest::Approx(2.365).epsilon(1e-6));
  L.backward();
  // dL/dy = -2 t max(0, 1 - t y) / 6
  expect_near_vec(y.grad(), {-1.f / 6, 0.f, 2.6f / 6, 6.f / 6, 2.f / 6, -3.f / 6});

  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::from_vector({2, 2}, {1, 0, 5, 4});
  CHECK(mse(a, b).item() == doctest::Approx((0 + 4 + 4 + 0) / 4.0));
  CHECK_THROWS_WITH_AS(mse(a, Tensor::zeros({4})), doctest::Contains("mse: a is [2, 2] but b is [4]"), qnn::Error);
}

TEST_CASE("argmax_rows and count_correct") {
  Tensor x = Tensor::from_vector({3, 3}, {0, 5, 1, 7, 7, 2, -1, -3, -2});
  CHECK(argmax_rows(x) == std::vector<int32_t>{1, 0, 0});  // first index on ties
  CHECK(count_correct(x, {1, 1, 0}) == 2);
  CHECK(count_correct(x, {2, 1, 1}) == 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor xn = Tensor::from_vector({1, 3}, {nan, 1, 2});
  const auto p = argmax_rows(xn);
  CHECK(p[0] >= 0);
  CHECK(p[0] < 3);
}

// =============================================================================
// Dropout
// =============================================================================

TEST_CASE("grad: dropout with a fixed mask") {
  Rng rng(17);
  Tensor x = leaf({rint(rng, 2, 5), rint(rng, 3, 6)}, rng);
  expect_grad("dropout p=0.4",
              [](const std::vector<Tensor>& in) {
                Rng r(99);  // same seed every evaluation: same mask
                return dropout(in[0], 0.4f, true, r);
              },
              {x});
}

TEST_CASE("dropout: the mask does not depend on the thread count") {
  // Counter-based draws (Rng::stream_u24): element i's draw depends on the
  // call's key and i only, so 1 and 2 threads must drop the same elements.
  Tensor x = Tensor::ones({300, 1000});  // above the OpenMP threshold
  const int saved = omp_get_max_threads();
  Rng r1(9), r2(9);
  omp_set_num_threads(1);
  const auto a = dropout(x, 0.25f, true, r1).to_vector();
  omp_set_num_threads(std::max(2, saved));
  const auto b = dropout(x, 0.25f, true, r2).to_vector();
  omp_set_num_threads(saved);
  CHECK(a == b);
  // and two calls from one generator draw different masks
  CHECK(dropout(x, 0.25f, true, r1).to_vector() != a);
}

TEST_CASE("dropout: keep fraction, scaling, identity, errors") {
  Rng rng(18);
  Tensor x = Tensor::ones({1000, 100});
  const float p = 0.3f;
  Tensor y = dropout(x, p, true, rng);
  int64_t kept = 0;
  const float* py = y.data();
  bool values_ok = true;
  for (int64_t i = 0; i < y.numel(); ++i) {
    if (py[i] != 0.f) {
      ++kept;
      values_ok = values_ok && std::fabs(py[i] - 1.f / 0.7f) < 1e-6f;
    }
  }
  CHECK(values_ok);
  // 100000 Bernoulli(0.7) draws: standard deviation of the fraction is 0.00145
  CHECK((double)kept / y.numel() == doctest::Approx(0.7).epsilon(0.01 / 0.7));
  // the mean is preserved in expectation
  CHECK(mean(y).item() == doctest::Approx(1.0).epsilon(0.02));

  // identity: the very same tensor, no node
  Tensor xg = Tensor::ones({3, 3});
  xg.set_requires_grad();
  CHECK(dropout(xg, 0.5f, false, rng).same(xg));
  CHECK(dropout(xg, 0.0f, true, rng).same(xg));

  // reproducible from the seed
  Rng r1(5), r2(5);
  CHECK(dropout(x, 0.5f, true, r1).to_vector() == dropout(x, 0.5f, true, r2).to_vector());

  CHECK_THROWS_WITH_AS(dropout(x, 1.0f, true, rng), doctest::Contains("dropout: p"), qnn::Error);
  CHECK_THROWS_AS(dropout(x, -0.1f, true, rng), qnn::Error);
  CHECK_THROWS_AS(dropout(x, std::numeric_limits<float>::quiet_NaN(), true, rng), qnn::Error);
}

// =============================================================================
// Batch norm
// =============================================================================

TEST_CASE("grad: batch_norm, training and eval, [N,C] and [N,C,H,W], with and without affine") {
  Rng rng(19);
  const int64_t N = rint(rng, 3, 5), C = rint(rng, 2, 4), H = rint(rng, 2, 3), W = rint(rng, 1, 3);
  for (const Shape& s : {Shape{N, C}, Shape{N, C, H, W}, Shape{1, C, H, 2}}) {
    Tensor x = leaf(s, rng, -2, 3);
    Tensor gamma = leaf({C}, rng, 0.5, 2), beta = leaf({C}, rng);
    Tensor rm = Tensor::uniform({C}, -0.5, 0.5, rng), rv = Tensor::uniform({C}, 0.5, 2, rng);
    for (bool training : {true, false}) {
      const std::string tag = shape_str(s) + (training ? " training" : " eval");
      Fn affine = [=](const std::vector<Tensor>& in) {
        Tensor m = rm, v = rv;  // handles: training updates them in place (harmless here)
        return batch_norm(in[0], in[1], in[2], m, v, training, 0.1f, 1e-5f);
      };
      Fn plain = [=](const std::vector<Tensor>& in) {
        Tensor m = rm, v = rv;
        return batch_norm(in[0], Tensor(), Tensor(), m, v, training, 0.1f, 1e-5f);
      };
      // batch norm's outputs all move when one input moves: a bit more float noise
      GradCheckOpts o;
      o.atol = 3e-3;
      expect_grad("batch_norm affine " + tag, affine, {x, gamma, beta}, o);
      expect_grad("batch_norm no affine " + tag, plain, {x}, o);
      // only the parameters want gradients (x is a constant input)
      Tensor xc = x.detach().clone();
      expect_grad("batch_norm const x " + tag, affine, {xc, gamma, beta}, o);
    }
  }
}

TEST_CASE("batch_norm: values and running-stat update") {
  // channel 0: [1, 2, 3, 4]     mean 2.5, biased var 1.25, unbiased 5/3
  // channel 1: [10, 20, 30, 40] mean 25,  biased var 125,  unbiased 500/3
  Tensor x = Tensor::from_vector({4, 2}, {1, 10, 2, 20, 3, 30, 4, 40});
  Tensor gamma = Tensor::from_vector({2}, {2, 1});
  Tensor beta = Tensor::from_vector({2}, {1, -1});
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  Tensor y = batch_norm(x, gamma, beta, rm, rv, true, 0.1f, 0.f);
  // xhat column 0 = (x - 2.5)/sqrt(1.25) = [-1.3416408, -0.4472136, 0.4472136, 1.3416408], same for column 1
  const float a = 1.3416408f, b = 0.4472136f;
  expect_near_vec(y, {2 * -a + 1, -a - 1, 2 * -b + 1, -b - 1, 2 * b + 1, b - 1, 2 * a + 1, a - 1}, 1e-5f);
  // running = 0.9 * running + 0.1 * batch (unbiased variance)
  expect_near_vec(rm, {0.25f, 2.5f});
  expect_near_vec(rv, {0.9f + 0.1f * 5.f / 3.f, 0.9f + 0.1f * 500.f / 3.f}, 1e-4f);

  // evaluation uses the running statistics and leaves them alone
  Tensor ye = batch_norm(x, gamma, beta, rm, rv, false, 0.1f, 1e-5f);
  const float s0 = 1.f / std::sqrt(rv.at({0}) + 1e-5f), s1 = 1.f / std::sqrt(rv.at({1}) + 1e-5f);
  expect_near_vec(ye, {2 * (1 - 0.25f) * s0 + 1, (10 - 2.5f) * s1 - 1, 2 * (2 - 0.25f) * s0 + 1, (20 - 2.5f) * s1 - 1,
                       2 * (3 - 0.25f) * s0 + 1, (30 - 2.5f) * s1 - 1, 2 * (4 - 0.25f) * s0 + 1, (40 - 2.5f) * s1 - 1},
                  1e-4f);
  expect_near_vec(rm, {0.25f, 2.5f});

  // [N, C, H, W]: channel statistics pool over N, H and W
  Tensor x4 = Tensor::from_vector({2, 2, 1, 2}, {1, 3, 10, 10, 5, 7, 20, 20});
  Tensor m4 = Tensor::zeros({2}), v4 = Tensor::zeros({2});
  Tensor y4 = batch_norm(x4, Tensor(), Tensor(), m4, v4, true, 1.0f, 0.f);
  // channel 0: [1, 3, 5, 7] mean 4, biased var 5, unbiased 20/3; channel 1: [10, 10, 20, 20] mean 15, var 25
  expect_near_vec(m4, {4, 15});
  expect_near_vec(v4, {20.f / 3, 100.f / 3}, 1e-4f);
  const float r5 = 1.f / std::sqrt(5.f);
  expect_near_vec(y4, {-3 * r5, -r5, -1, -1, r5, 3 * r5, 1, 1}, 1e-5f);
}

TEST_CASE("batch_norm: large [N,C] matches a naive double reference, forward and backward") {
  // Big enough for the OpenMP paths (numel > 1<<16) and for several channel blocks.
  Rng rng(20);
  const int64_t N = 100, C = 700;
  Tensor x = Tensor::normal({N, C}, 3.f, 2.f, rng);
  x.set_requires_grad();
  Tensor gamma = Tensor::uniform({C}, 0.5f, 1.5f, rng);
  gamma.set_requires_grad();
  Tensor beta = Tensor::zeros({C});
  beta.set_requires_grad();
  Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
  Tensor y = batch_norm(x, gamma, beta, rm, rv, true, 0.1f, 1e-5f);
  Tensor dy = Tensor::normal({N, C}, 0.f, 1.f, rng);
  y.backward(dy);

  const float* px = x.data();
  const float* pd = dy.data();
  double max_y = 0, max_dx = 0, max_dg = 0;
  for (int64_t c = 0; c < C; ++c) {
    double mu = 0, var = 0;
    for (int64_t n = 0; n < N; ++n) mu += px[n * C + c];
    mu /= N;
    for (int64_t n = 0; n < N; ++n) var += (px[n * C + c] - mu) * (px[n * C + c] - mu);
    var /= N;
    const double is = 1.0 / std::sqrt(var + 1e-5), g = gamma.data()[c];
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < N; ++n) {
      const double xh = (px[n * C + c] - mu) * is;
      max_y = std::max(max_y, std::fabs(y.data()[n * C + c] - g * xh));
      sdy += pd[n * C + c];
      sdyx += pd[n * C + c] * xh;
    }
    max_dg = std::max(max_dg, std::fabs(gamma.grad().data()[c] - sdyx));
    for (int64_t n = 0; n < N; ++n) {
      const double xh = (px[n * C + c] - mu) * is;
      const double dx = g * is / N * (N * pd[n * C + c] - sdy - xh * sdyx);
      max_dx = std::max(max_dx, std::fabs(x.grad().data()[n * C + c] - dx));
    }
  }
  CHECK(max_y < 1e-4);
  CHECK(max_dx < 1e-4);
  CHECK(max_dg < 1e-3);
}

TEST_CASE("batch_norm: errors") {
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  CHECK_THROWS_WITH_AS(batch_norm(Tensor::ones({1, 3}), Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f),
                       doctest::Contains("batch_norm: training needs more than one value per channel"), qnn::Error);
  CHECK_NOTHROW(batch_norm(Tensor::ones({1, 3}), Tensor(), Tensor(), rm, rv, false, 0.1f, 1e-5f));
  CHECK_NOTHROW(batch_norm(Tensor::ones({1, 3, 2, 2}), Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f));
  CHECK_THROWS_WITH_AS(batch_norm(Tensor::ones({4, 3}), Tensor::ones({4}), Tensor(), rm, rv, true, 0.1f, 1e-5f),
                       doctest::Contains("batch_norm: gamma is [4]"), qnn::Error);
  CHECK_THROWS_AS(batch_norm(Tensor::ones({4, 3, 2}), Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f), qnn::Error);
  Tensor none;
  CHECK_THROWS_WITH_AS(batch_norm(Tensor::ones({4, 3}), Tensor(), Tensor(), none, none, false, 0.1f, 1e-5f),
                       doctest::Contains("running_mean"), qnn::Error);
}

// =============================================================================
// A small network end to end: the ops compose.
// =============================================================================

TEST_CASE("grad: linear -> batch_norm -> tanh -> dropout -> linear -> cross_entropy") {
  Rng rng(21);
  const int64_t N = 4, I = 3, Hd = 5, C = 3;
  Tensor x = leaf({N, I}, rng, -1, 1, false);
  Tensor W1 = leaf({Hd, I}, rng, -1, 1), b1 = leaf({Hd}, rng, -0.1f, 0.1f);
  Tensor g = leaf({Hd}, rng, 0.5, 0.9), be = leaf({Hd}, rng, -0.1f, 0.1f);
  Tensor W2 = leaf({C, Hd}, rng, -1, 1);
  const std::vector<int32_t> labels = rand_labels(N, C, rng);
  Tensor rm = Tensor::zeros({Hd}), rv = Tensor::ones({Hd});
  Fn net = [=](const std::vector<Tensor>& in) {
    Tensor m = rm, v = rv;
    Tensor h = batch_norm(linear(in[0], in[1], in[2]), in[3], in[4], m, v, true, 0.1f, 1e-5f);
    h = tanh(h);  // smooth: no kinks to dodge after batch norm
    Rng r(7);
    h = dropout(h, 0.25f, true, r);
    return cross_entropy(linear(h, in[5], Tensor()), labels);
  };
  GradCheckOpts o;
  o.atol = 1e-3;
  expect_grad("mlp", net, {x, W1, b1, g, be, W2}, o);
  {
    NoGradGuard ng;
    CHECK_FALSE(net({x, W1, b1, g, be, W2}).requires_grad());
  }
}

TEST_CASE("no node when nothing needs a gradient") {
  Tensor x = Tensor::ones({2, 3});
  CHECK_FALSE(sum(x).requires_grad());
  CHECK_FALSE(cross_entropy(x, {0, 1}).requires_grad());
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  CHECK_FALSE(batch_norm(x, Tensor(), Tensor(), rm, rv, false, 0.1f, 1e-5f).requires_grad());
  Tensor xg = Tensor::ones({2, 3});
  xg.set_requires_grad();
  {
    NoGradGuard ng;
    CHECK_FALSE(mean(xg, 1).requires_grad());
    CHECK_FALSE(concat({xg, xg}, 0).requires_grad());
  }
  CHECK(slice(xg, 1, 0, 2).requires_grad());
  MESSAGE("gradient elements checked so far: " << g_total_checked);
}
