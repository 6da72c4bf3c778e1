// tests/test_cnn_e2e.cpp — cifar_cnn end to end (apps/common/cnn_train.h's
// run_cifar_cnn, the whole program after flag parsing) on tiny data sets
// written here: the official CIFAR-10 binary layout, and SVHN .mat files
// written with matio (compressed and not). A run trains, validates, tests,
// saves, and a --eval-only run of the saved model reproduces the test
// accuracy and loss exactly (weights, batch-norm statistics and the stored
// normalisation all round-trip). Damaged files of each format are refused
// with a message naming the file.
#include <doctest/doctest.h>

#include <matio.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "apps/common/cnn_train.h"
#include "core/tensor.h"

using namespace qnn;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

fs::path scratch_root() { return fs::temp_directory_path() / ("qnn_test_cnn_e2e_" + std::to_string(::getpid())); }

// Removes this process's scratch directory when the test program ends.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ec;
    fs::remove_all(scratch_root(), ec);
  }
} scratch_cleanup;

fs::path scratch(const std::string& name) {
  const fs::path d = scratch_root() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Pixel (c, h, w) of image i with label y: a class-dependent colour plus a
// little per-image texture, so the images differ and the classes are
// separable in principle.
uint8_t pixel(int64_t i, int y, int c, int h, int w) {
  return (uint8_t)((y * 23 + c * 61 + ((h * 7 + w * 3 + (int)i * 13) % 40)) % 256);
}

// One CIFAR-10 binary batch: n records of 1 label byte + 3072 CHW bytes.
void write_cifar_batch(const fs::path& p, int64_t n, int64_t first) {
  std::ofstream f(p, std::ios::binary);
  REQUIRE(f.good());
  for (int64_t i = first; i < first + n; ++i) {
    const int y = (int)(i % 10);
    std::vector<uint8_t> rec(3073);
    rec[0] = (uint8_t)y;
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 32; ++h)
        for (int w = 0; w < 32; ++w) rec[1 + c * 1024 + h * 32 + w] = pixel(i, y, c, h, w);
    f.write((const char*)rec.data(), (std::streamsize)rec.size());
  }
  REQUIRE(f.good());
}

// DIR/cifar-10-batches-bin/: 5 training batches of 60 images, a test batch of 100.
fs::path write_cifar(const std::string& name) {
  const fs::path root = scratch(name), dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) write_cifar_batch(dir / ("data_batch_" + std::to_string(b) + ".bin"), 60, (b - 1) * 60);
  write_cifar_batch(dir / "test_batch.bin", 100, 1000);
  return root;
}

// An SVHN file: X 32 x 32 x 3 x n uint8 (MATLAB column-major), y n x 1
// double in 1..10 (10 = digit 0).
void write_svhn_mat(const fs::path& p, int64_t n, int64_t first, bool compress) {
  mat_t* mat = Mat_CreateVer(p.string().c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  const auto comp = compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
  std::vector<uint8_t> x((size_t)(3072 * n));
  std::vector<double> y((size_t)n);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = first + k;
    const int label = (int)(i % 10);
    y[(size_t)k] = label == 0 ? 10.0 : (double)label;
    for (int c = 0; c < 3; ++c)
      for (int w = 0; w < 32; ++w)
        for (int h = 0; h < 32; ++h) x[(size_t)(h + 32 * w + 1024 * c + 3072 * k)] = pixel(i, label, c, h, w);
  }
  size_t xd[4] = {32, 32, 3, (size_t)n}, yd[2] = {(size_t)n, 1};
  matvar_t* vx = Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 4, xd, x.data(), 0);
  matvar_t* vy = Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, yd, y.data(), 0);
  REQUIRE(vx != nullptr);
  REQUIRE(vy != nullptr);
  REQUIRE(Mat_VarWrite(mat, vx, comp) == 0);
  REQUIRE(Mat_VarWrite(mat, vy, comp) == 0);
  Mat_VarFree(vx);
  Mat_VarFree(vy);
  Mat_Close(mat);
}

