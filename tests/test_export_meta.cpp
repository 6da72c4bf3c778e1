// Model metadata in .qnnx files (format version 3) and apps/common/model_meta.h:
// files from before metadata existed still load unchanged, metadata round-trips,
// damaged metadata is refused with the file named, and a model trained on other
// data is refused unless --allow-mismatch.
#include <doctest/doctest.h>

#include <filesystem>
#include <tuple>

#include "apps/common/model_meta.h"
#include "core/fileio.h"
#include "data/dataset.h"
#include "kernels/packed_model.h"
#include "layers/quant/export.h"
#include "layers/quant/quant.h"
#include "tests/export_test_util.h"

using namespace qnn;
using namespace qnn::test;
namespace k = qnn::kernels;
using json = nlohmann::json;

namespace {

// Files written by the code before metadata existed (kernels/packed_model.cpp
// of that time, PackedModel::to_bytes on hand-built models), kept as bytes so
// these tests do not depend on today's writer.
//  bnn, version 1: dense_binary pixels8 8 -> 4 (sign out, thresholds 0 100 -300 5,
//  flips 0 1 0 1) -> dense_binary packed 4 -> 3 (float out, affine).
const std::string kOldBnnV1(
    "\x51\x4e\x4e\x58\x01\x00\x00\x00\xec\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"
    "\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00"
    "\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00"
    "\x34\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\xf0\x00\x00\x00\x00\x00\x00\x00"
    "\x81\x00\x00\x00\x00\x00\x00\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x64\x00\x00\x00"
    "\xd4\xfe\xff\xff\x05\x00\x00\x00\x00\x01\x00\x01\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00"
    "\x04\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x3c\x00\x00\x00"
    "\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x0f\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x3f\x00\x00\xa0\xbf"
    "\x00\x00\x00\x40\x00\x00\x00\x3e\x00\x00\x00\x00\x00\x00\x80\xbf\x06\x30\x23\x5c",
    236);
//  qnn, version 2: dense_levels real 8 -> 3, 2-bit weights, bias, affine.
const std::string kOldQnnV2(
    "\x51\x4e\x4e\x58\x02\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00"
    "\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00"
    "\x02\x00\x00\x00\x06\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00"
    "\x6c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3f\x20\x00\x00\x00\x00\x00\x00\x00\x39\x00\x00\x00"
    "\x00\x00\x00\x00\x4a\x00\x00\x00\x00\x00\x00\x00\x8f\x00\x00\x00\x00\x00\x00\x00\x63\x00\x00\x00"
    "\x00\x00\x00\x00\xac\x00\x00\x00\x00\x00\x00\x00\xd4\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x3f"
    "\x00\x00\x00\xbf\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3f"
    "\x00\x00\x40\x3f\x00\x00\x00\xbf\x00\x00\x00\x00\x00\x00\x80\x3e\x00\x00\x00\x3f\x75\x0c\x31\x8c",
    192);
// Their logits on two rows of pixels, as that build's runner computed them.
const uint8_t kOldPixels[16] = {0, 255, 17, 128, 200, 3, 99, 254, 255, 0, 1, 2, 250, 251, 128, 127};
const std::vector<float> kOldBnnLogits = {0.125f, 2.5f, -5.f, 0.125f, 2.5f, 3.f};
const std::vector<float> kOldQnnLogits = {-0.104166627f, 0.630859375f, 0.28125f, 1.79166663f, -0.142578125f, -0.333333313f};

Dataset describe(const std::string& name, Shape shape, int classes, std::vector<std::string> names = {}) {
  Dataset d;
  d.name = name + "/test";
  d.sample_shape = std::move(shape);
  d.num_classes = classes;
  d.class_names = names.empty() ? mnist_class_names_for(name) : names;
  return d;
}

}  // namespace

TEST_CASE("export metadata: files written before metadata existed still load, unchanged") {
  for (const auto& [bytes, logits, version] :
       {std::tuple{kOldBnnV1, kOldBnnLogits, 1u}, std::tuple{kOldQnnV2, kOldQnnLogits, 2u}}) {
    CAPTURE(version);
    const k::PackedModel pm = k::PackedModel::from_bytes(bytes, "old.qnnx");
    CHECK(pm.meta.empty());
    CHECK(pm.to_bytes() == bytes);  // no metadata: written exactly as before
    k::PackedRunner r(pm);
    std::vector<float> out(6);
    r.logits_u8(kOldPixels, 2, out.data());
    check_same_bits(out, logits, "old file");
  }
  const k::PackedModel bnn1 = k::PackedModel::from_bytes(kOldBnnV1, "old.qnnx");
  CHECK(bnn1.layers.at(0).thresh == std::vector<int32_t>{0, 100, -300, 5});
  CHECK(bnn1.kind() == "bnn");
  CHECK(k::PackedModel::from_bytes(kOldQnnV2, "old.qnnx").kind() == "qnn");
}

