// tests/test_cli.cpp — every app's flags refuse values outside their range,
// before any work, with the flag named; the shared validators, output-path
// checks and default LR schedules; the training loop over a non-image feed.
//
// The app rows run the built binaries (QNN_BUILD_ROOT/apps/<app>) with popen,
// under `timeout`, stdout and stderr captured apart.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common/flags.h"
#include "apps/common/mlp.h"
#include "apps/common/train_loop.h"
#include "data/idx.h"
#include "data/svhn.h"
#include "core/ops.h"
#include "layers/linear.h"
#include "optim/schedule.h"

using namespace qnn;
namespace fs = std::filesystem;

namespace {

struct Ran {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string quote(const std::string& a) {
  std::string q = "'";
  for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string app_path(const std::string& app) { return std::string(QNN_BUILD_ROOT) + "/apps/" + app; }

// Runs an app with `args` (at most `seconds`), from the source root so that
// datasets/ resolves.
Ran run_app(const std::string& app, const std::vector<std::string>& args, int seconds = 30) {
  const fs::path dir = fs::temp_directory_path() / "qnn_test_cli";
  fs::create_directories(dir);
  const std::string out = (dir / "out.txt").string(), err = (dir / "err.txt").string();
  std::string cmd = "cd " + quote(QNN_SOURCE_ROOT) + " && QNN_BLAS_CORE=keep timeout " + std::to_string(seconds) +
                    " " + quote(app_path(app));
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " >" + quote(out) + " 2>" + quote(err);
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  const int st = pclose(p);
  Ran r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

struct Row {
  std::string app;
  std::vector<std::string> args;  // a bad value among otherwise valid flags
  std::string names;              // what stderr must name (the flag)
};

bool have_mnist() { return fs::exists(std::string(QNN_SOURCE_ROOT) + "/datasets/mnist/t10k-labels-idx1-ubyte") ||
                           fs::exists(std::string(QNN_SOURCE_ROOT) + "/datasets/mnist/t10k-labels-idx1-ubyte.gz"); }

void check_rows(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    std::string line = row.app;
    for (const auto& a : row.args) line += " " + a;
    INFO(line);
    if (!fs::exists(app_path(row.app))) {
      MESSAGE("skipped: " << app_path(row.app) << " is not built");
      continue;
    }
    const Ran r = run_app(row.app, row.args);
    INFO("stderr: " << r.err);
    CHECK(r.rc != 0);
    CHECK(r.rc != 124);  // refused at once, not stopped by the timeout
    CHECK(r.err.find(row.names) != std::string::npos);
    // Before any work: no data loaded, no epoch trained.
    CHECK(r.out.find("# data") == std::string::npos);
    CHECK(r.out.find("epoch ") == std::string::npos);
  }
}

}  // namespace

TEST_CASE("cli: mnist_mlp refuses every out-of-range flag value, naming the flag") {
  std::vector<Row> rows;
  auto bad = [&](std::vector<std::string> args, std::string names) { rows.push_back({"mnist_mlp", args, names}); };
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--epochs", "-1"},         {"--batch", "0"},          {"--optimizer", "rmsprop"}, {"--lr", "-1"}, {"--weight-decay", "-1"}, {"--weight-decay", "nan"},
           {"--lr", "0"},              {"--lr", "nan"},           {"--lr", "inf"},           {"--lr-end", "-1"},
           {"--schedule", "linear"},   {"--loss", "hinge"},       {"--val", "-1"},           {"--limit-train", "-1"},
           {"--limit-train", "0"},     {"--patience", "-2"},      {"--seed", "-1"},          {"--threads", "-1"},
           {"--threads", "0"},         {"--kernels", "maybe"},    {"--profile-steps", "-1"}, {"--dataset", "cifar"},
           {"--model", "cnn"},         {"--hidden", "0"},         {"--layers", "-1"},        {"--dropout", "-1"},
           {"--dropout", "1"},         {"--input-dropout", "-1"}, {"--wbits", "17"},         {"--abits", "0"},
           {"--surrogate", "tanh:x"},  {"--weight-surrogate", "x"}, {"--binarize", "random"}, {"--lr-scale", "5"},
           {"--bn-eps", "-1"},         {"--bn-eps", "0"},         {"--bn-momentum", "2"},    {"--epochs", "1.5"},
           {"--micro-batches", "0"},   {"--micro-batches", "1.5"}})
    bad({flag, v}, flag);
  bad({"--model", "qnn", "--wbits", "-1"}, "--wbits");
  bad({"--batch", "50", "--micro-batches", "3"}, "--micro-batches");  // slices must be equal
  bad({"--eval-only"}, "--eval-only");                           // a random model is no evaluation
  bad({"--patience", "2", "--val", "0"}, "--patience");           // nothing to watch
  bad({"--optimizer", "adamw", "--lr", "0.5", "--weight-decay", "3"}, "--weight-decay");  // would flip the weights
  bad({"--json", "/proc/qnn-no/run.json", "--epochs", "1"}, "--json");  // unwritable: refused before training
  bad({"--save", "/proc/qnn-no/m.ckpt"}, "--save");
  bad({"--export", "/proc/qnn-no/m.qnnx"}, "--export");
  bad({"--load", "/nonexistent/qnn.ckpt"}, "--load");
  check_rows(rows);
}

