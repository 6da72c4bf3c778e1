// apps/common/cnn_train.cpp — see cnn_train.h.
#include "apps/common/cnn_train.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>

#include "apps/common/model_meta.h"
#include "core/serialize.h"
#include "kernels/denormals.h"
#include "kernels/winograd.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "layers/conv.h"
#include "layers/quant/export.h"
#include "layers/quant/quant.h"
#include "data/images.h"

namespace qnn::app {

using json = nlohmann::json;

// ---- the recipe ----------------------------------------------------------------

float resolve_cnn_training_defaults(const std::string& model, TrainFlags& f) {
  const bool quant = model != "fp";
  if (!f.optimizer) f.optimizer = quant ? "adam" : "adamw";
  if (!quant && *f.optimizer == "adamw" && !f.weight_decay) f.weight_decay = kCnnWeightDecayFp;
  if (!f.loss) f.loss = quant ? "sqhinge" : "xent";
  if (!f.lr) f.lr = 1e-3f;
  // BinaryNet's CIFAR-10 schedule is 1e-3 -> 3e-7 over 500 epochs. Over a
  // budget of tens of epochs a 3,000x decay would leave the last third of
  // the run at LRs where nothing moves; a 50x decay over the run (1e-3 ->
  // 2e-5, x0.76 per epoch at the default 15 epochs) anneals the signs and
  // batch-norm statistics in the last epochs and fits any --epochs budget.
  if (!f.lr_end) f.lr_end = *f.lr / 50;
  return 0.0f;  // the decay runs from --lr to --lr-end over the run
}

int cnn_epochs_default(const std::string& model) { return model == "fp" ? kCnnEpochsFp : kCnnEpochs; }

bool cnn_normalize_default(const std::string& model) { return model == "fp"; }

Augment cnn_augment(const std::string& mode) {
  QNN_CHECK(mode == "crop4+flip" || mode == "crop4" || mode == "off", "unknown augmentation '" + mode + "'");
  Augment a;
  if (mode != "off") a.crop_pad = 4;
  a.hflip = mode == "crop4+flip";
  return a;
}

std::string cnn_augment_default(const std::string& dataset) { return dataset == "svhn" ? "crop4" : "crop4+flip"; }

std::string resolve_cnn_augment(const std::string& flag, const std::string& dataset) {
  if (flag == "on") return cnn_augment_default(dataset);
  if (flag == "crop+flip") return "crop4+flip";
  if (flag == "crop") return "crop4";
  QNN_CHECK(flag == "off", "--augment must be on, crop+flip, crop or off, got '" + flag + "'");
  return "off";
}

// ---- data --------------------------------------------------------------------------

CnnData load_cnn_data(const CnnDataOptions& o) {
  const std::string dir = o.dir.empty() ? "datasets/" + o.dataset : o.dir;
  CnnData d;
  d.layout = detect_image_layout(dir);
  // The layout says which data set a directory holds for two of the three
  // formats; a mismatch would store the wrong name in the model's metadata.
  QNN_CHECK(!(o.dataset == "cifar10" && d.layout == "svhn-mat"),
            "--data " + dir + " holds SVHN .mat files but --dataset is cifar10 (use --dataset svhn)");
  QNN_CHECK(!(o.dataset == "svhn" && d.layout == "cifar10-bin"),
            "--data " + dir + " holds CIFAR-10 binary batches but --dataset is svhn (use --dataset cifar10)");
  ImageOptions io;
  io.scale = PixelScale::OddOver256;  // as mnist_mlp: exact products with +-1 weights, the export's input scaling
  d.test = load_image_dataset(dir, "test", io);
  if (!o.need_train) return d;
  io.limit = o.limit_train.value_or(-1);
  Dataset full = load_image_dataset(dir, "train", io);
  QNN_CHECK(full.sample_shape == d.test.sample_shape && full.num_classes == d.test.num_classes,
            "--data " + dir + ": the train and test splits differ in image shape or classes (" +
                shape_str(full.sample_shape) + " x " + std::to_string(full.num_classes) + " vs " +
                shape_str(d.test.sample_shape) + " x " + std::to_string(d.test.num_classes) + ")");
  const int64_t n = full.size();
  if (o.val >= n) {
    const std::string loaded = o.limit_train ? std::to_string(n) + " training images were loaded (--limit-train " +
                                                   std::to_string(*o.limit_train) + ")"
                                             : "the training set has " + std::to_string(n) + " images";
    fail("--val " + std::to_string(o.val) + " leaves no training images: " + loaded + "; use a smaller --val (e.g. --val " +
         std::to_string(n / 10) + ")" + (o.limit_train ? " or a larger --limit-train" : ""));
  }
  if (o.val > 0) {
    std::tie(d.train, d.val) = split_val_balanced(full, o.val);
  } else {
    d.train = std::move(full);
  }
  return d;
}

void set_cnn_normalization(CnnData& d, const std::vector<float>& mean, const std::vector<float>& stdev) {
  for (Dataset* ds : {&d.train, &d.val, &d.test})
    if (ds->has_pixels()) ds->set_normalization(mean, stdev);
}

// ---- the model's report ---------------------------------------------------------------

namespace {

void collect_leaves(Module& m, std::vector<Module*>& out) {
  if (m.children().empty()) out.push_back(&m);
  for (auto& [name, c] : m.children()) collect_leaves(*c, out);
}

}  // namespace

json describe_cnn(Module& model, const Shape& input, bool print) {
  if (print) {
    std::printf("\n%s\n", summary_table(model, input).c_str());
    // Which product layers compute with the bit-packed kernels (training mode).
    std::vector<Module*> leaves;
    collect_leaves(model, leaves);
    model.train(true);
    std::string paths;
    bool any = false, on = false;
    for (Module* l : leaves)
      if (auto* q = dynamic_cast<QuantProductLayer*>(l)) {
        any = true;
        on = on || q->product().kernels_enabled();
        const std::string what = dynamic_cast<QuantConv2d*>(l) ? "conv" : "fc";
        paths += " " + what + ":" + (q->product().kernels_enabled() ? quant_path_name(q->layer_path()) : "off");
      }
    if (any)
      std::printf("# kernels %s (isa %s):%s\n", on ? "on" : "off", kernels::isa_name(kernels::active_isa()),
                  paths.c_str());
  }
  return model_size_json(model, input);
}

// ---- the cifar_cnn program ------------------------------------------------------------

float resolve_cnn_app(CnnAppOptions& o) {
  auto& t = o.train;
  auto& c = o.cnn;
  if (o.data.empty()) o.data = "datasets/" + o.dataset;
  QNN_CHECK(o.dataset == "cifar10" || o.dataset == "svhn", "--dataset must be cifar10 or svhn, got '" + o.dataset + "'");
  if (t.kernels) c.kernels = *t.kernels ? 1 : 0;
  resolve_cnn_defaults(c);
  // Refused before training, not after it: the .qnnx format is a chain of
  // layers with folded thresholds, and a shortcut's add is not one.
  QNN_CHECK(!(c.shortcuts && !t.export_path.empty()),
            "--export: the .qnnx format holds chains of layers, not --shortcuts on (save a checkpoint with --save)");
  if (o.epochs_from_recipe) t.epochs = cnn_epochs_default(c.model);
  const float decay = resolve_cnn_training_defaults(c.model, t);
  o.augment = resolve_cnn_augment(o.augment.value_or("on"), o.dataset);
  if (!o.normalize) o.normalize = cnn_normalize_default(c.model);
  // --limit-train N without --val: validate on a tenth of N (BinaryNet's
  // 5k of 50k), so quick runs need no second flag.
  if (!o.val_given && t.limit_train) t.val = std::min<int64_t>(kCnnVal, *t.limit_train / 10);
  resolve_training_flags(t);
  check_output_paths(t);
  return decay;
}

json cnn_config_json(const CnnAppOptions& o, float lr_decay) {
  const auto& c = o.cnn;
  const auto& t = o.train;
  json j{{"dataset", o.dataset}, {"data", o.data}, {"model", c.model}, {"arch", c.arch}, {"width", f2d(c.width)},
         {"fc", c.fc}, {"wbits", c.wbits}, {"abits", c.abits}, {"surrogate", c.surrogate},
         {"weight_surrogate", c.weight_surrogate}, {"pad", c.pad_mode}, {"shift_bn", c.shift_bn},
         {"lr_scale", c.lr_scale}, {"bn_eps", f2d(c.bn_eps)}, {"bn_momentum", f2d(c.bn_momentum)},
         {"dropout", f2d(c.dropout)}, {"augment", o.augment.value()}, {"normalize", o.normalize.value_or(false)},
         {"pixel_scale", "(2p-255)/256"}, {"epochs", t.epochs}, {"batch", t.batch}, {"optimizer", *t.optimizer},
         {"lr", t.lr ? json(f2d(*t.lr)) : json(nullptr)}, {"lr_end", t.lr_end ? json(f2d(*t.lr_end)) : json(nullptr)},
         {"schedule", t.schedule}, {"loss", t.loss ? json(*t.loss) : json(nullptr)}, {"seed", t.seed},
         {"threads", t.threads.value_or(0)}, {"val", t.val}, {"patience", t.patience},
         {"kernels", c.kernels == 1 ? "on" : "off"}};
  if (lr_decay > 0) j["lr_decay"] = f2d(lr_decay);
  // Recorded only when on: configs written before the flag existed (a
  // sweep's finished cells) stay equal to today's plain ones.
  if (c.shortcuts) j["shortcuts"] = true;
  if (t.limit_train) j["limit_train"] = *t.limit_train;
  record_weight_decay(j, t);
  return j;
}

namespace {

// The "arch" object of a checkpoint's metadata (this program's config), or null.
json stored_arch(const std::string& path) {
  const json meta = parse_model_meta(load_meta(path), path);
  if (!meta.is_object() || !meta.contains("arch") || !meta["arch"].is_object()) return nullptr;
  return meta["arch"];
}

// The normalisation of a model loaded with --load: the one stored in its
// metadata's "arch" (written by this program), or none recorded.
std::optional<std::pair<std::vector<float>, std::vector<float>>> stored_normalization(const std::string& path) {
  const json a = stored_arch(path);
  if (!a.is_object() || !a.contains("normalization") || !a["normalization"].is_object()) return std::nullopt;
  const json& n = a["normalization"];
  try {
    return std::make_pair(n.at("mean").get<std::vector<float>>(), n.at("stdev").get<std::vector<float>>());
  } catch (const std::exception& e) {
    fail(path + ": the stored normalization is malformed (" + e.what() + ")");
  }
}

}  // namespace

TrainResult run_cifar_cnn(CnnAppOptions& o) {
  // A loaded model sees its input as it was trained (normalised or not)
  // unless --normalize says otherwise.
  // Likewise its shortcuts (the layer names differ with and without them):
  // taken from the metadata unless given, and a contradiction is named.
  if (!o.train.load_path.empty()) {
    const json a = stored_arch(o.train.load_path);
    if (!o.normalize && a.is_object() && a.contains("normalize") && a["normalize"].is_boolean())
      o.normalize = a["normalize"].get<bool>();
    if (a.is_object()) {
      const bool stored = a.contains("shortcuts") && a["shortcuts"].is_boolean() && a["shortcuts"].get<bool>();
      QNN_CHECK(!o.shortcuts || *o.shortcuts == stored,
                "--load " + o.train.load_path + " was trained with --shortcuts " + (stored ? "on" : "off") +
                    ", not --shortcuts " + (stored ? "off" : "on"));
      o.shortcuts = stored;
    }
  }
  if (o.shortcuts) o.cnn.shortcuts = *o.shortcuts;
  const float lr_decay = resolve_cnn_app(o);
  auto& t = o.train;
  auto& c = o.cnn;
  std::printf("# qnn cifar_cnn | %s | denormals %s | winograd %s\n", kernels::blas_info(), kernels::denormals_name(),
              kernels::winograd_mode_name(kernels::winograd_mode()));
  ExportOptions eo;
  eo.input_scale = kernels::InputScale::odd_over_256;
  // The exporter names the first layer it cannot represent exactly (e.g. a
  // one-padded 16-bit convolution); --export then stops before any data is read.
  auto export_check = [&eo](Module& model) { export_model(model, eo); };
  if (!t.export_path.empty()) {
    // Refuse before loading any data: the model of the default image shape
    // shows what export can do with this architecture.
    eo.input_dims = {c.in_channels, c.image, c.image};
    Rng rng(t.seed);
    export_check(*build_cnn(c, rng));
    QNN_CHECK(!*o.normalize,
              "--export writes models whose input is the scaled pixels; train with --normalize off to export");
  }

  CnnDataOptions dopt;
  dopt.dataset = o.dataset;
  dopt.dir = o.data;
  dopt.val = t.val;
  dopt.limit_train = t.limit_train;
  dopt.need_train = !t.eval_only;
  CnnData d = load_cnn_data(dopt);
  const Dataset& test = d.test;
  QNN_CHECK(test.sample_shape.size() == 3 && test.sample_shape[1] == test.sample_shape[2],
            "--data " + o.data + ": the CNNs take square images, got samples of shape " + shape_str(test.sample_shape));
  c.in_channels = test.sample_shape[0];
  c.image = test.sample_shape[1];
  c.classes = test.num_classes;
  validate_cnn(c);  // the image size against the arch

  json config = cnn_config_json(o, lr_decay);
  if (*o.normalize) {
    // The training split's statistics; a loaded model keeps the ones it was trained with.
    std::optional<std::pair<std::vector<float>, std::vector<float>>> ms;
    if (!t.load_path.empty()) ms = stored_normalization(t.load_path);
    if (!ms) {
      QNN_CHECK(!t.eval_only, "--eval-only --normalize on: " + t.load_path +
                                  " stores no normalization (train with this program, or pass --normalize off)");
      ms = channel_mean_std(d.train);
    }
    QNN_CHECK((int64_t)ms->first.size() == c.in_channels,
              "the normalization has " + std::to_string(ms->first.size()) + " channels, the images " +
                  std::to_string(c.in_channels));
    set_cnn_normalization(d, ms->first, ms->second);
    json mean = json::array(), sd = json::array();
    for (size_t i = 0; i < ms->first.size(); ++i) mean.push_back(f2d(ms->first[i])), sd.push_back(f2d(ms->second[i]));
    config["normalization"] = {{"mean", mean}, {"stdev", sd}};
  }
  config["layout"] = d.layout;
  std::printf("# config %s\n", config.dump().c_str());
  if (t.eval_only)
    std::printf("# data %s (%s): test %lld (--eval-only)\n", o.data.c_str(), d.layout.c_str(), (long long)test.size());
  else
    std::printf("# data %s (%s): train %lld, validation %lld (class-balanced), test %lld; %s; augmentation %s\n",
                o.data.c_str(), d.layout.c_str(), (long long)d.train.size(), (long long)d.val.size(),
                (long long)test.size(), *o.normalize ? "per-channel normalization" : "no normalization",
                o.augment->c_str());

  std::optional<DataLoader> loader;
  if (!t.eval_only) {
    loader.emplace(d.train, t.batch, true, t.seed);
    loader->set_augment(cnn_augment(*o.augment));
  }
  TrainJob job;
  job.flags = &t;
  job.build = [&c, seed = t.seed] {
    Rng rng(seed);
    return build_cnn(c, rng);
  };
  if (loader)
    job.data = image_feeds(*loader, d.val, test);
  else
    job.data.test = image_eval_feed(test);
  job.config = config;
  job.lr_decay = lr_decay;
  job.meta = make_model_meta(test, o.dataset, config);
  job.allow_meta_mismatch = o.allow_mismatch;
  job.epoch_lines = !o.quiet;
  const Shape input{-1, c.in_channels, c.image, c.image};
  int64_t params = 0;
  double bytes_packed = 0;
  job.describe_model = [&](Module& model) {
    json mj = describe_cnn(model, input, !o.quiet);
    params = mj["params"].get<int64_t>();
    bytes_packed = mj["bytes_packed"].get<double>();
    return mj;
  };
  job.after_test = [&](Module&, const EvalStats&) {
    std::printf("model size: %lld parameters, %.2f MiB fp32, %.2f MiB packed (%.1fx smaller)\n", (long long)params,
                params * 4.0 / (1 << 20), bytes_packed / (1 << 20), bytes_packed > 0 ? params * 4.0 / bytes_packed : 1.0);
  };
  eo.input_dims = {c.in_channels, c.image, c.image};
  job.export_check = export_check;
  job.export_write = [&](Module& model, const std::string& path, const json& meta) {
    ExportOptions o2 = eo;
    o2.meta = meta.dump();
    const int64_t bytes = export_model_file(model, path, o2);
    std::printf("# exported %s: %lld bytes\n", path.c_str(), (long long)bytes);
    return json{{"path", path}, {"bytes", bytes}};
  };
  return run_training(job);
}

}  // namespace qnn::app