TEST_CASE("export metadata: round trip in the .qnnx file (bnn, qnn), version 3 only when present") {
  const std::string meta =
      "{\"dataset\":\"fashion-mnist\",\"class_names\":[\"T-shirt/top\",\"Ankle boot\"],\"note\":\"\xc3\xa9\"}";
  const std::string path = tmp_path("meta.qnnx");
  SUBCASE("bnn") {
    auto m = bnn({64}, 51, true);
    const std::string plain = export_model(*m).to_bytes();
    CHECK(peek<uint32_t>(plain, 4) == 1);
    ExportOptions eo;
    eo.meta = meta;
    const int64_t bytes = export_model_file(*m, path, eo);
    const std::string file = read_file(path);
    CHECK(bytes == (int64_t)file.size());
    CHECK((int64_t)file.size() == (int64_t)plain.size() + 4 + (int64_t)meta.size());
    CHECK(peek<uint32_t>(file, 4) == 3);
    CHECK(peek<uint32_t>(file, 40) == meta.size());  // right after the input dims
    const k::PackedModel pm = k::PackedModel::load(path);
    CHECK(pm.meta == meta);
    CHECK(pm.to_bytes() == file);
    k::PackedModel no_meta = pm;
    no_meta.meta.clear();
    CHECK(no_meta.to_bytes() == plain);  // the same model, only the metadata block differs
    k::PackedRunner a(pm), b(export_model(*m));
    auto px = random_pixels(9, 784, 5);
    check_same_bits(runner_logits(a, px, 9), runner_logits(b, px, 9), "with vs without metadata");
  }
  SUBCASE("qnn (k-bit layers, which alone would be version 2)") {
    Rng rng(3);
    QuantMLPOptions o;
    o.hidden = {40};
    o.weight_bits = 2;
    o.act_bits = 2;
    auto m = quant_mlp(784, 10, rng, o);
    ExportOptions eo;
    eo.meta = meta;
    const k::PackedModel pm = k::PackedModel::from_bytes(export_model(*m, eo).to_bytes(), "qnn.qnnx");
    CHECK(pm.meta == meta);
    CHECK(pm.kind() == "qnn");
    CHECK(peek<uint32_t>(pm.to_bytes(), 4) == 3);
    CHECK(peek<uint32_t>(export_model(*m).to_bytes(), 4) == 2);
  }
  std::filesystem::remove(path);
}

TEST_CASE("export metadata: damaged, truncated or invalid metadata is refused with the file named") {
  auto m = bnn({64}, 52, true);
  ExportOptions eo;
  eo.meta = "{\"dataset\":\"mnist\"}";
  const std::string good = export_model(*m, eo).to_bytes();
  const std::string path = tmp_path("badmeta.qnnx");
  auto err = [&](const std::string& bytes) { return load_error(bytes, path); };
  REQUIRE(err(good).empty());
  const size_t M = 40;  // the metadata size field (magic..dims with ndim 1 = 40 bytes)
  auto has = [&](const std::string& e, const std::string& what) {
    CHECK_MESSAGE(e.find(what) != std::string::npos, "expected '" << what << "' in: " << e);
    CHECK_MESSAGE(e.find(path) != std::string::npos, e);
  };
  SUBCASE("a flipped metadata byte") {
    std::string b = good;
    b[M + 4 + 3] ^= 0x20;
    has(err(b), "CRC mismatch");
  }
  SUBCASE("cut inside the metadata") { has(err(good.substr(0, M + 4 + 5)), "truncated"); }
  SUBCASE("a metadata size that runs past the end (CRC recomputed)") {
    std::string b = good;
    poke<uint32_t>(b, M, (uint32_t)good.size());
    fix_crc(b);
    has(err(b), "bad metadata block: " + std::to_string(good.size()) + " bytes declared at offset 44");
  }
  SUBCASE("a metadata size that swallows the layers (CRC recomputed)") {
    std::string b = good;
    poke<uint32_t>(b, M, 200);
    fix_crc(b);
    const std::string e = err(b);
    CHECK_MESSAGE(!e.empty(), "a lying metadata size was accepted");
    CHECK(e.find(path) != std::string::npos);
  }
  SUBCASE("an empty metadata block (version 3 always has some)") {
    std::string b = good;
    poke<uint32_t>(b, M, 0);
    fix_crc(b);
    has(err(b), "bad metadata block: 0 bytes declared");
  }
  SUBCASE("metadata that is not UTF-8 (CRC recomputed)") {
    std::string b = good;
    b[M + 4 + 1] = '\xc3';  // a lead byte followed by an ASCII byte
    fix_crc(b);
    has(err(b), "bad metadata block: the metadata is not valid UTF-8 (bad continuation byte at offset 2)");
  }
  SUBCASE("a NUL in the metadata (CRC recomputed)") {
    std::string b = good;
    b[M + 4 + 1] = '\0';
    fix_crc(b);
    has(err(b), "has a NUL byte at offset 1");
  }
  SUBCASE("the writer refuses what the reader would") {
    for (const std::string& bad : {std::string("x\0y", 3), std::string("\xe2\x82"), std::string("\xf4\x90\x80\x80"),
                                  std::string(k::kMaxMetaBytes + 1, 'm')}) {
      ExportOptions e2;
      e2.meta = bad;
      CHECK_THROWS_WITH_AS(export_model(*m, e2), doctest::Contains("metadata"), Error);
      CHECK(!k::meta_problem(bad).empty());
    }
    CHECK(k::meta_problem("").empty());
    CHECK(k::meta_problem("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80").empty());
  }
  std::filesystem::remove(path);
}

