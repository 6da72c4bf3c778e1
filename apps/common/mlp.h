// apps/common/mlp.h — the MLP family used by mnist_mlp, sweep, benchmarks and
// the end-to-end tests: model builder and its defaults (the training loop,
// one epoch and evaluation are in apps/common/train_loop.h).
//
//   fp : 784 -> [Linear -> BN -> ReLU -> Dropout] x L -> Linear -> BN
//   bnn/qnn (QNN paper): 784 -> [QuantLinear -> BN -> QuantAct] x L -> QuantLinear -> BN
//        the first layer's input stays real (pixels), the last layer has
//        quantized weights followed by batch norm.
#pragma once

#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "apps/common/flags.h"
#include "apps/common/train_loop.h"
#include "core/rng.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "layers/module.h"
#include "optim/optimizer.h"

namespace qnn::app {

// Input pixels as (2p - 255) / 256 (data/dataset.h explains why: exact
// arithmetic shared by training and deployed bit-plane kernels).
inline MnistOptions mnist_options(int64_t limit = -1) {
  MnistOptions o;
  o.scale = PixelScale::OddOver256;
  o.limit = limit;
  return o;
}

struct MlpConfig {
  std::string model = "fp";  // fp | bnn | qnn
  int64_t in = 784, hidden = 2048, layers = 3, classes = 10;
  // Unset (std::nullopt) means "the model's default"; resolve_defaults fills them:
  std::optional<float> dropout;        // after each hidden block: fp 0.2, bnn/qnn 0
  std::optional<float> input_dropout;  // on the input pixels: fp 0, bnn/qnn 0.2 (Courbariaux)
  std::optional<int> wbits, abits;     // bits of weights / activations: bnn 1/1, qnn 2/2, fp 32/32
  std::string surrogate = "hardtanh";         // activation quantizers' pseudo-gradient
  std::string weight_surrogate = "hardtanh";  // weight quantizers' (BinaryNet: clipped STE)
  std::string binarize = "det";  // det | stoch (1-bit activations only)
  bool shift_bn = false;
  std::optional<bool> lr_scale;  // Courbariaux's per-layer LR scale: on for bnn/qnn
  float bn_momentum = 0.1f;
  std::optional<float> bn_eps;   // fp 1e-5 (PyTorch), bnn/qnn 1e-4 (Courbariaux)
  // bnn/qnn: compute quantized products with the bit-packed kernels and
  // fused ops (layers/quant/binary_linear_op.h); unset: the process default
  // (env QNN_QUANT_KERNELS=on|off, else on). build_mlp sets it on every
  // QuantLinear (set_quant_kernels). Results are identical either way; only
  // speed and memory differ.
  std::optional<bool> kernels;
};

// Fill the unset fields with c.model's defaults and check the combination;
// throws qnn::Error naming the offending flag.
void resolve_defaults(MlpConfig& c);

// Throws qnn::Error for impossible combinations (e.g. wbits 0) and for
// fields resolve_defaults has not filled.
void validate(const MlpConfig& c);
std::shared_ptr<Module> build_mlp(const MlpConfig& c, Rng& rng);

// The training defaults of the MLP family, for flags the user did not give:
// lr (fp 1e-3, bnn/qnn 3e-3), lr_end, loss (fp xent, bnn/qnn sqhinge); returns
// the per-epoch LR factor of the default schedule (0: --lr-end over the run).
// Shared by mnist_mlp and the sweep so a sweep cell is the mnist_mlp run.
float resolve_training_defaults(const std::string& model, TrainFlags& f);

// Flag validators of the MLP family: bits are 1..16 or 32; a surrogate is
// what parse_surrogate reads (hardtanh | ste:C | tanh:K | periodic:K | identity).
CLI::Validator bits_validator();
CLI::Validator surrogate_validator();

}  // namespace qnn::app
