// layers/basic.h — parameter-free layers: activations, Dropout, Flatten.
#pragma once

#include <functional>

#include "core/rng.h"
#include "layers/module.h"

namespace qnn {

// Wraps a unary op (relu, tanh, hardtanh, ...) as a layer.
class Activation : public Module {
 public:
  Activation(std::string name, std::function<Tensor(const Tensor&)> f) : name_(std::move(name)), f_(std::move(f)) {}
  Tensor forward(const Tensor& x) override { return f_(x); }
  std::string type_name() const override { return name_; }

 private:
  std::string name_;
  std::function<Tensor(const Tensor&)> f_;
};

std::shared_ptr<Activation> ReLU();
std::shared_ptr<Activation> Tanh();
std::shared_ptr<Activation> Sigmoid();
std::shared_ptr<Activation> HardTanh();

class Dropout : public Module {
 public:
  // The layer owns its own generator, split from the model's Rng, so a run is
  // reproducible from --seed alone.
  Dropout(float p, Rng& rng);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  float p() const { return p_; }

 protected:
  void own_rngs(std::vector<std::pair<std::string, Rng*>>& out) override { out.emplace_back("rng", &rng_); }

 private:
  float p_;
  Rng rng_;
};

// [N, d1, d2, ...] -> [N, d1 * d2 * ...]
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;  // the flatten op (core/ops.h)
  std::string type_name() const override { return "Flatten"; }
  Shape output_shape(const Shape& in) const override;  // [N, -1] when a flattened dim is unknown
};

}  // namespace qnn