fs::path write_svhn(const std::string& name, bool compress) {
  const fs::path root = scratch(name);
  write_svhn_mat(root / "train_32x32.mat", 300, 0, compress);
  write_svhn_mat(root / "test_32x32.mat", 100, 1000, compress);
  return root;
}

// The tiny config of the brief: width 0.125, --limit-train 200, 1 epoch.
app::CnnAppOptions tiny(const std::string& dataset, const fs::path& data, const std::string& model) {
  app::CnnAppOptions o;
  o.dataset = dataset;
  o.data = data.string();
  o.cnn.model = model;
  o.cnn.width = 0.125f;
  o.train.epochs = 1;
  o.train.batch = app::kCnnBatch;
  o.train.val = app::kCnnVal;
  o.train.limit_train = 200;
  o.train.threads = 1;
  o.quiet = true;
  return o;
}

// Train + save, then --eval-only of the saved model: same test figures.
void train_then_reload(const std::string& dataset, const fs::path& data, const std::string& model) {
  const fs::path out = data / "out";
  app::CnnAppOptions o = tiny(dataset, data, model);
  o.train.json_path = (out / "run.json").string();
  o.train.save_path = (out / "model.ckpt").string();
  const app::TrainResult r = app::run_cifar_cnn(o);
  REQUIRE(r.status == "ok");
  REQUIRE(r.test.has_value());

  // The --json document, as written.
  std::ifstream jf(o.train.json_path);
  REQUIRE(jf.good());
  const json j = json::parse(jf);
  CHECK(j["config"]["model"] == model);
  CHECK(j["config"]["dataset"] == dataset);
  CHECK(j["config"]["width"] == 0.125);
  CHECK(j["config"]["val"] == 20);  // --limit-train 200 without --val: a tenth
  // The data set's recipe: CIFAR-10 crops and flips, SVHN only crops (a
  // mirrored digit is another glyph).
  CHECK(j["config"]["augment"] == (dataset == "svhn" ? "crop4" : "crop4+flip"));
  CHECK(j["config"]["normalize"] == (model == "fp"));
  CHECK(j["config"].contains("normalization") == (model == "fp"));
  REQUIRE(j["epochs"].size() == 1);
  const json& e = j["epochs"][0];
  CHECK(e["images_per_s"].get<double>() > 0);
  CHECK(std::isfinite(e["train_loss"].get<double>()));
  CHECK(e["val_acc"].get<double>() >= 0);
  const double acc = j["test_acc"].get<double>();
  CHECK(acc >= 0);
  CHECK(acc <= 1);
  CHECK(acc == r.test->acc);
  CHECK(j["best_epoch"] == 1);
  // The model report: the conv and FC layers, their bits.
  const json& m = j["model"];
  CHECK(m["params"].get<int64_t>() > 0);
  int convs = 0;
  for (const auto& l : m["layers"])
    if (l["type"] == (model == "fp" ? "Conv2d" : "QuantConv2d")) {
      ++convs;
      CHECK(l["weight_bits"] == (model == "fp" ? 32 : 1));
    }
  CHECK(convs == 6);
  if (model != "fp") CHECK(m["bytes_packed"].get<double>() < m["bytes_fp32"].get<double>() / 8);

  // --eval-only of the saved model: the same numbers, exactly.
  app::CnnAppOptions ev = tiny(dataset, data, model);
  ev.train.load_path = o.train.save_path;
  ev.train.eval_only = true;
  const app::TrainResult r2 = app::run_cifar_cnn(ev);
  REQUIRE(r2.test.has_value());
  CHECK(r2.test->acc == r.test->acc);
  CHECK(r2.test->loss == r.test->loss);
}

