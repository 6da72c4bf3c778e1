// tests/test_optim.cpp — optimizers, constraints, schedules, factories.
//
// The first steps of every optimizer are checked against numbers worked out
// in the test itself (the arithmetic is in the comments), then each optimizer
// minimises a small quadratic built with core ops end to end. How user
// constraints are honoured, and sharded updates: test_optim_constraints.cpp.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "layers/quant/constraints.h"
#include "optim/optim.h"
#include "tests/optim_test_util.h"

using namespace qnn;
using namespace qnn::test;

namespace {

bool is_power_of_two(float x) {
  int e = 0;
  return x > 0 && std::frexp(x, &e) == 0.5f;
}

}  // namespace

// ---- SGD ------------------------------------------------------------------------

TEST_CASE("sgd: plain steps p -= lr * g") {
  Tensor p = param({1.0f, -2.0f, 3.0f});
  SGD opt({p}, 0.1f);
  set_grad(p, {0.5f, 0.5f, -1.0f});
  opt.step();
  // 1 - 0.1*0.5 = 0.95; -2 - 0.05 = -2.05; 3 + 0.1 = 3.1
  CHECK(p.data()[0] == doctest::Approx(0.95f));
  CHECK(p.data()[1] == doctest::Approx(-2.05f));
  CHECK(p.data()[2] == doctest::Approx(3.1f));
  set_grad(p, {-1.0f, 0.0f, 2.0f});
  opt.step();
  // 0.95 + 0.1 = 1.05; -2.05 unchanged; 3.1 - 0.2 = 2.9
  CHECK(p.data()[0] == doctest::Approx(1.05f));
  CHECK(p.data()[1] == doctest::Approx(-2.05f));
  CHECK(p.data()[2] == doctest::Approx(2.9f));
  CHECK(opt.step_count() == 2);
  CHECK(opt.name() == "sgd");
}

TEST_CASE("sgd: momentum (PyTorch: first buffer = g)") {
  Tensor p = param({1.0f});
  SGD opt({p}, 0.1f, {.momentum = 0.9f});
  set_grad(p, {1.0f});
  opt.step();  // buf = 1;                 p = 1 - 0.1*1 = 0.9
  CHECK(p.item() == doctest::Approx(0.9f));
  set_grad(p, {2.0f});
  opt.step();  // buf = 0.9*1 + 2 = 2.9;   p = 0.9 - 0.29 = 0.61
  CHECK(p.item() == doctest::Approx(0.61f));
  set_grad(p, {0.0f});
  opt.step();  // buf = 0.9*2.9 = 2.61;    p = 0.61 - 0.261 = 0.349
  CHECK(p.item() == doctest::Approx(0.349f));
  CHECK(state_entry(opt, "0.momentum_buffer").item() == doctest::Approx(2.61f));
}

TEST_CASE("sgd: dampening") {
  Tensor p = param({0.0f});
  SGD opt({p}, 1.0f, {.momentum = 0.5f, .dampening = 0.25f});
  set_grad(p, {2.0f});
  opt.step();  // first: buf = g = 2 (no dampening on the first step); p = -2
  CHECK(p.item() == doctest::Approx(-2.0f));
  set_grad(p, {4.0f});
  opt.step();  // buf = 0.5*2 + 0.75*4 = 4; p = -6
  CHECK(p.item() == doctest::Approx(-6.0f));
}

TEST_CASE("sgd: nesterov") {
  Tensor p = param({1.0f});
  SGD opt({p}, 0.1f, {.momentum = 0.9f, .nesterov = true});
  set_grad(p, {1.0f});
  opt.step();  // buf = 1;   d = 1 + 0.9*1 = 1.9;      p = 1 - 0.19 = 0.81
  CHECK(p.item() == doctest::Approx(0.81f));
  set_grad(p, {2.0f});
  opt.step();  // buf = 0.9 + 2 = 2.9; d = 2 + 2.61 = 4.61; p = 0.81 - 0.461 = 0.349
  CHECK(p.item() == doctest::Approx(0.349f));
}

TEST_CASE("sgd: weight decay adds wd * p to the gradient") {
  Tensor p = param({2.0f, -1.0f});
  SGD opt({p}, 0.1f, {.weight_decay = 0.5f});
  set_grad(p, {1.0f, 0.0f});
  opt.step();  // g' = [1 + 1, 0 - 0.5] = [2, -0.5]; p = [2 - 0.2, -1 + 0.05] = [1.8, -0.95]
  CHECK(p.data()[0] == doctest::Approx(1.8f));
  CHECK(p.data()[1] == doctest::Approx(-0.95f));
  // with momentum: the decayed gradient goes into the buffer
  Tensor q = param({2.0f});
  SGD opt2({q}, 0.1f, {.momentum = 0.9f, .weight_decay = 0.5f});
  set_grad(q, {1.0f});
  opt2.step();  // g' = 2, buf = 2, q = 1.8
  set_grad(q, {1.0f});
  opt2.step();  // g' = 1 + 0.9 = 1.9, buf = 1.8 + 1.9 = 3.7, q = 1.8 - 0.37 = 1.43
  CHECK(q.item() == doctest::Approx(1.43f));
}

