// layers/module.h — Module: a named bag of parameters, buffers and children.
//
// A layer is a Module subclass that registers its parameters in the
// constructor and composes core/ ops in forward(). Adding a layer is one
// header + one .cpp in layers/ (see README "Adding a layer").
//
// Names are hierarchical ("0.weight", "3.running_mean") and are what
// checkpoints store, so renaming a registered tensor breaks old checkpoints —
// on purpose, with a clear error from load_state.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qnn {

// One row of a model summary (larq-style). Bits are 32 for full precision.
struct LayerSummary {
  std::string name;        // e.g. "2"
  std::string type;        // e.g. "QuantLinear"
  std::string output;      // e.g. "[-1, 2048]" when known, else ""
  int64_t params = 0;      // all trainable parameters
  int64_t quant_params = 0;  // parameters stored at weight_bits (rest are 32-bit)
  int weight_bits = 32;    // bits of the quantized parameters
  int input_bits = 32;     // bits of the layer's input as it computes (32 = real)
  int64_t bytes_fp32() const { return params * 4; }
  // Honest packed size: quantized weights at weight_bits (rounded up to whole
  // bytes per tensor row is ignored here: bits/8 exactly), everything else fp32.
  double bytes_packed() const { return quant_params * weight_bits / 8.0 + (params - quant_params) * 4.0; }
};

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  virtual std::string type_name() const = 0;
  // Summary row for this module alone (children report their own).
  virtual LayerSummary summary_row() const;

  // Train / eval mode, recursively (dropout, batch norm, stochastic quantizers).
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Recursive, in registration order, names prefixed by child names.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<Tensor> parameters() const;
  // Parameters and buffers together: what a checkpoint holds.
  std::vector<std::pair<std::string, Tensor>> state() const;
  void zero_grad();
  int64_t num_parameters() const;

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);  // sets requires_grad
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

  bool training_ = true;

 private:
  void collect(const std::string& prefix, bool params, bool buffers,
               std::vector<std::pair<std::string, Tensor>>& out) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Run modules in order; children are named "0", "1", ...
class Sequential : public Module {
 public:
  Sequential() = default;
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> m) {
    auto r = register_module(std::to_string(children().size()), m);
    return r;
  }
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return children().size(); }
  Module& operator[](size_t i) const { return *children()[i].second; }
};

// Model summary: one row per leaf module, totals, compression ratio.
std::vector<LayerSummary> summarize(const Module& m);
std::string summary_table(const Module& m);

}  // namespace qnn
