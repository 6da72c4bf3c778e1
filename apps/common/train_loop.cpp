// apps/common/train_loop.cpp — see train_loop.h.
#include "apps/common/train_loop.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "apps/common/dist.h"
#include "apps/common/model_meta.h"
#include "apps/common/plot.h"
#include "apps/common/run_state.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "optim/schedule.h"

namespace qnn::app {

using json = nlohmann::json;

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

LossKind parse_loss(const std::string& s) {
  if (s == "xent") return LossKind::xent;
  if (s == "sqhinge") return LossKind::sqhinge;
  fail("--loss must be xent or sqhinge, got '" + s + "'");
}

Tensor compute_loss(LossKind k, const Tensor& logits, const std::vector<int32_t>& y) {
  return k == LossKind::xent ? cross_entropy(logits, y) : squared_hinge(logits, y);
}

// ---- feeds -------------------------------------------------------------------

namespace {
struct ImageForward {
  Tensor operator()(Module& m, const Batch& b) const { return m.forward(b.x); }
};
struct ImageLabels {
  const std::vector<int32_t>& operator()(const Batch& b) const { return b.y; }
};
using ImageFeed = LoaderFeed<DataLoader, ImageForward, ImageLabels>;

// An evaluation feed that owns its (unshuffled) loader.
class OwningImageFeed final : public Feed {
 public:
  OwningImageFeed(const Dataset& ds, int64_t batch) : loader_(ds, batch, false, 0), inner_(loader_, {}, {}) {}
  void start_epoch(int64_t e) override { inner_.start_epoch(e); }
  int64_t num_batches() const override { return inner_.num_batches(); }
  void load(int64_t i) override { inner_.load(i); }
  Tensor forward(Module& m) override { return inner_.forward(m); }
  const std::vector<int32_t>& labels() const override { return inner_.labels(); }

