// layers/quant/quant_conv.h — QuantConv2d: a convolution whose product is
// QuantLinear's, over im2col rows.
//
//   xq   = q_in(x)                                  [N, C, H, W]  (the quantizer's node)
//   rows = im2col(xq, K, K, stride, pad, pad_value) [N*OH*OW, C*K*K]
//   y    = product(rows, W.reshape({O, C*K*K}))     [N*OH*OW, O]  (QuantProduct, input already quantized)
//   out  = rows_to_nchw(y)                          [N, O, OH, OW]
//
// So the kernel paths, the kernel switch and its bit-identity contract are
// exactly QuantLinear's (quant_product.h): a k-bit layer runs the bit-serial
// GEMM on its patch rows, a first layer with sign weights the pm1 look-up.
// A BINARY layer (input and weights both +-1, either padding) is one fused
// node instead, binary_conv2d (binary_conv_op.h): packed NHWC forward, input
// kept packed for backward, pm1 look-ups in im2col/col2im form; with the
// kernels off, binary_conv2d_reference (im2col rows, pm1_linear) — the same
// numbers, bit for bit. Quantizing before im2col applies the input
// quantizer (and its surrogate mask) once per input value, not once per tap.
// When the product's path is none (the float product) and padded taps hold
// 0, the layer computes that same function as conv2d(xq, q_w(W)) instead:
// per-image GEMMs, no batch-sized patch matrix kept for backward.
//
// PADDING (pad > 0) is an option, because a padded tap is not automatically a
// quantized value:
//   ConvPadding::zero : padded taps hold 0 (PyTorch; BinaryNet's Theano code).
//            0 is not a level of a sign or uniform quantizer, so the rows are
//            not all +-1 / k-bit levels and a k-bit layer's product takes
//            the float ("none") path. A binary layer (1-bit input and
//            weights) runs binary_conv2d (below), whose packed forward
//            corrects the padded taps exactly.
//   ConvPadding::one  : padded taps hold the input quantizer's top level, +a
//            (+1 for Sign) — "one-padding", what Larq trains with
//            (pad_values = 1). The rows hold only levels, so the binary XNOR
//            and bit-serial paths apply as they are.
// A layer without an input quantizer (the first layer: a real image) always
// pads with 0 — there is no level to pad with, and 0 is the image's neutral
// value; its sign-weight product (pm1 path) is exact on any real rows.
//
// The weight W [O, C, K, K] is the LATENT weight (PyTorch layout), glorot-
// initialised with fan_in = C K K and fan_out = O K K, clipped by the
// constraint after every optimizer step. Courbariaux's per-layer LR scale
// uses the same fans: BinaryNet's Conv2DLayer (Train-time/binary_net.py of
// Courbariaux et al. 2016's code) sets num_inputs = prod(filter_size) *
// input channels and num_units = prod(filter_size) * num_filters, and
// W_LR_scale = 1 / sqrt(1.5 / (num_inputs + num_units)).
//
// Summary: params = W (+ b); quant_params = W's count when quantized;
// weight_bits / input_bits from the quantizers (32 = full precision).
#pragma once

#include <memory>
#include <string>

#include "core/rng.h"
#include "layers/module.h"
#include "layers/quant/binary_conv_op.h"
#include "layers/quant/constraints.h"
#include "layers/quant/quant_product.h"
#include "layers/quant/quantizer.h"

namespace qnn {

enum class ConvPadding { zero, one };
// "zero" | "one"; throws qnn::Error naming the bad value.
ConvPadding parse_conv_padding(const std::string& s);
const char* conv_padding_name(ConvPadding p);

struct QuantConv2dOptions {
  int64_t stride = 1;
  int64_t pad = 0;
  ConvPadding padding = ConvPadding::zero;      // what padded taps hold (above)
  std::shared_ptr<Quantizer> input_quantizer;   // null: real input (first layer)
  std::shared_ptr<Quantizer> weight_quantizer;  // null: full-precision weights
  Constraint weight_constraint;                 // e.g. Clip{-1, 1}; empty: none
  bool bias = false;                            // false: batch norm follows
  float lr_scale = 1.0f;                        // weight's LR multiplier (ParamAttrs.lr_scale)
  bool glorot_lr_scale = false;                 // true: 1/sqrt(1.5/(C K K + O K K)) (Courbariaux)
  std::string init = "glorot";                  // layers/init.h
};

class QuantConv2d : public Module, public QuantProductLayer {
 public:
  QuantConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Rng& rng, QuantConv2dOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantConv2d"; }
  LayerSummary summary_row() const override;
  Shape output_shape(const Shape& in) const override;
  void train(bool on = true) override;  // also switches the quantizers

  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t kernel() const { return k_; }
  const QuantConv2dOptions& options() const { return opt_; }
  const std::shared_ptr<Quantizer>& input_quantizer() const { return opt_.input_quantizer; }
  const std::shared_ptr<Quantizer>& weight_quantizer() const { return opt_.weight_quantizer; }
  bool quantizes_weights() const { return prod_.quantizes_weights(); }
  // The value padded taps hold: 0, or the input quantizer's top level.
  float pad_value() const;
  // What the patch rows hold for the product: quantized levels only, or
  // levels plus zero taps (padded), or real values (no input quantizer: raw).
  QuantInput rows_form() const;
  // The weight as the forward pass uses it, q_w(W) [O, C, K, K] (no gradient).
  Tensor quantized_weight() const;

  // ---- kernel path (quant_product.h) ----
  QuantKernelPath kernel_path() const { return prod_.path(rows_form()); }
  void set_kernels(bool on) { prod_.set_kernels(on); }
  void reset_kernels() { prod_.reset_kernels(); }
  bool kernels_enabled() const { return prod_.kernels_enabled(); }
  bool uses_kernels() const { return kernels_enabled() && kernel_path() != QuantKernelPath::none; }

  // Bytes kept for backward for a batch of N images of H x W, fused (kernels
  // on) or not: binary layers as binary_conv2d_{fused,unfused}_bytes
  // (binary_conv_op.h), other paths as QuantProduct::saved_bytes over the
  // N*OH*OW patch rows.
  SavedBytes saved_bytes(int64_t N, int64_t H, int64_t W, bool fused) const;

  // QuantProductLayer
  QuantProduct& product() override { return prod_; }
  const QuantProduct& product() const override { return prod_; }
  QuantKernelPath layer_path() const override { return kernel_path(); }

  Tensor weight, bias;  // latent weights [O, C, K, K]; bias [O] or undefined

 private:
  std::string describe() const;  // "QuantConv2d(64 -> 128, 3x3, stride 1, pad 1, one-padding)"
  bool binary_conv() const;      // 1-bit input and weights: binary_forward
  BinaryConvSpec binary_conv_spec() const;
  Tensor binary_forward(const Tensor& x);
  int64_t in_, out_, k_;
  QuantConv2dOptions opt_;
  QuantProduct prod_;  // K = C K K; holds the same quantizer objects as opt_
};

}  // namespace qnn
