// layers/quant/quant_act.h — a quantizer used as an activation layer.
//
// For stacks written Courbariaux's way, with the activation's binarization as
// its own layer:  QuantLinear -> BatchNorm -> QuantAct(Sign) -> [Dropout] -> ...
// forward(x) = q(x), with q's surrogate gradient (for Sign/hardtanh that is
// BinaryNet's binary_tanh_unit: sign forward, 1{|x| <= 1} backward).
//
// Summary: no parameters; input_bits = 32 (its input is real). The *next*
// layer sees +-1 values but, as a separate layer, computes with whatever it
// is given (e.g. {-2, 0, 2} after dropout in training), so it reports a real
// input. To get a layer that multiplies binary operands (and can use an
// XNOR-popcount kernel), give the quantizer to QuantLinear as its
// input_quantizer instead (larq style).
#pragma once

#include <memory>

#include "layers/module.h"
#include "layers/quant/quantizer.h"

namespace qnn {

class QuantAct : public Module {
 public:
  explicit QuantAct(std::shared_ptr<Quantizer> q);
  Tensor forward(const Tensor& x) override { return (*q_)(x); }
  std::string type_name() const override { return "QuantAct"; }
  void train(bool on = true) override {
    Module::train(on);
    q_->train(on);
  }
  const std::shared_ptr<Quantizer>& quantizer() const { return q_; }

 protected:
  void own_rngs(std::vector<std::pair<std::string, Rng*>>& out) override {
    if (Rng* r = q_->rng()) out.emplace_back("quantizer.rng", r);
  }

 private:
  std::shared_ptr<Quantizer> q_;
};

}  // namespace qnn
