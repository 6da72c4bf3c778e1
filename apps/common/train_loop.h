// apps/common/train_loop.h — the one training loop of every app.
//
// The protocol (Hubara et al., "Quantized Neural Networks", JMLR 2018, and
// BinaryNet): train for --epochs; after each epoch evaluate the validation
// images (the last --val of the training set); keep a copy of the model of
// the best-validation epoch; stop early after --patience epochs without a
// better validation loss; restore the best copy, test it, save / export it.
// run_training does all of that, plus --load / --eval-only / --profile-steps,
// --checkpoint / --resume (apps/common/run_state.h), --plot (apps/common/plot.h),
// the progress line, one line per epoch, NaN/Inf divergence (Diverged) and
// the --json document (config, epochs[], best_epoch, test_acc, model).
//
// The loop never sees images or tokens: batches come from a Feed, which
// loads batch i of an epoch and runs it through the model. An image app is a
// one-liner (image_feeds); an app with other inputs (token ids for an LSTM)
// wraps its own loader with make_feed and says how a batch becomes logits.
//
//   app::TrainJob job;
//   job.flags = &flags;                               // resolved TrainFlags
//   job.build = [&] { Rng r(flags.seed); return app::build_mlp(cfg, r); };
//   job.data = app::image_feeds(train_loader, val, test);
//   job.config = config_json;                         // the --json "config"
//   job.describe_model = [&](Module& m) { ...print summary...; return model_json; };
//   app::run_training(job);
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "apps/common/flags.h"
#include "core/serialize.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "layers/module.h"
#include "optim/optimizer.h"

namespace qnn::app {

double now_seconds();

enum class LossKind { xent, sqhinge };
LossKind parse_loss(const std::string& s);  // "xent" | "sqhinge"; qnn::Error naming --loss
Tensor compute_loss(LossKind k, const Tensor& logits, const std::vector<int32_t>& y);

// Thrown by train_epoch when the loss becomes NaN or infinite, so callers
// (e.g. the sweep) can record a diverged run and go on.
struct Diverged : Error {
  using Error::Error;
};

// ---- where batches come from ----------------------------------------------

// A sequence of labelled batches per epoch. The loop calls start_epoch(e),
// then for i < num_batches(): load(i), forward(model) -> logits [B, classes],
// labels() -> B class ids. load is separate from forward so --profile-steps
// can time the model without the batch assembly.
class Feed {
 public:
  virtual ~Feed() = default;
  virtual void start_epoch(int64_t epoch) = 0;  // the order / augmentation of epoch `epoch`
  virtual int64_t num_batches() const = 0;      // of the current epoch
  virtual void load(int64_t i) = 0;             // batch i of the current epoch
  virtual Tensor forward(Module& model) = 0;    // the loaded batch through the model
  virtual const std::vector<int32_t>& labels() const = 0;
  // Data-parallel training (apps/common/dist.h): from now on keep only rows
  // [begin, end) = rows(n) of every loaded batch of n rows; global_rows() is
  // then the loaded batch's size before slicing. A feed that cannot slice
  // its batches returns false (the loop then refuses --dist).
  virtual bool slice_rows(std::function<std::pair<int64_t, int64_t>(int64_t)> rows) { return false; }
  virtual int64_t global_rows() const { return (int64_t)labels().size(); }
  // Gradient accumulation (--micro-batches): narrow the loaded batch (this
  // rank's rows) to its rows [begin, end) for the next forward / labels();
  // the next load() undoes it. A feed that cannot returns false (the loop
  // then refuses --micro-batches).
  virtual bool select_rows(int64_t begin, int64_t end) { return false; }
};

// Rows [begin, end) of a batch: image batches (x [B, ...], y) and token
// batches (ids [B * steps], y); other batch types cannot be sliced.
Tensor slice_batch_rows(const Tensor& x, int64_t begin, int64_t end);
template <class B>
constexpr bool kSliceableBatch = requires(B b) { b.x; b.y; } || requires(B b) { b.ids; b.steps; b.y; };
template <class B>
B slice_batch(const B& b, int64_t begin, int64_t end) {
  B s = b;
  s.y.assign(b.y.begin() + begin, b.y.begin() + end);
  if constexpr (requires { b.x; }) s.x = slice_batch_rows(b.x, begin, end);
  if constexpr (requires { b.ids; b.steps; }) s.ids.assign(b.ids.begin() + begin * b.steps, b.ids.begin() + end * b.steps);
  return s;
}

// A Feed over any loader with loader.epoch(e) -> E, E.size(), E.batch(i) -> B
// (data/dataloader.h's DataLoader, or a token loader). `fwd(model, b)` makes
// the logits of a batch, `labels(b)` its class ids. The loader must outlive
// the feed.
template <class Loader, class Forward, class Labels>
class LoaderFeed final : public Feed {
  using EpochT = decltype(std::declval<const Loader&>().epoch(0));
  using BatchT = std::decay_t<decltype(std::declval<const EpochT&>().batch(0))>;

