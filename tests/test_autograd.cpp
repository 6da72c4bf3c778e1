// Autograd engine: accumulation, shared sub-expressions, deep graphs, no-grad.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "core/tensor.h"

using namespace qnn;

TEST_CASE("shared sub-expression: gradients from both uses add up") {
  // y = x*x + x  ->  dy/dx = 2x + 1
  Tensor x = Tensor::from_vector({3}, {1, -2, 0.5f}).set_requires_grad();
  Tensor y = sum(x * x + x);
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<float>{3, -3, 2});
}

TEST_CASE("diamond graph: one intermediate used twice") {
  // h = 3x; y = h*h + h  ->  dy/dx = 3(2h + 1) = 18x + 3
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor h = x * 3.f;
  Tensor y = sum(h * h + h);
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<float>{21, 39});
}

TEST_CASE("gradients accumulate across backward calls until zero_grad") {
  Tensor x = Tensor::from_vector({1}, {2}).set_requires_grad();
  sum(x * x).backward();
  sum(x * x).backward();
  CHECK(x.grad().item() == 8.f);
  x.zero_grad();
  CHECK(!x.has_grad());
  sum(x * x).backward();
  CHECK(x.grad().item() == 4.f);
}

TEST_CASE("a 10,000-deep chain runs backward and is destroyed without stack overflow") {
  Tensor x = Tensor::from_vector({1}, {1}).set_requires_grad();
  Tensor h = x;
  for (int i = 0; i < 10000; ++i) h = add_scalar(h, 0.001f);
  CHECK(graph_size(h) == 10000);
  sum(h).backward();
  CHECK(x.grad().item() == 1.f);
  // Un-backwarded deep graph: destruction must not recurse (much deeper here),
  // and must free every node, the deepest included.
  std::weak_ptr<Node> deepest, top;
  {
    Tensor g = x;
    for (int i = 0; i < 200000; ++i) {
      g = mul_scalar(g, 1.0f);
      if (i == 0) deepest = g.grad_fn();
    }
    top = g.grad_fn();
    CHECK(graph_size(g) == 200000);
    CHECK(!deepest.expired());
  }
  CHECK(top.expired());
  CHECK(deepest.expired());
}

TEST_CASE("graph is freed after backward") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor y = sum(relu(x) * x);
  CHECK(graph_size(y) == 3);
  y.backward();
  CHECK(graph_size(y) == 0);
}

TEST_CASE("no-grad guard disables recording; detach cuts history") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  {
    NoGradGuard g;
    Tensor y = x * x;
    CHECK(!y.requires_grad());
    CHECK(!grad_enabled());
  }
  CHECK(grad_enabled());
  Tensor d = x.detach();
  CHECK(!d.requires_grad());
  CHECK(d.data() == x.data());
  Tensor y = x * d;  // d is a constant
  sum(y).backward();
  CHECK(x.grad().to_vector() == std::vector<float>{1, 2});
}

TEST_CASE("backward errors are clear") {
  Tensor x = Tensor::from_vector({2}, {1, 2});
  CHECK_THROWS_WITH_AS(sum(x).backward(), doctest::Contains("does not require grad"), Error);
  Tensor w = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  CHECK_THROWS_WITH_AS((w * w).backward(), doctest::Contains("1-element"), Error);
  Tensor y = w * 2.f;
  CHECK_THROWS_AS(y.set_requires_grad(false), Error);
}

TEST_CASE("inputs that do not require grad get no gradient buffer") {
  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4}).set_requires_grad();
  Tensor b = Tensor::from_vector({2, 2}, {1, 0, 0, 1});
  sum(matmul(a, b)).backward();
  CHECK(!b.has_grad());
  CHECK(a.grad().to_vector() == std::vector<float>{1, 1, 1, 1});
}

TEST_CASE("profiler: off records nothing; on, one backward row per node name with its call count") {
  namespace prof = qnn::profiler;
  Tensor W = Tensor::from_vector({2, 2}, {1, 2, 3, 4}).set_requires_grad();
  Tensor x = Tensor::from_vector({1, 2}, {1, -1});
  prof::reset();
  sum(relu(linear(x, W, Tensor()))).backward();
  CHECK(prof::rows().empty());
  prof::enable(true);
  sum(relu(relu(linear(x, W, Tensor())))).backward();
  prof::enable(false);
  std::map<std::string, long> calls;
  for (const auto& r : prof::rows()) {
    CHECK(r.seconds >= 0);
    calls[r.name] = r.calls;
  }
  CHECK(calls == std::map<std::string, long>{{"bwd linear", 1}, {"bwd relu", 2}, {"bwd sum", 1}});
  prof::reset();
  CHECK(prof::rows().empty());
}