TEST_CASE("cli: imdb_lstm refuses every out-of-range flag value, naming the flag") {
  std::vector<Row> rows;
  auto bad = [&](std::vector<std::string> args, std::string names) { rows.push_back({"imdb_lstm", args, names}); };
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--epochs", "-1"},      {"--batch", "0"},          {"--optimizer", "rmsprop"}, {"--lr", "-1"}, {"--weight-decay", "-1"}, {"--weight-decay", "nan"},
           {"--lr", "nan"},         {"--lr-end", "0"},         {"--schedule", "linear"}, {"--loss", "hinge"},
           {"--val", "-1"},         {"--limit-train", "0"},    {"--patience", "-2"},     {"--seed", "-1"},
           {"--threads", "0"},      {"--kernels", "maybe"},    {"--profile-steps", "-1"}, {"--model", "bnn"},
           {"--wbits", "17"},       {"--abits", "0"},          {"--surrogate", "tanh:x"}, {"--weight-surrogate", "x"},
           {"--vocab", "2"},        {"--maxlen", "0"},         {"--embed", "0"},         {"--hidden", "0"},
           {"--hidden", "-5"},      {"--epochs", "1.5"},       {"--micro-batches", "0"},  {"--forget-bias", "nan"},
           {"--forget-bias", "11"}, {"--recurrent-scale", "-1"}, {"--recurrent-scale", "nan"},
           {"--dropout", "1"},      {"--dropout", "-0.1"}})
    bad({flag, v}, flag);
  bad({"--wbits", "2"}, "--wbits");                       // bits need --model qnn
  bad({"--recurrent-scale", "0.1"}, "--recurrent-scale"); // so does the recurrent scale
  bad({"--val", "5"}, "--val");                           // odd: cannot be balanced
  bad({"--eval-only"}, "--eval-only");                    // a random model is no evaluation
  bad({"--patience", "2", "--val", "0"}, "--patience");    // nothing to watch
  bad({"--json", "/proc/qnn-no/run.json"}, "--json");      // unwritable: refused before loading
  bad({"--save", "/proc/qnn-no/m.ckpt"}, "--save");
  bad({"--load", "/nonexistent/qnn.ckpt"}, "--load");
  check_rows(rows);
}

