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
// The product is computed in ONE place, compute(), along one of four paths
// (kernel_path(); the choice depends on the quantizers only, never on the
// kernel switch, so switching kernels on or off never changes the numbers):
//   binary : both operands +-1 (Sign / StochasticSign / Uniform{1, a=1}).
//            Kernels on: the fused op binary_linear (binary_linear_op.h):
//            XNOR-popcount forward, input saved bit-packed. Kernels off: the
//            unfused graph q_in(x), q_w(W), linear (+ add(y, b) if biased).
//            Identical results, bit for bit, forward and backward.
//            A stochastic quantizer in training runs as its own node and the
//            fused op takes its +-1 output as is.
//   levels : both operands deterministic uniform quantizers (Uniform 1..16
//            bits, Sign) and not both +-1, with in * L_x * L_w < 2^24: the
//            fused op uniform_linear computes the exact integer product of the
//            levels (bit-serial kernel on, sgemm off), then one scale. (With
//            the kernels off this rounds differently, in the last bits, from
//            q_in(x), q_w(W), linear: the scale comes after the exact sum.)
//   sign_weight : real input (no input quantizer), deterministic +-1
//            weights (BinaryNet's first layer). Kernels on: the fused op
//            sign_weight_linear (real x +-1 products by table look-up,
//            kernels/pm1_gemm.h; only packed bits kept); off: Sign(W) node +
//            pm1_weight_linear (the same sums, plain loops). Identical results.
//   none   : anything else (k-bit weights with a real input, stochastic
//            weights with k-bit inputs, too many bits): q_in(x), q_w(W),
//            linear(xq, wq, b).
// The kernel switch: set_kernels() per layer, else quant_kernels_default()
// (env QNN_QUANT_KERNELS=on|off, default on); set_quant_kernels(module, on)
// sets every QuantLinear of a model.
#pragma once

#include <memory>
#include <string>

#include "core/rng.h"
#include "layers/module.h"
#include "layers/quant/binary_linear_op.h"
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

  // ---- kernel path (see the top of this file) ----
  enum class KernelPath { none, binary, levels, sign_weight };
  KernelPath kernel_path() const;       // with the quantizers' current train/eval mode
  static const char* path_name(KernelPath p);  // "none", "xnor", "bitserial", "pm1"
  void set_kernels(bool on) { kernels_ = on ? 1 : 0; }
  void reset_kernels() { kernels_ = -1; }  // follow quant_kernels_default() again
  bool kernels_enabled() const { return kernels_ < 0 ? quant_kernels_default() : kernels_ == 1; }
  bool uses_kernels() const { return kernels_enabled() && kernel_path() != KernelPath::none; }
  // Bytes kept for backward for a batch of N (kernel path vs the unfused
  // graph): binary path as binary_linear_{fused,unfused}_bytes; sign_weight
  // path: packed weight mask vs float sign(W), assuming x needs no gradient
  // (a first layer); zeros otherwise.
  SavedBytes saved_bytes(int64_t N, bool fused) const;

  Tensor weight, bias;  // latent weights [out, in]; bias [out] or undefined

 protected:
  // THE product: y = q_in(x) q_w(W)^T + b. Override / swap here.
  virtual Tensor compute(const Tensor& x);

 private:
  void warn_if_unconstrained();
  Tensor compute_binary(const Tensor& x);
  Tensor compute_levels(const Tensor& x);
  BinaryLinearSpec binary_spec() const;
  int64_t in_, out_;
  QuantLinearOptions opt_;
  bool warned_ = false;
  int kernels_ = -1;  // -1: quant_kernels_default(), 0 off, 1 on
};

// Sets the kernel switch of every QuantLinear in m (recursively). Returns how
// many of them have a kernel path (QuantLinear::kernel_path() != none) with
// the modules' current train/eval mode.
int set_quant_kernels(Module& m, bool on);

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
