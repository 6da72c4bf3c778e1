// tests/quant_kernels_test_util.h — fixtures of the kernels-on/off tests
// (test_quant_kernels*.cpp): bitwise float comparison (CHECK_SAME), inputs
// with the awkward values mixed in, one forward + backward on fresh leaves,
// and the shapes and surrogates every case runs over.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/quant/surrogate.h"

namespace qnn::test {

// Bitwise equality of two float arrays; reports the first difference.
inline bool same_bits(const float* a, const float* b, int64_t n, std::string* where = nullptr) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      if (where) *where = "index " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
      return false;
    }
  }
  return true;
}

inline bool same_bits(const Tensor& a, const Tensor& b, std::string* where = nullptr) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.shape() != b.shape()) return false;
  return same_bits(a.data(), b.data(), a.numel(), where);
}

#define CHECK_SAME(a, b, what)                                       \
  do {                                                               \
    std::string where_;                                              \
    const bool ok_ = qnn::test::same_bits((a), (b), &where_);        \
    if (!ok_) MESSAGE((what) << " differs at " << where_);           \
    CHECK(ok_);                                                      \
  } while (0)

// Real values with the awkward cases mixed in: 0, -0, exactly +-1 (the
// hardtanh boundary), +-2, tiny values, and a spread beyond [-1, 1].
inline std::vector<float> awkward_values(std::mt19937& rng, int64_t n, float spread) {
  std::normal_distribution<float> nd(0.0f, spread);
  std::vector<float> v(static_cast<size_t>(n));
  const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -2.0f, 1e-30f, -1e-30f, 0.5f, -0.5f};
  for (auto& x : v) {
    const uint32_t r = rng() % 16;
    x = r < 10 && (rng() % 4 == 0) ? special[r] : nd(rng);
  }
  return v;
}

inline Tensor leaf(const Shape& s, const std::vector<float>& v, bool grad = true) {
  Tensor t = Tensor::from_vector(s, v);
  if (grad) t.set_requires_grad(true);
  return t;
}

struct Grads {
  Tensor y, gx, gW, gb;
};

// Runs f(x, W, b) on fresh leaves, backward with G (twice if `twice`, which
// exercises the accumulate paths), returns the output and gradients.
template <class F>
Grads run(F f, const Shape& xs, const std::vector<float>& xv, const Shape& ws, const std::vector<float>& wv,
          const std::vector<float>* bv, const std::vector<float>& G, bool twice = false) {
  Tensor x = leaf(xs, xv), W = leaf(ws, wv);
  Tensor b = bv ? leaf({ws[0]}, *bv) : Tensor();
  Grads r;
  const int reps = twice ? 2 : 1;
  for (int rep = 0; rep < reps; ++rep) {
    Tensor y = f(x, W, b);
    if (rep == 0) r.y = y.detach().clone();
    y.backward(Tensor::from_vector(y.shape(), G));
  }
  r.gx = x.grad().clone();
  r.gW = W.grad().clone();
  if (b.defined()) r.gb = b.grad().clone();
  return r;
}

inline const std::vector<int64_t> kIns = {1, 63, 65, 784};
inline const std::vector<int64_t> kNs = {1, 7, 100};
inline const std::vector<int64_t> kOuts = {1, 10, 33};

inline std::vector<Surrogate> all_surrogates() {
  return {Surrogate::hardtanh(), Surrogate::hardtanh(0.5f), Surrogate::tanh(3.0f), Surrogate::periodic(4.0f),
          Surrogate::identity()};
}

}  // namespace qnn::test
