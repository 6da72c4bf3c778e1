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

Tensor Dropout::forward(const Tensor& x) {
  // Data-parallel training (apps/common/dist.h) re-seeds rng_ per (step,
  // slice), so a rank's masks are those of the same slice in one process.
  return dropout(x, p_, training_, rng_);
}

Tensor Flatten::forward(const Tensor& x) { return qnn::flatten(x); }

Shape Flatten::output_shape(const Shape& in) const {
  if (in.empty()) return {};
  // As Tensor::flatten(1): [N] becomes [N, 1].
  int64_t n = 1;
  for (size_t i = 1; i < in.size(); ++i) n = (in[i] < 0 || n < 0) ? -1 : n * in[i];
  return {in[0], n};
}

}  // namespace qnn
