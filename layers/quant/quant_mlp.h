// layers/quant/quant_mlp.h — build a quantized MLP in one call (apps, tests).
//
// Default layout (Courbariaux's Theano MNIST MLP, activation as its own layer):
//
//   [Dropout(p_in)] -> QuantLinear(in, H1) -> BN -> QuantAct -> [Dropout(p_h)]
//                   -> QuantLinear(H1, H2) -> BN -> QuantAct -> [Dropout(p_h)] ...
//                   -> QuantLinear(HL, classes) -> BN                 (logits)
//
// With act_in_linear = true the activation quantizer moves into the next
// QuantLinear as its input_quantizer (larq style): the same function, but
// each hidden QuantLinear then multiplies quantized operands, reports
// honest a-bits in the summary, and is the layer an XNOR-popcount kernel can
// take over. (It cannot be combined with hidden dropout, which sits between
// the sign and the next product in Courbariaux's recipe.)
//
// Weights: quantizer_for_bits(weight_bits, surrogate, stochastic_weights),
// latent weights glorot-initialised and clipped to [-1, 1] after each step,
// Courbariaux's per-layer LR scale. act_bits = 32 uses HardTanh (no quantizer).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/rng.h"
#include "layers/batchnorm.h"
#include "layers/module.h"
#include "layers/quant/surrogate.h"

namespace qnn {

struct QuantMLPOptions {
  std::vector<int64_t> hidden{2048, 2048, 2048};
  int weight_bits = 1;              // 1..16, or 32 = full precision
  int act_bits = 1;                 // 1..16, or 32 = real (HardTanh)
  int input_bits = 32;              // first layer's input: 32 = real, else Uniform{bits, 1}
  Surrogate surrogate{};            // pseudo-gradient of the activation (and input) quantizers
  // Pseudo-gradient of the weight quantizers. Default: BinaryNet's clipped
  // straight-through estimator, whatever `surrogate` is: the latent weights
  // live in [-1, 1] (clip), and a steep surrogate such as tanh(Kx) would
  // starve every weight far from 0 of gradient (K(1 - tanh^2(K)) ~ 0.03 at |w|=1).
  Surrogate weight_surrogate{};
  bool stochastic_weights = false;  // StochasticSign weights (weight_bits 1 only)
  bool stochastic_acts = false;     // StochasticSign activations (act_bits 1 only)
  bool act_in_linear = false;       // see above
  float dropout_in = 0.0f;          // on the input (Courbariaux: 0.2)
  float dropout_hidden = 0.0f;      // after each hidden activation (Courbariaux: 0.5)
  BatchNormOptions bn{0.1f, 1e-4f, true};  // Courbariaux: alpha 0.1, eps 1e-4
  bool shift_bn = false;            // ShiftBatchNorm instead of BatchNorm1d
  bool glorot_lr_scale = true;      // Courbariaux's W_LR_scale on quantized weights
  bool clip_weights = true;         // Clip{-1, 1} on quantized weights
  bool quantize_classifier = true;  // false: the last layer keeps fp32 weights
  bool bias = false;                // biases in the QuantLinears (BN follows anyway)
};

std::shared_ptr<Sequential> quant_mlp(int64_t in, int64_t classes, Rng& rng, const QuantMLPOptions& opt = {});

}  // namespace qnn
