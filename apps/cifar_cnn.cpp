// apps/cifar_cnn.cpp — train and evaluate a CNN on CIFAR-10 or SVHN, full
// precision, binarized (BinaryNet) or k-bit (QNN): BinaryNet's CIFAR-10
// network (--arch binarynet) or FINN's CNV (--arch cnv), apps/common/cnn.h.
//
//   build/apps/cifar_cnn --data datasets/cifar10 --model bnn --threads 2   # the recipe below
//   build/apps/cifar_cnn --model fp                                  # its full-precision twin
//   build/apps/cifar_cnn --dataset svhn --model qnn --wbits 2 --abits 2
//   build/apps/cifar_cnn --model bnn --limit-train 2000 --epochs 1 --threads 1   # a quick look
//
// --data takes any layout data/images.h reads: the official CIFAR-10 binary
// batches, image folders (DIR/{train,test}/<class>/*.png|jpg), SVHN's
// {train,test}_32x32.mat. Protocol (apps/common/cnn_train.h): 5,000
// class-balanced training images validate; the model of the best-validation
// epoch is tested, saved and exported.
//
// THE RECIPE (the defaults; every value is a flag):
// BinaryNet's CIFAR-10 recipe (Courbariaux et al. 2016) is the full-width
// network (128-128-256-256-512-512 convs, 1024-1024 FC), batch 50, Adam
// 1e-3 -> 3e-7 over 500 epochs, no augmentation: 88.6 % test, and days of
// CPU. The target here is >= 82 % (bnn) / >= 87 % (fp) test on CIFAR-10 in
// under 2 hours on a 2-core machine.
//   - width 0.5 (BinaryNet's SVHN network: 64-64-128-128-256-256 convs,
//     FC still 1024): a quarter of the conv arithmetic of width 1.
//   - bnn / qnn 28 epochs of 45,000 images, fp 20 (cnn_epochs_default): on
//     a 2-core Zen 5 a bnn epoch takes 150-210 s with validation (the
//     host's speed varies), so 28 epochs take 70-100 minutes.
//   - augmentation on: random crop with 4-pixel padding + horizontal flip
//     for CIFAR-10, the crop alone for SVHN (a mirrored digit is another
//     glyph).
//   - Adam from 1e-3 (BinaryNet's start), decaying exponentially over the
//     run to 2e-5 (a 50x decay: the last epochs settle the signs and the
//     batch-norm statistics); squared hinge loss (bnn/qnn), batch 50
//     (BinaryNet's), BN eps 1e-4, latent weights clipped to [-1, 1] with
//     Courbariaux's per-layer LR scale, hard-tanh straight-through estimator,
//     the bit-packed kernels on (identical results, faster).
//   - fp: the same topology with ReLU, cross-entropy, augmentation and
//     per-channel normalisation (training-split statistics), and AdamW
//     with weight decay 0.2 (decoupled: each step shrinks the weights by
//     lr * 0.2) instead of Adam: the float net over-fits without it.
//   - padding: zero (BinaryNet's). --pad one pads quantized inputs with +1
//     (Larq's pad_values = 1).
//   - shortcuts: off (BinaryNet's plain chain). --shortcuts on adds Bi-Real
//     Net's real-valued shortcuts around the layers that keep their width
//     (apps/common/cnn.h); +3.9 points in a 4-epoch run on 10,000 images
//     (docs/results-log.md "Session 16"), not yet measured at full length.
// Measured (docs/results.md, the study; Zen 5): bnn 79.79 % test in 84.5
// minutes (session 10; best-validation epoch 26 of 28), above the QNN
// report's 1-bit 78.86 %, short of the 82 % target. fp with AdamW 0.2:
// 87.61 % in 85 minutes (session 13; epoch 18 of 20), above the report's
// 81.54 % and the 87 % target. With plain Adam the fp net reached 86.77 %
// (session 10): it over-fitted from epoch 10 (training 93.7 %, validation
// 86.7 % at the end); dropout 0.3 on the hidden FC layers closed that gap
// but not on validation (86.36 %, session 11), so --dropout stays 0, while
// the decoupled decay lifted validation from epoch 10 on (87.6 % at best).
// The bnn's training accuracy (81.2 % at epoch 28) stays level with
// validation (80.2 % at best): the augmented half-width net is short of
// capacity or epochs, not over-fitting. Width 0.75 for 22 epochs gave
// 81.18 % (session 12) but took 135 minutes, more than the 2 hours the
// recipe must fit. Without augmentation it over-fits instead (training
// passes validation at epoch 8; 75.0 % val at epoch 11, stopped; session 9).
// docs/results-log.md "Session 6" and "Session 9" to "Session 13" have the
// runs.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>

#include "apps/common/cli_main.h"
#include "apps/common/cnn_train.h"
#include "apps/common/flags.h"
#include "apps/common/mlp.h"  // bits_validator, surrogate_validator