 public:
  LoaderFeed(const Loader& loader, Forward fwd, Labels labels)
      : loader_(&loader), fwd_(std::move(fwd)), labels_(std::move(labels)) {}
  void start_epoch(int64_t e) override {
    ep_.reset();
    ep_.emplace(loader_->epoch(e));
  }
  int64_t num_batches() const override { return ep_ ? (int64_t)ep_->size() : 0; }
  void load(int64_t i) override {
    sel_.reset();
    cur_.reset();
    cur_.emplace(ep_->batch(i));
    global_ = (int64_t)labels_(*cur_).size();
    if constexpr (kSliceableBatch<BatchT>)
      if (rows_) {
        const auto [b, e] = rows_(global_);
        cur_.emplace(slice_batch(BatchT(*cur_), b, e));
      }
  }
  Tensor forward(Module& model) override { return fwd_(model, sel_ ? *sel_ : *cur_); }
  const std::vector<int32_t>& labels() const override { return labels_(sel_ ? *sel_ : *cur_); }
  bool slice_rows(std::function<std::pair<int64_t, int64_t>(int64_t)> rows) override {
    if constexpr (!kSliceableBatch<BatchT>) return false;
    rows_ = std::move(rows);
    return true;
  }
  int64_t global_rows() const override { return global_; }
  bool select_rows(int64_t begin, int64_t end) override {
    if constexpr (!kSliceableBatch<BatchT>) return false;
    else {
      sel_.reset();
      sel_.emplace(slice_batch(*cur_, begin, end));
      return true;
    }
  }

