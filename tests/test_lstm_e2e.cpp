// End-to-end: imdb_lstm's whole path (apps/common/lstm_train.h's
// run_imdb_lstm, what the program runs after parsing its flags) on a tiny
// reviews.json the test writes: load, split, vocabulary, train one epoch
// through the shared loop, validate, test, --json, --save / --load
// --eval-only; and a malformed file refused with the record named.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "apps/common/lstm_train.h"
#include "core/tensor.h"
#include "tests/imdb_test_util.h"

using namespace qnn;
namespace fs = std::filesystem;
using json = nlohmann::json;
using qnn::test::tiny_reviews;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("qnn_test_lstm_e2e_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
}

app::LstmAppOptions tiny_options(const fs::path& dir, const std::string& model) {
  app::LstmAppOptions o;
  app::set_lstm_flag_defaults(o.train);
  o.data = dir.string();  // the directory holding reviews.json
  o.maxlen = 12;
  o.lstm.model = model;
  o.lstm.vocab = 40;
  o.lstm.embed = 4;
  o.lstm.hidden = 8;
  if (model == "qnn") o.lstm.wbits = o.lstm.abits = 1;
  o.train.epochs = 1;
  o.train.batch = 8;
  o.train.val = 4;
  o.train.threads = 1;
  o.quiet = true;
  return o;
}

}  // namespace

TEST_CASE("e2e imdb_lstm: a tiny reviews.json, 1 epoch, fp and 1-bit, writes its JSON; save / load / eval-only") {
  const fs::path dir = temp_dir("run");
  write(dir / "reviews.json", tiny_reviews(24));  // 12 + 12 test, 12 + 12 train of which 2 + 2 validate
  for (const std::string model : {"fp", "qnn"}) {
    INFO("model " << model);
    app::LstmAppOptions o = tiny_options(dir, model);
    o.train.json_path = (dir / (model + ".json")).string();
    o.train.save_path = (dir / (model + ".ckpt")).string();
    const app::TrainResult r = app::run_imdb_lstm(o);
    REQUIRE(r.test);
    REQUIRE(fs::exists(o.train.json_path));
    std::ifstream f(o.train.json_path);
    const json j = json::parse(f);
    CHECK(j["config"]["model"] == model);
    CHECK(j["config"]["dataset"] == "imdb");
    CHECK(j["config"]["maxlen"] == 12);
    REQUIRE(j["epochs"].size() == 1);
    CHECK(j["epochs"][0]["samples_per_s"].get<double>() > 0);
    CHECK_FALSE(j["epochs"][0].contains("images_per_s"));
    CHECK(j["epochs"][0]["val_acc"].is_number());
    const double acc = j["test_acc"].get<double>();
    CHECK(acc >= 0.0);
    CHECK(acc <= 1.0);
    CHECK(acc == doctest::Approx(r.test->acc));
    CHECK(j["best_epoch"] == 1);
    // The summary's bits and bytes: the LSTM's weights at 1 bit for qnn.
    // fp's recipe has dropout (a row of its own, after the embedding); qnn's none.
    const json& layers = j["model"]["layers"];
    const size_t rnn = model == "fp" ? 2 : 1;
    REQUIRE(layers.size() == rnn + 2);
    if (model == "fp") CHECK(layers[1]["name"] == "dropout");
    CHECK(layers[rnn]["name"] == "rnn");
    CHECK(layers[rnn]["weight_bits"] == (model == "qnn" ? 1 : 32));
    CHECK(layers[rnn]["input_bits"] == (model == "qnn" ? 1 : 32));
    const double fp32 = j["model"]["bytes_fp32"].get<double>(), packed = j["model"]["bytes_packed"].get<double>();
    if (model == "qnn")
      CHECK(packed < fp32);
    else
      CHECK(packed == fp32);

    // The saved (tested) model, loaded for --eval-only, scores the same.
    app::LstmAppOptions e = tiny_options(dir, model);
    e.train.load_path = o.train.save_path;
    e.train.eval_only = true;
    const app::TrainResult re = app::run_imdb_lstm(e);
    REQUIRE(re.test);
    CHECK(re.test->acc == r.test->acc);
    CHECK(re.test->loss == doctest::Approx(r.test->loss).epsilon(1e-6));
  }
}