using namespace qnn;

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress interleaves sensibly with stderr
  app::CnnAppOptions o;
  auto& c = o.cnn;
  auto& t = o.train;
  c.width = app::kCnnWidth;
  t.epochs = app::kCnnEpochs;
  t.batch = app::kCnnBatch;
  t.val = app::kCnnVal;
  std::optional<int> wbits, abits, lr_scale;
  std::optional<float> dropout, bn_eps;
  std::optional<std::string> augment, normalize, shortcuts;

  CLI::App cli{"Train and evaluate a CNN (BinaryNet's CIFAR-10 net or FINN's CNV) on CIFAR-10 / SVHN, full "
               "precision, binarized or k-bit (qnn)."};
  cli.add_option("--dataset", o.dataset, "cifar10 | svhn")->capture_default_str()->check(app::one_of({"cifar10", "svhn"}));
  cli.add_option("--data", o.data,
                 "directory: CIFAR-10 binary batches, image folders {train,test}/<class>/, or SVHN .mat files "
                 "(default: datasets/<dataset>)");
  cli.add_option("--model", c.model, "fp | bnn | qnn")->capture_default_str()->check(app::one_of({"fp", "bnn", "qnn"}));
  cli.add_option("--arch", c.arch, "binarynet | cnv")->capture_default_str()->check(app::one_of({"binarynet", "cnv"}));
  cli.add_option("--width", c.width, "conv channel multiplier, in (0, 16] (1 = BinaryNet's CIFAR-10 widths)")
      ->capture_default_str()
      ->check(app::number_in(0, 16, true, false, "a number in (0, 16]"));
  cli.add_option("--fc", c.fc, "hidden FC width, 1..65536 (default: binarynet 1024, cnv 512)")
      ->check(app::integer_in(1, 65536, "an integer in 1..65536"));
  cli.add_option("--pad", c.pad_mode, "zero | one: what padded taps of a quantized conv input hold")
      ->capture_default_str()
      ->check(app::one_of({"zero", "one"}));
  cli.add_option("--shortcuts", shortcuts,
                 "on | off: real-valued shortcuts around the binarynet layers that keep their width (default: a --load checkpoint's, else off)")
      ->check(app::one_of({"on", "off"}));
  app::add_training_flags(cli, t);
  cli.get_option("--val")->description(
      "validation images, class-balanced, from the training set (>= 0; default 5000, or a tenth of --limit-train)");
  cli.get_option("--limit-train")->description("use N class-balanced training images (>= 1; quick runs)");
  cli.get_option("--epochs")
      ->description("training epochs (>= 0; default: the recipe's, bnn/qnn " + std::to_string(app::kCnnEpochs) +
                    ", fp " + std::to_string(app::kCnnEpochsFp) + ")")
      ->default_str("");
  cli.get_option("--optimizer")->description("adam | adamw | sgd | adamax | adamax-shift (default: fp adamw, bnn/qnn adam)");
  cli.get_option("--weight-decay")
      ->description("weight decay (>= 0; default: fp " + app::float_str(app::kCnnWeightDecayFp) +
                    " with adamw, else 0): adamw shrinks the weights by lr * wd per step, the other optimizers add "
                    "wd * w to the gradient (L2)");
  cli.add_option("--augment", augment,
                 "on | crop+flip | crop | off: random crop (pad 4) and horizontal flip of training images (on, the "
                 "default: the data set's recipe, cifar10 crop+flip, svhn crop: a mirrored digit is another glyph)")
      ->check(app::one_of({"on", "crop+flip", "crop", "off"}));
  cli.add_option("--normalize", normalize,
                 "on | off: per-channel normalisation with the training split's statistics (default: fp on, bnn/qnn off)")
      ->check(app::one_of({"on", "off"}));
  cli.add_option("--wbits", wbits, "qnn: weight bits, 1..16 or 32 (default 2; bnn: 1)")->check(app::bits_validator());
  cli.add_option("--abits", abits, "qnn: activation bits, 1..16 or 32 (default 2; bnn: 1)")->check(app::bits_validator());
  cli.add_option("--surrogate", c.surrogate, "pseudo-gradient: hardtanh | ste:C | tanh:K | periodic:K | identity")
      ->capture_default_str()
      ->check(app::surrogate_validator());
  cli.add_option("--weight-surrogate", c.weight_surrogate, "pseudo-gradient of the weight quantizers")
      ->capture_default_str()
      ->check(app::surrogate_validator());
  cli.add_flag("--shift-bn", c.shift_bn, "shift-based batch norm (AP2), quantized models");
  cli.add_option("--lr-scale", lr_scale, "1: Courbariaux's per-layer LR scale (default on for bnn/qnn), 0: off")
      ->check(app::one_of({"0", "1"}));
  cli.add_option("--dropout", dropout, "fp: dropout after the hidden FC layers' ReLUs (not the convs'), in [0, 1) (default 0)")
      ->check(app::probability_below_one());
  cli.add_option("--bn-eps", bn_eps, "batch-norm epsilon, > 0 (default 1e-5 fp, 1e-4 bnn/qnn)")
      ->check(app::positive_number());
  cli.add_option("--bn-momentum", c.bn_momentum, "batch-norm running-average momentum, in [0, 1]")
      ->capture_default_str()
      ->check(app::number_in(0, 1, false, false, "in [0, 1]"));
  cli.add_flag("--allow-mismatch", o.allow_mismatch,
               "--load a checkpoint whose metadata names other data (a warning instead of an error)");
  return app::parse_and_run(cli, argc, argv, "cifar_cnn", [&] {
    if (wbits) c.wbits = *wbits;
    if (abits) c.abits = *abits;
    if (lr_scale) c.lr_scale = *lr_scale;
    if (dropout) c.dropout = *dropout;
    if (bn_eps) c.bn_eps = *bn_eps;
    if (augment) o.augment = *augment;
    if (shortcuts) o.shortcuts = *shortcuts == "on";
    if (normalize) o.normalize = *normalize == "on";
    o.val_given = cli.count("--val") > 0;
    o.epochs_from_recipe = cli.count("--epochs") == 0;
    app::run_cifar_cnn(o);
    return 0;
  });
}