TEST_CASE("cli: cifar_cnn refuses every out-of-range flag value, naming the flag") {
  std::vector<Row> rows;
  auto bad = [&](std::vector<std::string> args, std::string names) { rows.push_back({"cifar_cnn", args, names}); };
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--epochs", "-1"},        {"--batch", "0"},          {"--optimizer", "rmsprop"}, {"--lr", "-1"}, {"--weight-decay", "-1"}, {"--weight-decay", "nan"},
           {"--lr", "nan"},           {"--lr-end", "0"},         {"--schedule", "linear"},  {"--loss", "hinge"},
           {"--val", "-1"},           {"--limit-train", "0"},    {"--patience", "-2"},      {"--seed", "-1"},
           {"--threads", "0"},        {"--kernels", "maybe"},    {"--profile-steps", "-1"}, {"--dataset", "mnist"},
           {"--model", "cnn"},        {"--arch", "resnet"},      {"--width", "0"},          {"--width", "-1"},
           {"--width", "17"},         {"--width", "nan"},        {"--fc", "0"},             {"--pad", "two"},
           {"--augment", "maybe"},    {"--normalize", "1"},      {"--wbits", "17"},         {"--abits", "0"},
           {"--surrogate", "tanh:x"}, {"--weight-surrogate", "x"}, {"--lr-scale", "5"},     {"--dropout", "1"},
           {"--bn-eps", "0"},         {"--bn-momentum", "2"},    {"--epochs", "1.5"},       {"--micro-batches", "-1"},
           {"--shortcuts", "yes"}})
    bad({flag, v}, flag);
  bad({"--model", "bnn", "--wbits", "2"}, "--wbits");          // bnn is 1/1: bits need --model qnn
  bad({"--model", "bnn", "--dropout", "0.2"}, "--dropout");    // fp only
  bad({"--shift-bn"}, "--shift-bn");                           // quantized models only
  bad({"--eval-only"}, "--eval-only");                         // a random model is no evaluation
  bad({"--patience", "2", "--val", "0"}, "--patience");         // nothing to watch
  bad({"--json", "/proc/qnn-no/run.json"}, "--json");           // unwritable: refused before loading
  bad({"--save", "/proc/qnn-no/m.ckpt"}, "--save");
  bad({"--load", "/nonexistent/qnn.ckpt"}, "--load");
  bad({"--model", "qnn", "--wbits", "16", "--abits", "16", "--pad", "one", "--export", "/tmp/qnn_test_cli/cnn.qnnx"},
      "too wide to be exact");  // not exportable: refused before any data is read
  bad({"--model", "bnn", "--shortcuts", "on", "--export", "/tmp/qnn_test_cli/cnn.qnnx"}, "--shortcuts on");
  bad({"--arch", "cnv", "--shortcuts", "on"}, "--shortcuts");
  check_rows(rows);
}

TEST_CASE("cli: mnist_mlp --limit-train below --val says which flags to change") {
  if (!have_mnist()) return;
  const Ran r = run_app("mnist_mlp", {"--limit-train", "200", "--epochs", "1"});
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(r.err.find("--val 10000 leaves no training images") != std::string::npos);
  CHECK(r.err.find("--limit-train") != std::string::npos);
  CHECK(r.out.find("epoch ") == std::string::npos);
}

// A sweep stopped by --time-limit keeps the cell's run state; the same
// command continues the cell and ends where an uninterrupted sweep ends.
TEST_CASE("cli: sweep --time-limit stops after an epoch, and the next call resumes the cell to the same result" *
          doctest::skip(!have_mnist())) {
  const fs::path base = fs::temp_directory_path() / ("qnn_test_sweep_resume_" + std::to_string(::getpid()));
  fs::remove_all(base);
  auto sweep = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> args = {"--epochs", "2", "--limit-train", "1200", "--val", "200", "--bits", "1",
                                     "--surrogates", "hardtanh", "--no-fp", "--threads", "1", "--seed", "3",
                                     "--out", (base / out).string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_app("sweep", args, 120);
  };
  const Ran stopped = sweep("a", {"--time-limit", "0.00001"});
  REQUIRE_MESSAGE(stopped.rc == 0, stopped.err);
  CHECK(stopped.out.find("stopped after epoch 1 at --time-limit") != std::string::npos);
  const fs::path ckpt = base / "a" / "bits_1_surrogate_hardtanh.ckpt";
  REQUIRE(fs::exists(ckpt));
  CHECK(nlohmann::json::parse(slurp((base / "a" / "sweep.json").string()))["runs"].empty());

  const Ran resumed = sweep("a", {});
  REQUIRE_MESSAGE(resumed.rc == 0, resumed.err);
  CHECK(resumed.out.find("resuming from") != std::string::npos);
  CHECK(resumed.out.find("after epoch 1") != std::string::npos);
  CHECK_FALSE(fs::exists(ckpt));  // recorded, so removed

  const Ran whole = sweep("b", {});
  REQUIRE_MESSAGE(whole.rc == 0, whole.err);
  const auto ra = nlohmann::json::parse(slurp((base / "a" / "sweep.json").string()))["runs"];
  const auto rb = nlohmann::json::parse(slurp((base / "b" / "sweep.json").string()))["runs"];
  REQUIRE(ra.size() == 1);
  REQUIRE(rb.size() == 1);
  CHECK(ra[0]["test_acc"] == rb[0]["test_acc"]);
  REQUIRE(ra[0]["epochs"].size() == 2);
  for (int e = 0; e < 2; ++e) {
    REQUIRE(ra[0]["epochs"][e]["train_loss"].is_number());
    CHECK(ra[0]["epochs"][e]["train_loss"] == rb[0]["epochs"][e]["train_loss"]);
  }
  fs::remove_all(base);
}

