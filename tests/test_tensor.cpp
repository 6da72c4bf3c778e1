// Tensor basics: creation, shapes, views, printing, errors.
#include <doctest/doctest.h>

#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

using namespace qnn;

TEST_CASE("tensor creation and inspection") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.ndim() == 2);
  CHECK(z.dim(-1) == 3);
  CHECK(z.at({1, 2}) == 0.f);
  Tensor o = Tensor::full({4}, 2.5f);
  CHECK(o.to_vector() == std::vector<float>(4, 2.5f));
  Tensor s = Tensor::scalar(3.f);
  CHECK(s.ndim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 3.f);
  Tensor d = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  CHECK(d.at({1, 0}) == 3.f);
  CHECK(reinterpret_cast<uintptr_t>(d.data()) % 64 == 0);
  CHECK_THROWS_WITH_AS(Tensor::from_vector({2, 2}, {1, 2, 3}), doctest::Contains("3 values for shape [2, 2]"), Error);
  CHECK_THROWS_AS(z.item(), Error);
  CHECK_THROWS_AS(z.dim(2), Error);
  Tensor e = Tensor::zeros({0, 5});
  CHECK(e.numel() == 0);
  // Element counts: a zero dimension anywhere is empty, even after huge ones
  // (fuzz_checkpoint: [2^34, 2^34, 0] overflowed int64 on the way); a count
  // int64 cannot hold is refused, not wrapped.
  const int64_t big = int64_t(1) << 34;
  CHECK(shape_numel({big, big, 0}) == 0);
  CHECK(Tensor::empty({big, big, 0}).numel() == 0);
  CHECK_THROWS_WITH_AS(shape_numel({big, big, 2}), doctest::Contains("more elements than int64"), Error);
  CHECK(shape_numel({big, 4}) == big * 4);
}

TEST_CASE("seeded random tensors are reproducible and have the right moments") {
  Rng a(42), b(42), c(43);
  Tensor x = Tensor::uniform({1000}, -1.f, 1.f, a);
  Tensor y = Tensor::uniform({1000}, -1.f, 1.f, b);
  Tensor w = Tensor::uniform({1000}, -1.f, 1.f, c);
  CHECK(x.to_vector() == y.to_vector());
  CHECK(x.to_vector() != w.to_vector());
  Rng r(7);
  Tensor n = Tensor::normal({20000}, 1.f, 2.f, r);
  double m = 0, v = 0;
  for (float f : n.to_vector()) m += f;
  m /= n.numel();
  for (float f : n.to_vector()) v += (f - m) * (f - m);
  v /= n.numel();
  CHECK(m == doctest::Approx(1.0).epsilon(0.05));
  CHECK(v == doctest::Approx(4.0).epsilon(0.05));
  for (float f : x.to_vector()) CHECK((f >= -1.f && f < 1.f));
}

TEST_CASE("reshape shares storage, infers -1, refuses bad sizes") {
  Tensor x = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor y = x.reshape({3, -1});
  CHECK(y.shape() == Shape{3, 2});
  y.data()[0] = 9.f;
  CHECK(x.data()[0] == 9.f);
  CHECK(x.flatten(0).shape() == Shape{6});
  CHECK_THROWS_WITH_AS(x.reshape({4, 2}), doctest::Contains("has 6 elements"), Error);
  CHECK_THROWS_AS(x.reshape({-1, -1}), Error);
  Tensor c = x.clone();
  c.data()[1] = 0.f;
  CHECK(x.data()[1] == 2.f);
}

TEST_CASE("printing shows shape, values and history") {
  Tensor x = Tensor::from_vector({2, 2}, {1, -2, 3, 4});
  std::string s = x.str(1);
  CHECK(s.find("shape=[2, 2]") != std::string::npos);
  CHECK(s.find("-2.0") != std::string::npos);
  x.set_requires_grad();
  Tensor y = relu(x);
  CHECK(y.str().find("grad_fn=relu") != std::string::npos);
  Tensor big = Tensor::zeros({100});
  CHECK(big.str().find("...") != std::string::npos);
}

TEST_CASE("broadcasting shapes and errors") {
  Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from_vector({3}, {10, 20, 30});
  CHECK((a + b).to_vector() == std::vector<float>{11, 22, 33, 14, 25, 36});
  Tensor col = Tensor::from_vector({2, 1}, {1, 2});
  CHECK((a * col).to_vector() == std::vector<float>{1, 2, 3, 8, 10, 12});
  CHECK((a - Tensor::scalar(1.f)).to_vector() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK_THROWS_WITH_AS(a + Tensor::zeros({2}), doctest::Contains("cannot broadcast"), Error);
}

TEST_CASE("rebind_storage: a parameter moves into caller-owned memory and back, values and gradient kept") {
  alignas(64) static float window[64];
  for (float& v : window) v = -7.f;
  Tensor p = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  p.set_requires_grad(true);
  Tensor alias = p;  // another handle of the same tensor follows
  p.rebind_storage(window + 16, true);
  CHECK(alias.data() == window + 16);
  CHECK(window[16] == 1.f);
  CHECK(window[21] == 6.f);
  CHECK(window[22] == -7.f);  // nothing beyond numel() written
  window[17] = 20.f;          // another writer (e.g. another process) updates in place
  CHECK(p.data()[1] == 20.f);
  // Autograd through the rebound tensor: d(sum(p * p)) = 2 p.
  sum(mul(p, p)).backward();
  CHECK(p.grad().data()[1] == 40.f);
  // Rebound without copying: the memory's values are what the tensor holds.
  Tensor q = Tensor::zeros({4});
  q.rebind_storage(window + 32, false);
  CHECK(q.data()[0] == -7.f);
  // Back to owned memory, values copied out; the window is free again.
  p.rebind_storage(nullptr, true);
  CHECK(p.data() != window + 16);
  CHECK(p.data()[1] == 20.f);
  window[17] = 0.f;
  CHECK(p.data()[1] == 20.f);
  CHECK_THROWS_AS(p.rebind_storage(window + 1, true), Error);  // not 64-byte aligned
}