TEST_CASE("sgd: invalid hyper-parameters") {
  Tensor p = param({1.0f});
  CHECK_THROWS_AS(SGD({p}, 0.1f, {.nesterov = true}), Error);                 // no momentum
  CHECK_THROWS_AS(SGD({p}, 0.1f, {.momentum = 0.9f, .dampening = 0.1f, .nesterov = true}), Error);
  CHECK_THROWS_AS(SGD({p}, -0.1f), Error);
  CHECK_THROWS_AS(SGD({p}, 0.1f, {.momentum = -1.0f}), Error);
  CHECK_THROWS_AS(SGD({p}, 0.1f, {.weight_decay = -1.0f}), Error);
  CHECK_THROWS_AS(SGD({p, p}, 0.1f), Error);  // same tensor twice
}

// ---- Adam -----------------------------------------------------------------------

TEST_CASE("adam: first two steps by hand") {
  Tensor p = param({1.0f, -1.0f, 0.5f});
  Adam opt({p}, 0.1f);  // beta1 0.9, beta2 0.999, eps 1e-8
  CHECK(opt.name() == "adam");
  set_grad(p, {0.2f, -0.4f, 0.0f});
  opt.step();
  // t = 1: m = 0.1 g, v = 0.001 g^2, bias corrections 0.1 and 0.001, so
  // m_hat = g, sqrt(v_hat) = |g| and the step is lr * g / (|g| + eps):
  //   p0 = 1 - 0.1 * 0.2 / (0.2 + 1e-8)  = 0.9 + 5e-9
  //   p1 = -1 + 0.1 * 0.4 / (0.4 + 1e-8) = -0.9
  //   p2 = 0.5 (zero gradient: m = v = 0, no move)
  CHECK(p.data()[0] == doctest::Approx(0.9f).epsilon(1e-6));
  CHECK(p.data()[1] == doctest::Approx(-0.9f).epsilon(1e-6));
  CHECK(p.data()[2] == 0.5f);
  CHECK(state_entry(opt, "0.exp_avg").data()[0] == doctest::Approx(0.02f));
  CHECK(state_entry(opt, "0.exp_avg_sq").data()[1] == doctest::Approx(0.00016f));

  set_grad(p, {-0.1f, -0.4f, 0.3f});
  opt.step();
  // t = 2: bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999
  // element 0: m = 0.9*0.02 + 0.1*(-0.1) = 0.008
  //            v = 0.999*0.00004 + 0.001*0.01 = 0.00004996
  //            step = 0.1 * (0.008/0.19) / (sqrt(0.00004996/0.001999) + 1e-8)
  //                 = 0.1 * 0.0421052632 / 0.1580901580 = 0.0266338...
  //            p0 = 0.9 - 0.0266338 = 0.8733662
  // element 1: g repeats, m = -0.04*0.9 - 0.04 = -0.076, v = 0.00016*0.999 + 0.00016 = 0.00031984
  //            m_hat = -0.4, sqrt(v_hat) = sqrt(0.16) = 0.4: step = -0.1 -> p1 = -0.8
  // element 2: m = 0.03, v = 0.00009; m_hat = 0.157894737, sqrt(v_hat) = 0.212185...
  //            step = 0.1 * 0.157894737 / 0.2121851 = 0.0744137 -> p2 = 0.4255863
  const double s0 = 0.1 * (0.008 / 0.19) / (std::sqrt(0.00004996 / 0.001999) + 1e-8);
  const double s2 = 0.1 * (0.03 / 0.19) / (std::sqrt(0.00009 / 0.001999) + 1e-8);
  CHECK(s0 == doctest::Approx(0.0266338).epsilon(1e-5));
  CHECK(s2 == doctest::Approx(0.0744137).epsilon(1e-5));
  CHECK(p.data()[0] == doctest::Approx(0.9 - s0).epsilon(1e-6));
  CHECK(p.data()[1] == doctest::Approx(-0.8f).epsilon(1e-6));
  CHECK(p.data()[2] == doctest::Approx(0.5 - s2).epsilon(1e-6));
}

TEST_CASE("adam: eps sits outside the square root, after bias correction") {
  // One step with g tiny compared to eps: step = lr * g / (|g| + eps).
  Tensor p = param({0.0f});
  Adam opt({p}, 1.0f, {.eps = 1e-3f});
  set_grad(p, {1e-3f});
  opt.step();  // 1e-3 / (1e-3 + 1e-3) = 0.5
  CHECK(p.item() == doctest::Approx(-0.5f).epsilon(1e-5));
}

