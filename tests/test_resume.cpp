// tests/test_resume.cpp — resumable runs (apps/common/run_state.h): a run
// interrupted after epoch k and resumed ends byte-identical to the
// uninterrupted run; a kill during a save leaves the previous file whole.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "apps/common/run_state.h"
#include "apps/common/train_loop.h"
#include "core/fileio.h"
#include "data/dataloader.h"
#include "layers/quant/quant_mlp.h"
#include "optim/optim.h"

using namespace qnn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path scratch_dir() {
  fs::path d = fs::temp_directory_path() / ("qnn-test-resume-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// Three separable-ish classes of 12 features, float storage.
Dataset synthetic(int64_t n, uint64_t seed) {
  Dataset ds;
  ds.name = "synthetic";
  ds.sample_shape = {12};
  ds.num_classes = 3;
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    const int c = (int)rng.below(3);
    ds.y.push_back(c);
    for (int j = 0; j < 12; ++j) ds.x.push_back(rng.normal() + (j % 3 == c ? 1.5f : 0.0f));
  }
  return ds;
}

struct Setup {
  Dataset train = synthetic(200, 11), val = synthetic(60, 12), test = synthetic(60, 13);
  DataLoader loader{train, 20, true, 5};
};

// A tiny BNN whose every epoch draws from three kinds of generators: input
// dropout, hidden dropout, stochastic sign activations.
std::shared_ptr<Module> build_model() {
  Rng rng(7);
  QuantMLPOptions o;
  o.hidden = {16, 16};
  o.stochastic_acts = true;
  o.dropout_in = 0.2f;
  o.dropout_hidden = 0.1f;
  return quant_mlp(12, 3, rng, o);
}

struct RunSpec {
  std::string optimizer = "adam";  // or "sgd-momentum"
  int epochs = 4;
  std::string save, checkpoint, resume;
  int stop_after = 0;  // > 0: "kill" the run after this epoch's checkpoint
  json config = json{{"model", "tiny-bnn"}, {"lr", 0.01}};
  int patience = 0;
};

struct Interrupted {};

app::TrainResult run(Setup& s, const RunSpec& spec) {
  app::TrainFlags f;
  f.epochs = spec.epochs;
  f.batch = 20;
  f.optimizer = spec.optimizer == "sgd-momentum" ? "sgd" : spec.optimizer;
  f.lr = 0.01f;
  f.lr_end = 0.001f;
  f.schedule = "exponential";  // over the run: the LR of epoch e depends on --epochs
  f.loss = "sqhinge";
  f.patience = spec.patience;
  f.save_path = spec.save;
  f.checkpoint_path = spec.checkpoint;
  f.resume_path = spec.resume;
  if (!f.resume_path.empty() && f.checkpoint_path.empty()) f.checkpoint_path = f.resume_path;
  app::TrainJob job;
  job.flags = &f;
  job.build = build_model;
  job.data = app::image_feeds(s.loader, s.val, s.test);
  job.config = spec.config;
  job.config["epochs"] = spec.epochs;
  job.announce = false;
  job.epoch_lines = false;
  if (spec.optimizer == "sgd-momentum")
    job.make_optimizer = [](Module& m, float lr) {
      OptimizerConfig c;
      c.momentum = 0.9f;
      return make_optimizer("sgd", m.parameters(), lr, c);
    };
  if (spec.stop_after > 0)
    job.epoch_done = [&](int e) {
      if (e == spec.stop_after) throw Interrupted{};
    };
  return app::run_training(job);
}

// The per-epoch history without the timings (which differ run to run).
json without_timing(json epochs) {
  for (auto& e : epochs) e.erase("seconds"), e.erase("images_per_s");
  return epochs;
}

}  // namespace

TEST_CASE("resume: the model has the generators a run must restore") {
  auto m = build_model();
  const auto rngs = m->named_rngs();
  // Input dropout, two hidden dropouts, two stochastic activations.
  REQUIRE(rngs.size() == 5);
  CHECK(rngs[0].first == "0.rng");
  Rng::State before = rngs[0].second->state();
  Rng copy;
  copy.set_state(before);
  CHECK(copy.next_u64() == rngs[0].second->next_u64());  // same state, same draws
}

TEST_CASE("resume: 4 epochs straight == 2 epochs, interrupted, then resumed; byte for byte") {
  Setup s;
  const fs::path d = scratch_dir();
  for (std::string opt : {"adam", "adamax", "adamax-shift", "sgd-momentum"}) {
    CAPTURE(opt);
    RunSpec straight;
    straight.optimizer = opt;
    straight.save = (d / ("straight-" + opt + ".ckpt")).string();
    const auto r1 = run(s, straight);

    RunSpec first;
    first.optimizer = opt;
    first.checkpoint = (d / ("run-" + opt + ".state")).string();
    first.stop_after = 2;
    CHECK_THROWS_AS(run(s, first), Interrupted);
    const app::RunState st = app::load_run_state(first.checkpoint);
    CHECK(st.epochs_done == 2);
    CHECK(st.rngs.size() == 5);

    RunSpec second;
    second.optimizer = opt;
    second.resume = first.checkpoint;
    second.save = (d / ("resumed-" + opt + ".ckpt")).string();
    const auto r2 = run(s, second);

    CHECK(read_file(straight.save) == read_file(second.save));
    CHECK(without_timing(r1.epochs) == without_timing(r2.epochs));
    CHECK(r1.best_epoch == r2.best_epoch);
    CHECK(r1.test->acc == r2.test->acc);
    // The resumed run kept checkpointing: the file now holds all 4 epochs.
    CHECK(app::load_run_state(first.checkpoint).epochs_done == 4);
  }
  fs::remove_all(d);
}