 private:
  const Loader* loader_;
  Forward fwd_;
  Labels labels_;
  std::optional<EpochT> ep_;
  std::optional<BatchT> cur_;  // the loaded batch (this rank's rows)
  std::optional<BatchT> sel_;  // select_rows: a micro-batch of it
  std::function<std::pair<int64_t, int64_t>(int64_t)> rows_;  // --dist: this rank's rows
  int64_t global_ = 0;
};

template <class Loader, class Forward, class Labels>
std::unique_ptr<Feed> make_feed(const Loader& loader, Forward fwd, Labels labels) {
  return std::make_unique<LoaderFeed<Loader, Forward, Labels>>(loader, std::move(fwd), std::move(labels));
}

// Image batches (Batch{x, y}): logits = model.forward(b.x), labels b.y.
std::unique_ptr<Feed> image_feed(const DataLoader& loader);
// A dataset in order, without shuffle, in batches of `batch` (evaluation);
// owns its loader. The dataset must outlive the feed.
std::unique_ptr<Feed> image_eval_feed(const Dataset& ds, int64_t batch = 1000);

// What the loop trains on. val may be null (--val 0: no validation; the last
// epoch is the one tested).
struct Feeds {
  std::unique_ptr<Feed> train, val, test;
};
// The image case: a training loader and validation / test sets.
Feeds image_feeds(const DataLoader& train, const Dataset& val, const Dataset& test, int64_t eval_batch = 1000);

// The validation protocol: the LAST f.val images of `train_full` validate.
// Throws qnn::Error saying which flags to change when nothing is left to
// train on.
std::pair<Dataset, Dataset> split_validation(const Dataset& train_full, const TrainFlags& f);

// ---- one epoch, one evaluation --------------------------------------------

struct EpochStats {
  double loss = 0, acc = 0, seconds = 0, images_per_s = 0;  // images_per_s: samples per second
  int64_t images = 0;
};

// One pass over epoch `epoch` of the feed: forward, loss, backward, step.
// `progress(done, total, running_loss)` is called after every batch.
// Throws Diverged if the loss becomes NaN/Inf, naming the epoch and step.
// micro_batches > 1 (--micro-batches): each batch runs as that many equal
// consecutive slices, their gradients summed, then one optimizer step
// (apps/common/dist.h; the same computation as that many MPI ranks).
EpochStats train_epoch(Module& model, Optimizer& opt, Feed& feed, int64_t epoch, LossKind loss,
                       const std::function<void(int64_t, int64_t, double)>& progress = {}, int micro_batches = 1);
EpochStats train_epoch(Module& model, Optimizer& opt, const DataLoader& loader, int64_t epoch, LossKind loss,
                       const std::function<void(int64_t, int64_t, double)>& progress = {});

struct EvalStats {
  double loss = 0, acc = 0, seconds = 0;
};
// Eval mode, no gradients, every batch of the feed's epoch 0.
EvalStats evaluate(Module& model, Feed& feed, LossKind loss);
EvalStats evaluate(Module& model, const Dataset& ds, LossKind loss, int64_t batch = 1000);

// A copy of a model's state, to come back to (the best-validation epoch).
NamedTensors snapshot(const Module& m);

// A progress line on stderr, redrawn at most every 0.5 s on a terminal;
// when stderr is a file (nohup, CI), a plain line a minute and the final one.
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

// ---- checkpoints with metadata ----------------------------------------------

// `meta` (apps/common/model_meta.h: data set, input shape, classes,
// architecture) travels with the weights. Loading checks the stored metadata
// against `meta` (skipped if `meta` is empty; a file without metadata loads
// with a note) and refuses a mismatch unless allow_mismatch.
void save_checkpoint(const std::string& path, const Module& model, const nlohmann::json& meta);
void load_checkpoint(const std::string& path, Module& model, const nlohmann::json& meta, bool allow_mismatch = false);

// ---- the loop ---------------------------------------------------------------

struct TrainJob {
  // Required.
  const TrainFlags* flags = nullptr;  // resolved: lr, lr_end and loss set
  std::function<std::shared_ptr<Module>()> build;  // a fresh model; the same one every call (seeded)
  Feeds data;
  nlohmann::json config = nlohmann::json::object();  // the --json "config"
  // Optional.
  nlohmann::json meta = nlohmann::json::object();  // make_model_meta(...): handed to save / load / export
  bool allow_meta_mismatch = false;                // --load of a model trained on other data: warn, not refuse
  std::string load_hint;                           // added to a failed --load's message (e.g. a flag that changes the model)
  float lr_decay = 0;  // > 0: exponential schedule by this factor per epoch, --lr-end its floor
  // Prints the model's summary and returns the --json "model" object.
  std::function<nlohmann::json(Module&)> describe_model;  // e.g. model_size_json below
  // Optimizer for a model at a start LR (default: make_optimizer(flags->optimizer, ...)).
  std::function<std::unique_ptr<Optimizer>(Module&, float)> make_optimizer;
  // --export: `check` refuses an unsupported model before training; `write`
  // writes the tested model and returns the --json "export" object.
  std::function<void(Module&)> export_check;
  std::function<nlohmann::json(Module&, const std::string& path, const nlohmann::json& meta)> export_write;
  // Called after the test line (e.g. the app's model-size line).
  std::function<void(Module&, const EvalStats&)> after_test;
  std::string rate_key = "images_per_s";  // per-epoch JSON key of the training rate
  std::string rate_unit = "img/s";        // ... and its unit in the epoch line
  std::string line_prefix;                // before "epoch" in the per-epoch lines
  std::string progress_prefix;            // before "epoch i/n" in the progress line
  bool epoch_lines = true;                // one line per epoch on stdout
  bool announce = true;                   // "# loaded", "# optimizer", test and "# saved" lines
  bool record_divergence = false;         // true: a NaN/Inf loss ends the run with status "diverged"
  // Called after each epoch (1-based), once its --checkpoint is written
  // (tests interrupt a run here by throwing).
  std::function<void(int)> epoch_done;
};

struct TrainResult {
  std::string status = "ok";  // "ok" | "diverged"
  std::string error;          // the divergence message
  nlohmann::json epochs = nlohmann::json::array();
  int best_epoch = 0;         // 0: no epoch trained (or none kept)
  std::optional<double> best_val_acc;
  std::optional<EvalStats> test;  // absent when diverged
  std::shared_ptr<Module> model;  // the tested model
  nlohmann::json json;            // the --json document (written if flags->json_path)
};

// Runs the protocol above; errors other than divergence propagate as
// qnn::Error. Output files are checked writable before the first epoch.
TrainResult run_training(TrainJob& job);

// The --json "model" block, the same in every app: {params, bytes_fp32,
// bytes_packed, layers: [{name, type, output, params, quant_params,
// weight_bits, input_bits, bytes_packed}]} from summarize(model, input).
nlohmann::json model_size_json(const Module& model, const Shape& input = {});

}  // namespace qnn::app