TEST_CASE("adam: weight decay (L2 into the gradient)") {
  Tensor p = param({2.0f});
  Adam opt({p}, 0.1f, {.weight_decay = 0.5f});
  set_grad(p, {-0.5f});
  opt.step();  // g' = -0.5 + 1 = 0.5 > 0: first Adam step moves by -lr*sign(g') -> 1.9
  CHECK(p.item() == doctest::Approx(1.9f).epsilon(1e-6));
  CHECK(state_entry(opt, "0.exp_avg").item() == doctest::Approx(0.05f));
}

TEST_CASE("adamw: decoupled decay shrinks p by lr * wd and stays out of m and v") {
  Tensor p = param({2.0f, -1.0f});
  Adam opt({p}, 0.1f, {.weight_decay = 0.5f, .decoupled = true});
  CHECK(opt.name() == "adamw");
  set_grad(p, {-0.5f, 0.0f});
  opt.step();
  // p0: 2 * (1 - 0.1 * 0.5) = 1.9, then the first Adam step -lr * g / |g| = +0.1 -> 2.0
  //     (Adam's L2 would have used g' = -0.5 + 1 = +0.5 and moved it to 1.9).
  // p1: zero gradient, so only the decay: -1 * 0.95 = -0.95.
  CHECK(p.data()[0] == doctest::Approx(2.0f).epsilon(1e-6));
  CHECK(p.data()[1] == doctest::Approx(-0.95f).epsilon(1e-6));
  CHECK(state_entry(opt, "0.exp_avg").data()[0] == doctest::Approx(-0.05f));     // 0.1 * g, no decay term
  CHECK(state_entry(opt, "0.exp_avg_sq").data()[0] == doctest::Approx(0.00025f));  // 0.001 * g^2
  CHECK(state_entry(opt, "0.exp_avg").data()[1] == 0.0f);

  // The decay follows the effective LR: a second step at lr 0.01 shrinks by 1 - 0.005.
  opt.set_lr(0.01f);
  set_grad(p, {0.0f, 0.0f});
  const float before = p.data()[1];
  opt.step();
  // m = 0.9 * 0 = 0 and v = 0 for element 1: only the decay moves it.
  CHECK(p.data()[1] == doctest::Approx(before * 0.995f).epsilon(1e-6));
}

TEST_CASE("adamw: weight decay 0 gives Adam's bits; lr * wd > 1 is refused") {
  Rng rng(3);
  std::vector<float> v0(37), g(37);
  for (auto& x : v0) x = rng.uniform(-1.0f, 1.0f);
  for (auto& x : g) x = rng.uniform(-1.0f, 1.0f);
  Tensor a = param(v0), b = param(v0);
  Adam adam({a}, 0.01f), adamw({b}, 0.01f, {.decoupled = true});
  for (int s = 0; s < 3; ++s) {
    set_grad(a, g);
    set_grad(b, g);
    adam.step();
    adamw.step();
  }
  CHECK(std::memcmp(a.data(), b.data(), 37 * sizeof(float)) == 0);

  Tensor c = param({1.0f});
  Adam bad({c}, 1.0f, {.weight_decay = 2.0f, .decoupled = true});
  set_grad(c, {0.1f});
  try {
    bad.step();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("flip the sign") != std::string::npos);
  }
}

TEST_CASE("adam: large tensors (OpenMP path) match the small-tensor arithmetic") {
  const int64_t n = 1 << 17;  // above the parallel threshold
  Rng rng(7);
  Tensor big = Tensor::uniform({n}, -1.0f, 1.0f, rng);
  big.set_requires_grad(true);
  std::vector<float> g(n);
  for (auto& x : g) x = rng.uniform(-1.0f, 1.0f);
  const std::vector<float> p0 = big.to_vector();
  Adam opt({big}, 0.01f);
  set_grad(big, g);
  opt.step();
  // t = 1: p - lr * g / (|g| + eps), elementwise
  for (int64_t i = 0; i < n; i += 977)
    CHECK(big.data()[i] == doctest::Approx(p0[i] - 0.01f * g[i] / (std::fabs(g[i]) + 1e-8f)).epsilon(1e-5));
}

// ---- AdaMax ---------------------------------------------------------------------