// run_cifar_cnn must refuse with a qnn::Error whose message holds `needle`.
void check_refused(app::CnnAppOptions o, const std::string& needle) {
  std::string msg;
  try {
    app::run_cifar_cnn(o);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  CHECK(!msg.empty());
  CHECK(msg.find(needle) != std::string::npos);
}

void truncate_by(const fs::path& p, std::uintmax_t bytes) {
  const auto n = fs::file_size(p);
  fs::resize_file(p, n > bytes ? n - bytes : 0);
}

}  // namespace

TEST_CASE("cnn recipe: --augment resolves per data set; digits are cropped, never flipped, by default") {
  CHECK(app::resolve_cnn_augment("on", "cifar10") == "crop4+flip");
  CHECK(app::resolve_cnn_augment("on", "svhn") == "crop4");
  CHECK(app::resolve_cnn_augment("crop+flip", "svhn") == "crop4+flip");
  CHECK(app::resolve_cnn_augment("crop", "cifar10") == "crop4");
  CHECK(app::resolve_cnn_augment("off", "cifar10") == "off");
  CHECK_THROWS_WITH_AS(app::resolve_cnn_augment("flip", "cifar10"), doctest::Contains("--augment"), Error);
  // The resolved names are what the config records, not flag values.
  CHECK_THROWS_WITH_AS(app::resolve_cnn_augment("crop4", "cifar10"), doctest::Contains("--augment"), Error);
  const Augment both = app::cnn_augment("crop4+flip"), crop = app::cnn_augment("crop4"), none = app::cnn_augment("off");
  CHECK((both.crop_pad == 4 && both.hflip));
  CHECK((crop.crop_pad == 4 && !crop.hflip));
  CHECK((none.crop_pad == 0 && !none.hflip));
}

TEST_CASE("cnn recipe: without --epochs each model trains its recipe's budget; a given budget is kept") {
  for (const std::string model : {"fp", "bnn", "qnn"}) {
    app::CnnAppOptions o;
    o.cnn.model = model;
    o.train.epochs = 3;
    o.epochs_from_recipe = true;
    app::resolve_cnn_app(o);
    CHECK(o.train.epochs == (model == "fp" ? app::kCnnEpochsFp : app::kCnnEpochs));
    app::CnnAppOptions given;
    given.cnn.model = model;
    given.train.epochs = 3;
    app::resolve_cnn_app(given);
    CHECK(given.train.epochs == 3);
  }
}

TEST_CASE("cnn recipe: fp trains with adamw and the recipe's decay unless --optimizer / --weight-decay say otherwise") {
  // (--optimizer as given or not, --weight-decay as given or not) -> resolved
  auto resolved = [](const std::string& model, std::optional<std::string> optimizer, std::optional<float> wd) {
    app::CnnAppOptions o;
    o.cnn.model = model;
    o.train.optimizer = optimizer;
    o.train.weight_decay = wd;
    app::resolve_cnn_app(o);
    return std::make_pair(o.train.optimizer.value(), o.train.weight_decay.value());
  };
  using P = std::pair<std::string, float>;
  CHECK(resolved("fp", {}, {}) == P("adamw", app::kCnnWeightDecayFp));
  CHECK(resolved("fp", {}, 0.05f) == P("adamw", 0.05f));
  CHECK(resolved("fp", "adamw", {}) == P("adamw", app::kCnnWeightDecayFp));
  CHECK(resolved("fp", "adam", {}) == P("adam", 0.0f));
  CHECK(resolved("fp", "sgd", 1e-4f) == P("sgd", 1e-4f));
  CHECK(resolved("bnn", {}, {}) == P("adam", 0.0f));
  CHECK(resolved("qnn", {}, {}) == P("adam", 0.0f));
  CHECK(resolved("bnn", "adamw", {}) == P("adamw", 0.01f));  // the library's default
  // The config records it, so a run says which optimizer and decay it had.
  app::CnnAppOptions o;
  o.cnn.model = "fp";
  const float decay = app::resolve_cnn_app(o);
  const auto j = app::cnn_config_json(o, decay);
  CHECK(j["optimizer"] == "adamw");
  CHECK(j["weight_decay"].get<double>() == doctest::Approx(app::kCnnWeightDecayFp));
}

