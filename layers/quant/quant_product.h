// layers/quant/quant_product.h — THE quantized product, shared by every
// quantized layer that multiplies activations by weights:
//
//   y[M, O] = q_in(rows)[M, K] * q_w(W)[O, K]^T + b[O]
//
// QuantLinear calls it on its input batch (rows = x [N, in]); QuantConv2d on
// the im2col rows of its quantized input (rows = [N*OH*OW, C*KH*KW], W the
// [O, C, KH, KW] weight seen as [O, C*KH*KW]). A convolution is the dense
// product over patch rows, so there is one copy of the kernel-path logic.
//
// Paths (path(); the choice depends on the quantizers and on what the rows
// hold, never on the kernel switch, so switching kernels on or off never
// changes the numbers):
//   binary : both operands +-1 (Sign / StochasticSign / Uniform{1, a=1}),
//            also on padded rows (a convolution then runs binary_conv2d,
//            binary_conv_op.h; this product itself runs pm1_linear on them).
//            Kernels on: the fused op binary_linear (binary_linear_op.h):
//            XNOR-popcount forward, input saved bit-packed. Kernels off: the
//            unfused graph q_in(x), q_w(W), pm1_linear (+ add(y, b) if biased).
//            Identical results, bit for bit, forward and backward.
//            A stochastic quantizer in training runs as its own node and the
//            fused op takes its +-1 output as is.
//   levels : both operands deterministic uniform quantizers (Uniform 1..16
//            bits, Sign) and not both +-1, with K * L_x * L_w < 2^24: the
//            fused op uniform_linear computes the exact integer product of the
//            levels (bit-serial kernel on, sgemm off), then one scale. (This
//            rounds differently, in the last bits, from q_in(x), q_w(W),
//            linear: the scale comes after the exact sum.)
//   sign_weight : real input (no input quantizer), deterministic +-1
//            weights (BinaryNet's first layer). Kernels on: the fused op
//            sign_weight_linear (real x +-1 products by table look-up,
//            kernels/pm1_gemm.h; only packed bits kept); off: Sign(W) node +
//            pm1_weight_linear (the same sums, plain loops). Identical results.
//   none   : anything else (k-bit weights with a real input, stochastic
//            weights with k-bit inputs, too many bits, rows holding values
//            that are not the input quantizer's levels): q_in(x), q_w(W),
//            linear(xq, wq, b).
//
// What the rows hold (QuantInput):
//   raw       : real values; the product applies q_in itself (QuantLinear).
//   quantized : q_in's outputs already — its node ran earlier, e.g. on the
//               image before im2col, so the surrogate mask is computed once
//               per input value rather than once per patch tap. Every value
//               is one of q_in's levels (one-padding pads with a level). The
//               fused ops then take the rows as pre-quantized: binary_linear
//               with quantize_input = false, uniform_linear with the identity
//               surrogate on the input side (its levels are idempotent), so
//               the input gradient is the plain product gradient.
//   padded    : q_in's outputs plus zero taps (zero padding). 0 is not a level
//               of a sign or uniform quantizer, so no level kernel is exact
//               on these rows: the path is none (the float product) —
//               except binary, where QuantConv2d corrects the zero taps.
//
// The kernel switch: set_kernels() per product, else quant_kernels_default()
// (env QNN_QUANT_KERNELS=on|off, default on); set_quant_kernels(module, on)
// sets every quantized layer of a model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "layers/module.h"
#include "layers/quant/binary_linear_op.h"
#include "layers/quant/quantizer.h"

namespace qnn {

enum class QuantKernelPath { none, binary, levels, sign_weight };
// "none", "xnor", "bitserial", "pm1"
const char* quant_path_name(QuantKernelPath p);

enum class QuantInput { raw, quantized, padded };

class QuantProduct {
 public:
  // K: the reduction length (columns of rows and of W), > 0.
  QuantProduct(std::shared_ptr<Quantizer> input_quantizer, std::shared_ptr<Quantizer> weight_quantizer, int64_t K);