TEST_CASE("adamax: first three steps by hand") {
  Tensor p = param({0.5f});
  AdaMax opt({p}, 0.01f);  // beta1 0.9, beta2 0.999, eps 1e-8
  CHECK(opt.name() == "adamax");
  set_grad(p, {0.3f});
  opt.step();
  // m = 0.03, u = max(0, 0.3) = 0.3; step = 0.01/0.1 * 0.03/0.3 = 0.01 -> 0.49
  CHECK(p.item() == doctest::Approx(0.49f).epsilon(1e-6));
  set_grad(p, {-0.6f});
  opt.step();
  // m = 0.027 - 0.06 = -0.033, u = max(0.2997, 0.6) = 0.6, bc1 = 0.19
  // step = 0.01/0.19 * (-0.033/0.6) = -0.00289474 -> 0.49289474
  CHECK(p.item() == doctest::Approx(0.49 + 0.01 / 0.19 * 0.033 / 0.6).epsilon(1e-6));
  set_grad(p, {0.1f});
  opt.step();
  // m = -0.0297 + 0.01 = -0.0197, u = max(0.5994, 0.1) = 0.5994 (the decay wins),
  // bc1 = 1 - 0.729 = 0.271; step = 0.01/0.271 * (-0.0197/0.5994) = -0.00121277
  CHECK(state_entry(opt, "0.exp_inf").item() == doctest::Approx(0.5994f));
  CHECK(p.item() == doctest::Approx(0.49 + 0.01 / 0.19 * 0.033 / 0.6 + 0.01 / 0.271 * 0.0197 / 0.5994).epsilon(1e-6));
}

// ---- shift-based AdaMax ---------------------------------------------------------

TEST_CASE("adamax-shift: fast AP2 equals core ap2") {
  // Boundaries around sqrt(2) and powers of two, then random bit patterns.
  const float sqrt2_lo = std::bit_cast<float>(0x3FB504F3u), sqrt2_hi = std::bit_cast<float>(0x3FB504F4u);
  CHECK(detail::ap2_nonneg(sqrt2_lo) == 1.0f);
  CHECK(detail::ap2_nonneg(sqrt2_hi) == 2.0f);
  CHECK(ap2(sqrt2_lo) == 1.0f);
  CHECK(ap2(sqrt2_hi) == 2.0f);
  CHECK(detail::ap2_nonneg(0.0f) == 0x1p-126f);
  CHECK(detail::ap2_nonneg(3.0f) == 4.0f);
  CHECK(detail::ap2_nonneg(0.3f) == 0.25f);
  Rng rng(1);
  int bad = 0;
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = (uint32_t)(rng.next_u64() >> 33);  // sign bit 0
    if ((bits & 0x7F800000u) == 0x7F800000u) continue;  // inf / NaN
    const float x = std::bit_cast<float>(bits);
    if (detail::ap2_nonneg(x) != ap2(x)) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("adamax-shift: defaults, hand-computed steps, updates are shifts of m") {
  Tensor p = param({0.0f, 0.0f});
  ShiftAdaMax opt({p});
  CHECK(opt.name() == "adamax-shift");
  CHECK(opt.lr() == 0x1p-10f);
  CHECK(opt.options().beta1 == 0.875f);
  CHECK(opt.options().beta2 == 1.0f - 0x1p-10f);
  CHECK(opt.options().eps == 0x1p-27f);

  set_grad(p, {0.3f, -3.0f});
  opt.step();
  // t = 1: step size = lr / (1 - 0.875) = 2^-10 / 2^-3 = 2^-7, already a power of two.
  // element 0: m = 0.125*0.3 = 0.0375, u = 0.3, AP2(0.3) = 2^round(-1.737) = 2^-2
  //            delta = 2^-7 * 0.0375 / 2^-2 = 0.0375 * 2^-5 = 0.001171875
  // element 1: m = -0.375, u = 3, AP2(3) = 2^round(1.585) = 4
  //            delta = 2^-7 * -0.375 / 4 = -0.375 * 2^-9
  const float m0 = 0.125f * 0.3f, m1 = 0.125f * -3.0f;
  CHECK(state_entry(opt, "0.exp_avg").data()[0] == m0);
  CHECK(p.data()[0] == -m0 * 0x1p-5f);
  CHECK(p.data()[1] == -m1 * 0x1p-9f);
  CHECK(p.data()[0] == doctest::Approx(-0.001171875f));
  // p started at 0, so -p / m is exactly the shift factor: a power of two
  CHECK(is_power_of_two(-p.data()[0] / m0));
  CHECK(is_power_of_two(-p.data()[1] / m1));

  const float p0 = p.data()[0];
  set_grad(p, {-0.6f, 0.0f});
  opt.step();
  // t = 2: lr / (1 - 0.875^2) = 2^-10 / 0.234375 = 0.0041667 = 2^-7.907 -> AP2 = 2^-8
  // element 0: m = 0.875*0.0375 - 0.075 = -0.0421875, u = max(0.29971, 0.6) = 0.6 -> AP2 = 2^-1
  //            delta = 2^-8 * m / 2^-1 = m * 2^-7
  const float m0b = state_entry(opt, "0.exp_avg").data()[0];
  CHECK(m0b == doctest::Approx(-0.0421875f));
  CHECK(p.data()[0] == p0 - m0b * 0x1p-7f);
  CHECK(ap2(0x1p-10f / (1.0f - 0.875f * 0.875f)) == 0x1p-8f);
}

TEST_CASE("adamax-shift: lr_scale multiplies the rounded step (Torch7 GLRvec)") {
  Tensor p = param({0.0f});
  p.param_attrs().lr_scale = 3.0f;
  ShiftAdaMax opt({p}, 0x1p-10f);
  set_grad(p, {0.3f});
  opt.step();  // as above, times 3
  CHECK(p.item() == -3.0f * (0.125f * 0.3f) * 0x1p-5f);
}

// ---- what the base class does for every optimizer ---------------------------------

TEST_CASE("base: lr_scale is honoured by every optimizer") {
  for (const char* name : {"sgd", "adam", "adamax"}) {
    CAPTURE(name);
    Tensor a = param({0.0f}), b = param({0.0f});
    b.param_attrs().lr_scale = 2.5f;
    auto opt = make_optimizer(name, {a, b}, 0.01f);
    set_grad(a, {0.5f});
    set_grad(b, {0.5f});
    opt->step();
    // identical gradients and state: b moved exactly 2.5x as far as a
    CHECK(a.item() < 0.0f);
    CHECK(b.item() == doctest::Approx(2.5f * a.item()).epsilon(1e-6));
  }
}

TEST_CASE("base: the constraint runs after the update") {
  Tensor p = param({0.95f, -0.5f, 0.0f});
  p.param_attrs().constraint = clip_pm1;
  p.param_attrs().constraint_name = "clip[-1,1]";
  SGD opt({p}, 0.1f);
  set_grad(p, {-1.0f, 20.0f, 1.0f});
  opt.step();  // unconstrained: [1.05, -2.5, -0.1] -> clipped [1, -1, -0.1]
  CHECK(p.data()[0] == 1.0f);
  CHECK(p.data()[1] == -1.0f);
  CHECK(p.data()[2] == doctest::Approx(-0.1f));

  // It sees the updated values (not the old ones), once per tensor.
  Tensor q = param({0.0f, 0.0f});
  std::vector<float> seen;
  int calls = 0;
  q.param_attrs().constraint = [&](float* w, int64_t n) {
    ++calls;
    seen.assign(w, w + n);
  };
  Adam adam({q}, 0.1f);
  set_grad(q, {1.0f, -1.0f});
  adam.step();
  CHECK(calls == 1);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == doctest::Approx(-0.1f).epsilon(1e-5));
  CHECK(seen[1] == doctest::Approx(0.1f).epsilon(1e-5));
}

