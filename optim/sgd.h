// optim/sgd.h — stochastic gradient descent with momentum (PyTorch semantics).
//
// Per parameter p with gradient g, at its step t (1-based):
//   g   = g + weight_decay * p                       (L2 penalty, if > 0)
//   buf = g                              when t == 1  (momentum > 0)
//   buf = momentum * buf + (1 - dampening) * g    when t > 1
//   d   = nesterov ? g + momentum * buf : buf     (d = g when momentum == 0)
//   p   = p - lr * d
// These are torch.optim.SGD's formulas, so results can be compared 1:1.
#pragma once

#include "optim/optimizer.h"

namespace qnn {

class SGD : public Optimizer {
 public:
  struct Options {
    float momentum = 0.0f;
    float dampening = 0.0f;
    bool nesterov = false;
    float weight_decay = 0.0f;
  };
  SGD(std::vector<Tensor> params, float lr, Options opt);
  SGD(std::vector<Tensor> params, float lr) : SGD(std::move(params), lr, Options{}) {}
  std::string name() const override { return "sgd"; }
  bool elementwise() const override { return true; }
  const Options& options() const { return opt_; }

 protected:
  void update(const ParamUpdate& u) override;
  std::vector<std::string> slot_names() const override { return {"momentum_buffer"}; }

 private:
  Options opt_;
};

}  // namespace qnn