TEST_CASE("cli: sweep refuses out-of-range values of its own and the shared flags") {
  const std::string out = (fs::temp_directory_path() / "qnn_test_cli" / "sweep").string();
  std::vector<Row> rows;
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--epochs", "0"},   {"--batch", "0"},  {"--lr", "-1"},     {"--lr-end", "0"},          {"--seed", "-1"},
           {"--threads", "0"},  {"--limit-train", "0"}, {"--val", "-1"}, {"--hidden", "0"},        {"--layers", "-1"},
           {"--bits", "0"},     {"--bits", "17"},  {"--bits", "1,1"},  {"--surrogates", "tanh:x"}, {"--dataset", "x"},
           {"--only", "bits=9"}, {"--app", "x"}, {"--arch", "x"}, {"--width", "0"}})
    rows.push_back({"sweep", {"--dry-run", "--out", out, flag, v}, flag});
  // --app cifar_cnn takes image data sets and the CNN's flags, not the MLP's.
  rows.push_back({"sweep", {"--dry-run", "--out", out, "--app", "cifar_cnn", "--dataset", "mnist"}, "--dataset"});
  rows.push_back({"sweep", {"--dry-run", "--out", out, "--app", "cifar_cnn", "--hidden", "64"}, "--hidden"});
  rows.push_back({"sweep", {"--dry-run", "--out", out, "--width", "0.25"}, "--app cifar_cnn"});
  rows.push_back({"sweep", {"--dry-run", "--out", out, "--shortcuts", "on"}, "--app cifar_cnn"});
  rows.push_back({"sweep", {"--dry-run", "--out", out, "--app", "cifar_cnn", "--shortcuts", "1"}, "--shortcuts"});
  check_rows(rows);
}

TEST_CASE("cli: a sweep's cifar_cnn cells resolve the recipe per model (fp: adamw with its decay, bnn: adam)") {
  // The sweep once resolved the shared flags before its cells: the fp cell
  // then got adamw with the decay of plain adam (0), not cifar_cnn's. Its
  // printed plan shows each cell's config.
  const std::string out = (fs::temp_directory_path() / "qnn_test_cli" / "sweep_recipe").string();
  const Ran r = run_app("sweep", {"--dry-run", "--out", out, "--app", "cifar_cnn", "--bits", "1", "--surrogates", "hardtanh"});
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  auto config_of = [&](const std::string& model) {
    const std::string tag = "# config " + model;
    const size_t at = r.out.find(tag);
    REQUIRE_MESSAGE(at != std::string::npos, r.out);
    const size_t brace = r.out.find('{', at);
    return nlohmann::json::parse(r.out.substr(brace, r.out.find('\n', brace) - brace));
  };
  const auto fp = config_of("fp");
  CHECK(fp["optimizer"] == "adamw");
  CHECK(fp["weight_decay"].get<double>() == doctest::Approx(0.2));
  const auto bnn = config_of("bnn");
  CHECK(bnn["optimizer"] == "adam");
  CHECK(!bnn.contains("weight_decay"));
  CHECK(!bnn.contains("shortcuts"));  // recorded only when on, so older sweeps' cells stay cached

  // --shortcuts on reaches the quantized cells only.
  const Ran s = run_app("sweep", {"--dry-run", "--out", out + "_sc", "--app", "cifar_cnn", "--bits", "1", "--surrogates",
                                  "hardtanh", "--shortcuts", "on"});
  REQUIRE_MESSAGE(s.rc == 0, s.err);
  auto line_of = [&](const std::string& tag) {
    const size_t at = s.out.find(tag);
    REQUIRE_MESSAGE(at != std::string::npos, s.out);
    return s.out.substr(at, s.out.find('\n', at) - at);
  };
  CHECK(line_of("# config bnn ").find("\"shortcuts\":true") != std::string::npos);
  CHECK(line_of("# config fp ").find("shortcuts") == std::string::npos);
}