TEST_CASE("cnn e2e: cifar_cnn bnn on CIFAR-10 binary batches: trains, tests, saves; --eval-only reproduces it") {
  train_then_reload("cifar10", write_cifar("cifar_bnn"), "bnn");
}

TEST_CASE("cnn e2e: cifar_cnn fp on a compressed SVHN .mat (normalisation stored with the model)") {
  train_then_reload("svhn", write_svhn("svhn_fp", true), "fp");
}

TEST_CASE("cnn e2e: --optimizer adamw decays the weights: recorded in the config, and the run is not adam's") {
  const fs::path data = write_cifar("cifar_fp_adamw");
  app::CnnAppOptions a = tiny("cifar10", data, "fp");
  a.train.optimizer = "adam";  // fp's recipe is adamw: the run without decay asks for adam
  const app::TrainResult ra = app::run_cifar_cnn(a);
  app::CnnAppOptions w = tiny("cifar10", data, "fp");
  w.train.optimizer = "adamw";
  w.train.weight_decay = 20.0f;  // lr 1e-3: every step multiplies the weights by 0.98
  const app::TrainResult rw = app::run_cifar_cnn(w);
  app::CnnAppOptions d = tiny("cifar10", data, "fp");
  d.train.optimizer = "adamw";  // no --weight-decay: the fp recipe's (bnn / qnn: PyTorch's 0.01)
  const app::TrainResult rd = app::run_cifar_cnn(d);
  REQUIRE((ra.test && rw.test && rd.test));
  CHECK(!ra.json["config"].contains("weight_decay"));  // 0: absent, so older configs keep their identity
  CHECK(rw.json["config"]["optimizer"] == "adamw");
  CHECK(rw.json["config"]["weight_decay"] == 20.0);
  CHECK(rd.json["config"]["weight_decay"].get<double>() == doctest::Approx(app::kCnnWeightDecayFp));
  CHECK(rw.test->loss != ra.test->loss);
}

TEST_CASE("cnn e2e: an fp model trained with --normalize off is evaluated without normalisation by default") {
  const fs::path data = write_cifar("cifar_fp_raw");
  app::CnnAppOptions o = tiny("cifar10", data, "fp");
  o.normalize = false;
  o.train.save_path = (data / "m.ckpt").string();
  const app::TrainResult r = app::run_cifar_cnn(o);
  REQUIRE(r.test.has_value());
  CHECK(r.json["config"]["normalize"] == false);
  app::CnnAppOptions ev = tiny("cifar10", data, "fp");  // --normalize not given: fp's default would be on
  ev.train.load_path = o.train.save_path;
  ev.train.eval_only = true;
  const app::TrainResult r2 = app::run_cifar_cnn(ev);
  REQUIRE(r2.test.has_value());
  CHECK(r2.json["config"]["normalize"] == false);
  CHECK(r2.test->loss == r.test->loss);
}

TEST_CASE("cnn e2e: a bnn trained with --shortcuts on is evaluated with them by default; --shortcuts off is refused") {
  const fs::path data = write_cifar("cifar_bnn_shortcuts");
  app::CnnAppOptions o = tiny("cifar10", data, "bnn");
  o.shortcuts = true;
  o.train.save_path = (data / "m.ckpt").string();
  const app::TrainResult r = app::run_cifar_cnn(o);
  REQUIRE(r.test.has_value());
  CHECK(r.json["config"]["shortcuts"] == true);
  app::CnnAppOptions ev = tiny("cifar10", data, "bnn");  // --shortcuts not given
  ev.train.load_path = o.train.save_path;
  ev.train.eval_only = true;
  const app::TrainResult r2 = app::run_cifar_cnn(ev);
  REQUIRE(r2.test.has_value());
  CHECK(r2.json["config"]["shortcuts"] == true);
  CHECK(r2.test->loss == r.test->loss);
  CHECK(r2.test->acc == r.test->acc);
  ev.shortcuts = false;
  check_refused(ev, "was trained with --shortcuts on, not --shortcuts off");
}

