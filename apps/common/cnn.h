// apps/common/cnn.h — the CNN family: BinaryNet's CIFAR-10/SVHN network and
// FINN's CNV, full precision, binarized (bnn) or k-bit (qnn).
//
// binarynet (Courbariaux et al. 2016, the Theano code's cifar10.py / svhn.py):
//   (2 x 128C3) - MP2 - (2 x 256C3) - MP2 - (2 x 512C3) - MP2 - 1024FC - 1024FC - 10FC
//   3x3 convolutions with padding 1, no biases, batch norm (eps 1e-4) after
//   every conv/FC, the max-pool between a conv and its batch norm
//   (conv -> MP -> BN -> sign), the last layer followed by batch norm.
//   `width` scales the conv channels (0.5 = the SVHN network 64-64-128-128-
//   256-256). The hidden FC width does NOT scale: svhn.py keeps 1024-1024 at
//   half the conv widths, so `fc` defaults to 1024 whatever `width` is.
// cnv (FINN / Brevitas bnn_pynq CNV):
//   64C3 - 64C3 - MP2 - 128C3 - 128C3 - MP2 - 256C3 - 256C3 - 512FC - 512FC - 10FC
//   unpadded 3x3 convs (32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5 -> 3 -> 1), batch
//   norm (eps 1e-4) after each, the pools after the 2nd and 4th conv's batch
//   norm (FINN: conv -> BN -> act -> MP). `width` scales the convs, `fc`
//   (default 512) the hidden FCs. FINN ends with a scalar TensorNorm; here
//   the classifier is followed by batch norm as in BinaryNet.
//
// Quantized models put each activation quantizer in the NEXT layer's input
// (larq style, as the MLP builder does): QuantConv2d / QuantLinear then
// multiply quantized operands and can run the XNOR / bit-serial kernels.
// The first layer's input is the real image (no input quantizer: zero
// padding, sign weights via the pm1 path). In CNV the quantizer thus runs
// after the max-pool instead of before it: max-pool commutes with a monotone
// quantizer, so the forward values are FINN's exactly; only the gradient is
// routed to the real-valued maximum instead of the first of tied quantized
// maxima. Quantized weights: latent, glorot-initialised, clipped to [-1, 1],
// Courbariaux's per-layer LR scale (on by default). --pad-mode one pads
// quantized inputs with +1 (the top level): the XNOR path applies to every
// padded binary conv; zero padding (BinaryNet's) makes them the float path.
//
// shortcuts (binarynet, --shortcuts on; Bi-Real Net's idea, layers/residual.h):
//   the layers whose input and output widths agree (the 2nd conv of each
//   block and the 2nd hidden FC) become y = BN(MP(conv(q(x)))) + MP(x), x the
//   previous batch norm's real output: every product stays 1-bit, and the
//   activations' magnitudes, which sign() drops, reach the next layer.
//
//   fp: the same topology with real weights, ReLU after each batch norm
//   (CNV: before the pool), optional Dropout after each hidden activation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/rng.h"
#include "layers/module.h"

namespace qnn::app {

struct CnnConfig {
  std::string model = "fp";         // fp | bnn | qnn
  std::string arch = "binarynet";   // binarynet | cnv
  float width = 1.0f;               // conv channel multiplier (> 0)
  int64_t fc = -1;                  // hidden FC width; -1: binarynet 1024, cnv 512
  // Negative values mean "the model's default" (resolve_cnn_defaults):
  int wbits = -1, abits = -1;       // bnn 1/1, qnn 2/2, fp 32/32
  std::string surrogate = "hardtanh";         // activation quantizers' pseudo-gradient
  std::string weight_surrogate = "hardtanh";  // weight quantizers' (BinaryNet: clipped STE)
  std::string pad_mode = "zero";    // zero | one: what padded taps of a quantized input hold
  bool shift_bn = false;            // shift-based batch norm (bnn/qnn)
  bool shortcuts = false;           // binarynet: real-valued shortcuts around the layers that keep their width
  int lr_scale = -1;                // Courbariaux's per-layer LR scale: on for bnn/qnn
  float bn_eps = -1;                // fp 1e-5, bnn/qnn 1e-4 (Courbariaux, FINN)
  float bn_momentum = 0.1f;
  float dropout = -1;               // fp only, after each hidden FC layer's ReLU; default 0
  int kernels = -1;                 // 1 on, 0 off, -1 the process default (QNN_QUANT_KERNELS)
  int64_t in_channels = 3, image = 32, classes = 10;  // square images [N, in_channels, image, image]
};

// Fills the "-1 = default" fields for c.model / c.arch and checks the
// combination; throws qnn::Error naming the offending option.
void resolve_cnn_defaults(CnnConfig& c);

// Throws qnn::Error for impossible configurations (bad arch, width <= 0,
// an image too small for the arch, dropout with bnn/qnn, ...).
void validate_cnn(const CnnConfig& c);

// The model: input [N, in_channels, image, image] -> logits [N, classes].
// Call resolve_cnn_defaults first (build_cnn validates, it fills nothing).
std::shared_ptr<Module> build_cnn(const CnnConfig& c, Rng& rng);

// Channels of a layer whose reference width is `base`: round(base * width), >= 1.
int64_t scaled_channels(int64_t base, float width);

}  // namespace qnn::app
