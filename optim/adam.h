// optim/adam.h — Adam (Kingma & Ba 2015), torch.optim.Adam semantics, and
// AdamW (Loshchilov & Hutter 2019), torch.optim.AdamW semantics.
//
// Per parameter p with gradient g, at its step t (1-based):
//   Adam:  g = g + weight_decay * p        (L2 penalty added to the gradient)
//   AdamW: p = p * (1 - lr * weight_decay) (decoupled: the decay never enters m, v)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p  = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// eps sits outside the square root and is added after the bias correction of
// v, exactly as PyTorch does. (Lasagne's adam, used by Courbariaux's Theano
// BinaryNet, folds sqrt(1 - beta2^t) into the step instead, which amounts to
// an eps larger by 1/sqrt(1 - beta2^t) early on; the difference vanishes
// after a few thousand steps.)
//
// Why AdamW: with Adam's L2 the decay is divided by sqrt(v) like any
// gradient, so weights with large gradients are barely decayed; AdamW
// shrinks every weight by the same factor per step, which is what weight
// decay is meant to do (and regularises CNNs trained with Adam better).
// Both decay every parameter they are given (PyTorch's default), batch-norm
// scales and biases included.
//
// Performance: the update is one fused pass per tensor (read p, g, m, v;
// write p, m, v) with the two bias-correction factors computed once per
// tensor, vectorised and split across OpenMP threads for large tensors. A
// parameter whose constraint is the library's Clip (layers/quant/
// constraints.h, recognised by type) is clipped inside that same pass, with
// Clip's own expression, so the bits equal update-then-clip; any other
// constraint is applied once per tensor by the base class, as given.
#pragma once

#include "optim/optimizer.h"

namespace qnn {

class Adam : public Optimizer {
 public:
  struct Options {
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;
    bool decoupled = false;  // true: AdamW's decay, applied to p, not added to g
  };
  Adam(std::vector<Tensor> params, float lr, Options opt);
  Adam(std::vector<Tensor> params, float lr = 1e-3f) : Adam(std::move(params), lr, Options{}) {}
  std::string name() const override { return opt_.decoupled ? "adamw" : "adam"; }
  bool elementwise() const override { return true; }
  const Options& options() const { return opt_; }

 protected:
  void update(const ParamUpdate& u) override;
  bool fuses_clip() const override { return true; }
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq"}; }

 private:
  Options opt_;
};

// Shared by Adam, AdaMax and ShiftAdaMax: betas in [0, 1), eps and
// weight_decay finite and >= 0.
void check_adam_hyper(const std::string& who, float beta1, float beta2, float eps, float weight_decay);

// "" when AdamW's per-step shrink 1 - lr * weight_decay is >= 0, else what is
// wrong. One wording for the two places that check it: the command line
// (before any work, naming the flags) and each update (a parameter's own LR
// scale can push lr * weight_decay past 1).
std::string adamw_decay_problem(double lr, double weight_decay);

}  // namespace qnn