TEST_CASE("cli: bench_mlp, bench_kernels, qnn_infer, walkthrough refuse out-of-range values") {
  std::vector<Row> rows;
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--hidden", "0"}, {"--layers", "-1"}, {"--in", "0"}, {"--classes", "1"}, {"--threads", "0"},
           {"--reps", "4"}, {"--min-time", "-1"}, {"--big-batch", "0"}, {"--wbits", "17"}, {"--abits", "0"},
           {"--seed", "-1"}, {"--torch-b1", "-1"}})
    rows.push_back({"bench_mlp", {flag, v}, flag});
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{{"--threads", "0"}, {"--reps", "0"}})
    rows.push_back({"bench_kernels", {flag, v}, flag});
  // qnn_infer: the model file comes first; the flag must be refused before it is read.
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--batch", "0"}, {"--threads", "0"}, {"--reps", "0"}, {"--limit", "0"}, {"--thread-policy", "some"},
           {"--dataset", "cifar"}})
    rows.push_back({"qnn_infer", {"/nonexistent/model.qnnx", flag, v}, flag});
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{{"--lr", "-1"}, {"--seed", "-1"}})
    rows.push_back({"walkthrough", {flag, v}, flag});
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--bits", "5"}, {"--bits", "1,1"}, {"--bits", "x"}, {"--bits", ""}, {"--family", "gru"}, {"--threads", "0"},
           {"--reps", "0"}, {"--min-time", "0"}, {"--big-batch", "1"}})
    rows.push_back({"bench_bits", {"--small", flag, v}, flag});
  for (const auto& [flag, v] : std::vector<std::pair<std::string, std::string>>{
           {"--width", "0"}, {"--batch", "0"}, {"--threads", "0"}, {"--reps", "0"}})
    rows.push_back({"bench_conv", {flag, v}, flag});
  check_rows(rows);
}

TEST_CASE("cli: bench_conv times every conv layer with im2col, and with Winograd where it applies") {
  const std::string js = (fs::temp_directory_path() / "qnn_test_cli" / "conv.json").string();
  const Ran r = run_app("bench_conv", {"--width", "0.125", "--batch", "2", "--reps", "1", "--threads", "1", "--json", js},
                        120);
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const auto j = nlohmann::json::parse(slurp(js));
  // width 0.125: 16-16-32-32-64-64 channels; the first layer (3 channels) is im2col only
  REQUIRE(j["layers"].size() == 11);
  int wino = 0;
  for (const auto& row : j["layers"]) {
    CAPTURE(row.dump());
    CHECK(row["forward_ms"].get<double>() > 0);
    CHECK(row["backward_ms"].get<double>() >= 0);
    wino += row["algorithm"] == "winograd";
    if (row["C"] == 3) CHECK(row["algorithm"] == "im2col");
  }
  CHECK(wino == 5);
  CHECK(j["speedup_vs_im2col"].get<double>() > 0);
  CHECK(j["fma_peak_gflops"].get<double>() > 0);
}

