// layers/quant/constraints.h — weight constraints that travel with a parameter.
//
// BinaryNet keeps real-valued *latent* weights and clips them to [-1, 1] after
// every optimizer step (otherwise they grow without bound: the sign never
// changes any more and the surrogate gradient, 1{|w| <= 1}, dies). In qnn the
// constraint is stored in the parameter's ParamAttrs (core/tensor.h) and the
// optimizer (optim/optimizer.h) applies it after each update, so a training
// loop cannot forget it.
//
//   QuantLinearOptions opt;
//   opt.weight_constraint = Clip{-1, 1};   // attached to the layer's weight
//   Clip{-1, 1}.attach(some_tensor);       // or to any parameter by hand
#pragma once

#include <functional>
#include <string>

#include "core/tensor.h"

namespace qnn {

// A named in-place map over a parameter's values. Empty = no constraint.
struct Constraint {
  std::string name;                                  // e.g. "clip[-1, 1]"
  std::function<void(float* w, int64_t n)> apply;    // in place, whole tensor
  explicit operator bool() const { return (bool)apply; }
  // Set by Clip: `apply` is exactly min(max(w, lo), hi), so optimizers may
  // fuse it into their update (ParamAttrs::clip).
  bool is_clip = false;
  float clip_lo = 0.0f, clip_hi = 0.0f;
  // Stores it in t.param_attrs() (constraint + constraint_name).
  void attach(Tensor& t) const;
};

// w = min(max(w, lo), hi) elementwise.
struct Clip {
  float lo = -1.0f;
  float hi = 1.0f;
  void operator()(float* w, int64_t n) const;
  std::string name() const;
  operator Constraint() const;  // so `opt.weight_constraint = Clip{-1, 1}` works
  void attach(Tensor& t) const { Constraint(*this).attach(t); }
};

}  // namespace qnn