TEST_CASE("base: the layers' Clip constraint (layers/quant/constraints.h) is applied by every optimizer") {
  for (const char* name : {"sgd", "adam", "adamax", "adamax-shift"}) {
    CAPTURE(name);
    Tensor w = param({0.999f, -0.999f, 0.5f});
    Clip{-1.0f, 1.0f}.attach(w);
    auto opt = make_optimizer(name, {w}, 0.5f);
    set_grad(w, {-1.0f, 1.0f, 0.0f});  // pushes w0 up and w1 down, past the bounds
    opt->step();
    CHECK(w.data()[0] == 1.0f);
    CHECK(w.data()[1] == -1.0f);
    CHECK(w.data()[2] == 0.5f);
  }
}

TEST_CASE("base: parameters without a gradient are skipped (and keep their own step count)") {
  Tensor a = param({1.0f}), b = param({1.0f});
  int b_constraint_calls = 0;
  b.param_attrs().constraint = [&](float*, int64_t) { ++b_constraint_calls; };
  Adam opt({a, b}, 0.1f);
  set_grad(a, {1.0f});
  opt.step();
  opt.step();
  CHECK(b.item() == 1.0f);
  CHECK(b_constraint_calls == 0);
  CHECK_FALSE(state_entry(opt, "1.step").defined());
  CHECK(state_entry(opt, "0.step").item() == 2.0f);
  // b's first update is its step 1: bias-corrected, moves by ~lr * sign(g)
  set_grad(b, {-3.0f});
  opt.step();
  CHECK(b.item() == doctest::Approx(1.1f).epsilon(1e-6));
  CHECK(state_entry(opt, "1.step").item() == 1.0f);
  CHECK(opt.step_count() == 3);
}