TEST_CASE("resume: the generator states matter (a resume without them differs)") {
  Setup s;
  const fs::path d = scratch_dir();
  RunSpec straight;
  straight.save = (d / "straight.ckpt").string();
  run(s, straight);
  RunSpec first;
  first.checkpoint = (d / "run.state").string();
  first.stop_after = 2;
  CHECK_THROWS_AS(run(s, first), Interrupted);
  // Forget where the generators were: restart them from other seeds.
  app::RunState st = app::load_run_state(first.checkpoint);
  uint64_t k = 1;
  for (auto& [n, g] : st.rngs) g = Rng(1000 + k++).state();
  app::save_run_state(first.checkpoint, st);
  RunSpec second;
  second.resume = first.checkpoint;
  second.save = (d / "resumed.ckpt").string();
  run(s, second);
  CHECK(read_file(straight.save) != read_file(second.save));
  fs::remove_all(d);
}

TEST_CASE("resume: only --epochs may change; other config keys are named") {
  Setup s;
  const fs::path d = scratch_dir();
  RunSpec first;
  first.epochs = 2;
  first.checkpoint = (d / "run.state").string();
  run(s, first);

  RunSpec other;
  other.resume = first.checkpoint;
  other.config = json{{"model", "other"}, {"lr", 0.02}, {"extra", 1}};
  try {
    run(s, other);
    FAIL("a different config was resumed");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("model \"tiny-bnn\" -> \"other\"") != std::string::npos);
    CHECK(m.find("lr 0.01 -> 0.02") != std::string::npos);
    CHECK(m.find("extra (absent) -> 1") != std::string::npos);
    CHECK(m.find("epochs 2") == std::string::npos);  // --epochs may change (2 -> 4 here is not listed)
  }

  // Extending the run is allowed: 2 more epochs on top.
  RunSpec longer;
  longer.epochs = 4;
  longer.resume = first.checkpoint;
  const auto r = run(s, longer);
  CHECK(r.epochs.size() == 4);
  CHECK(app::load_run_state(first.checkpoint).epochs_done == 4);

  // A plain --save checkpoint is not a run state.
  RunSpec saved;
  saved.epochs = 1;
  saved.save = (d / "model.ckpt").string();
  run(s, saved);
  CHECK_THROWS_WITH_AS(app::load_run_state(saved.save), doctest::Contains("not a run state"), Error);
  fs::remove_all(d);
}

TEST_CASE("resume: an early-stopped run resumes as finished") {
  Setup s;
  const fs::path d = scratch_dir();
  RunSpec a;
  a.epochs = 30;
  a.patience = 1;
  a.save = (d / "a.ckpt").string();
  a.checkpoint = (d / "a.state").string();
  const auto r1 = run(s, a);
  const app::RunState st = app::load_run_state(a.checkpoint);
  REQUIRE(st.epochs_done < 30);  // patience 1 on this noisy task stops early
  CHECK(st.stopped);
  RunSpec b = a;
  b.checkpoint.clear();
  b.resume = a.checkpoint;
  b.save = (d / "b.ckpt").string();
  const auto r2 = run(s, b);
  CHECK(r2.epochs.size() == r1.epochs.size());
  CHECK(read_file(a.save) == read_file(b.save));
  fs::remove_all(d);
}

// write_file_atomic (temporary file, fsync, rename) under SIGKILL: a child
// saves run states in a loop, version v holding the value v everywhere; it is
// killed at random moments. The file must always load, whole, as one version.
TEST_CASE("resume: kill -9 during a save leaves a complete previous checkpoint") {
  const fs::path d = scratch_dir();
  const std::string path = (d / "killed.state").string();
  auto version = [](int v) {
    app::RunState s;
    s.epochs_done = v;
    s.model.emplace_back("w", Tensor::full({256, 256}, (float)v));
    s.optimizer.emplace_back("step_count", Tensor::scalar((float)v));
    for (int i = 0; i < v; ++i) s.history.push_back(json{{"epoch", i + 1}});
    s.rngs.emplace_back("0.rng", Rng(v + 1).state());
    return s;
  };
  app::save_run_state(path, version(0));
  Rng rng(99);
  int kills_mid_run = 0, later_versions = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      for (int v = 1;; ++v) app::save_run_state(path, version(v % 40));
    }
    ::usleep(2000 + (useconds_t)rng.below(30000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    kills_mid_run += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    const app::RunState s = app::load_run_state(path);  // throws on a torn file
    const int v = s.epochs_done;
    CAPTURE(v);
    REQUIRE(s.model.size() == 1);
    const Tensor& w = s.model[0].second;
    bool whole = w.numel() == 256 * 256;
    for (int64_t i = 0; whole && i < w.numel(); ++i) whole = w.data()[i] == (float)v;
    CHECK(whole);
    CHECK(s.optimizer[0].second.item() == (float)v);
    CHECK((int)s.history.size() == v);
    CHECK(s.rngs.at(0).second == Rng(v + 1).state());
    later_versions += v != 0;
  }
  CHECK(kills_mid_run == 12);
  CHECK(later_versions > 0);  // the child did replace the file (the kills hit a live save loop)
  // Temporary files of interrupted saves may be left next to it; never the target half-written.
  int leftovers = 0;
  for (const auto& e : fs::directory_iterator(d)) leftovers += e.path().filename() != "killed.state";
  MESSAGE(leftovers << " interrupted save(s) left a temporary file; the checkpoint loaded whole every time");
  fs::remove_all(d);
}
