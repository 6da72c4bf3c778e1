// layers/quant/export.h — a trained Module -> a deployable packed model
// (kernels/packed_model.h: the .qnnx file format and its runner).
//
// What it takes. The model's leaves (Sequential flattened) must form chains
//   [Dropout | Flatten]* product [BatchNorm1d | ShiftBatchNorm1d]? [ReLU | sign]?
// where the product is
//   fp  : Linear, or QuantLinear without quantizers      -> dense_f32 (fp32 weights)
//   bnn : QuantLinear with a 1-bit weight quantizer       -> dense_binary (1 bit/weight)
//         (Sign, StochasticSign — exported as its eval-mode Sign — or Uniform{1, 1}),
//         input: the previous layer's signs; sign() of its real input
//         (input_quantizer Sign, or a QuantAct before it); or, for the first
//         layer with real input, the pixels as 8-bit integers (needs
//         input_scale odd_over_256, the scaling the apps train with).
// and the "sign" after batch norm is a QuantAct(Sign) or the next
// QuantLinear's Sign input quantizer (larq style). Dropout is skipped (eval).
// Anything else — k-bit quantizers (qnn models), HardTanh, conv layers — is
// refused with a qnn::Error naming the layer ("export supports fp and bnn
// models ...").
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
//   * followed by logits (or ReLU): into per-channel center/scale/shift that
//     the runner applies as (y - center) * scale + shift in float (center = 0
//     for batch norm, the running mean for shift-based batch norm).
// With verify (default), every folded layer is also checked against the batch
// norm module's own forward (eval mode) at the ends of the range and at each
// threshold.
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