  // rows [M, K], W [O, K] (the latent weight or a reshape of it), b [O] or
  // undefined -> y [M, O]. One graph, along path(in).
  Tensor operator()(const Tensor& rows, const Tensor& W, const Tensor& b, QuantInput in = QuantInput::raw);

  // q_in(x), or x itself without an input quantizer: what a layer runs
  // before it reshapes its input into rows (then QuantInput::quantized).
  Tensor quantize_input(const Tensor& x);
  // q_w(W), or W itself without a weight quantizer (the none path's weight).
  Tensor quantize_weight(const Tensor& W);

  QuantKernelPath path(QuantInput in = QuantInput::raw) const;  // with the quantizers' train/eval mode
  bool binary_operands() const;  // both quantizers +-scale-valued
  bool quantizes_weights() const { return wq_ && !wq_->is_identity(); }
  int64_t K() const { return K_; }
  const std::shared_ptr<Quantizer>& input_quantizer() const { return iq_; }
  const std::shared_ptr<Quantizer>& weight_quantizer() const { return wq_; }
  void train(bool on);  // switches the quantizers (StochasticSign)
  // The binary path's spec for rows of form `in` (raw: the fused op applies
  // the deterministic quantizers itself; a stochastic side is pre-quantized).
  BinaryLinearSpec binary_linear_spec(QuantInput in) const { return binary_spec(in); }

  void set_kernels(bool on) { kernels_ = on ? 1 : 0; }
  void reset_kernels() { kernels_ = -1; }  // follow quant_kernels_default() again
  bool kernels_enabled() const { return kernels_ < 0 ? quant_kernels_default() : kernels_ == 1; }

  // Bytes kept for backward for M rows and O outputs (kernel path vs the
  // unfused graph): binary path as binary_linear_{fused,unfused}_bytes;
  // sign_weight path: packed weight mask vs float sign(W), assuming the rows
  // need no gradient (a first layer); zeros otherwise.
  SavedBytes saved_bytes(int64_t M, int64_t O, bool fused, QuantInput in = QuantInput::raw) const;

  // Prints BinaryNet's "clip your latent weights" warning once per product
  // when the weights are quantized and `weight` carries no constraint.
  // describe() names the layer in the message, e.g. "QuantLinear(784 -> 2048)"
  // (called only when the warning is printed: forward stays allocation-free).
  template <class Describe>
  void warn_if_unconstrained(const Tensor& weight, Describe&& describe) {
    if (warned_ || !quantizes_weights()) return;
    warned_ = true;
    if (!constrained(weight)) print_unconstrained_warning(describe());
  }

 private:
  static bool constrained(const Tensor& weight);
  void print_unconstrained_warning(const std::string& layer) const;
  BinaryLinearSpec binary_spec(QuantInput in) const;
  Tensor binary(const Tensor& rows, const Tensor& W, const Tensor& b, QuantInput in);
  Tensor levels(const Tensor& rows, const Tensor& W, const Tensor& b, QuantInput in);
  std::shared_ptr<Quantizer> iq_, wq_;
  int64_t K_;
  int kernels_ = -1;  // -1: quant_kernels_default(), 0 off, 1 on
  bool warned_ = false;
};

// A layer whose product is a QuantProduct (QuantLinear, QuantConv2d): what
// set_quant_kernels and kernel-path reports look for.
class QuantProductLayer {
 public:
  virtual ~QuantProductLayer() = default;
  virtual QuantProduct& product() = 0;
  virtual const QuantProduct& product() const = 0;
  // The path of this layer's forward product with its current modes.
  virtual QuantKernelPath layer_path() const = 0;
};

// Sets the kernel switch of every QuantProductLayer in m (recursively).
// Returns how many of them have a kernel path (!= none) with the modules'
// current train/eval mode.
int set_quant_kernels(Module& m, bool on);

}  // namespace qnn
