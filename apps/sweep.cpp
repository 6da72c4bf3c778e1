// apps/sweep.cpp — the "bits x surrogate" study of the student report
// "Investigation and Analysis on Quantized Neural Networks" (after Hubara et
// al., "Quantized Neural Networks", JMLR 2018), on the MNIST MLP.
//
// Trains the MLP of apps/common/mlp.h once per cell of
//   bits {1, 2, 3, 4} (weights = activations = b; b = 1 is the BNN with sign)
//   x surrogate {hardtanh, tanh:3, tanh:4, tanh:5}
// plus one full-precision reference run, all with one epoch budget, one seed
// and one protocol: every cell goes through apps/common/train_loop.h, the
// loop of mnist_mlp (the last --val training images validate, the
// best-validation epoch's model is tested). Writes DIR/sweep.json (every run:
// config, per-epoch metrics, best epoch, test accuracy, seconds),
// DIR/sweep.csv (one row per run) and DIR/sweep.md (the report's table 5.2:
// rows = bits, columns = surrogates, cells = test accuracy %, plus the FP row).
//
//   build/apps/sweep --epochs 10 --threads 2                # the whole study
//   build/apps/sweep --only bits=2 --out runs/sweep-b2      # one slice per machine...
//   build/apps/sweep --merge runs/sweep-b1,runs/sweep-b2 --out runs/sweep   # ...combined
//
// Resumable: a run whose identical config (threads and data path aside) is
// already finished in DIR/sweep.json is skipped ("cached") unless --force; the
// outputs are rewritten atomically after every run, and the cell in training
// keeps its run state in DIR/<cell>.ckpt after every epoch, so a stopped sweep
// goes on from the last finished epoch of that cell. A cell of a run equals
//   mnist_mlp --model qnn --wbits b --abits b --surrogate S --epochs N --seed S ...
// (--model bnn for b = 1, --model fp for the reference) with the same flags.
//
// --app cifar_cnn runs the student report's CIFAR-10 table the same way:
// bits {1, 2, 3, 4} x surrogate {hardtanh, tanh:4} plus fp, each cell the
// cifar_cnn run of the same flags (apps/common/cnn_train.h: its recipe's
// batch 50, 5,000 class-balanced validation images, augmentation, fp
// normalisation; the BinaryNet network at --width 0.5 unless --arch/--width;
// --shortcuts on gives the quantized cells cifar_cnn's real-valued shortcuts):
//   build/apps/sweep --app cifar_cnn --epochs 10 --threads 2 --out runs/sweep-cifar
//
// --app imdb_lstm runs the report's LSTM table (IMDB): bits {1, 2, 3, 4} x
// surrogate {hardtanh, tanh:4} plus fp, each cell the imdb_lstm run of the
// same flags (apps/common/lstm_train.h: its recipe's hidden 100, batch 64,
// 20 epochs, 5,000 validation reviews), the reviews loaded once:
//   build/apps/sweep --app imdb_lstm --threads 2 --out runs/sweep-imdb
//
// Files: apps/sweep/cells.* (flags, plan, one cell's config), apps/sweep/report.*
// (sweep.json / .csv / .md), this file (training the cells, the two modes).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "apps/common/cli_main.h"
#include "apps/common/flags.h"
#include "apps/common/mlp.h"
#include "apps/common/run_state.h"
#include "apps/common/train_loop.h"
#include "apps/sweep/cells.h"
#include "apps/sweep/report.h"
#include "core/tensor.h"
#include "kernels/denormals.h"
#include "kernels/sgemm.h"

using namespace qnn;
using namespace qnn::sweep;
namespace fs = std::filesystem;

