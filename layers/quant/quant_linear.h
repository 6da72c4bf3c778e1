// layers/quant/quant_linear.h — QuantLinear and BinaryLinear.
//
//   y[N, out] = q_in(x)[N, in] * q_w(W)[out, in]^T + b[out]
//
// W is the *latent* real-valued weight: the registered parameter, the thing
// the optimizer updates and the constraint (e.g. Clip{-1, 1}) clips. The
// quantized copy q_w(W) is derived in every forward pass and never stored
// (docs/design.md §3: no hidden side copies). Gradients reach W through the weight
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
// The product is computed in ONE place, compute(), by the layer's
// QuantProduct (quant_product.h, shared with QuantConv2d), along one of four
// paths — binary (XNOR), levels (bit-serial), sign_weight (pm1 look-up),
// none — chosen from the quantizers only, never from the kernel switch, so
// switching kernels on or off never changes the numbers. quant_product.h
// documents each path and the bit-identity contract.
// The kernel switch: set_kernels() per layer, else quant_kernels_default()
// (env QNN_QUANT_KERNELS=on|off, default on); set_quant_kernels(module, on)
// sets every quantized layer of a model (QuantLinear and QuantConv2d).
#pragma once

#include <memory>
#include <string>

#include "core/rng.h"
#include "layers/module.h"
#include "layers/quant/binary_linear_op.h"
#include "layers/quant/constraints.h"
#include "layers/quant/quant_product.h"
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

class QuantLinear : public Module, public QuantProductLayer {
 public:
  QuantLinear(int64_t in, int64_t out, Rng& rng, QuantLinearOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantLinear"; }
  LayerSummary summary_row() const override;
  Shape output_shape(const Shape& in) const override { return features_output_shape(in, in_, out_, type_name()); }
  void train(bool on = true) override;  // also switches the quantizers

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  const std::shared_ptr<Quantizer>& input_quantizer() const { return opt_.input_quantizer; }
  const std::shared_ptr<Quantizer>& weight_quantizer() const { return opt_.weight_quantizer; }
  // True when the weights are quantized below 32 bits.
  bool quantizes_weights() const { return prod_.quantizes_weights(); }
  // True when both operands are +-1-valued: the XNOR-popcount case.
  bool binary_operands() const { return prod_.binary_operands(); }
  // The weight as the forward pass uses it, q_w(W) (no gradient; teaching).
  Tensor quantized_weight() const;

  // ---- kernel path (see the top of this file) ----
  using KernelPath = QuantKernelPath;
  KernelPath kernel_path() const { return prod_.path(); }  // with the quantizers' current train/eval mode
  static const char* path_name(KernelPath p) { return quant_path_name(p); }  // "none", "xnor", "bitserial", "pm1"
  void set_kernels(bool on) { prod_.set_kernels(on); }
  void reset_kernels() { prod_.reset_kernels(); }  // follow quant_kernels_default() again
  bool kernels_enabled() const { return prod_.kernels_enabled(); }
  bool uses_kernels() const { return kernels_enabled() && kernel_path() != KernelPath::none; }
  // Bytes kept for backward for a batch of N (kernel path vs the unfused
  // graph): binary path as binary_linear_{fused,unfused}_bytes; sign_weight
  // path: packed weight mask vs float sign(W), assuming x needs no gradient
  // (a first layer); zeros otherwise.
  SavedBytes saved_bytes(int64_t N, bool fused) const { return prod_.saved_bytes(N, out_, fused); }

  // QuantProductLayer
  QuantProduct& product() override { return prod_; }
  const QuantProduct& product() const override { return prod_; }
  QuantKernelPath layer_path() const override { return kernel_path(); }

  Tensor weight, bias;  // latent weights [out, in]; bias [out] or undefined

 protected:
  // THE product: y = q_in(x) q_w(W)^T + b (prod_). Override / swap here.
  virtual Tensor compute(const Tensor& x);
  // Stochastic quantizers' generators (Module::named_rngs).
  void own_rngs(std::vector<std::pair<std::string, Rng*>>& out) override {
    if (Rng* r = opt_.input_quantizer ? opt_.input_quantizer->rng() : nullptr) out.emplace_back("input_quantizer.rng", r);
    if (Rng* r = opt_.weight_quantizer ? opt_.weight_quantizer->rng() : nullptr) out.emplace_back("weight_quantizer.rng", r);
  }

 private:
  int64_t in_, out_;
  QuantLinearOptions opt_;
  QuantProduct prod_;  // holds the same quantizer objects as opt_
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