TEST_CASE("model metadata: fashion-mnist model vs mnist data is refused, --allow-mismatch runs it") {
  Dataset fashion = describe("fashion-mnist", {784}, 10);
  fashion.class_names = fashion_mnist_class_names();
  const json arch = {{"model", "bnn"}, {"hidden", 64}};
  const json meta = app::make_model_meta(fashion, "fashion-mnist", arch);
  CHECK(meta["dataset"] == "fashion-mnist");
  CHECK(meta["input_shape"] == json::array({784}));
  CHECK(meta["classes"] == 10);
  CHECK(meta["class_names"][9] == "Ankle boot");
  CHECK(meta["arch"] == arch);

  // Through a .qnnx file and back, as qnn_infer sees it.
  auto m = bnn({64}, 53, true);
  ExportOptions eo;
  eo.meta = meta.dump();
  const k::PackedModel pm = k::PackedModel::from_bytes(export_model(*m, eo).to_bytes(), "f.qnnx");
  const json stored = app::parse_model_meta(pm.meta, "'f.qnnx'");
  CHECK(stored == meta);
  CHECK(app::meta_dataset(stored) == "fashion-mnist");
  CHECK(app::describe_model_meta(stored) == "fashion-mnist, input [784], 10 classes");

  const Dataset mnist = describe("mnist", {784}, 10);
  CHECK_THROWS_WITH_AS(app::check_model_meta(stored, mnist, "mnist", false, "model 'f.qnnx'"),
                       doctest::Contains("model 'f.qnnx' was trained on fashion-mnist (input [784], 10 classes) but "
                                         "the data is mnist (input [784], 10 classes); pass --allow-mismatch"),
                       Error);
  std::string w;
  CHECK_NOTHROW(w = app::check_model_meta(stored, mnist, "mnist", true, "model 'f.qnnx'"));
  CHECK(w.find("warning: model 'f.qnnx' was trained on fashion-mnist") == 0);
  // The matching data passes silently; the name compares without case.
  Dataset f2 = fashion;
  CHECK(app::check_model_meta(stored, f2, "Fashion-MNIST", false, "m") == "");
  // Input shape and class count are checked too (the name alone is not enough).
  CHECK_THROWS_WITH_AS(app::check_model_meta(stored, describe("fashion-mnist", {1, 28, 28}, 10, fashion.class_names),
                                             "fashion-mnist", false, "m", "--force"),
                       doctest::Contains("input [1, 28, 28], 10 classes); pass --force"), Error);
  CHECK_THROWS_AS(app::check_model_meta(stored, describe("fashion-mnist", {784}, 12, {}), "fashion-mnist", false, "m"),
                  Error);
  // Only the class names differ: a warning, not an error.
  CHECK(app::check_model_meta(stored, describe("fashion-mnist", {784}, 10, mnist_class_names()), "fashion-mnist", false,
                              "m")
            .find("names its classes differently") != std::string::npos);
  // A file without metadata (written before it existed): a one-line note.
  const std::string note = app::check_model_meta(app::parse_model_meta("", "old.qnnx"), mnist, "mnist", false, "old.qnnx");
  CHECK(note.find("note: old.qnnx has no metadata") == 0);
  CHECK(note.find('\n') == std::string::npos);
  // The expected-metadata form (a loader that holds the run's own metadata).
  const json mnist_meta = app::make_model_meta(mnist, "mnist", arch);
  CHECK_THROWS_WITH_AS(app::check_model_meta(stored, mnist_meta, false, "checkpoint 'c.qnn'"),
                       doctest::Contains("checkpoint 'c.qnn' was trained on fashion-mnist"), Error);
  CHECK(app::check_model_meta(stored, meta, false, "c") == "");
  CHECK(!app::check_model_meta(stored, mnist_meta, true, "c").empty());
  // Metadata that is not a model description: refused like a mismatch, or not JSON at all.
  CHECK_THROWS_WITH_AS(app::check_model_meta(json{{"dataset", 3}}, mnist, "mnist", false, "x.qnnx"),
                       doctest::Contains("x.qnnx: the metadata has no \"dataset\" string"), Error);
  CHECK_THROWS_WITH_AS(app::parse_model_meta("{not json", "'x.qnnx'"), doctest::Contains("'x.qnnx': its metadata is not JSON"),
                       Error);
  CHECK_THROWS_AS(app::make_model_meta(mnist, "", arch), Error);
}