TEST_CASE("e2e imdb_lstm: a malformed reviews.json is refused with the record named, before training") {
  const fs::path dir = temp_dir("bad");
  json a = json::parse(tiny_reviews(6));
  a[3]["s"] = 2;  // record 3: a sentiment that is neither 0 nor 1
  write(dir / "reviews.json", a.dump());
  app::LstmAppOptions o = tiny_options(dir, "fp");
  o.train.val = 2;
  o.train.json_path = (dir / "run.json").string();
  CHECK_THROWS_WITH_AS(app::run_imdb_lstm(o), doctest::Contains("record 3"), Error);
  CHECK_FALSE(fs::exists(o.train.json_path));  // nothing trained, nothing written

  write(dir / "reviews.json", "[{\"t\": \"fine\", \"s\": 1}, {\"t\": 5, \"s\": 0}]");
  app::LstmAppOptions o2 = tiny_options(dir, "fp");
  CHECK_THROWS_WITH_AS(app::run_imdb_lstm(o2), doctest::Contains("record 1"), Error);
  // An odd --val cannot be balanced: refused naming the flag.
  write(dir / "reviews.json", tiny_reviews(6));
  app::LstmAppOptions o3 = tiny_options(dir, "fp");
  o3.train.val = 3;
  CHECK_THROWS_WITH_AS(app::run_imdb_lstm(o3), doctest::Contains("--val"), Error);
}

// The recipe's forget-gate bias: the hard forget gate must start inside its
// linear range. With the smooth LSTM's bias 1, hard_sigmoid(1) = 1 exactly:
// every cell is a pure accumulator, hardtanh(c) saturates and the quantized
// model does not learn (apps/common/lstm_train.h, kLstmForgetBiasHard).
TEST_CASE("imdb_lstm recipe: per-model epochs, schedule, dropout and recurrent scale; given flags are kept") {
  for (const std::string model : {"fp", "qnn"})
    for (bool given : {false, true}) {
      INFO("model " << model << (given ? ", flags given" : ", defaults"));
      app::LstmAppOptions o;
      app::set_lstm_flag_defaults(o.train);
      o.lstm.model = model;
      o.epochs_given = given;
      if (given) {
        o.train.epochs = 7;
        o.train.lr_end = 3e-4f;
        o.lstm.dropout = 0.1f;
        if (model == "qnn") o.lstm.recurrent_scale = 0.f;  // 0: none
      }
      const float decay = app::resolve_lstm_app(o);
      const bool fp = model == "fp";
      CHECK(o.train.epochs == (given ? 7 : fp ? app::kLstmEpochsFp : app::kLstmEpochs));
      CHECK(*o.train.lr_end == (given ? 3e-4f : fp ? app::kLstmLrEndFp : 1e-5f));
      CHECK(decay == (given || fp ? 0.0f : 0.85f));  // 0: the decay runs over the run, to --lr-end
      CHECK(*o.lstm.dropout == (given ? 0.1f : fp ? app::kLstmDropoutFp : 0.0f));
      CHECK(*o.lstm.recurrent_scale == (fp || given ? 0.0f : app::kLstmRecurrentScale));
      Rng rng(1);
      o.lstm.vocab = 20;
      auto m = app::build_lstm_classifier(o.lstm, rng);
      const bool has_scale = m->named_parameters().size() == 7;  // embedding, 3 LSTM, scale, 2 head
      CHECK(has_scale == (!fp && !given));
    }
}

TEST_CASE("imdb_lstm recipe: forget-gate bias per gate kind, overridable, refused when not finite") {
  for (const std::string model : {"fp", "qnn"}) {
    INFO("model " << model);
    app::LstmConfig c;
    c.model = model;
    c.vocab = 20;
    c.embed = 3;
    c.hidden = 5;
    app::resolve_lstm_defaults(c);
    REQUIRE(c.forget_bias);
    Rng rng(1);
    auto m = app::build_lstm_classifier(c, rng);
    auto* rnn = dynamic_cast<LSTMBase*>(&m->rnn());
    REQUIRE(rnn);
    const float want = model == "fp" ? 1.0f : 0.5f;
    for (int64_t j = 0; j < 4 * c.hidden; ++j) {
      const bool forget = j >= c.hidden && j < 2 * c.hidden;
      if (forget)
        CHECK(rnn->bias.data()[j] == want);
      else
        CHECK(std::fabs(rnn->bias.data()[j]) <= 1.0f / std::sqrt(5.0f));  // PyTorch's init elsewhere
    }
    // The forget gate's initial value: ~0.73 (sigmoid(1)) or 0.75 (hard), below saturation.
    const float f0 = model == "fp" ? 1.0f / (1.0f + std::exp(-want)) : std::clamp((want + 1.0f) / 2.0f, 0.0f, 1.0f);
    CHECK(f0 > 0.7f);
    CHECK(f0 < 0.8f);
  }
  app::LstmConfig c;
  c.model = "qnn";
  c.forget_bias = 0.25f;  // --forget-bias 0.25 is kept
  app::resolve_lstm_defaults(c);
  CHECK(*c.forget_bias == 0.25f);
  app::LstmConfig bad;
  bad.forget_bias = std::nanf("");
  CHECK_THROWS_WITH_AS(app::resolve_lstm_defaults(bad), doctest::Contains("--forget-bias"), Error);
}
