// layers/quant/quant_linear.h — QuantLinear and BinaryLinear.
//
//   y[N, out] = q_in(x)[N, in] * q_w(W)[out, in]^T + b[out]
//
// W is the *latent* real-valued weight: the registered parameter, the thing
// the optimizer updates and the constraint (e.g. Clip{-1, 1}) clips. The
// quantized copy q_w(W) is derived in every forward pass and never stored
// (DESIGN.md §3: no hidden side copies). Gradients reach W through the weight
// quantizer's surrogate: with Sign/hardtanh,
//   dL/dW = (dL/dy)^T q_in(x) * 1{|W| <= 1}.
//
// A null quantizer means full precision on that side: the first layer of a
// BNN has no input quantizer (its input is the real image), a full-precision
// classifier has no weight quantizer.
//
// BinaryNet recipe: glorot init, no bias (batch norm follows), Clip{-1, 1},
// optionally Courbariaux's per-layer learning-rate scale
//   lr_scale = 1 / sqrt(1.5 / (fan_in + fan_out))
// stored in the weight's ParamAttrs (the optimizer multiplies the LR by it).
//
// Model summaries (summary_row): params = W + b; quant_params = W's count if W
// is quantized below 32 bits; weight_bits, input_bits = the quantizers' bits
// (32 for full precision). Biases stay 32-bit.
//
// The product is computed in ONE place, compute(): today the two quantizers
// (one autograd node each) and the float GEMM op `linear`. When both operands
// are binary (binary_operands()), an XNOR-popcount fused op can replace that
// body (dot = K - 2 popcount(a XOR b), kernels/bitpack.h) without touching
// anything else in the layer.
#pragma once

#include <memory>
#include <string>

#include "core/rng.h"
#include "layers/module.h"
#include "layers/quant/constraints.h"
#include "layers/quant/quantizer.h"

namespace qnn {

struct QuantLinearOptions {
  std::shared_ptr<Quantizer> input_quantizer;   // null: real input (first layer)
  std::shared_ptr<Quantizer> weight_quantizer;  // null: full-precision weights
  Constraint weight_constraint;                 // e.g. Clip{-1, 1}; empty: none
  bool bias = false;                            // false: batch norm follows
  float lr_scale = 1.0f;                        // weight's LR multiplier (ParamAttrs.lr_scale)
  bool glorot_lr_scale = false;                 // true: lr_scale = 1/sqrt(1.5/(in+out)) (Courbariaux)
  std::string init = "glorot";                  // layers/init.h
};

// Courbariaux's W_LR_scale: 1 / sqrt(1.5 / (fan_in + fan_out)).
float glorot_lr_scale(int64_t fan_in, int64_t fan_out);

class QuantLinear : public Module {
 public:
  QuantLinear(int64_t in, int64_t out, Rng& rng, QuantLinearOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantLinear"; }
  LayerSummary summary_row() const override;
  void train(bool on = true) override;  // also switches the quantizers

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  const std::shared_ptr<Quantizer>& input_quantizer() const { return opt_.input_quantizer; }
  const std::shared_ptr<Quantizer>& weight_quantizer() const { return opt_.weight_quantizer; }
  // True when the weights are quantized below 32 bits.
  bool quantizes_weights() const { return opt_.weight_quantizer && !opt_.weight_quantizer->is_identity(); }
  // True when both operands are +-1-valued: the XNOR-popcount case.
  bool binary_operands() const;
  // The weight as the forward pass uses it, q_w(W) (no gradient; teaching).
  Tensor quantized_weight() const;

  Tensor weight, bias;  // latent weights [out, in]; bias [out] or undefined

 protected:
  // THE product: y = q_in(x) q_w(W)^T + b. Override / swap here.
  virtual Tensor compute(const Tensor& x);

 private:
  void warn_if_unconstrained();
  int64_t in_, out_;
  QuantLinearOptions opt_;
  bool warned_ = false;
};

struct BinaryLinearOptions {
  bool binarize_input = true;  // false: the first layer (real input)
  Surrogate surrogate{};       // for both quantizers (default hardtanh / STE)
  bool bias = false;
  bool glorot_lr_scale = false;
};

// BinaryNet's layer: Sign on input and weights, Clip{-1, 1}, glorot init.
class BinaryLinear : public QuantLinear {
 public:
  BinaryLinear(int64_t in, int64_t out, Rng& rng, BinaryLinearOptions opt = {});
  std::string type_name() const override { return "BinaryLinear"; }
};

}  // namespace qnn
