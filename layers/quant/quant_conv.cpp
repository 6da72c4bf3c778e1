#include "layers/quant/quant_conv.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/conv.h"
#include "layers/init.h"
#include "kernels/im2col.h"
#include "layers/quant/binary_conv_op.h"
#include "layers/quant/quant_linear.h"  // glorot_lr_scale

namespace qnn {

ConvPadding parse_conv_padding(const std::string& s) {
  if (s == "zero") return ConvPadding::zero;
  if (s == "one") return ConvPadding::one;
  fail("padding must be zero or one, got '" + s + "'");
}

const char* conv_padding_name(ConvPadding p) { return p == ConvPadding::one ? "one" : "zero"; }

QuantConv2d::QuantConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Rng& rng, QuantConv2dOptions opt)
    : in_(in_channels),
      out_(out_channels),
      k_(kernel),
      opt_(std::move(opt)),
      prod_(opt_.input_quantizer, opt_.weight_quantizer, in_channels * kernel * kernel) {
  QNN_CHECK(in_ > 0 && out_ > 0 && k_ > 0, "QuantConv2d: channels and kernel must be positive, got " +
                                               std::to_string(in_) + " -> " + std::to_string(out_) + ", kernel " +
                                               std::to_string(k_));
  QNN_CHECK(opt_.stride > 0 && opt_.pad >= 0, "QuantConv2d: need stride > 0 and pad >= 0, got stride " +
                                                  std::to_string(opt_.stride) + ", pad " + std::to_string(opt_.pad));
  QNN_CHECK(std::isfinite(opt_.lr_scale) && opt_.lr_scale > 0.0f,
            "QuantConv2d: lr_scale must be finite and > 0, got " + std::to_string(opt_.lr_scale));
  const int64_t fan_in = in_ * k_ * k_, fan_out = out_ * k_ * k_;
  weight = Tensor::empty({out_, in_, k_, k_});
  init::by_name(opt_.init, weight, fan_in, fan_out, rng);
  register_parameter("weight", weight);
  weight.param_attrs().lr_scale = opt_.glorot_lr_scale ? glorot_lr_scale(fan_in, fan_out) : opt_.lr_scale;
  if (opt_.weight_constraint) opt_.weight_constraint.attach(weight);
  if (opt_.bias) register_parameter("bias", bias = Tensor::zeros({out_}));
}

void QuantConv2d::train(bool on) {
  Module::train(on);
  prod_.train(on);
}

float QuantConv2d::pad_value() const {
  const auto& q = opt_.input_quantizer;
  if (!q || q->is_identity() || opt_.padding == ConvPadding::zero) return 0.0f;
  return q->scale();  // the top level: +1 for Sign
}

QuantInput QuantConv2d::rows_form() const {
  if (!opt_.input_quantizer) return QuantInput::raw;
  return opt_.pad > 0 && pad_value() == 0.0f ? QuantInput::padded : QuantInput::quantized;
}

Tensor QuantConv2d::quantized_weight() const {
  NoGradGuard ng;
  return opt_.weight_quantizer ? (*opt_.weight_quantizer)(weight) : weight.clone();
}

std::string QuantConv2d::describe() const {
  std::string s = type_name() + "(" + std::to_string(in_) + " -> " + std::to_string(out_) + ", " +
                  std::to_string(k_) + "x" + std::to_string(k_) + ", stride " + std::to_string(opt_.stride) +
                  ", pad " + std::to_string(opt_.pad);
  if (opt_.pad > 0) s += std::string(", ") + conv_padding_name(opt_.padding) + "-padding";
  return s + ")";
}

