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
  // Stores it in t.param_attrs() (constraint + constraint_name).
  void attach(Tensor& t) const;
};

// w = min(max(w, lo), hi) elementwise.
//
// Optimizers may fuse this one constraint into their update loop (Adam does:
// one pass over the weights instead of two, same bits). They recognise it by
// its type, as_clip() below, never by "the parameter has a constraint": a
// constraint the user replaced or wrapped is a different callable and is
// called as given.
struct Clip {
  float lo = -1.0f;
  float hi = 1.0f;
  void operator()(float* w, int64_t n) const;
  std::string name() const;
  operator Constraint() const;  // so `opt.weight_constraint = Clip{-1, 1}` works
  void attach(Tensor& t) const { Constraint(*this).attach(t); }
};

// The Clip held by a constraint callable, or nullptr if it holds anything
// else (a lambda, a wrapper around a Clip, a user's function): only then is
// fusing it the same operation. `p.param_attrs().constraint = Clip{-1, 1}`
// and Clip{-1, 1}.attach(p) both store a Clip.
inline const Clip* as_clip(const std::function<void(float*, int64_t)>& f) { return f.target<Clip>(); }

}  // namespace qnn