TEST_CASE("cli: bench_bits writes one row per family x bits x kernels, deployed figures where the runner applies") {
  const std::string js = (fs::temp_directory_path() / "qnn_test_cli" / "bits.json").string();
  const Ran r = run_app("bench_bits", {"--small", "--family", "mlp,cnn,lstm", "--bits", "1,2,32", "--reps", "1",
                                       "--min-time", "0.01", "--big-batch", "8", "--threads", "1", "--json", js},
                        120);
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const auto j = nlohmann::json::parse(slurp(js));
  REQUIRE(j["rows"].size() == 15);  // 3 families x (1 on/off, 2 on/off, 32)
  const bool rapl = j["energy"] == "rapl";
  CHECK((rapl || j["energy"].get<std::string>().rfind("not available", 0) == 0));
  for (const auto& row : j["rows"]) {
    CAPTURE(row.dump());
    CHECK(row["train_per_s"].get<double>() > 0);
    CHECK(row["eval_b1_per_s"].get<double>() > 0);
    CHECK(row["eval_bbig_per_s"].get<double>() > 0);
    CHECK(row["train_j_per_sample"].is_null() != rapl);
    const bool deployed = row["family"] != "lstm" && row["kernels"] != "off";
    CHECK(row.contains("deployed_b1_per_s") == deployed);
    if (deployed) {
      // Stored weight bits: 1 or k per quantized weight, 32 per fp weight.
      const int bits = row["bits"];
      CHECK(row["deployed_weight_bits"].get<int64_t>() > 0);
      if (bits == 2) CHECK(row["model"] == "qnn");
    }
  }
  CHECK(r.out.find("cnn       2 on") != std::string::npos);
}