namespace {

struct Data {
  Dataset train, val, test;
  std::vector<float> mean, stdev;  // cifar_cnn: the training split's per-channel statistics
  std::shared_ptr<const ImdbData> imdb;  // imdb_lstm: the reviews as token ids (the Datasets are empty)
};

// --time-limit: thrown from a cell's epoch_done hook (after that epoch's
// checkpoint is written) once the sweep has run longer than the limit.
struct TimeUp {
  int epoch;
};

const double g_started = app::now_seconds();  // the program's start: --time-limit counts from here

// The hook that stops a sweep at its --time-limit (none without one).
std::function<void(int)> time_limit_hook(const Options& o) {
  if (o.time_limit_min <= 0) return {};
  const double limit_s = o.time_limit_min * 60.0;
  return [limit_s](int epoch) {
    if (app::now_seconds() - g_started >= limit_s) throw TimeUp{epoch};
  };
}

std::string label(const Cell& c) { return c.key == "fp" ? "fp" : "bits=" + std::to_string(c.bits) + " " + c.surrogate; }

// A cell's run state, written after every epoch (its app's --checkpoint) to
// DIR/<cell key>.ckpt, so a sweep stopped in the middle of a cell continues
// that cell from its last finished epoch on the next call (a CIFAR-10 cell
// takes 1-2 hours); deleted once the cell is recorded in sweep.json. A
// checkpoint of another config (other flags, thread count) is set aside: the
// cell starts afresh.
std::string cell_checkpoint(const Options& o, const Cell& c) {
  std::string k = c.key;
  for (char& ch : k)
    if (!std::isalnum((unsigned char)ch) && ch != '-') ch = '_';
  return o.out + "/" + k + ".ckpt";
}

void use_cell_checkpoint(app::TrainFlags& f, const std::string& path, const json& config, const std::string& what) {
  fs::create_directories(fs::path(path).parent_path());
  // an interrupted atomic write leaves PATH.tmp.<pid>: not a checkpoint
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    if (e.path().filename().string().rfind(fs::path(path).filename().string() + ".tmp.", 0) == 0) fs::remove(e.path());
  f.checkpoint_path = path;
  f.resume_path.clear();
  if (!fs::exists(path)) return;
  try {
    const app::RunState st = app::load_run_state(path);
    app::check_resume_config(st.config, config, path);
    f.resume_path = path;
    std::printf("    %s: resuming from %s after epoch %d\n", what.c_str(), path.c_str(), st.epochs_done);
  } catch (const std::exception& e) {
    std::printf("    %s: not resuming %s (%s); the cell starts afresh\n", what.c_str(), path.c_str(), e.what());
  }
  std::fflush(stdout);
}

// Trains one cell through the shared loop; returns its JSON record. A NaN/Inf
// loss is recorded as status "diverged", other errors propagate.
json train_run(const Options& o, const RunSpec& r, Data& d, const std::string& tag) {
  const double t0 = app::now_seconds();
  json run{{"key", r.cell.key}, {"bits", r.cell.bits},
           {"surrogate", r.cell.surrogate.empty() ? json(nullptr) : json(r.cell.surrogate)},
           {"config", r.config}, {"status", "running"}, {"epochs", json::array()}};
  const bool cnn = r.app == "cifar_cnn";
  app::MlpConfig m = r.mlp;
  m.in = d.train.sample_numel();
  m.classes = d.train.num_classes;
  // cifar_cnn's model and data settings (apps/common/cnn_train.h): the
  // normalisation (fp) and augmentation of this cell's model.
  app::CnnConfig c = r.cnn;
  if (cnn) {
    c.in_channels = d.train.sample_shape[0];
    c.image = d.train.sample_shape[1];
    c.classes = d.train.num_classes;
    for (Dataset* ds : {&d.train, &d.val, &d.test})
      if (ds->has_pixels())
        ds->set_normalization(r.normalize ? d.mean : std::vector<float>{}, r.normalize ? d.stdev : std::vector<float>{});
  }
  DataLoader loader(d.train, r.train.batch, true, r.train.seed);
  if (cnn) loader.set_augment(app::cnn_augment(r.augment));
  app::TrainFlags flags = r.train;
  use_cell_checkpoint(flags, cell_checkpoint(o, r.cell), r.config, label(r.cell));
  app::TrainJob job;
  job.flags = &flags;
  job.build = [&]() -> std::shared_ptr<Module> {
    Rng rng(r.train.seed);
    return cnn ? app::build_cnn(c, rng) : app::build_mlp(m, rng);
  };
  job.data = app::image_feeds(loader, d.val, d.test);
  job.config = r.config;
  job.lr_decay = r.lr_decay;
  job.describe_model = [&](Module& model) {
    if (cnn) return app::describe_cnn(model, {-1, c.in_channels, c.image, c.image}, false);
    const int64_t params = model.num_parameters();
    double bytes_packed = 0;
    for (const auto& row : summarize(model)) bytes_packed += row.bytes_packed();
    return json{{"params", params}, {"bytes_fp32", params * 4}, {"bytes_packed", bytes_packed}};
  };
  job.line_prefix = "    " + label(r.cell) + " ";
  job.progress_prefix = tag + " " + label(r.cell) + " ";
  job.epoch_lines = !o.quiet;
  job.announce = false;
  job.record_divergence = true;
  job.epoch_done = time_limit_hook(o);
  const app::TrainResult res = app::run_training(job);
  run["model"] = res.json["model"];
  run["epochs"] = res.epochs;
  run["status"] = res.status;
  if (!res.error.empty()) run["error"] = res.error;
  run["best_epoch"] = res.best_epoch;
  run["best_val_acc"] = res.best_val_acc ? json(*res.best_val_acc) : json(nullptr);
  run["test_acc"] = res.test ? json(res.test->acc) : json(nullptr);
  run["test_loss"] = res.test ? json(res.test->loss) : json(nullptr);
  run["seconds"] = app::now_seconds() - t0;
  run["host"] = hostname();
  run["finished_at"] = utc_now();
  return run;
}

// --app imdb_lstm: the cell IS an imdb_lstm run (apps/common/lstm_train.h's
// run_imdb_lstm) on the reviews loaded once for the sweep; the same record
// as train_run's.
json train_lstm_run(const Options& o, const RunSpec& r, const ImdbData& d, const std::string& tag) {
  const double t0 = app::now_seconds();
  json run{{"key", r.cell.key}, {"bits", r.cell.bits},
           {"surrogate", r.cell.surrogate.empty() ? json(nullptr) : json(r.cell.surrogate)},
           {"config", r.config}, {"status", "running"}, {"epochs", json::array()}};
  app::LstmAppOptions a = r.lstm;
  a.quiet = o.quiet;
  use_cell_checkpoint(a.train, cell_checkpoint(o, r.cell), r.config, label(r.cell));
  app::LstmRunHooks hooks;
  hooks.line_prefix = "    " + label(r.cell) + " ";
  hooks.progress_prefix = tag + " " + label(r.cell) + " ";
  hooks.record_divergence = true;
  hooks.announce = false;
  hooks.epoch_done = time_limit_hook(o);
  const app::TrainResult res = app::run_imdb_lstm(a, &d, hooks);
  run["model"] = res.json["model"];
  run["epochs"] = res.epochs;
  run["status"] = res.status;
  if (!res.error.empty()) run["error"] = res.error;
  run["best_epoch"] = res.best_epoch;
  run["best_val_acc"] = res.best_val_acc ? json(*res.best_val_acc) : json(nullptr);
  run["test_acc"] = res.test ? json(res.test->acc) : json(nullptr);
  run["test_loss"] = res.test ? json(res.test->loss) : json(nullptr);
  run["seconds"] = app::now_seconds() - t0;
  run["host"] = hostname();
  run["finished_at"] = utc_now();
  return run;
}

json settings_json(const Options& o, const std::vector<int>& bits, const std::vector<std::string>& surs) {
  const auto& t = o.train;
  json j{{"dataset", o.dataset}, {"data", o.data}, {"epochs", t.epochs}, {"hidden", o.hidden},
              {"layers", o.layers}, {"batch", t.batch}, {"lr", t.lr ? json(app::f2d(*t.lr)) : json("model default")},
              {"lr_end", t.lr_end ? json(app::f2d(*t.lr_end)) : json("model default")}, {"bits", bits},
              {"surrogates", surs}, {"fp", !o.no_fp}, {"only", o.only}, {"periodic_kbit", o.periodic_kbit},
              {"seed", t.seed}, {"threads", t.threads.value_or(0)}, {"val", t.val},
              {"limit_train", t.limit_train.value_or(-1)}, {"out", o.out}, {"app", o.app}};
  if (o.app == "cifar_cnn") {
    j.erase("hidden");
    j.erase("layers");
    j.update(json{{"arch", o.arch}, {"width", app::f2d(o.width)}});
    if (o.shortcuts) j["shortcuts"] = true;  // only when on: older sweeps' settings stay equal
  }
  return j;
}

// ------------------------------------------------------------------ modes ---

int run_merge(const Options& o, const std::vector<int>& bits, const std::vector<std::string>& surs) {
  std::vector<json> runs;
  std::map<std::string, std::string> origin;  // key -> file it came from
  std::vector<std::string> sources;
  for (const auto& d : split(o.merge, ',')) {
    QNN_CHECK(!d.empty(), "--merge: empty directory name in '" + o.merge + "'");
    const std::string path = d.size() > 5 && d.substr(d.size() - 5) == ".json" ? d : d + "/sweep.json";
    QNN_CHECK(fs::exists(path), "--merge: " + path + " does not exist");
    const auto in = load_runs(path);
    sources.push_back(path);
    int added = 0;
    for (const auto& r : in) {
      if (!finished(r)) continue;
      const std::string key = r["key"];
      auto it = std::find_if(runs.begin(), runs.end(), [&](const json& x) { return x["key"] == key; });
      if (it == runs.end()) {
        runs.push_back(r);
        origin[key] = path;
        ++added;
        continue;
      }
      const json a = identity_of((*it)["config"]), b = identity_of(r["config"]);
      QNN_CHECK(a == b, "--merge: " + key + " is in " + origin[key] + " and " + path +
                            " with different configs (" + config_diff(a, b) + "); merge slices of one sweep");
      // Same run twice (e.g. a slice copied around): keep a finished "ok" over "diverged".
      if ((*it).value("status", "") != "ok" && r.value("status", "") == "ok") {
        *it = r;
        origin[key] = path;
      }
    }
    std::printf("# %s: %zu run(s), %d new\n", path.c_str(), in.size(), added);
  }
  QNN_CHECK(!runs.empty(), "--merge: no finished runs in " + o.merge);
  json settings{{"merged_from", sources}};
  const std::string md = write_outputs(o.out, settings, runs, bits, surs);
  std::printf("\n%s\n# wrote %s/sweep.json, sweep.csv, sweep.md (%zu runs)\n", md.c_str(), o.out.c_str(),
              runs.size());
  return 0;
}

int run_sweep(Options& o, const std::vector<int>& bits, const std::vector<std::string>& surs, const Only& only) {
  if (o.data.empty()) o.data = "datasets/" + o.dataset;
  {
    // Only the threads here: each cell resolves the rest for its model (the
    // optimizer and weight decay differ between cifar_cnn's fp and bnn).
    app::TrainFlags checked = o.train;
    app::resolve_training_flags(checked);
    o.train.threads = checked.threads;
  }
  app::check_writable("--out", o.out + "/sweep.json");  // before any training

  // The plan: fp first (the reference), then bits x surrogates, row by row.
  std::vector<Cell> plan;
  const bool want_fp = !o.no_fp && (!only.active || only.fp);
  if (want_fp) plan.push_back({"fp", 32, ""});
  if (!only.fp)
    for (int b : bits)
      for (const auto& s : surs) {
        if (only.bits && *only.bits != b) continue;
        if (only.surrogate && *only.surrogate != s) continue;
        plan.push_back({cell_key(b, s), b, s});
      }
  QNN_CHECK(!plan.empty(), "nothing to run (check --only / --no-fp)");
  std::vector<RunSpec> specs;
  for (const auto& c : plan) specs.push_back(make_spec(o, c));

  const json settings = settings_json(o, bits, surs);
  std::printf("# qnn sweep | %s | denormals %s\n", kernels::blas_info(), kernels::denormals_name());
  std::printf("# settings %s\n", settings.dump().c_str());
  // The full config of the first run of each model kind; the others differ
  // only in bits and surrogate.
  std::set<std::string> shown;
  for (const auto& s : specs)
    if (const std::string& model = s.app == "cifar_cnn" ? s.cnn.model : s.app == "imdb_lstm" ? s.lstm.lstm.model : s.mlp.model;
        shown.insert(model).second)
      std::printf("# config %-3s %s\n", model.c_str(), s.config.dump().c_str());
  std::string planned;
  for (const auto& s : specs) planned += (planned.empty() ? "" : " | ") + s.cell.key;
  std::printf("# plan (%zu runs): %s\n", specs.size(), planned.c_str());

  const std::string json_path = o.out + "/sweep.json";
  std::vector<json> runs = load_runs(json_path);
  if (!runs.empty()) std::printf("# resuming: %s holds %zu run(s)\n", json_path.c_str(), runs.size());
  auto stored = [&](const std::string& key) -> const json* {
    for (const auto& r : runs)
      if (r["key"] == key) return &r;
    return nullptr;
  };

  int todo = 0;
  for (const auto& s : specs) {
    const json* r = stored(s.cell.key);
    if (o.force || !r || !finished(*r) || identity_of((*r)["config"]) != s.identity) ++todo;
  }
  std::printf("# %zu run(s) planned, %d to train, %zu cached; %d epoch(s) each; output %s/\n", specs.size(), todo,
              specs.size() - todo, o.train.epochs, o.out.c_str());
  std::fflush(stdout);
  if (o.dry_run) return 0;

  std::optional<Data> data;
  const int n = (int)specs.size();
  for (int i = 0; i < n; ++i) {
    const RunSpec& s = specs[i];
    char tag[32];
    std::snprintf(tag, sizeof tag, "[%d/%d]", i + 1, n);
    const json* prev = stored(s.cell.key);
    if (prev && finished(*prev) && identity_of((*prev)["config"]) == s.identity && !o.force) {
      std::printf("%s %-8s %-10s cached: %s (use --force to rerun)\n", tag,
                  s.cell.key == "fp" ? "fp" : ("bits=" + std::to_string(s.cell.bits)).c_str(),
                  s.cell.surrogate.c_str(),
                  (*prev)["status"] == "ok" ? ("test " + pct(at(*prev, "test_acc")) + "%").c_str() : "diverged");
      std::fflush(stdout);
      continue;
    }
    if (prev && finished(*prev) && identity_of((*prev)["config"]) != s.identity)
      std::printf("%s %s: replacing a stored result with another config (%s)\n", tag, s.cell.key.c_str(),
                  config_diff(identity_of((*prev)["config"]), s.identity).c_str());
    if (!data && o.app == "imdb_lstm") {
      // imdb_lstm's data (apps/common/lstm_train.h): the fixed split, the
      // vocabulary of the training reviews, --limit-train / --val.
      data = Data{};
      data->imdb = std::make_shared<const ImdbData>(app::load_lstm_data(s.lstm));
      std::printf("# data %s: train %lld, validation %lld, test %lld reviews\n", s.lstm.data.c_str(),
                  (long long)data->imdb->train.size(), (long long)data->imdb->val.size(),
                  (long long)data->imdb->test.size());
    }
    if (!data && o.app == "cifar_cnn") {
      // cifar_cnn's data protocol (apps/common/cnn_train.h): class-balanced
      // --limit-train and validation; each cell sets its model's
      // normalisation (fp: these statistics) and augmentation.
      app::CnnDataOptions dopt;
      dopt.dataset = o.dataset;
      dopt.dir = o.data;
      dopt.val = s.train.val;  // resolved by resolve_cnn_app, the same for every cell
      dopt.limit_train = o.train.limit_train;
      app::CnnData cd = app::load_cnn_data(dopt);
      auto [mean, stdev] = channel_mean_std(cd.train);
      data = Data{std::move(cd.train), std::move(cd.val), std::move(cd.test), std::move(mean), std::move(stdev), nullptr};
      std::printf("# data %s (%s): train %lld, validation %lld (class-balanced), test %lld\n", o.data.c_str(),
                  cd.layout.c_str(), (long long)data->train.size(), (long long)data->val.size(),
                  (long long)data->test.size());
    }
    if (!data) {
      // mnist_mlp's data: app::mnist_options (pixels (2p - 255) / 256).
      Dataset train_full = load_mnist(o.data, "train", app::mnist_options(o.train.limit_train.value_or(-1)));
      auto [train, val] = app::split_validation(train_full, o.train);
      data = Data{std::move(train), std::move(val), load_mnist(o.data, "test", app::mnist_options()), {}, {}, nullptr};
      std::printf("# data %s: train %lld, validation %lld, test %lld\n", o.data.c_str(),
                  (long long)data->train.size(), (long long)data->val.size(), (long long)data->test.size());
    }
    json run;
    try {
      run = s.app == "imdb_lstm" ? train_lstm_run(o, s, *data->imdb, tag) : train_run(o, s, *data, tag);
    } catch (const TimeUp& t) {
      write_outputs(o.out, settings, runs, bits, surs);
      std::printf("%s %s: stopped after epoch %d at --time-limit %g min; its run state is in %s: the same "
                  "command continues from there\n",
                  tag, s.cell.key.c_str(), t.epoch, o.time_limit_min, cell_checkpoint(o, s.cell).c_str());
      return 0;
    }
    if (run["status"] == "ok")
      std::printf("%s %-8s %-10s test %6.2f%%  best epoch %d/%d  val %s%%  %.1fs\n", tag,
                  s.cell.key == "fp" ? "fp" : ("bits=" + std::to_string(s.cell.bits)).c_str(),
                  s.cell.surrogate.c_str(), 100.0 * run["test_acc"].get<double>(), run["best_epoch"].get<int>(),
                  o.train.epochs, pct(run["best_val_acc"]).c_str(), run["seconds"].get<double>());
    else
      std::printf("%s %-8s %-10s DIVERGED: %s  %.1fs\n", tag,
                  s.cell.key == "fp" ? "fp" : ("bits=" + std::to_string(s.cell.bits)).c_str(),
                  s.cell.surrogate.c_str(), run.value("error", "").c_str(), run["seconds"].get<double>());
    std::fflush(stdout);
    upsert(runs, run);
    write_outputs(o.out, settings, runs, bits, surs);
    fs::remove(cell_checkpoint(o, s.cell));  // recorded: its run state is no longer needed
  }
  const std::string md = write_outputs(o.out, settings, runs, bits, surs);
  std::printf("\n%s\n# wrote %s/sweep.json, sweep.csv, sweep.md\n", md.c_str(), o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.train.epochs = 10;
  CLI::App cli{"The bits x surrogate sweep (the student report \"Investigation and Analysis on Quantized Neural "
               "Networks\", table 5.2): the MNIST MLP at bits {1,2,3,4} (weights = activations; 1 = BNN) x "
               "surrogate {hardtanh, tanh:3, tanh:4, tanh:5}, plus a full-precision reference, one epoch budget and "
               "seed for all. Writes DIR/sweep.{json,csv,md}; resumable."};
  app::add_training_flags(cli, o.train,
                          {"--epochs", "--batch", "--lr", "--lr-end", "--seed", "--threads", "--limit-train", "--val"});
  // A sweep trains: at least one epoch per run.
  cli.get_option("--epochs")->description("epoch budget of every run (>= 1)")->check(app::integer_in(1, 1000000, "an integer >= 1"));
  cli.get_option("--seed")->description("seed of every run (cells differ only by the studied choice)");
  cli.add_option("--hidden", o.hidden, "hidden width (>= 1)")
      ->capture_default_str()
      ->check(app::integer_in(1, 1 << 20, "an integer in 1..1048576"));
  cli.add_option("--layers", o.layers, "number of hidden layers (>= 0)")
      ->capture_default_str()
      ->check(app::integer_in(0, 1000, "an integer in 0..1000"));
  cli.add_option("--bits", o.bits, "rows: bits of weights = activations, each 1..16 (1 = BNN with sign)")
      ->capture_default_str();
  cli.add_option("--surrogates", o.surrogates, "columns: surrogates (hardtanh | ste:C | tanh:K | periodic:K | identity)")
      ->capture_default_str();
  cli.add_flag("--no-fp", o.no_fp, "skip the full-precision reference run");
  cli.add_option("--only", o.only,
                 "run a slice: 'fp', or KEY=VALUE[,KEY=VALUE] with KEY bits|surrogate, e.g. bits=2, "
                 "surrogate=tanh:3, bits=1,surrogate=hardtanh");
  cli.add_flag("--periodic-kbit", o.periodic_kbit,
               "for bits >= 2 train the tanh:K columns with periodic:K (the student report's eq. 18)");
  cli.add_option("--app", o.app,
                 "mnist_mlp | cifar_cnn | imdb_lstm: the program each cell is a run of (cifar_cnn: the student "
                 "report's CIFAR-10 table; surrogates default to " + std::string(kCnnSurrogates) + ", batch and "
                 "validation to the cifar_cnn recipe's; imdb_lstm: its LSTM table, surrogates " +
                 std::string(kLstmSurrogates) + ", epochs, batch, validation and --hidden the imdb_lstm recipe's)")
      ->capture_default_str()
      ->check(app::one_of({"mnist_mlp", "cifar_cnn", "imdb_lstm"}));
  cli.add_option("--arch", o.arch, "--app cifar_cnn: binarynet | cnv")
      ->capture_default_str()
      ->check(app::one_of({"binarynet", "cnv"}));
  cli.add_option("--width", o.width, "--app cifar_cnn: conv channel multiplier, in (0, 16]")
      ->capture_default_str()
      ->check(app::number_in(0, 16, true, false, "a number in (0, 16]"));
  std::optional<std::string> shortcuts;
  cli.add_option("--shortcuts", shortcuts,
                 "--app cifar_cnn: on | off: real-valued shortcuts in the quantized cells' binarynet (default off)")
      ->check(app::one_of({"on", "off"}));
  cli.add_option("--dataset", o.dataset, "mnist | fashion-mnist (mnist_mlp); cifar10 | svhn (cifar_cnn, default cifar10)")
      ->capture_default_str()
      ->check(app::one_of({"mnist", "fashion-mnist", "cifar10", "svhn", "imdb"}));
  cli.add_option("--data", o.data, "directory with the IDX files (default: datasets/<dataset>)");
  cli.add_option("--out", o.out, "output directory for sweep.json, sweep.csv, sweep.md")->capture_default_str();
  cli.add_option("--merge", o.merge,
                 "DIR1,DIR2,...: merge the sweep.json of slices into one table in --out (no training)");
  cli.add_flag("--force", o.force, "rerun runs that are already finished in DIR/sweep.json");
  cli.add_flag("--quiet", o.quiet, "no per-epoch lines, only one line per run");
  cli.add_flag("--dry-run", o.dry_run, "print the plan (and what is cached) and exit");
  cli.add_option("--time-limit", o.time_limit_min,
                 "minutes: stop after the epoch that ends past this (the cell's run state stays in "
                 "DIR/<cell>.ckpt; the same command continues it); 0 = no limit")
      ->check(app::number_in(0, 1e6, false, false, "a number of minutes in [0, 1e6]"))
      ->capture_default_str();
  std::string plot_path;
  cli.add_option("--plot", plot_path, "also draw the table as a heat map to FILE.svg or FILE.png (needs gnuplot)");
  return app::parse_and_run(cli, argc, argv, "sweep", [&] {
    // --app cifar_cnn: the defaults of cifar_cnn's recipe and the report's
    // CIFAR-10 columns for the flags not given.
    if (o.app == "cifar_cnn") {
      if (!cli.count("--dataset")) o.dataset = "cifar10";
      if (!cli.count("--surrogates")) o.surrogates = kCnnSurrogates;
      if (!cli.count("--batch")) o.train.batch = app::kCnnBatch;
      if (!cli.count("--val")) o.train.val = app::kCnnVal;
      QNN_CHECK(o.dataset == "cifar10" || o.dataset == "svhn",
                "--dataset " + o.dataset + " is an MLP data set; --app cifar_cnn takes cifar10 or svhn");
      QNN_CHECK(!cli.count("--hidden") && !cli.count("--layers"),
                "--hidden / --layers are mnist_mlp's; --app cifar_cnn takes --arch and --width");
    } else if (o.app == "imdb_lstm") {
      // imdb_lstm's recipe (apps/common/lstm_train.h) and the report's LSTM
      // columns for the flags not given.
      if (!cli.count("--dataset")) o.dataset = "imdb";
      if (!cli.count("--surrogates")) o.surrogates = kLstmSurrogates;
      if (!cli.count("--batch")) o.train.batch = app::kLstmBatch;
      if (!cli.count("--val")) o.train.val = app::kLstmVal;
      if (!cli.count("--epochs")) o.train.epochs = app::kLstmEpochs;
      if (!cli.count("--hidden")) o.hidden = app::kLstmHidden;
      QNN_CHECK(o.dataset == "imdb", "--dataset " + o.dataset + " is not a text data set; --app imdb_lstm takes imdb");
      QNN_CHECK(!cli.count("--layers") && !cli.count("--arch") && !cli.count("--width") && !shortcuts,
                "--layers / --arch / --width / --shortcuts are the MLP's and CNN's; --app imdb_lstm takes --hidden");
    } else {
      QNN_CHECK(o.dataset == "mnist" || o.dataset == "fashion-mnist",
                "--dataset " + o.dataset + " is an image data set for --app cifar_cnn; mnist_mlp takes mnist or fashion-mnist");
      QNN_CHECK(!cli.count("--arch") && !cli.count("--width") && !shortcuts,
                "--arch / --width / --shortcuts need --app cifar_cnn");
    }
    o.val_given = cli.count("--val") > 0;
    o.shortcuts = shortcuts && *shortcuts == "on";
    // The lists are checked before anything runs, with the flag named.
    const auto bits = parse_bits_list(o.bits);
    const auto surs = parse_surrogate_list(o.surrogates);
    app::check_plot_path("--plot", plot_path);  // before any training
    // --plot: the heat map of the table just written (DIR/sweep.json).
    auto with_plot = [&](int rc) {
      if (rc != 0 || plot_path.empty() || o.dry_run) return rc;
      plot_table(plot_path, load_runs(o.out + "/sweep.json"), bits, surs);
      std::printf("# plotted %s\n", plot_path.c_str());
      return rc;
    };
    if (!o.merge.empty()) return with_plot(run_merge(o, bits, surs));
    const Only only = parse_only(o.only, bits, surs, o.no_fp);
    return with_plot(run_sweep(o, bits, surs, only));
  });
}
