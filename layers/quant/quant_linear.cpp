#include "layers/quant/quant_linear.h"

#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/init.h"

namespace qnn {

float glorot_lr_scale(int64_t fan_in, int64_t fan_out) {
  return (float)(1.0 / std::sqrt(1.5 / (double)(fan_in + fan_out)));
}

QuantLinear::QuantLinear(int64_t in, int64_t out, Rng& rng, QuantLinearOptions opt)
    : in_(in), out_(out), opt_(std::move(opt)), prod_(opt_.input_quantizer, opt_.weight_quantizer, in) {
  QNN_CHECK(in > 0 && out > 0,
            "QuantLinear: sizes must be positive, got " + std::to_string(in) + " -> " + std::to_string(out));
  QNN_CHECK(std::isfinite(opt_.lr_scale) && opt_.lr_scale > 0.0f,
            "QuantLinear: lr_scale must be finite and > 0, got " + std::to_string(opt_.lr_scale));
  weight = Tensor::empty({out, in});
  init::by_name(opt_.init, weight, in, out, rng);
  register_parameter("weight", weight);
  ParamAttrs& pa = weight.param_attrs();
  pa.lr_scale = opt_.glorot_lr_scale ? glorot_lr_scale(in, out) : opt_.lr_scale;
  if (opt_.weight_constraint) opt_.weight_constraint.attach(weight);
  if (opt_.bias) register_parameter("bias", bias = Tensor::zeros({out}));
}

void QuantLinear::train(bool on) {
  Module::train(on);
  prod_.train(on);
}

Tensor QuantLinear::quantized_weight() const {
  NoGradGuard ng;
  return opt_.weight_quantizer ? (*opt_.weight_quantizer)(weight) : weight.clone();
}

Tensor QuantLinear::compute(const Tensor& x) { return prod_(x, weight, bias); }

Tensor QuantLinear::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 2 && x.dim(1) == in_, type_name() + "(" + std::to_string(in_) + " -> " +
                                                  std::to_string(out_) + "): input is " + shape_str(x.shape()) +
                                                  ", expected [N, " + std::to_string(in_) + "]");
  prod_.warn_if_unconstrained(weight, [&] { return "QuantLinear(" + std::to_string(in_) + " -> " + std::to_string(out_) + ")"; });
  return compute(x);
}

LayerSummary QuantLinear::summary_row() const {
  LayerSummary r = Module::summary_row();
  r.output = "[-1, " + std::to_string(out_) + "]";
  if (quantizes_weights()) {
    r.quant_params = weight.numel();
    r.weight_bits = opt_.weight_quantizer->bits();
  }
  r.input_bits = opt_.input_quantizer ? opt_.input_quantizer->bits() : 32;
  return r;
}

static QuantLinearOptions binary_options(const BinaryLinearOptions& b) {
  QuantLinearOptions o;
  if (b.binarize_input) o.input_quantizer = std::make_shared<Sign>(b.surrogate);
  o.weight_quantizer = std::make_shared<Sign>(b.surrogate);
  o.weight_constraint = Clip{-1.0f, 1.0f};
  o.bias = b.bias;
  o.glorot_lr_scale = b.glorot_lr_scale;
  o.init = "glorot";
  return o;
}

BinaryLinear::BinaryLinear(int64_t in, int64_t out, Rng& rng, BinaryLinearOptions opt)
    : QuantLinear(in, out, rng, binary_options(opt)) {}

}  // namespace qnn