TEST_CASE("base: zero_grad drops gradients; set_lr") {
  Tensor a = param({1.0f, 2.0f}), b = param({3.0f});
  SGD opt({a, b}, 0.1f);
  set_grad(a, {1.0f, 1.0f});
  set_grad(b, {1.0f});
  opt.zero_grad();
  CHECK_FALSE(a.has_grad());
  CHECK_FALSE(b.has_grad());
  opt.step();  // nothing to do
  CHECK((a.to_vector() == std::vector<float>{1.0f, 2.0f}));
  opt.set_lr(0.5f);
  CHECK(opt.lr() == 0.5f);
  set_grad(b, {1.0f});
  opt.step();
  CHECK(b.item() == doctest::Approx(2.5f));
  CHECK_THROWS_AS(opt.set_lr(-1.0f), Error);
  CHECK_THROWS_AS(opt.set_lr(NAN), Error);
}

TEST_CASE("base: state() / load_state() resume training exactly") {
  for (const char* name : {"sgd", "adam", "adamax", "adamax-shift"}) {
    CAPTURE(name);
    OptimizerConfig cfg;
    if (std::string(name) == "sgd") cfg.momentum = 0.9f;
    const std::vector<std::vector<float>> grads = {{0.3f, -0.2f}, {-0.1f, 0.5f}, {0.2f, 0.2f}};
    // Reference: three uninterrupted steps.
    Tensor a = param({0.1f, -0.3f});
    auto ref = make_optimizer(name, {a}, 0.05f, cfg);
    for (auto& g : grads) {
      set_grad(a, g);
      ref->step();
    }
    // Two steps, checkpoint (copies), fresh optimizer, restore, third step.
    Tensor b = param({0.1f, -0.3f});
    auto first = make_optimizer(name, {b}, 0.05f, cfg);
    for (int i = 0; i < 2; ++i) {
      set_grad(b, grads[i]);
      first->step();
    }
    std::vector<std::pair<std::string, Tensor>> saved;
    for (auto& [k, t] : first->state()) saved.emplace_back(k, t.clone());
    Tensor c = param({0.0f, 0.0f});
    c.copy_from(b);
    auto second = make_optimizer(name, {c}, 0.05f, cfg);
    second->load_state(saved);
    CHECK(second->step_count() == 2);
    set_grad(c, grads[2]);
    second->step();
    CHECK(c.to_vector() == a.to_vector());
  }
}