TEST_CASE("cli: svhn_standin composes MNIST digits into SVHN-layout .mat files the SVHN reader takes") {
  const fs::path dir = fs::temp_directory_path() / ("qnn_test_standin_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  // A tiny MNIST: odd images are solid ink, even ones blank; labels cycle 0..9.
  auto write_split = [&](const std::string& prefix, int64_t n) {
    std::vector<uint8_t> img((size_t)(n * 784)), lbl((size_t)n);
    for (int64_t i = 0; i < n; ++i) {
      lbl[(size_t)i] = (uint8_t)(i % 10);
      if (i % 2) std::fill(img.begin() + i * 784, img.begin() + (i + 1) * 784, (uint8_t)255);
    }
    write_idx((dir / "mnist" / (prefix + "-images-idx3-ubyte")).string(), {n, 28, 28}, img);
    write_idx((dir / "mnist" / (prefix + "-labels-idx1-ubyte")).string(), {n}, lbl);
  };
  fs::create_directories(dir / "mnist");
  write_split("train", 40);
  write_split("t10k", 20);
  auto run = [&](const std::string& out, const std::string& seed) {
    return run_app("svhn_standin", {"--mnist", (dir / "mnist").string(), "--out", (dir / out).string(), "--seed", seed});
  };
  const Ran r = run("a", "1");
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const Dataset tr = load_svhn((dir / "a").string(), "train"), te = load_svhn((dir / "a").string(), "test");
  REQUIRE(tr.size() == 40);
  REQUIRE(te.size() == 20);
  for (int64_t i = 0; i < 40; ++i) CHECK(tr.y[(size_t)i] == (int32_t)(i % 10));  // 0 went through y = 10
  // Solid ink covers rows and columns 4..27 whatever the 0..4 offset: one
  // colour there (the digit's) in every channel, up to the light ramp (at
  // most 1.5 levels per pixel along each axis: 2 * 1.5 * 23 = 69 over the
  // block) and the +-12 noise.
  for (int64_t i = 1; i < 40; i += 2)
    for (int64_t c = 0; c < 3; ++c) {
      const uint8_t* p = tr.pixels.data() + i * 3072 + c * 1024;
      int lo = 255, hi = 0;
      for (int64_t h = 4; h < 28; ++h)
        for (int64_t w = 4; w < 28; ++w) lo = std::min<int>(lo, p[h * 32 + w]), hi = std::max<int>(hi, p[h * 32 + w]);
      CHECK(hi - lo <= 69 + 25);
    }
  // Same seed, same bytes; another seed, other crops.
  REQUIRE(run("b", "1").rc == 0);
  REQUIRE(run("c", "2").rc == 0);
  CHECK(slurp((dir / "a" / "train_32x32.mat").string()) == slurp((dir / "b" / "train_32x32.mat").string()));
  CHECK(load_svhn((dir / "c").string(), "train").pixels != tr.pixels);
  // No MNIST: one line that says how to get it.
  const Ran bad = run_app("svhn_standin", {"--mnist", (dir / "none").string(), "--out", (dir / "d").string()});
  CHECK(bad.rc == 1);
  CHECK(bad.err.find("scripts/fetch_data.sh mnist") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("cli: the shared validators accept exactly their range") {
  auto ok = [](const CLI::Validator& v, std::string s) { return v(s).empty(); };
  const auto pos = app::positive_number();
  CHECK(ok(pos, "0.003"));
  CHECK(ok(pos, "1e-4"));
  CHECK_FALSE(ok(pos, "0"));
  CHECK_FALSE(ok(pos, "-1"));
  CHECK_FALSE(ok(pos, "nan"));
  CHECK_FALSE(ok(pos, "inf"));
  CHECK_FALSE(ok(pos, "1e400"));
  CHECK_FALSE(ok(pos, "3x"));
  const auto p = app::probability_below_one();
  CHECK(ok(p, "0"));
  CHECK(ok(p, "0.5"));
  CHECK_FALSE(ok(p, "1"));
  CHECK_FALSE(ok(p, "-0.1"));
  const auto i = app::integer_in(1, 16, "1..16");
  CHECK(ok(i, "1"));
  CHECK(ok(i, "16"));
  CHECK_FALSE(ok(i, "0"));
  CHECK_FALSE(ok(i, "17"));
  CHECK_FALSE(ok(i, "1.5"));
  CHECK_FALSE(ok(i, "-1"));
  CHECK_FALSE(ok(i, ""));
  CHECK(pos(std::string("-1")) == "must be a number > 0, got -1");
  const auto w = app::one_of({"on", "off"});
  CHECK(ok(w, "on"));
  CHECK_FALSE(ok(w, "On"));
  const auto bits = app::bits_validator();
  CHECK(ok(bits, "32"));
  CHECK_FALSE(ok(bits, "31"));
}

TEST_CASE("cli: output paths are checked (and their directory made) before any work") {
  const fs::path dir = fs::temp_directory_path() / "qnn_test_cli" / "made" / "here";
  fs::remove_all(dir.parent_path());
  app::check_writable("--json", (dir / "run.json").string());
  CHECK(fs::is_directory(dir));
  CHECK(fs::is_empty(dir));  // the probe file is gone
  CHECK_THROWS_WITH_AS(app::check_writable("--save", "/proc/qnn-no/x.ckpt"), doctest::Contains("--save /proc/qnn-no/x.ckpt"),
                       Error);
  CHECK_THROWS_WITH_AS(app::check_writable("--export", dir.string()), doctest::Contains("is a directory"), Error);
  fs::remove_all(dir.parent_path());
}

TEST_CASE("cli: printed floats read as typed") {
  CHECK(app::float_str(1e-4f) == "0.0001");
  CHECK(app::f2d(1e-4f) == 0.0001);
  CHECK(app::f2d(3e-3f) == 0.003);
  CHECK(nlohmann::json(app::f2d(0.1f)).dump() == "0.1");
}

TEST_CASE("cli: default LR schedules serve any epoch budget; --lr-end keeps the decay over the run") {
  for (int epochs : {3, 10, 100}) {
    app::TrainFlags f;
    f.epochs = epochs;
    const float decay = app::resolve_training_defaults("bnn", f);
    CHECK(decay == 0.9f);
    ScheduleConfig sc;
    sc.lr = *f.lr;
    sc.lr_end = *f.lr_end;
    sc.total_epochs = epochs;
    sc.decay_per_epoch = decay;
    auto s = make_schedule(f.schedule, sc);
    // Epoch 2 trains at 3e-3 * 0.81 whatever the budget (the old default put a
    // 3-epoch run at 3e-7 there).
    CHECK(s->lr_at(2) == doctest::Approx(3e-3 * 0.81));
    CHECK(s->lr_at(1000) == doctest::Approx(3e-7));  // the floor
    CHECK(s->name() == "exponential");
  }
  app::TrainFlags g;
  g.epochs = 10;
  g.lr_end = 1.7e-4f;  // the README main command
  CHECK(app::resolve_training_defaults("bnn", g) == 0.0f);
  ScheduleConfig sc;
  sc.lr = *g.lr;
  sc.lr_end = *g.lr_end;
  sc.total_epochs = 10;
  auto s = make_schedule("exponential", sc);
  CHECK(s->lr_at(9) == doctest::Approx(1.7e-4));
  app::TrainFlags fp;
  CHECK(app::resolve_training_defaults("fp", fp) == 0.0f);
  CHECK(*fp.lr == 1e-3f);
  CHECK(*fp.lr_end == doctest::Approx(1e-4));
  CHECK(*fp.loss == "xent");
  app::TrainFlags cos;
  cos.schedule = "cosine";
  CHECK(app::resolve_training_defaults("bnn", cos) == 0.0f);  // another schedule: over the run
}

namespace {
// A token-id "loader": sample k is the id k % 4, its label k % 2, never a float
// image. Batches of 8 ids; the feed turns ids into one-hot rows.
struct TokenBatch {
  std::vector<int32_t> ids, y;
};
struct TokenLoader {
  struct Ep {
    int64_t size() const { return 4; }
    TokenBatch batch(int64_t i) const {
      TokenBatch b;
      for (int k = 0; k < 8; ++k) {
        const int id = (int)((i * 8 + k + epoch) % 4);
        b.ids.push_back(id);
        b.y.push_back(id % 2);
      }
      return b;
    }
    int64_t epoch;
  };
  Ep epoch(int64_t e) const { return Ep{e}; }
};
Tensor one_hot(const std::vector<int32_t>& ids) {
  std::vector<float> v(ids.size() * 4, 0.0f);
  for (size_t i = 0; i < ids.size(); ++i) v[i * 4 + ids[i]] = 1.0f;
  return Tensor::from_vector({(int64_t)ids.size(), 4}, v);
}
}  // namespace

TEST_CASE("cli: the training loop takes any feed (token ids), names the rate key, keeps the best epoch") {
  TokenLoader loader;
  auto fwd = [](Module& m, const TokenBatch& b) { return m.forward(one_hot(b.ids)); };
  auto labels = [](const TokenBatch& b) -> const std::vector<int32_t>& { return b.y; };
  app::TrainFlags f;
  f.epochs = 3;
  f.lr = 0.1f;
  f.lr_end = 0.01f;
  f.loss = "xent";
  f.val = 1;
  app::TrainJob job;
  job.flags = &f;
  job.build = [] {
    Rng rng(1);
    return std::shared_ptr<Module>(std::make_shared<Linear>(4, 2, rng));
  };
  job.data.train = app::make_feed(loader, fwd, labels);
  job.data.val = app::make_feed(loader, fwd, labels);
  job.data.test = app::make_feed(loader, fwd, labels);
  job.rate_key = "samples_per_s";
  job.rate_unit = "samples/s";
  job.epoch_lines = false;
  job.announce = false;
  const app::TrainResult r = app::run_training(job);
  REQUIRE(r.epochs.size() == 3);
  CHECK(r.epochs[0].contains("samples_per_s"));
  CHECK_FALSE(r.epochs[0].contains("images_per_s"));
  CHECK(r.best_epoch >= 1);
  REQUIRE(r.test);
  CHECK(r.test->acc > 0.9);  // the parity of a one-hot id is linear
  CHECK(r.json["best_epoch"] == r.best_epoch);
  CHECK(r.json.contains("test_acc"));
}
