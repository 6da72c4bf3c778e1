#include "layers/basic.h"

#include "core/ops.h"

namespace qnn {

std::shared_ptr<Activation> ReLU() { return std::make_shared<Activation>("ReLU", [](const Tensor& x) { return relu(x); }); }
std::shared_ptr<Activation> Tanh() { return std::make_shared<Activation>("Tanh", [](const Tensor& x) { return tanh(x); }); }
std::shared_ptr<Activation> Sigmoid() {
  return std::make_shared<Activation>("Sigmoid", [](const Tensor& x) { return sigmoid(x); });
}
std::shared_ptr<Activation> HardTanh() {
  return std::make_shared<Activation>("HardTanh", [](const Tensor& x) { return hardtanh(x); });
}

Dropout::Dropout(float p, Rng& rng) : p_(p), rng_(rng.split()) {
  QNN_CHECK(p >= 0.f && p < 1.f, "Dropout: p must be in [0, 1), got " + std::to_string(p));
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, training_, rng_); }

}  // namespace qnn