TEST_CASE("base: load_state errors are clear") {
  Tensor p = param({1.0f, 2.0f});
  Adam opt({p}, 0.1f);
  auto msg = [&](std::vector<std::pair<std::string, Tensor>> s) {
    try {
      opt.load_state(s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(msg({{"0.momentum_buffer", Tensor::zeros({2})}}).find("unknown entry '0.momentum_buffer'") != std::string::npos);
  CHECK(msg({{"junk", Tensor::zeros({2})}}).find("unknown entry 'junk'") != std::string::npos);
  CHECK(msg({{"5.exp_avg", Tensor::zeros({2})}}).find("has 1 parameters") != std::string::npos);
  CHECK(msg({{"0.exp_avg", Tensor::zeros({3})}}).find("has shape") != std::string::npos);
  CHECK(msg({{"0.exp_avg", Tensor::zeros({2})}, {"0.step", Tensor::scalar(4.0f)}}) == "no error");
}

// ---- factory ----------------------------------------------------------------------

TEST_CASE("make_optimizer: names, defaults and errors") {
  Tensor p = param({1.0f});
  CHECK(make_optimizer("sgd", {p}, 0.1f)->name() == "sgd");
  CHECK(make_optimizer("adam", {p}, 0.1f)->name() == "adam");
  CHECK(make_optimizer("adamw", {p}, 0.1f)->name() == "adamw");
  CHECK(dynamic_cast<Adam&>(*make_optimizer("adamw", {p}, 0.1f, {.weight_decay = 0.01f})).options().weight_decay ==
        0.01f);
  CHECK(make_optimizer("adamax", {p}, 0.1f)->name() == "adamax");
  CHECK(make_optimizer("adamax-shift", {p}, 0.1f)->name() == "adamax-shift");
  auto adam = make_optimizer("adam", {p}, 0.1f, {.beta1 = 0.5f});
  CHECK(dynamic_cast<Adam&>(*adam).options().beta1 == 0.5f);
  CHECK(dynamic_cast<Adam&>(*adam).options().beta2 == 0.999f);  // default kept

  try {
    make_optimizer("rmsprop", {p}, 0.1f);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string w = e.what();
    CHECK(w.find("unknown optimizer 'rmsprop'") != std::string::npos);
    CHECK(w.find("sgd, adam, adamw, adamax, adamax-shift") != std::string::npos);
  }
  CHECK_THROWS_AS(make_optimizer("adam", {p}, 0.1f, {.momentum = 0.9f}), Error);
  CHECK_THROWS_AS(make_optimizer("sgd", {p}, 0.1f, {.beta1 = 0.9f}), Error);
  CHECK_THROWS_AS(make_optimizer("adam", {p}, 0.1f, {.beta1 = 1.0f}), Error);
  CHECK_THROWS_AS(make_optimizer("adamax", {p}, 0.1f, {.beta2 = -0.1f}), Error);
  CHECK_THROWS_AS(make_optimizer("adamax-shift", {p}, 0.1f, {.eps = -1.0f}), Error);
  CHECK_THROWS_AS(make_optimizer("adam", {Tensor()}, 0.1f), Error);
}

// ---- schedules --------------------------------------------------------------------

TEST_CASE("schedules: values at a few epochs") {
  ConstantLR c(0.01f);
  CHECK(c.lr_at(0) == 0.01f);
  CHECK(c.lr_at(999) == 0.01f);

  StepLR s(0.1f, 10, 0.5f);  // 0.1 for epochs 0-9, 0.05 for 10-19, 0.025 for 20-29
  CHECK(s.lr_at(0) == doctest::Approx(0.1f));
  CHECK(s.lr_at(9) == doctest::Approx(0.1f));
  CHECK(s.lr_at(10) == doctest::Approx(0.05f));
  CHECK(s.lr_at(25) == doctest::Approx(0.025f));

  CosineLR cos(1.0f, 0.0f, 5);  // e / 4 in {0, .25, .5, .75, 1}
  CHECK(cos.lr_at(0) == doctest::Approx(1.0f));
  CHECK(cos.lr_at(1) == doctest::Approx((1 + std::cos(std::numbers::pi / 4)) / 2));  // 0.8535534
  CHECK(cos.lr_at(2) == doctest::Approx(0.5f));
  CHECK(cos.lr_at(4) == doctest::Approx(0.0f));
  CHECK(cos.lr_at(10) == doctest::Approx(0.0f));  // stays at lr_min
  CosineLR cos2(0.1f, 0.01f, 3);
  CHECK(cos2.lr_at(1) == doctest::Approx(0.055f));

  // The BinaryNet MNIST schedule: 3e-3 -> 3e-7 over 1000 epochs, ratio 1e-4,
  // so lr(e) = 3e-3 * 10^(-4 e / 999).
  ExponentialLR e(3e-3f, 3e-7f, 1000);
  CHECK(e.lr_at(0) == doctest::Approx(3e-3f));
  CHECK(e.lr_at(999) == doctest::Approx(3e-7f));
  CHECK(e.lr_at(1) == doctest::Approx(3e-3 * std::pow(10.0, -4.0 / 999)));
  CHECK(e.lr_at(333) == doctest::Approx(3e-3 * std::pow(10.0, -4.0 / 3)));
  CHECK(e.lr_at(2000) == doctest::Approx(3e-7f));
  // each epoch multiplies by the same factor
  CHECK(e.lr_at(501) / e.lr_at(500) == doctest::Approx(e.lr_at(11) / e.lr_at(10)));
  ExponentialLR one(0.1f, 0.001f, 1);
  CHECK(one.lr_at(0) == doctest::Approx(0.1f));
  ExponentialLR three(1.0f, 0.01f, 3);  // 1, 0.1, 0.01
  CHECK(three.lr_at(1) == doctest::Approx(0.1f));
  CHECK(three.lr_at(2) == doctest::Approx(0.01f));

  CHECK_THROWS_AS(e.lr_at(-1), Error);
}

TEST_CASE("make_schedule: names and errors") {
  CHECK(make_schedule("constant", {.lr = 0.5f})->lr_at(7) == 0.5f);
  CHECK(make_schedule("step", {.lr = 1.0f, .step_size = 2, .gamma = 0.1f})->lr_at(2) == doctest::Approx(0.1f));
  CHECK(make_schedule("cosine", {.lr = 1.0f, .lr_end = 0.0f, .total_epochs = 3})->lr_at(1) == doctest::Approx(0.5f));
  auto ex = make_schedule("exp", {.lr = 3e-3f, .lr_end = 3e-7f, .total_epochs = 10});
  CHECK(ex->name() == "exponential");
  CHECK(ex->lr_at(9) == doctest::Approx(3e-7f));
  CHECK(make_schedule("exponential", {.lr = 1.0f, .lr_end = 0.5f, .total_epochs = 2})->lr_at(1) == doctest::Approx(0.5f));
  try {
    make_schedule("linear", {});
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string w = e.what();
    CHECK(w.find("unknown schedule 'linear'") != std::string::npos);
    CHECK(w.find("constant, step, cosine, exponential") != std::string::npos);
  }
  CHECK_THROWS_AS(make_schedule("step", {.step_size = 0}), Error);
  CHECK_THROWS_AS(make_schedule("exp", {.lr = 1e-3f, .lr_end = 0.0f, .total_epochs = 10}), Error);  // log of 0
  CHECK_THROWS_AS(make_schedule("cosine", {.total_epochs = 0}), Error);
}

// ---- integration: minimise sum((w - c)^2) with core ops ---------------------------

namespace {
// Runs `epochs` x 20 steps on L(w) = sum((w - c)^2), lr from the schedule.
std::vector<float> minimise(const std::string& name, const OptimizerConfig& cfg, const LrSchedule& sched,
                            const std::vector<float>& target, bool clip, int epochs) {
  Tensor w = param(std::vector<float>(target.size(), 0.0f));
  if (clip) w.param_attrs().constraint = clip_pm1;
  const Tensor c = Tensor::from_vector({(int64_t)target.size()}, target);
  auto opt = make_optimizer(name, {w}, sched.lr_at(0), cfg);
  for (int e = 0; e < epochs; ++e) {
    opt->set_lr(sched.lr_at(e));
    for (int i = 0; i < 20; ++i) {
      opt->zero_grad();
      Tensor loss = sum(square(sub(w, c)));
      loss.backward();
      opt->step();
    }
  }
  return w.to_vector();
}
}  // namespace

TEST_CASE("integration: every optimizer reaches the minimum of a quadratic") {
  const std::vector<float> target = {0.5f, -0.25f, 0.75f, -0.6f};
  struct Case {
    const char* name;
    OptimizerConfig cfg;
    float lr_start, lr_end;
  };
  const Case cases[] = {
      {"sgd", {}, 0.1f, 0.01f},
      {"sgd", {.momentum = 0.9f, .nesterov = true}, 0.05f, 0.005f},
      {"adam", {}, 0.05f, 1e-4f},
      {"adamax", {}, 0.05f, 1e-4f},
      {"adamax-shift", {}, 0x1p-5f, 0x1p-14f},
  };
  for (const auto& k : cases) {
    CAPTURE(k.name);
    CAPTURE(k.cfg.momentum);
    ExponentialLR sched(k.lr_start, k.lr_end, 50);
    const auto w = minimise(k.name, k.cfg, sched, target, false, 50);
    for (size_t i = 0; i < w.size(); ++i) CHECK(std::fabs(w[i] - target[i]) < 2e-3f);
  }
}

TEST_CASE("integration: the clip constraint holds a weight whose optimum is outside [-1, 1]") {
  const std::vector<float> target = {1.5f, -3.0f, 0.25f};
  for (const char* name : {"sgd", "adam", "adamax", "adamax-shift"}) {
    CAPTURE(name);
    ConstantLR sched(std::string(name) == "adamax-shift" ? 0x1p-6f : 0.02f);
    const auto w = minimise(name, {}, sched, target, true, 30);
    CHECK(w[0] == 1.0f);
    CHECK(w[1] == -1.0f);
    CHECK(w[2] == doctest::Approx(0.25f).epsilon(0.05));
  }
}

TEST_CASE("adam: the fused clip (a Clip constraint) gives the same bits as update-then-clip") {
  // Two copies of one parameter: `fused` carries Clip{-0.05, 0.05} (Adam
  // applies it inside its update loop); `apart` carries the same clip as an
  // opaque constraint, so the base class runs it after the update. Large
  // enough for the OpenMP path, bounds tight enough that many weights hit them.
  const int64_t n = (1 << 16) + 7;
  Rng rng(3);
  std::vector<float> w0(n), g(n);
  for (auto& v : w0) v = rng.uniform(-0.06f, 0.06f);
  Tensor fused = param(w0), apart = param(w0);
  Clip{-0.05f, 0.05f}.attach(fused);
  REQUIRE(as_clip(fused.param_attrs().constraint) != nullptr);  // the fused path
  REQUIRE(as_clip(apart.param_attrs().constraint) == nullptr);
  apart.param_attrs().constraint = [](float* w, int64_t m) { Clip{-0.05f, 0.05f}(w, m); };
  REQUIRE(as_clip(apart.param_attrs().constraint) == nullptr);  // the separate pass
  Adam a({fused}, 0.01f), b({apart}, 0.01f);
  int64_t at_bound = 0;
  for (int step = 0; step < 4; ++step) {
    for (auto& v : g) v = rng.uniform(-1.f, 1.f);
    set_grad(fused, g);
    set_grad(apart, g);
    a.step();
    b.step();
  }
  bool same = true;
  for (int64_t i = 0; i < n; ++i) {
    same = same && std::memcmp(&fused.data()[i], &apart.data()[i], sizeof(float)) == 0;
    at_bound += std::fabs(fused.data()[i]) == 0.05f;
  }
  CHECK(same);
  CHECK(at_bound > n / 10);
}