 private:
  DataLoader loader_;
  ImageFeed inner_;
};
}  // namespace

std::unique_ptr<Feed> image_feed(const DataLoader& loader) {
  return std::make_unique<ImageFeed>(loader, ImageForward{}, ImageLabels{});
}

std::unique_ptr<Feed> image_eval_feed(const Dataset& ds, int64_t batch) {
  return std::make_unique<OwningImageFeed>(ds, batch);
}

Feeds image_feeds(const DataLoader& train, const Dataset& val, const Dataset& test, int64_t eval_batch) {
  Feeds f;
  f.train = image_feed(train);
  if (val.size() > 0) f.val = image_eval_feed(val, eval_batch);
  f.test = image_eval_feed(test, eval_batch);
  return f;
}

std::pair<Dataset, Dataset> split_validation(const Dataset& train_full, const TrainFlags& f) {
  const int64_t n = train_full.size();
  if (f.val >= n) {
    const std::string loaded = f.limit_train ? std::to_string(n) + " training images were loaded (--limit-train " +
                                                   std::to_string(*f.limit_train) + ")"
                                             : "the training set has " + std::to_string(n) + " images";
    fail("--val " + std::to_string(f.val) + " leaves no training images: " + loaded + "; use a smaller --val (e.g. --val " +
         std::to_string(n / 6) + ")" + (f.limit_train ? " or a larger --limit-train" : ""));
  }
  return split_tail(train_full, f.val);
}

// ---- one epoch, one evaluation ------------------------------------------------

EpochStats train_epoch(Module& model, Optimizer& opt, Feed& feed, int64_t epoch, LossKind loss_kind,
                       const std::function<void(int64_t, int64_t, double)>& progress, int micro_batches) {
  model.train(true);
  EpochStats st;
  const double t0 = now_seconds();
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  auto diverged = [&](double lv, int64_t step) {
    throw Diverged("training diverged: the loss is " + std::string(std::isnan(lv) ? "NaN" : "infinite") +
                   " at epoch " + std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
                   " (try a lower --lr)");
  };
  // --dist mpi with several ranks and / or --micro-batches: every step runs
  // as slices of the global batch whose gradients are summed (dist.h).
  QNN_CHECK(micro_batches >= 1, "--micro-batches must be >= 1, got " + std::to_string(micro_batches));
  const bool dp = dist::size() > 1;
  if (dp)
    QNN_CHECK(feed.slice_rows(&dist::my_rows), "--dist mpi: this program's training batches cannot be split over ranks");
  std::optional<dist::SliceAccumulator> acc;
  if (dp || micro_batches > 1) {
    acc.emplace(model, micro_batches, &opt);
    static bool told = false;  // once per process
    if (!told && dist::is_root()) std::printf("# slices: %s\n", acc->describe().c_str());
    told = true;
  }
  feed.start_epoch(epoch);
  const int64_t total = feed.num_batches();
  for (int64_t step = 0; step < total; ++step) {
    feed.load(step);
    if (acc) {
      acc->start_step(feed.global_rows());
      for (int m = 0; m < micro_batches; ++m) {
        const auto [b, e] = acc->slice_rows(m);
        if (micro_batches > 1)
          QNN_CHECK(feed.select_rows(b, e), "--micro-batches: this program's training batches cannot be split");
        acc->begin_slice(m);
        Tensor logits = feed.forward(model);
        const std::vector<int32_t>& y = feed.labels();
        Tensor loss = compute_loss(loss_kind, logits, y);
        const float lv = loss.item();
        acc->scale_loss(loss, m).backward();
        acc->end_slice(m, lv, count_correct(logits, y));
      }
      // Every rank sees the global loss, so all ranks stop together.
      const dist::SliceAccumulator::StepTotals t = acc->finish();
      if (!std::isfinite(t.loss)) diverged(t.loss, step);
      opt.step();
      acc->after_step();  // ranks on one host: each updated its shard; exchange them
      correct += t.correct;
      loss_sum += t.loss * (double)t.rows;
      seen += t.rows;
      if (progress) progress(step + 1, total, loss_sum / seen);
      continue;
    }
    Tensor logits = feed.forward(model);
    const std::vector<int32_t>& y = feed.labels();
    Tensor loss = compute_loss(loss_kind, logits, y);
    const float lv = loss.item();
    if (!std::isfinite(lv)) diverged(lv, step);
    correct += count_correct(logits, y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    const int64_t b = (int64_t)y.size();
    loss_sum += (double)lv * b;
    seen += b;
    if (progress) progress(step + 1, total, loss_sum / seen);
  }
  if (acc) acc->end_epoch();  // the optimizer's state complete on every rank (checkpoints)
  st.seconds = now_seconds() - t0;
  st.images = seen;
  st.loss = seen ? loss_sum / seen : 0;
  st.acc = seen ? (double)correct / seen : 0;
  st.images_per_s = st.seconds > 0 ? seen / st.seconds : 0;
  return st;
}

EpochStats train_epoch(Module& model, Optimizer& opt, const DataLoader& loader, int64_t epoch, LossKind loss,
                       const std::function<void(int64_t, int64_t, double)>& progress) {
  auto feed = image_feed(loader);
  return train_epoch(model, opt, *feed, epoch, loss, progress);
}

EvalStats evaluate(Module& model, Feed& feed, LossKind loss_kind) {
  NoGradGuard no_grad;
  model.train(false);
  EvalStats st;
  const double t0 = now_seconds();
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  feed.start_epoch(0);
  for (int64_t i = 0; i < feed.num_batches(); ++i) {
    feed.load(i);
    Tensor logits = feed.forward(model);
    const std::vector<int32_t>& y = feed.labels();
    loss_sum += (double)compute_loss(loss_kind, logits, y).item() * (double)y.size();
    correct += count_correct(logits, y);
    seen += (int64_t)y.size();
  }
  st.seconds = now_seconds() - t0;
  st.loss = seen ? loss_sum / seen : 0;
  st.acc = seen ? (double)correct / seen : 0;
  return st;
}

EvalStats evaluate(Module& model, const Dataset& ds, LossKind loss, int64_t batch) {
  auto feed = image_eval_feed(ds, batch);
  return evaluate(model, *feed, loss);
}

Tensor slice_batch_rows(const Tensor& x, int64_t begin, int64_t end) { return slice(x, 0, begin, end); }

NamedTensors snapshot(const Module& m) {
  NamedTensors s;
  for (auto& [n, t] : m.state()) s.emplace_back(n, t.clone());
  return s;
}

Progress::Progress(std::string label) : label_(std::move(label)), t0_(now_seconds()), tty_(isatty(2)) {}

void Progress::update(int64_t done, int64_t total, double loss) {
  // A terminal gets one line redrawn twice a second; a log file (nohup, CI)
  // gets a plain line a minute, so a long epoch is never silent there.
  const double t = now_seconds();
  const double every = tty_ ? 0.5 : 60.0;
  if (last_ < 0) last_ = t0_;
  if (done < total && t - last_ < every) return;
  last_ = t;
  const double el = t - t0_;
  const double eta = done > 0 ? el * (total - done) / done : 0;
  std::fprintf(stderr, "%s%s %5.1f%% [%lld/%lld] loss %.4f  %.0fs elapsed, eta %.0fs%s", tty_ ? "\r" : "",
               label_.c_str(), 100.0 * done / std::max<int64_t>(total, 1), (long long)done, (long long)total, loss,
               el, eta, tty_ ? "   " : "\n");
  if (tty_ && done >= total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void Progress::finish() {}

// ---- checkpoints -----------------------------------------------------------------

// The model metadata (apps/common/model_meta.h: data set, input shape,
// classes, architecture) is stored as the checkpoint's metadata text and, on
// load, checked against the metadata of the data this run will see: a
// Fashion-MNIST model loaded for MNIST is refused, not evaluated at ~8 %.
// These two functions are the only places the loop touches checkpoints.
void save_checkpoint(const std::string& path, const Module& model, const json& meta) {
  save_tensors(path, model.state(), meta.empty() ? std::string() : meta.dump());
}

void load_checkpoint(const std::string& path, Module& model, const json& meta, bool allow_mismatch) {
  std::string stored;
  NamedTensors loaded = load_tensors(path, &stored);
  if (!meta.empty()) check_model_meta(parse_model_meta(stored, path), meta, allow_mismatch, path);
  NamedTensors st = model.state();
  assign_tensors(st, loaded, path);
}

// ---- the loop ------------------------------------------------------------------

namespace {

// --profile-steps: where does a training step's time go? Median over the
// steps after 3 warm-up steps, on batches of the training feed's epoch 0.
void profile_steps(TrainJob& job, Module& model, LossKind loss_kind) {
  const TrainFlags& f = *job.flags;
  auto popt = job.make_optimizer(model, *f.lr);
  Feed& feed = *job.data.train;
  feed.start_epoch(0);
  const int64_t nb = feed.num_batches();
  QNN_CHECK(nb > 0, "--profile-steps: the training set has no batches");
  std::vector<double> tf, tb, ts;
  int64_t batch = 0;
  for (int i = 0; i < f.profile_steps + 3; ++i) {
    if (i == 3) profiler::reset(), profiler::enable(true);
    feed.load(i % nb);
    batch = (int64_t)feed.labels().size();
    model.train(true);
    double t0 = now_seconds();
    Tensor logits = feed.forward(model);
    Tensor loss;
    {
      profiler::Scope timed("fwd ", "loss");
      loss = compute_loss(loss_kind, logits, feed.labels());
    }
    loss.item();
    double t1 = now_seconds();
    popt->zero_grad();
    loss.backward();
    double t2 = now_seconds();
    {
      profiler::Scope timed("", "optimizer step");
      popt->step();
    }
    double t3 = now_seconds();
    if (i >= 3) tf.push_back(t1 - t0), tb.push_back(t2 - t1), ts.push_back(t3 - t2);
  }
  auto med = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2] * 1e3;
  };
  double sum = 0;
  for (size_t i = 0; i < tf.size(); ++i) sum += tf[i] + tb[i] + ts[i];
  const double mean_ms = sum * 1e3 / tf.size();
  const double step_ms = med(tf) + med(tb) + med(ts);
  std::printf("profile batch=%lld steps=%d median_ms forward=%.2f backward=%.2f optimizer=%.2f total=%.2f "
              "(%.0f %s) | mean step %.2f ms (%.0f %s)\n",
              (long long)batch, f.profile_steps, med(tf), med(tb), med(ts), step_ms, batch * 1e3 / step_ms,
              job.rate_unit.c_str(), mean_ms, batch * 1e3 / mean_ms, job.rate_unit.c_str());
  profiler::enable(false);
  profiler::print(stdout, f.profile_steps);
}

std::string describe_tested(const TrainJob& job, const TrainResult& r, bool trained) {
  const TrainFlags& f = *job.flags;
  if (f.eval_only) return "of the model loaded from " + f.load_path + " (--eval-only)";
  if (!trained || r.best_epoch == 0)
    return f.load_path.empty() ? "of the untrained model (--epochs 0)"
                               : "of the model loaded from " + f.load_path + " (--epochs 0)";
  if (!job.data.val) return "at the last epoch " + std::to_string(r.best_epoch) + " (--val 0: no validation)";
  return "at best-validation epoch " + std::to_string(r.best_epoch);
}

// The --plot figure's title: the run's data set and model, as configured.
std::string plot_title(const TrainJob& job) {
  std::string t;
  for (const char* k : {"dataset", "model"})
    if (job.config.contains(k) && job.config[k].is_string()) t += (t.empty() ? "" : " ") + job.config[k].get<std::string>();
  return t.empty() ? "training run" : t;
}

}  // namespace

TrainResult run_training(TrainJob& job) {
  QNN_CHECK(job.flags && job.build && job.data.test, "run_training: the job needs flags, build and a test feed");
  const TrainFlags& f = *job.flags;
  QNN_CHECK(job.data.train || (f.eval_only && f.profile_steps == 0),
            "run_training: training and --profile-steps need a training feed");
  QNN_CHECK(f.lr && f.lr_end && f.loss, "run_training: --lr, --lr-end and --loss must be resolved by the app");
  if (dist::is_root()) check_output_paths(f);  // fail now, not after hours of training (--dist: rank 0 writes)
  // Slicing a batch (ranks x micro-batches) changes the batch-norm statistics
  // and the random draws, so it is part of what a run is (--resume checks
  // it); 2 ranks and --micro-batches 2 are the same run. Absent for 1, as
  // before the flag existed.
  if (const int k = dist::size() * f.micro_batches; k > 1 && !f.eval_only) job.config["batch_slices"] = k;
  std::optional<RunState> resumed;  // --resume: read and checked before any work
  if (!f.resume_path.empty()) {
    resumed = load_run_state(f.resume_path);
    check_resume_config(resumed->config, job.config, f.resume_path);
  }
  const LossKind loss_kind = parse_loss(*f.loss);
  if (!job.make_optimizer)
    job.make_optimizer = [&f](Module& m, float lr) {
      OptimizerConfig cfg;
      cfg.weight_decay = f.weight_decay.value_or(0.0f);
      return qnn::make_optimizer(f.optimizer.value_or("adam"), m.parameters(), lr, cfg);
    };

  TrainResult r;
  auto fresh_model = [&](bool verbose) {
    std::shared_ptr<Module> m = job.build();
    if (!f.load_path.empty()) {
      try {
        load_checkpoint(f.load_path, *m, job.meta, job.allow_meta_mismatch);
      } catch (const Error& e) {
        if (job.load_hint.empty()) throw;
        throw Error(std::string(e.what()) + "; " + job.load_hint);
      }
      if (verbose && job.announce) std::printf("# loaded %s\n", f.load_path.c_str());
    }
    return m;
  };
  std::shared_ptr<Module> model = fresh_model(true);
  if (!f.export_path.empty() && job.export_check) job.export_check(*model);  // refuse before training
  json model_json = job.describe_model ? job.describe_model(*model) : json::object();

  if (f.profile_steps > 0) {
    profile_steps(job, *model, loss_kind);
    model = fresh_model(false);  // training starts from the same weights as without profiling
  }

  const bool train = !f.eval_only && (f.epochs > 0 || resumed);  // --resume --epochs 0: the stored run's best model
  if (train) {
    auto opt = job.make_optimizer(*model, *f.lr);
    ScheduleConfig sc;
    sc.lr = *f.lr;
    sc.lr_end = *f.lr_end;
    sc.total_epochs = f.epochs;
    sc.decay_per_epoch = job.lr_decay;
    auto sched = make_schedule(f.schedule, sc);
    if (job.announce)
      std::printf("# optimizer %s, schedule %s, loss %s\n", opt->name().c_str(), sched->describe().c_str(),
                  f.loss->c_str());
    double best_val = -1, best_val_loss = INFINITY;
    NamedTensors best;
    int since_best = 0;
    // --resume: everything the run had after its last finished epoch
    // (apps/common/run_state.h), so the remaining epochs see exactly what
    // they would have seen without the interruption.
    int first_epoch = 0;
    bool stopped = false;
    if (resumed) {
      restore_run_state(*resumed, *model, *opt, f.resume_path);
      first_epoch = resumed->epochs_done;
      stopped = resumed->stopped;
      best_val = resumed->best_val_acc;
      best_val_loss = resumed->best_val_loss.value_or(INFINITY);
      since_best = resumed->since_best;
      best = std::move(resumed->best);
      r.best_epoch = resumed->best_epoch;
      r.epochs = resumed->history;
      if (job.announce)
        std::printf("# resumed %s after epoch %d%s\n", f.resume_path.c_str(), first_epoch,
                    stopped ? " (the run had stopped early: nothing left to train)"
                            : first_epoch >= f.epochs ? " (nothing left to train: raise --epochs to go on)" : "");
    }
    try {
      for (int e = first_epoch; !stopped && e < f.epochs; ++e) {
        const float lr = sched->lr_at(e);
        opt->set_lr(lr);
        Progress prog(job.progress_prefix + "epoch " + std::to_string(e + 1) + "/" + std::to_string(f.epochs));
        const EpochStats st = train_epoch(
            *model, *opt, *job.data.train, e, loss_kind,
            [&](int64_t d, int64_t t, double l) {
              if (dist::is_root()) prog.update(d, t, l);
            },
            f.micro_batches);
        std::optional<EvalStats> vs;
        if (job.data.val) vs = evaluate(*model, *job.data.val, loss_kind);
        if (job.epoch_lines) {
          char val_part[96] = "no validation";
          if (vs) std::snprintf(val_part, sizeof val_part, "val loss %.4f acc %.4f", vs->loss, vs->acc);
          std::printf("%sepoch %3d  lr %.3g  train loss %.4f acc %.4f | %s | %.1fs %.0f %s\n", job.line_prefix.c_str(),
                      e + 1, lr, st.loss, st.acc, val_part, st.seconds, st.images_per_s, job.rate_unit.c_str());
          std::fflush(stdout);
        }
        r.epochs.push_back({{"epoch", e + 1}, {"train_loss", st.loss}, {"train_acc", st.acc},
                            {"val_loss", vs ? json(vs->loss) : json(nullptr)},
                            {"val_acc", vs ? json(vs->acc) : json(nullptr)}, {"seconds", st.seconds},
                            {job.rate_key, st.images_per_s}, {"lr", f2d(lr)}});
        // Without validation the last epoch is the one kept.
        if (!vs || vs->acc > best_val) {
          best_val = vs ? vs->acc : best_val;
          r.best_epoch = e + 1;
          best = snapshot(*model);
        }
        if (vs && vs->loss < best_val_loss) {
          best_val_loss = vs->loss;
          since_best = 0;
        } else if (vs && f.patience > 0 && ++since_best >= f.patience) {
          if (job.announce)
            std::printf("# early stop: validation loss has not improved for %d epoch(s)\n", f.patience);
          stopped = true;
        }
        if (!f.checkpoint_path.empty() && dist::is_root()) {
          RunState rs = capture_run_state(*model, *opt);
          rs.epochs_done = e + 1;
          rs.stopped = stopped;
          rs.config = job.config;
          rs.history = r.epochs;
          rs.best_epoch = r.best_epoch;
          rs.best_val_acc = best_val;
          if (std::isfinite(best_val_loss)) rs.best_val_loss = best_val_loss;
          rs.since_best = since_best;
          rs.best = best;
          save_run_state(f.checkpoint_path, rs);
        }
        if (job.epoch_done) job.epoch_done(e + 1);
      }
    } catch (const Diverged& e) {
      if (!job.record_divergence) throw;
      if (isatty(2)) std::fputc('\n', stderr);  // end the progress line the throw cut short
      r.status = "diverged";
      r.error = e.what();
      if (best_val >= 0) r.best_val_acc = best_val;
      r.model = model;
      r.json = json{{"config", job.config}, {"epochs", r.epochs}, {"best_epoch", r.best_epoch},
                    {"best_val_acc", r.best_val_acc ? json(*r.best_val_acc) : json(nullptr)}, {"status", r.status},
                    {"error", r.error}, {"model", model_json}};
      if (!f.plot_path.empty() && dist::is_root()) plot_training(r.epochs, f.plot_path, plot_title(job));
      dist::mark_done();
      return r;
    }
    if (best_val >= 0) r.best_val_acc = best_val;
    if (!best.empty()) {
      NamedTensors st = model->state();
      assign_tensors(st, best, "best-epoch snapshot");
    }
  }

  const EvalStats ts = evaluate(*model, *job.data.test, loss_kind);
  r.test = ts;
  r.model = model;
  if (job.announce)
    std::printf("test accuracy %.4f (%.2f%%) %s | test loss %.4f\n", ts.acc, 100 * ts.acc,
                describe_tested(job, r, train).c_str(), ts.loss);
  if (job.after_test) job.after_test(*model, ts);
  if (!f.save_path.empty() && dist::is_root()) {
    save_checkpoint(f.save_path, *model, job.meta);
    if (job.announce) std::printf("# saved %s\n", f.save_path.c_str());
  }
  r.json = json::object();
  r.json["config"] = job.config;
  r.json["epochs"] = r.epochs;
  if (!f.export_path.empty() && dist::is_root()) {
    QNN_CHECK(job.export_write, "--export is not supported by this program");
    r.json["export"] = job.export_write(*model, f.export_path, job.meta);
  }
  r.json["best_epoch"] = r.best_epoch;
  r.json["best_val_acc"] = r.best_val_acc ? json(*r.best_val_acc) : json(nullptr);
  r.json["test_acc"] = ts.acc;
  r.json["test_loss"] = ts.loss;
  r.json["model"] = model_json;
  if (!f.json_path.empty() && dist::is_root()) write_file_atomic(f.json_path, r.json.dump(2) + "\n");
  if (!f.plot_path.empty() && dist::is_root()) {
    plot_training(r.epochs, f.plot_path, plot_title(job));
    if (job.announce) std::printf("# plotted %s\n", f.plot_path.c_str());
  }
  dist::mark_done();  // --dist mpi: finalize at exit (an exit before this aborts every rank)
  return r;
}

nlohmann::json model_size_json(const Module& model, const Shape& input) {
  const int64_t params = model.num_parameters();
  double bytes_packed = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& r : summarize(model, input)) {
    bytes_packed += r.bytes_packed();
    layers.push_back({{"name", r.name}, {"type", r.type}, {"output", r.output}, {"params", r.params},
                      {"quant_params", r.quant_params}, {"weight_bits", r.quant_params ? r.weight_bits : 32},
                      {"input_bits", r.input_bits}, {"bytes_packed", r.bytes_packed()}});
  }
  return {{"params", params}, {"bytes_fp32", params * 4}, {"bytes_packed", bytes_packed}, {"layers", layers}};
}

}  // namespace qnn::app
