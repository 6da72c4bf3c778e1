#include "layers/quant/quant_mlp.h"

#include "layers/basic.h"
#include "layers/quant/quant_act.h"
#include "layers/quant/quant_linear.h"
#include "layers/quant/shift_batchnorm.h"

namespace qnn {

std::shared_ptr<Sequential> quant_mlp(int64_t in, int64_t classes, Rng& rng, const QuantMLPOptions& o) {
  QNN_CHECK(in > 0 && classes > 0, "quant_mlp: in and classes must be positive");
  for (int64_t h : o.hidden) QNN_CHECK(h > 0, "quant_mlp: hidden sizes must be positive");
  QNN_CHECK(!(o.act_in_linear && o.dropout_hidden > 0.0f),
            "quant_mlp: act_in_linear cannot be combined with hidden dropout (the dropout would have to sit "
            "between the activation quantizer and the product); use act_in_linear = false");
  // Validate the bit widths once, with the flag names in the message.
  auto check = [](const char* what, int bits) {
    QNN_CHECK(bits == 32 || (bits >= 1 && bits <= 16),
              std::string("quant_mlp: ") + what + " must be 1..16 or 32, got " + std::to_string(bits));
  };
  check("weight_bits", o.weight_bits);
  check("act_bits", o.act_bits);
  check("input_bits", o.input_bits);

  auto seq = std::make_shared<Sequential>();
  if (o.dropout_in > 0.0f) seq->add(std::make_shared<Dropout>(o.dropout_in, rng));

  auto make_bn = [&](int64_t c) -> std::shared_ptr<Module> {
    if (o.shift_bn) return std::make_shared<ShiftBatchNorm>(c, o.bn);
    return std::make_shared<BatchNorm1d>(c, o.bn);
  };
  auto act_quantizer = [&]() { return quantizer_for_bits(o.act_bits, o.surrogate, o.stochastic_acts, &rng); };
  auto linear = [&](int64_t fi, int64_t fo, std::shared_ptr<Quantizer> in_q, bool quantize_w) {
    QuantLinearOptions lo;
    lo.input_quantizer = std::move(in_q);
    if (quantize_w) lo.weight_quantizer = quantizer_for_bits(o.weight_bits, o.weight_surrogate, o.stochastic_weights, &rng);
    const bool q = lo.weight_quantizer != nullptr;
    if (q && o.clip_weights) lo.weight_constraint = Clip{-1.0f, 1.0f};
    lo.glorot_lr_scale = q && o.glorot_lr_scale;
    lo.bias = o.bias;
    lo.init = "glorot";
    return std::make_shared<QuantLinear>(fi, fo, rng, lo);
  };

  std::shared_ptr<Quantizer> first_in;
  if (o.input_bits != 32) first_in = quantizer_for_bits(o.input_bits, o.surrogate, false, &rng);
  int64_t fan_in = in;
  std::shared_ptr<Quantizer> next_in = first_in;
  for (int64_t h : o.hidden) {
    seq->add(linear(fan_in, h, next_in, true));
    seq->add(make_bn(h));
    next_in = nullptr;
    if (o.act_bits == 32) {
      seq->add(HardTanh());
    } else if (o.act_in_linear) {
      next_in = act_quantizer();
    } else {
      seq->add(std::make_shared<QuantAct>(act_quantizer()));
    }
    if (o.dropout_hidden > 0.0f) seq->add(std::make_shared<Dropout>(o.dropout_hidden, rng));
    fan_in = h;
  }
  seq->add(linear(fan_in, classes, next_in, o.quantize_classifier));
  seq->add(make_bn(classes));
  return seq;
}

}  // namespace qnn