Tensor QuantConv2d::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 4 && x.dim(1) == in_,
            describe() + ": input is " + shape_str(x.shape()) + ", expected [N, " + std::to_string(in_) + ", H, W]");
  prod_.warn_if_unconstrained(weight, [&] { return describe(); });
  const int64_t N = x.dim(0);
  const int64_t OH = conv_out_size(x.dim(2), k_, opt_.stride, opt_.pad, describe());
  const int64_t OW = conv_out_size(x.dim(3), k_, opt_.stride, opt_.pad, describe());
  const QuantInput form = rows_form();
  if (binary_conv()) return binary_forward(x);
  // Quantize once per input value, then gather patches of quantized values.
  const Tensor xq = prod_.quantize_input(x);
  if (prod_.path(form) == QuantKernelPath::none && pad_value() == 0.0f) {
    // No kernel applies: the product is the float one, linear(rows, q_w(W)),
    // and conv2d computes exactly that function (zero padding) per image,
    // without materialising the whole batch's patch matrix (which the graph
    // would keep alive until backward: 236 MB for BinaryNet's 128-channel
    // 32x32 layer at batch 50).
    return conv2d(xq, prod_.quantize_weight(weight), bias, opt_.stride, opt_.pad);
  }
  const Tensor rows = im2col(xq, k_, k_, opt_.stride, opt_.pad, pad_value());  // [N*OH*OW, C*K*K]
  const Tensor w2 = weight.reshape({out_, in_ * k_ * k_});                     // columns (c, ky, kx)
  const Tensor y = prod_(rows, w2, bias, form);                                 // [N*OH*OW, O]
  return rows_to_nchw(y, N, OH, OW);
}

bool QuantConv2d::binary_conv() const {
  return opt_.input_quantizer && prod_.path(rows_form()) == QuantKernelPath::binary;
}

BinaryConvSpec QuantConv2d::binary_conv_spec() const {
  const BinaryLinearSpec ls = prod_.binary_linear_spec(QuantInput::raw);
  BinaryConvSpec spec;
  spec.stride = opt_.stride;
  spec.pad = opt_.pad;
  spec.one_padding = pad_value() != 0.0f;
  spec.quantize_input = ls.quantize_input;
  spec.input_surrogate = ls.input_surrogate;
  spec.quantize_weight = ls.quantize_weight;
  spec.weight_surrogate = ls.weight_surrogate;
  return spec;
}

// Binary input and weights: one fused node on packed bits with the kernels
// on, the plain reference graph over float im2col rows with them off — the
// same numbers, bit for bit (binary_conv_op.h).
Tensor QuantConv2d::binary_forward(const Tensor& x) {
  Quantizer& qi = *opt_.input_quantizer;
  Quantizer& qw = *opt_.weight_quantizer;
  if (!kernels_enabled()) {
    const Tensor xq = qi(x);
    const Tensor wq = qw(weight);
    return binary_conv2d_reference(xq, wq, bias, opt_.stride, opt_.pad, pad_value());
  }
  const BinaryConvSpec spec = binary_conv_spec();
  // Stochastic quantizers draw here, in the reference's order (input, weight).
  const Tensor xin = spec.quantize_input ? x : qi(x);
  const Tensor win = spec.quantize_weight ? weight : qw(weight);
  return binary_conv2d(xin, win, bias, spec);
}

SavedBytes QuantConv2d::saved_bytes(int64_t N, int64_t H, int64_t W, bool fused) const {
  if (binary_conv()) {
    const BinaryConvSpec spec = binary_conv_spec();
    return fused ? binary_conv2d_fused_bytes(N, in_, H, W, out_, k_, opt_.stride, opt_.pad, spec)
                 : binary_conv2d_unfused_bytes(N, in_, H, W, out_, k_, opt_.stride, opt_.pad, spec);
  }
  const int64_t OH = kernels::conv_out_size(H, k_, opt_.stride, opt_.pad);
  const int64_t OW = kernels::conv_out_size(W, k_, opt_.stride, opt_.pad);
  return prod_.saved_bytes(N * OH * OW, out_, fused, rows_form());
}

Shape QuantConv2d::output_shape(const Shape& in) const {
  return conv_output_shape(in, in_, out_, k_, opt_.stride, opt_.pad, describe());
}

LayerSummary QuantConv2d::summary_row() const {
  LayerSummary r = Module::summary_row();
  if (quantizes_weights()) {
    r.quant_params = weight.numel();
    r.weight_bits = opt_.weight_quantizer->bits();
  }
  r.input_bits = opt_.input_quantizer ? opt_.input_quantizer->bits() : 32;
  return r;
}

}  // namespace qnn