TEST_CASE("cnn e2e: cifar_cnn bnn on an uncompressed SVHN .mat = the same images as CIFAR-10 batches, same run") {
  // Both writers store the same pixels and labels (pixel(), i % 10), so the
  // two readers must hand the loop the same data: one seed, one run.
  app::CnnAppOptions os = tiny("svhn", write_svhn("svhn_bnn", false), "bnn");
  app::CnnAppOptions oc = tiny("cifar10", write_cifar("cifar_twin"), "bnn");
  os.augment = oc.augment = "crop+flip";  // the data sets' defaults differ (SVHN does not flip)
  const app::TrainResult rs = app::run_cifar_cnn(os);
  const app::TrainResult rc = app::run_cifar_cnn(oc);
  REQUIRE(rs.test.has_value());
  REQUIRE(rc.test.has_value());
  CHECK(rs.json["config"]["layout"] == "svhn-mat");
  CHECK(rc.json["config"]["layout"] == "cifar10-bin");
  REQUIRE(rs.epochs.size() == 1);
  REQUIRE(rc.epochs.size() == 1);
  CHECK(rs.epochs[0]["train_loss"] == rc.epochs[0]["train_loss"]);
  CHECK(rs.test->loss == rc.test->loss);
  CHECK(rs.test->acc == rc.test->acc);
}

TEST_CASE("cnn e2e: damaged CIFAR-10 batches and SVHN .mat files are refused with the file named") {
  {
    const fs::path data = write_cifar("cifar_damaged");
    truncate_by(data / "cifar-10-batches-bin" / "data_batch_3.bin", 100);  // not whole 3073-byte records
    check_refused(tiny("cifar10", data, "bnn"), "data_batch_3.bin");
  }
  {
    const fs::path data = write_cifar("cifar_bad_label");
    const fs::path p = data / "cifar-10-batches-bin" / "test_batch.bin";
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3073 * 5);  // record 5's label byte
    f.put((char)42);
    f.close();
    check_refused(tiny("cifar10", data, "bnn"), "test_batch.bin");
  }
  for (bool compress : {true, false}) {
    const fs::path data = write_svhn(compress ? "svhn_damaged_z" : "svhn_damaged", compress);
    truncate_by(data / "train_32x32.mat", fs::file_size(data / "train_32x32.mat") / 2);
    check_refused(tiny("svhn", data, "bnn"), "train_32x32.mat");
  }
  {
    // An SVHN directory given as CIFAR-10: refused, not mislabelled in the metadata.
    const fs::path data = write_svhn("svhn_as_cifar", true);
    check_refused(tiny("cifar10", data, "bnn"), "--dataset svhn");
  }
  {
    // --val larger than what --limit-train loaded: the flags to change are named.
    const fs::path data = write_cifar("cifar_val");
    app::CnnAppOptions o = tiny("cifar10", data, "bnn");
    o.train.val = 500;
    o.val_given = true;
    check_refused(o, "--val 500 leaves no training images");
  }
}

TEST_CASE("cnn e2e: --export of a model export cannot represent is refused before any data is read") {
  const fs::path data = scratch("export_no_data");  // empty: reading it would fail differently
  // 16-bit levels with one-padding: sums too wide for exact integers, and the
  // float product over padded rows is not conv2d's (export refuses it).
  app::CnnAppOptions o = tiny("cifar10", data, "qnn");
  o.cnn.wbits = o.cnn.abits = 16;
  o.cnn.pad_mode = "one";
  o.train.export_path = (data / "m.qnnx").string();
  check_refused(o, "too wide to be exact");
}
