// apps/common/mlp.h — the MLP family used by mnist_mlp, sweep, benchmarks and
// the end-to-end tests: model builder, one training epoch, evaluation.
//
//   fp : 784 -> [Linear -> BN -> ReLU -> Dropout] x L -> Linear -> BN
//   bnn/qnn (QNN paper): 784 -> [QuantLinear -> BN -> QuantAct] x L -> QuantLinear -> BN
//        the first layer's input stays real (pixels), the last layer has
//        quantized weights followed by batch norm.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

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
  // Negative values mean "the model's default" (resolve_defaults fills them):
  float dropout = -1;          // after each hidden block: fp 0.2, bnn/qnn 0
  float input_dropout = -1;    // on the input pixels: fp 0, bnn/qnn 0.2 (Courbariaux)
  int wbits = -1, abits = -1;  // bits of weights / activations: bnn 1/1, qnn 2/2, fp 32/32
  std::string surrogate = "hardtanh";         // activation quantizers' pseudo-gradient
  std::string weight_surrogate = "hardtanh";  // weight quantizers' (BinaryNet: clipped STE)
  std::string binarize = "det";  // det | stoch (1-bit activations only)
  bool shift_bn = false;
  int lr_scale = -1;           // Courbariaux's per-layer LR scale: on for bnn/qnn
  float bn_momentum = 0.1f;
  float bn_eps = -1;           // fp 1e-5 (PyTorch), bnn/qnn 1e-4 (Courbariaux)
  // bnn/qnn: compute quantized products with the bit-packed kernels and
  // fused ops (layers/quant/binary_linear_op.h): 1 on, 0 off, -1 the process
  // default (env QNN_QUANT_KERNELS=on|off, else on; resolve_defaults fills it
  // in). build_mlp sets it on every QuantLinear (set_quant_kernels). Results
  // are identical either way; only speed and memory differ.
  int kernels = -1;
};

// Fill the "-1 = default" fields for c.model and check the combination;
// throws qnn::Error naming the offending flag.
void resolve_defaults(MlpConfig& c);

// Throws qnn::Error for impossible combinations (e.g. wbits 0).
void validate(const MlpConfig& c);
std::shared_ptr<Module> build_mlp(const MlpConfig& c, Rng& rng);

enum class LossKind { xent, sqhinge };
LossKind parse_loss(const std::string& s);
Tensor compute_loss(LossKind k, const Tensor& logits, const std::vector<int32_t>& y);

// Thrown by train_epoch when the loss becomes NaN or infinite, so callers
// (e.g. the sweep) can record a diverged run and go on.
struct Diverged : Error {
  using Error::Error;
};

struct EpochStats {
  double loss = 0, acc = 0, seconds = 0, images_per_s = 0;
  int64_t images = 0;
};

// One pass over the loader's epoch `epoch`: forward, loss, backward, step.
// `progress(done, total, running_loss)` is called after every batch.
// Throws qnn::Error if the loss becomes NaN/Inf (diverged), naming the step.
EpochStats train_epoch(Module& model, Optimizer& opt, const DataLoader& loader, int64_t epoch, LossKind loss,
                       const std::function<void(int64_t, int64_t, double)>& progress = {});

struct EvalStats {
  double loss = 0, acc = 0, seconds = 0;
};
EvalStats evaluate(Module& model, const Dataset& ds, LossKind loss, int64_t batch = 1000);

// A progress line on stderr, redrawn at most every 0.5 s (no output when
// stderr is not a terminal, except the final line).
class Progress {
 public:
  explicit Progress(std::string label);
  void update(int64_t done, int64_t total, double loss);
  void finish();

 private:
  std::string label_;
  double t0_, last_ = -1;
  bool tty_;
};

double now_seconds();

}  // namespace qnn::app
