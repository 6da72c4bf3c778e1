// layers/quant/export.h — a trained Module -> a deployable packed model
// (kernels/packed_model.h: the .qnnx file format and its runner).
//
// What it takes. The model's leaves (Sequential flattened) must form chains
//   [Dropout | Flatten | QuantAct]* product [BatchNorm1d | ShiftBatchNorm1d]? [ReLU | sign]?
// where the product is
//   fp  : Linear, or QuantLinear without quantizers      -> dense_f32 (fp32 weights)
//   bnn : QuantLinear with a 1-bit weight quantizer       -> dense_binary (1 bit/weight)
//         (Sign, StochasticSign — exported as its eval-mode Sign — or Uniform{1, 1}),
//         input: the previous layer's signs; sign() of its real input
//         (input_quantizer Sign, or a QuantAct(Sign) before it); or, for the
//         first layer with real input, the pixels as 8-bit integers (needs
//         input_scale odd_over_256, the scaling the apps train with).
//   qnn : QuantLinear with a k-bit weight quantizer       -> dense_levels (k bits/weight)
//         (Uniform{k, a}, k = 1..16; also Uniform{1, a != 1}, and Sign weights
//         whose input is k-bit), the weights stored as the quantizer's levels.
//         Input, as the training framework's eval forward computes it
//         (layers/quant/quant_linear.h kernel paths):
//           - the layer's own input quantizer (Sign, StochasticSign as Sign,
//             Uniform{1..16, a}) and exact integer sums (uniform_linear_exact):
//             uniform_linear, runner input `levels`;
//           - a QuantAct(Sign | Uniform) before it (Courbariaux style, the
//             QuantLinear itself has no input quantizer), or its own input
//             quantizer with sums too wide to be exact: linear on the
//             quantizer's float outputs, runner input `levels_f32`;
//           - real input (the first layer, or real activations): linear(x, wq),
//             runner input `real`.
// and the "sign" after batch norm is a QuantAct(Sign) or the next
// QuantLinear's Sign input quantizer (larq style); it is folded into integer
// thresholds only when a binary product consumes it (else it stays a
// QuantAct, applied by the next layer). Dropout is skipped (eval). Refused,
// with a qnn::Error naming the layer: quantized inputs times full-precision
// weights, quantizer classes whose eval arithmetic export does not know, two
// activation quantizers in a row, HardTanh, conv layers, a model ending in a
// quantizer.
//
// Batch norm is folded with the training framework's own eval arithmetic
// (core/ops.h batch_norm_istd / batch_norm_fold / batch_norm_apply):
//   * followed by a sign: into one integer threshold + flip per channel.
//     The product's value is an exact function of an integer V (the dot
//     product, or V/256 for 8-bit pixels, plus the bias in float if any), so
//     the sign is the predicate  P(V) = !(batch_norm_apply(y(V), scale, shift) < 0)
//     (sign(0) = +1) evaluated in float exactly as in training. With finite
//     scale/shift, P is monotone in V (float rounding is monotone), so a binary
//     search over V's integer range finds where it flips: P(V) = (V >= T) XOR flip.
//     This covers scale < 0 (flip), scale == 0 and "always/never" channels
//     (T = the range's minimum, flip = the constant) with no special cases, and
//     reproduces the float predicate bit for bit — unlike a real-arithmetic
//     fold such as kernels::fold_affine_sign (ceil(-b/a)), which can be off by
//     one where the float rounding of y*scale + shift lands on the other side
//     of 0.
//   * followed by logits, ReLU or a k-bit quantizer (including every batch
//     norm after a dense_levels or dense_f32 layer): into per-channel
//     center/scale/shift that the runner applies as (y - center) * scale +
//     shift in float (center = 0 for batch norm, the running mean for
//     shift-based batch norm); the next layer quantizes those floats itself,
//     with the quantizer's own arithmetic (kernels/level_planes.h).
// With verify (default), every folded layer is also checked against the batch
// norm module's own forward (eval mode) at the ends of the range and at each
// threshold (sign folds) or at sample values (float affine maps), and every
// k-bit layer's stored levels are decoded and compared with its weight
// quantizer's own output, bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/packed_model.h"
#include "layers/module.h"

namespace qnn {

struct ExportOptions {
  std::vector<int64_t> input_dims;  // empty: {first layer's in_features}
  kernels::InputScale input_scale = kernels::InputScale::odd_over_256;
  bool verify = true;
  // Stored in the file as PackedModel::meta (format version 3; empty: none,
  // and the file stays version 1 / 2). The apps pass apps/common/model_meta.h
  // JSON: what the model was trained on, so qnn_infer can check its data.
  std::string meta;
};

// The model as a PackedModel (the Module is not changed; train/eval mode is
// restored). Throws qnn::Error naming the offending layer.
kernels::PackedModel export_model(Module& model, const ExportOptions& opt = {});

// export_model, then written atomically (core/fileio.h). Returns the file size.
int64_t export_model_file(Module& model, const std::string& path, const ExportOptions& opt = {});

// ---- the fold, exposed for tests ------------------------------------------------
// Per-channel eval affine map: z = (y - center) * scale + shift.
struct ChannelAffine {
  float center = 0.f, scale = 1.f, shift = 0.f;
};
struct SignThreshold {
  int32_t thresh = 0;
  uint8_t flip = 0;
};
// y(V) = float(V) (/ 256 if pixels) (+ bias in float if has_bias); returns
// (T, flip) with !(z(y(V)) < 0) == ((V >= T) XOR flip) for every integer V in
// [-vmax, vmax]. Needs finite parameters (throws qnn::Error otherwise).
SignThreshold fold_sign_threshold(int64_t vmax, bool pixels, bool has_bias, float bias, const ChannelAffine& a);

}  // namespace qnn
