// apps/common/cnn_train.h — training the CNN family (apps/common/cnn.h) on
// CIFAR-10 / SVHN / image folders: the recipe's defaults, the data protocol
// and the whole cifar_cnn run. One copy, used by apps/cifar_cnn, the sweep's
// `--app cifar_cnn` cells and the end-to-end tests, so that a sweep cell or a
// test run IS a cifar_cnn run.
//
// The data protocol (Courbariaux et al. 2016, BinaryNet: 45k train / 5k
// validation):
//   - `--limit-train N` keeps N training images chosen class-balanced
//     (pick_balanced, data/dataset.h), before the validation split;
//   - the validation set is `--val` images (default 5,000; with
//     --limit-train and no --val, a tenth of N) chosen class-balanced by
//     split_val_balanced — image folders and .mat files are sorted by class,
//     so a plain tail would be one class;
//   - pixels are (2p - 255)/256 (the apps' exact-export scaling, [-1, 1] up
//     to 255/256); with normalisation (the fp default) each channel is then
//     standardised with the training split's mean and standard deviation,
//     which travel in the model's metadata so --load / --eval-only use the
//     values the model was trained with;
//   - augmentation (training batches only, data/dataloader.h): CIFAR-10's
//     default is a random crop with 4-pixel padding, then a horizontal flip
//     with probability 1/2 (torchvision's recipe); SVHN's is the crop alone,
//     because a mirrored digit is another glyph (a mirrored 2 is no 2), and
//     BinaryNet's SVHN run did not flip either.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "apps/common/cnn.h"
#include "apps/common/flags.h"
#include "apps/common/train_loop.h"
#include "data/dataloader.h"
#include "data/dataset.h"

namespace qnn::app {

// ---- the recipe: values of flags the user did not give (apps/cifar_cnn.cpp
// explains the choice) --------------------------------------------------------
inline constexpr float kCnnWidth = 0.5f;   // --width
inline constexpr int kCnnEpochs = 28;      // --epochs of bnn / qnn (cnn_epochs_default)
inline constexpr int kCnnEpochsFp = 20;    // --epochs of fp
inline constexpr int64_t kCnnBatch = 50;   // --batch (BinaryNet's)
inline constexpr int64_t kCnnVal = 5000;   // --val (BinaryNet's 45k / 5k split)
inline constexpr float kCnnWeightDecayFp = 0.2f;  // --weight-decay of fp with adamw (resolve_cnn_training_defaults)

// The flags the user did not give, for `model`:
//   --optimizer     fp: adamw, bnn/qnn: adam (shrinking latent weights
//                   towards 0 only makes their signs flip more often);
//   --weight-decay  fp with adamw: kCnnWeightDecayFp, also when --optimizer
//                   adamw is given alone (bnn/qnn with adamw: the library's
//                   0.01, resolve_training_flags);
//   --loss          fp: xent, bnn/qnn: sqhinge;
//   --lr, --lr-end  1e-3 (BinaryNet's CIFAR-10 start) to --lr / 50 at the
//                   last epoch, exponentially over the run.
// Returns the per-epoch factor for TrainJob::lr_decay: 0 (the decay is over
// the run, whatever --epochs is).
float resolve_cnn_training_defaults(const std::string& model, TrainFlags& f);
// The recipe's epoch budget for `model`: kCnnEpochsFp for fp, kCnnEpochs
// for the quantized models (both fit 2 hours on a 2-core Zen 5).
int cnn_epochs_default(const std::string& model);
// Per-channel normalisation by default: fp yes, bnn/qnn no (BinaryNet feeds
// the scaled pixels; the first binary layer's sign weights do not care).
bool cnn_normalize_default(const std::string& model);
// The training loader's augmentation, by the name --augment resolves to and
// the config records: "crop4+flip", "crop4" or "off".
Augment cnn_augment(const std::string& mode);
// The recipe's augmentation for a data set: cifar10 "crop4+flip", svhn "crop4".
std::string cnn_augment_default(const std::string& dataset);
// --augment's value as the config records it: on (the data set's recipe),
// crop+flip, crop, off. Throws qnn::Error naming the flag for anything else.
std::string resolve_cnn_augment(const std::string& flag, const std::string& dataset);

// ---- data ----------------------------------------------------------------------

struct CnnDataOptions {
  std::string dataset = "cifar10";  // cifar10 | svhn: the metadata name; checked against the layout found
  std::string dir;                  // any layout load_image_dataset reads; "" -> datasets/<dataset>
  int64_t val = kCnnVal;            // validation images (0: none)
  std::optional<int64_t> limit_train;
  bool need_train = true;           // false (--eval-only): only the test split is read
};

struct CnnData {
  std::string layout;  // detect_image_layout's name
  Dataset train, val, test;  // train / val empty when !need_train
};

// Loads and splits as the protocol above says; throws qnn::Error naming the
// flag when --val leaves nothing to train on, or the directory when it holds
// no data (or data of the other data set: SVHN .mat files for --dataset
// cifar10 and vice versa).
CnnData load_cnn_data(const CnnDataOptions& o);

// Sets (or clears, for empty vectors) the normalisation of every split.
void set_cnn_normalization(CnnData& d, const std::vector<float>& mean, const std::vector<float>& stdev);

// ---- the model's report -------------------------------------------------------

// The --json "model" object: params, bytes_fp32, bytes_packed, per-layer
// {name, type, output, params, quant_params, weight_bits, input_bits,
// bytes_packed}. With `print`, also prints the summary table and, for
// quantized models, each product layer's kernel path.
nlohmann::json describe_cnn(Module& model, const Shape& input, bool print);

// ---- the cifar_cnn program ------------------------------------------------------

struct CnnAppOptions {
  std::string dataset = "cifar10";
  std::string data;  // "" -> datasets/<dataset>
  CnnConfig cnn;     // --model --arch --width --wbits --abits --surrogate --weight-surrogate --pad --shift-bn
  TrainFlags train;  // the shared flags (epochs, batch, val defaults set by the app)
  bool val_given = false;  // --val on the command line (else scaled with --limit-train)
  bool epochs_from_recipe = false;  // no --epochs: train.epochs becomes cnn_epochs_default(model)
  std::optional<std::string> augment;  // --augment as given (unset: the recipe's); resolved: "crop4+flip" | "crop4" | "off"
  std::optional<bool> normalize;       // unset: the recipe's
  std::optional<bool> shortcuts;       // --shortcuts as given (unset: a --load checkpoint's, else off)
  bool allow_mismatch = false;
  bool quiet = false;  // tests: no summary table / per-epoch lines
};

// The resolved configuration as printed and stored (--json "config", the
// model metadata's "arch"). Call after resolve_cnn_app.
nlohmann::json cnn_config_json(const CnnAppOptions& o, float lr_decay);

// Fills every default (recipe, model, cross-flag) and checks the
// combination; returns the per-epoch LR factor. Throws qnn::Error naming the
// flag.
float resolve_cnn_app(CnnAppOptions& o);

// What `cifar_cnn` does after parsing its flags: resolve, load, print the
// config / data / model, train through run_training, test the
// best-validation model, --save / --export / --json.
TrainResult run_cifar_cnn(CnnAppOptions& o);

}  // namespace qnn::app
