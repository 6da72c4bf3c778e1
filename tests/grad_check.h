// tests/grad_check.h — the central-difference gradient checker and the small
// random-input helpers shared by the op test files (test_ops_grad.cpp,
// test_ops_conv.cpp, ...).
//
// The gradient checker, in one paragraph. For an op y = f(x1, x2, ...) pick
// a fixed random R of y's shape and the scalar L = sum(y * R), so every
// output element matters. Autograd gives dL/dx by y.backward(R). Finite
// differences give, for each input element v,
//   dL/dv ~ (L(v + h) - L(v - h)) / (2h)
// with L accumulated in double. The two must agree within
//   |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
// The checker also runs backward a second time and expects the gradients to
// double (backward must ADD), and expects inputs that do not require grad to
// receive none. QNN_GRADCHECK_VERBOSE=1 prints each check's margin.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace qnn::testing {


using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradCheckOpts {
  double h = 1e-3;     // finite-difference step (inputs are O(1) float32)
  double atol = 2e-3;  // absolute tolerance
  double rtol = 1e-2;  // relative tolerance
  uint64_t seed = 1234;
};

struct GradCheckResult {
  bool ok = true;
  int64_t checked = 0;  // number of input elements compared
  double worst = 0;     // largest err / tol seen (<= 1 passes)
  std::string msg;      // first failure, human readable
};

// Sum(y * R) in double, without recording.
inline double project(const Tensor& y, const Tensor& R) {
  const float* py = y.data();
  const float* pr = R.data();
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += (double)py[i] * (double)pr[i];
  return s;
}

inline GradCheckResult grad_check(const Fn& f, std::vector<Tensor> inputs, GradCheckOpts o = {}) {
  GradCheckResult res;
  auto failm = [&](const std::string& m) {
    if (res.ok) res.msg = m;
    res.ok = false;
  };
  for (Tensor& t : inputs) t.zero_grad();

  // 1. analytic gradient
  Tensor y = f(inputs);
  if (!y.requires_grad()) {
    failm("the op recorded no autograd node (output does not require grad)");
    return res;
  }
  Rng rng(o.seed);
  Tensor R = Tensor::normal(y.shape(), 0.f, 1.f, rng);
  y.backward(R);
  std::vector<std::vector<float>> analytic(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& t = inputs[k];
    if (!t.requires_grad()) {
      if (t.has_grad()) failm("input " + std::to_string(k) + " does not require grad but received one");
      continue;
    }
    analytic[k] = t.has_grad() ? t.grad().to_vector() : std::vector<float>(t.numel(), 0.f);
  }

  // 2. backward must accumulate: a second pass doubles the gradients
  {
    Tensor y2 = f(inputs);
    y2.backward(R);
    for (size_t k = 0; k < inputs.size() && res.ok; ++k) {
      if (!inputs[k].requires_grad()) continue;
      const std::vector<float> g2 =
          inputs[k].has_grad() ? inputs[k].grad().to_vector() : std::vector<float>(inputs[k].numel(), 0.f);
      for (size_t i = 0; i < g2.size(); ++i) {
        const double want = 2.0 * analytic[k][i];
        if (std::fabs(g2[i] - want) > 1e-5 + 1e-4 * std::fabs(want)) {
          std::ostringstream m;
          m << "backward does not accumulate: input " << k << " element " << i << " grad after two passes is "
            << g2[i] << ", expected " << want;
          failm(m.str());
          break;
        }
      }
    }
  }

  // 3. central differences
  NoGradGuard ng;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].requires_grad()) continue;
    float* p = inputs[k].data();
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      const float v = p[i];
      p[i] = (float)(v + o.h);
      const double hp = (double)p[i] - v;  // the step float32 actually took
      const double lp = project(f(inputs), R);
      p[i] = (float)(v - o.h);
      const double hm = v - (double)p[i];
      const double lm = project(f(inputs), R);
      p[i] = v;
      const double num = (lp - lm) / (hp + hm);
      const double ana = analytic[k][i];
      const double err = std::fabs(ana - num);
      const double tol = o.atol + o.rtol * std::max(std::fabs(ana), std::fabs(num));
      ++res.checked;
      res.worst = std::max(res.worst, err / tol);
      if (!(err <= tol)) {  // also catches NaN
        std::ostringstream m;
        m << "input " << k << " " << shape_str(inputs[k].shape()) << " element " << i << " (value " << v
          << "): analytic " << ana << " vs numeric " << num;
        failm(m.str());
      }
    }
  }
  return res;
}

inline int64_t g_total_checked = 0;

inline void expect_grad(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs, GradCheckOpts o = {}) {
  const GradCheckResult r = grad_check(f, inputs, o);
  g_total_checked += r.checked;
  if (std::getenv("QNN_GRADCHECK_VERBOSE"))  // margins per check: worst err/tol (<= 1 passes)
    std::printf("%-60s %4lld elements, worst err/tol %.3f\n", what.c_str(), (long long)r.checked, r.worst);
  CHECK_MESSAGE(r.ok, what << ": " << r.msg);
  CHECK_MESSAGE(r.checked > 0, what << ": nothing was checked");
}

// Random leaf with values in [lo, hi).
inline Tensor leaf(const Shape& s, Rng& rng, float lo = -2.f, float hi = 2.f, bool grad = true) {
  Tensor t = Tensor::uniform(s, lo, hi, rng);
  if (grad) t.set_requires_grad();
  return t;
}

// Push values at least `margin` away from each kink (nondifferentiable point).
inline Tensor away_from(Tensor t, std::initializer_list<float> kinks, float margin = 0.05f) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i)
    for (float k : kinks)
      if (std::fabs(p[i] - k) < margin) p[i] = p[i] >= k ? k + margin : k - margin;
  return t;
}

// Values in +-[lo, hi] (away from zero), for denominators.
inline Tensor leaf_nonzero(const Shape& s, Rng& rng, float lo = 0.5f, float hi = 2.f) {
  Tensor t = Tensor::uniform(s, lo, hi, rng);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (rng.uniform() < 0.5f) p[i] = -p[i];
  t.set_requires_grad();
  return t;
}

inline int64_t rint(Rng& rng, int64_t lo, int64_t hi) { return lo + (int64_t)rng.below((uint64_t)(hi - lo + 1)); }

inline std::vector<int32_t> rand_labels(int64_t N, int64_t C, Rng& rng) {
  std::vector<int32_t> l(N);
  for (auto& v : l) v = (int32_t)rng.below((uint64_t)C);
  return l;
}

inline void expect_near_vec(const Tensor& t, const std::vector<float>& want, float tol = 1e-5f) {
  const std::vector<float> got = t.to_vector();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK_MESSAGE(std::fabs(got[i] - want[i]) <= tol, "element " << i << ": " << got[i] << " vs " << want[i]);
}

}  // namespace qnn::testing
