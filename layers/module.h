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

class Rng;  // core/rng.h

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
  // A container whose own computation is more than running its children in
  // turn (Residual's add) also gets a summary row, after its children's.
  virtual bool summary_row_after_children() const { return false; }
  // Shape of forward(x) for an x of shape `in`, without computing anything:
  // what summaries print in their "output" column. -1 marks a dimension not
  // known here (the batch, or anything before the first layer that fixes it);
  // an empty Shape means nothing is known. The default suits every layer that
  // keeps its input's shape (activations, BatchNorm, Dropout, quantizers); a
  // module with children chains them in registration order, as Sequential
  // runs them. A layer that changes the shape (Linear, Flatten, convolution,
  // pooling) MUST override it, and throws qnn::Error when `in` cannot be its
  // input, so a summary with a given input shape also checks the wiring.
  virtual Shape output_shape(const Shape& in) const;

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
  // The random generators of this module and its children (dropout masks,
  // stochastic quantizers), named like state() entries ("3.rng"), each once:
  // a resumable run (apps/common/run_state.h) saves and restores them.
  std::vector<std::pair<std::string, Rng*>> named_rngs();

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

  // A layer that keeps an Rng (directly or in a quantizer) lists it here,
  // without its children's (named_rngs recurses).
  virtual void own_rngs(std::vector<std::pair<std::string, Rng*>>& out) { (void)out; }

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

// output_shape of a layer mapping [..., in_features] to [..., out_features]
// (Linear, QuantLinear): `who` names the layer in the error message.
Shape features_output_shape(const Shape& in, int64_t in_features, int64_t out_features, const std::string& who);

// Model summary: one row per leaf module, totals, compression ratio. Each
// row's `output` is the leaf's output_shape applied to the previous leaf's
// output, starting from `input` (e.g. {-1, 784}; empty: unknown, so rows
// before the first shape-fixing layer print nothing). A leaf whose
// output_shape knows nothing keeps the `output` of its summary_row.
std::vector<LayerSummary> summarize(const Module& m, const Shape& input = {});
std::string summary_table(const Module& m, const Shape& input = {});

}  // namespace qnn
