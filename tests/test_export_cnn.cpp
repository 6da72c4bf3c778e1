// Export of convolutional models (layers/quant/export.h, .qnnx version 4) and
// the runner's conv / pool layers (kernels/packed_model.h, packed_cnn.cpp):
// the runner's logits must equal the training framework's eval logits bit for
// bit, cifar_cnn --export must give the runner the accuracy cifar_cnn
// reported, and damaged conv records must be refused with the problem named.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "apps/common/cnn.h"
#include "apps/common/cnn_train.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "data/dataset.h"
#include "data/images.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/packed_model_internal.h"
#include "kernels/sgemm.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "layers/quant/export.h"
#include "layers/quant/quant.h"
#include "layers/quant/quant_conv.h"
#include "optim/adam.h"
#include "tests/export_test_util.h"
#include "tests/isa_util.h"

using namespace qnn;
namespace k = qnn::kernels;
namespace fs = std::filesystem;
using qnn::test::check_same_bits;
using qnn::test::fix_crc;
using qnn::test::leaves;
using qnn::test::peek;
using qnn::test::poke;
using qnn::test::random_pixels;
using qnn::test::runner_logits;

namespace {

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("qnn_test_export_cnn_" + std::to_string(::getpid()) + "_" + name)).string();
}

Tensor pixels_tensor(const std::vector<uint8_t>& px, int64_t n, int64_t C, int64_t H) {
  std::vector<float> x(px.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = scale_pixel(px[i], PixelScale::OddOver256);
  return Tensor::from_data({n, C, H, H}, x.data());
}

// A few Adam steps on random images (so the weights and batch-norm statistics
// are those of a (barely) trained model), then batch-norm parameters spread
// so that negative and zero gammas and thresholds all over the range occur.
void train_a_little(Module& m, int64_t C, int64_t H, bool hinge, uint64_t seed) {
  Adam opt(m.parameters(), 1e-3f);
  m.train(true);
  for (int step = 0; step < 3; ++step) {
    const int64_t n = 8;
    auto px = random_pixels(n, C * H * H, seed + (uint64_t)step);
    std::vector<int32_t> y((size_t)n);
    for (int64_t i = 0; i < n; ++i) y[(size_t)i] = (int32_t)((i + step) % 10);
    opt.zero_grad();
    Tensor lg = m.forward(pixels_tensor(px, n, C, H));
    Tensor loss = hinge ? squared_hinge(lg, y) : cross_entropy(lg, y);
    loss.backward();
    opt.step();
  }
  m.train(false);
  Rng rng(seed);
  std::vector<Module*> ls;
  leaves(m, ls);
  for (Module* l : ls) {
    auto* bn = dynamic_cast<BatchNorm*>(l);
    if (!bn) continue;
    for (int64_t c = 0; c < bn->channels(); ++c) {
      float g = bn->weight.data()[c] * (float)rng.uniform(0.5f, 1.5f);
      if (c % 7 == 3) g = 0.0f;
      if (c % 5 == 1) g = -std::fabs(g) - 0.1f;
      bn->weight.data()[c] = g;
      bn->bias.data()[c] += (float)rng.normal() * 0.3f;
    }
  }
}

std::vector<float> framework_logits(Module& m, const std::vector<uint8_t>& px, int64_t n, int64_t C, int64_t H) {
  NoGradGuard ng;
  m.eval();
  Tensor y = m.forward(pixels_tensor(px, n, C, H));
  return std::vector<float>(y.data(), y.data() + y.numel());
}

// The runner's logits on random 3 x 32 x 32 pixels equal the framework's eval
// logits, bit for bit, at batch 1 and `big`, with 1 and 2 threads (pixels
// seeded by seed_mul * n + threads).
void check_runner_matches(k::PackedRunner& r, Module& m, const std::string& name, int64_t big, uint64_t seed_mul) {
  for (int threads : {1, 2}) {
    k::set_num_threads(threads);
    for (int64_t n : {int64_t(1), big}) {
      auto px = random_pixels(n, 3 * 32 * 32, seed_mul * (uint64_t)n + (uint64_t)threads);
      check_same_bits(runner_logits(r, px, n), framework_logits(m, px, n, 3, 32),
                      name + " n=" + std::to_string(n) + " threads=" + std::to_string(threads));
    }
  }
}

app::CnnConfig tiny_cnn(const std::string& model, const std::string& arch, const std::string& pad = "zero") {
  app::CnnConfig c;
  c.model = model;
  c.arch = arch;
  c.width = 0.125f;
  c.fc = 48;
  c.pad_mode = pad;
  c.image = 32;
  app::resolve_cnn_defaults(c);
  return c;
}

ExportOptions cnn_export_options(const app::CnnConfig& c) {
  ExportOptions eo;
  eo.input_dims = {c.in_channels, c.image, c.image};
  eo.input_scale = k::InputScale::odd_over_256;
  return eo;
}

}  // namespace

TEST_CASE("export cnn: BinaryNet / CNV, bnn and fp — runner logits equal the framework's eval logits bit for bit") {
  struct Variant {
    const char* model;
    const char* arch;
    const char* pad;
  };
  for (Variant v : {Variant{"bnn", "binarynet", "zero"}, Variant{"bnn", "binarynet", "one"}, Variant{"bnn", "cnv", "zero"},
                    Variant{"fp", "binarynet", "zero"}, Variant{"fp", "cnv", "zero"}}) {
    const std::string name = std::string(v.model) + " " + v.arch + " pad " + v.pad;
    CAPTURE(name);
    k::set_num_threads(2);
    app::CnnConfig c = tiny_cnn(v.model, v.arch, v.pad);
    Rng rng(5);
    auto m = app::build_cnn(c, rng);
    train_a_little(*m, 3, 32, std::string(v.model) != "fp", 11);
    const k::PackedModel pm = export_model(*m, cnn_export_options(c));
    CHECK(pm.kind() == (std::string(v.model) == "fp" ? "fp" : "bnn"));
    CHECK(pm.is_spatial());
    if (std::string(v.model) == "bnn") {
      CHECK(pm.layers[0].type == k::LayerType::conv_binary);
      CHECK(pm.layers[0].input == k::LayerInput::pixels8);
      CHECK(pm.layers[0].sign_out);
      CHECK(pm.layers[1].input == k::LayerInput::packed);
      CHECK(pm.layers[1].geom.pad_one == (std::string(v.pad) == "one" && std::string(v.arch) == "binarynet"));
    } else {
      CHECK(pm.layers[0].type == k::LayerType::conv_f32);
    }
    if (std::string(v.arch) == "binarynet") CHECK(pm.layers[1].geom.pool_k == 2);  // pooled sums, then BN
    if (std::string(v.arch) == "cnv") CHECK(pm.layers[2].type == k::LayerType::max_pool);  // pool after the sign / ReLU
    k::PackedRunner r(pm);
    check_runner_matches(r, *m, name, 5, 7);
    // The file: version 4, back bit for bit.
    const std::string path = tmp_path("rt.qnnx");
    const int64_t bytes = export_model_file(*m, path, cnn_export_options(c));
    CHECK(bytes == (int64_t)fs::file_size(path));
    k::PackedRunner r2(k::PackedModel::load(path));
    auto px = random_pixels(3, 3 * 32 * 32, 99);
    check_same_bits(runner_logits(r2, px, 3), framework_logits(*m, px, 3, 3, 32), name + " from the file");
    fs::remove(path);
  }
  k::set_num_threads(2);
}

TEST_CASE("export cnn: k-bit (qnn) CNNs — conv_levels runner logits equal the framework's eval logits bit for bit") {
  struct Variant {
    int wbits, abits;
    const char* arch;
    const char* pad;
    k::LayerInput second;  // what the second conv takes
  };
  // zero padding: conv2d on the input quantizer's floats (levels_f32);
  // one-padding, or CNV's unpadded convs: the exact integer levels path.
  for (Variant v : {Variant{2, 2, "binarynet", "zero", k::LayerInput::levels_f32},
                    Variant{2, 2, "binarynet", "one", k::LayerInput::levels},
                    Variant{3, 2, "binarynet", "one", k::LayerInput::levels},
                    Variant{1, 2, "binarynet", "zero", k::LayerInput::levels_f32},
                    Variant{4, 4, "cnv", "zero", k::LayerInput::levels}}) {
    const std::string name = std::to_string(v.wbits) + "/" + std::to_string(v.abits) + " " + v.arch + " pad " + v.pad;
    CAPTURE(name);
    k::set_num_threads(2);
    app::CnnConfig c = tiny_cnn("qnn", v.arch, v.pad);
    c.wbits = v.wbits, c.abits = v.abits;
    app::validate_cnn(c);
    Rng rng(6);
    auto m = app::build_cnn(c, rng);
    train_a_little(*m, 3, 32, false, 13);
    const k::PackedModel pm = export_model(*m, cnn_export_options(c));
    CHECK(pm.kind() == "qnn");
    CHECK(pm.has_conv_levels());
    // The first conv: k-bit weights on the image (conv2d on the decoded
    // weights); with +-1 weights it is the binary product on pixels.
    CHECK(pm.layers[0].type == (v.wbits == 1 ? k::LayerType::conv_binary : k::LayerType::conv_levels));
    CHECK(pm.layers[0].input == (v.wbits == 1 ? k::LayerInput::pixels8 : k::LayerInput::real));
    CHECK(!pm.layers[0].sign_out);
    const size_t second = 1;  // the second conv (both archs)
    CHECK(pm.layers[second].type == k::LayerType::conv_levels);
    CHECK(pm.layers[second].input == v.second);
    CHECK(pm.layers[second].wbits == v.wbits);
    CHECK(pm.layers[second].in_bits == v.abits);
    CHECK(pm.layers[second].geom.pad_one == (std::string(v.pad) == "one"));
    k::PackedRunner r(pm);
    check_runner_matches(r, *m, name, 4, 5);
    // The file: version 5, k bits per k-bit weight, back bit for bit.
    const std::string path = tmp_path("kbit.qnnx");
    export_model_file(*m, path, cnn_export_options(c));
    std::ifstream f(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(peek<uint32_t>(bytes, 4) == 5);
    int64_t kbit = 0;
    for (const auto& L : pm.layers)
      if (L.levels()) {
        CHECK(L.weight_bits() == v.wbits);
        kbit += L.weight_count();
      }
    CHECK(kbit > 0);
    k::PackedRunner r2(k::PackedModel::load(path));
    auto px = random_pixels(3, 3 * 32 * 32, 98);
    check_same_bits(runner_logits(r2, px, 3), framework_logits(*m, px, 3, 3, 32), name + " from the file");
    fs::remove(path);
  }
  k::set_num_threads(2);
}

TEST_CASE("export cnn: a float conv with a bias — added once, before the pool, as conv2d does") {
  Rng rng(2);
  auto seq = std::make_shared<Sequential>();
  seq->add(std::make_shared<Conv2d>(3, 5, 3, rng, Conv2dOptions{1, 1, true, "he"}));
  seq->add(std::make_shared<MaxPool2d>(2));
  seq->add(std::make_shared<BatchNorm2d>(5));
  seq->add(ReLU());
  seq->add(std::make_shared<Flatten>());
  seq->add(std::make_shared<Linear>(5 * 4 * 4, 10, rng));
  auto* conv = dynamic_cast<Conv2d*>(seq->children()[0].second.get());
  REQUIRE(conv);
  for (int64_t o = 0; o < 5; ++o) conv->bias.data()[o] = 0.75f * float(o) - 1.3f;
  ExportOptions eo;
  eo.input_dims = {3, 8, 8};
  eo.input_scale = k::InputScale::odd_over_256;
  const k::PackedModel pm = export_model(*seq, eo);
  REQUIRE(pm.layers[0].type == k::LayerType::conv_f32);
  REQUIRE(!pm.layers[0].bias.empty());
  k::PackedRunner r(pm);
  auto px = random_pixels(3, 3 * 8 * 8, 4);
  check_same_bits(runner_logits(r, px, 3), framework_logits(*seq, px, 3, 3, 8), "biased conv");
}

TEST_CASE("export cnn: a BNN file is 1 bit per binary weight; conv / pool records are version 4") {
  app::CnnConfig c = tiny_cnn("bnn", "binarynet");
  Rng rng(3);
  auto m = app::build_cnn(c, rng);
  const k::PackedModel pm = export_model(*m, cnn_export_options(c));
  const std::string b = pm.to_bytes();
  CHECK(peek<uint32_t>(b, 4) == 4);
  int64_t params = 0;
  for (auto& p : m->parameters()) params += p.numel();
  CHECK(pm.weight_storage_bits() == pm.weight_count());  // every weight 1 bit
  CHECK((int64_t)b.size() * 20 < params * 4);           // far below the fp32 size
}

TEST_CASE("export cnn: damaged conv records are refused with the problem named") {
  app::CnnConfig c = tiny_cnn("bnn", "cnv");
  Rng rng(4);
  auto m = app::build_cnn(c, rng);
  const std::string good = export_model(*m, cnn_export_options(c)).to_bytes();
  const std::string path = tmp_path("bad.qnnx");
  auto err = [&](const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
    try {
      k::PackedModel::load(path);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // Header: magic 4, version 4, bytes 8, kind 4, count 4, scale 4, ndim 4, dims 3 x 8, meta_bytes 4 (0).
  const size_t L0 = 4 + 4 + 8 + 4 + 4 + 4 + 4 + 3 * 8 + 4;
  const size_t G0 = L0 + 40;  // layer 0's geometry: C, H, W, O, K, stride, pad, pad_one, pool_k, pool_s
  REQUIRE(peek<uint32_t>(good, 4) == 4);
  REQUIRE(peek<uint32_t>(good, L0) == 5);  // conv_binary
  REQUIRE(peek<uint32_t>(good, G0) == 3);  // C
  auto lied = [&](auto&& edit) {
    std::string b = good;
    edit(b);
    fix_crc(b);
    return err(b);
  };
  auto has = [&](const std::string& e, const std::string& what) {
    CHECK_MESSAGE(e.find(what) != std::string::npos, e);
    CHECK_MESSAGE(e.find(path) != std::string::npos, e);
  };
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 4, 5); }), "needs");  // K 3 -> 5: payload size differs
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 3, 7); }), "needs");  // O changes the payload size
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 7, 2); }), "pad_one is 2");
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 1, 31); }), "is not 3072 values");  // H
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 5, 2); }), "outputs, its geometry");  // stride
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 8, 3); }), "pool geometry out of range");  // pool_k without pool_s
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0 + 4 * 1, 0x7fffffff); }), "out of range");
  has(lied([&](std::string& b) { poke<uint32_t>(b, G0, (1u << 26) - 1), poke<uint32_t>(b, G0 + 4 * 4, 1u << 20); }),
      "too many taps per output");  // C * K * K would overflow int64
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 4, 0); }), "a conv_binary layer takes pixels8 or packed input");
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 8, 32); }), "1-bit conv_binary layers only");
  {  // A version 3 header (with its metadata block) over conv records.
    k::PackedModel pm = export_model(*m, cnn_export_options(c));
    pm.meta = "{}";
    std::string b = pm.to_bytes();
    poke<uint32_t>(b, 4, 3);
    fix_crc(b);
    has(err(b), "unknown type 5 (conv / pool layers need format version 4)");
  }
  has(lied([&](std::string& b) { poke<uint32_t>(b, 4, 6); }), "version 6, this build reads versions 1 to 5");
  has(lied([&](std::string& b) { poke<uint32_t>(b, 4, 5); }), "version 5 is written exactly for models with k-bit");
  // A padding bit of a packed weight row (27 taps: bit 40 of word 0).
  has(lied([&](std::string& b) { poke<uint64_t>(b, G0 + 40, peek<uint64_t>(b, G0 + 40) | (uint64_t(1) << 40)); }),
      "packed weight row 0 has nonzero padding bits");
  // Truncated inside the geometry / flipped weight bit without a CRC fix.
  std::string b = good;
  b[G0 + 41] ^= 1;
  has(err(b), "CRC mismatch");
  has(err(good.substr(0, G0 + 10)), "truncated");
  fs::remove(path);
}

TEST_CASE("export cnn: damaged conv_levels records are refused with the problem named") {
  app::CnnConfig c = tiny_cnn("qnn", "binarynet", "one");
  Rng rng(4);
  auto m = app::build_cnn(c, rng);
  const k::PackedModel pm = export_model(*m, cnn_export_options(c));
  REQUIRE(pm.layers[1].type == k::LayerType::conv_levels);
  REQUIRE(pm.layers[1].input == k::LayerInput::levels);
  REQUIRE(pm.layers[1].geom.pad_one);
  const std::string good = pm.to_bytes();
  const std::string path = tmp_path("badk.qnnx");
  auto err = [&](std::string b, bool crc = true) {
    if (crc) fix_crc(b);
    std::ofstream(path, std::ios::binary).write(b.data(), (std::streamsize)b.size());
    try {
      k::PackedModel::load(path);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto has = [&](const std::string& e, const std::string& what) {
    CHECK_MESSAGE(e.find(what) != std::string::npos, e);
    CHECK_MESSAGE(e.find(path) != std::string::npos, e);
  };
  // Header (version 5): magic 4, version 4, bytes 8, kind 4, count 4, scale 4, ndim 4, dims 3 x 8, meta_bytes 4 (0);
  // layer 1 starts after layer 0's record. A record: type, input, wbits, flags (u32), in, out, payload (u64),
  // then the geometry (10 x u32), weight_alpha, input_bits, input_alpha, the weight planes.
  const size_t L1 = 4 + 4 + 8 + 4 + 4 + 4 + 4 + 3 * 8 + 4 + (size_t)pm.layers[0].file_bytes();
  const size_t G1 = L1 + 40, A1 = G1 + 40, W1 = A1 + 12;
  REQUIRE(peek<uint32_t>(good, 4) == 5);
  REQUIRE(peek<uint32_t>(good, L1) == 7);
  REQUIRE(peek<uint32_t>(good, A1 + 4) == 2);  // input bits
  CHECK(err(good).empty());
  auto edited = [&](auto&& edit) {
    std::string b = good;
    edit(b);
    return err(b);
  };
  has(edited([&](std::string& b) { poke<uint32_t>(b, L1 + 8, 17); }), "17-bit weights; conv_levels layers have 1..16");
  has(edited([&](std::string& b) { poke<uint32_t>(b, A1 + 4, 0); }), "0-bit input quantizer; conv_levels inputs");
  has(edited([&](std::string& b) { poke<float>(b, A1, std::nanf("")); }), "weight alpha");
  has(edited([&](std::string& b) { poke<uint32_t>(b, L1 + 4, 5); }), "pad_one is for levels input");  // levels_f32
  has(edited([&](std::string& b) { poke<uint32_t>(b, L1 + 4, 1); }), "takes packed signs");
  // 16 channels x 3 x 3 = 144 taps per row: bits 16.. of a row's third word are padding.
  REQUIRE(pm.layers[1].geom.taps() == 144);
  has(edited([&](std::string& b) { poke<uint64_t>(b, W1 + 16, peek<uint64_t>(b, W1 + 16) | (uint64_t(1) << 40)); }),
      "weight row 0 plane 0 has nonzero padding bits");
  has(edited([&](std::string& b) { poke<uint32_t>(b, 4, 4); }), "conv_levels needs format version 5");
  // A geometry whose C*K*K overflows int64 (what fuzz_qnnx found in its first minute on the v5 seed).
  has(edited([&](std::string& b) {
        poke<uint32_t>(b, G1, (1u << 26) - 1), poke<uint32_t>(b, G1 + 16, (1u << 26) - 1);
      }),
      "too many taps per output");
  // No taps at all (C = 0): an empty weight array (fuzz_qnnx's second finding).
  has(edited([&](std::string& b) { poke<uint32_t>(b, G1, 0); }), "each must be at least 1");
  has(edited([&](std::string& b) { poke<uint32_t>(b, G1 + 12, 0); }), "each must be at least 1");  // O = 0
  std::string b = good;
  b[W1 + 3] ^= 1;
  has(err(b, false), "CRC mismatch");
  fs::remove(path);
}

TEST_CASE("export cnn: the fuzz_qnnx seed corpus — valid seeds load and run, broken ones are refused") {
  const fs::path dir = fs::path(QNN_SOURCE_ROOT) / "tests/fuzz/corpus/fuzz_qnnx";
  for (const char* name : {"fp.qnnx", "bnn.qnnx", "qnn_v2.qnnx", "meta_v3.qnnx", "cnn_v4.qnnx", "qnn_cnn_v5.qnnx"}) {
    CAPTURE(name);
    REQUIRE(fs::exists(dir / name));  // in the repository (not git-ignored)
    k::PackedRunner r(k::PackedModel::load((dir / name).string()));
    const int64_t n = 3, in = r.model().in_features();
    std::vector<float> x((size_t)(n * in)), y((size_t)(n * r.model().num_classes()));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 37 % 255)) / 256.0f - 0.4f;
    if (r.model().layers[0].input == k::LayerInput::pixels8)
      for (size_t i = 0; i < x.size(); ++i) x[i] = float(2 * int(i * 37 % 256) - 255) / 256.0f;
    r.logits_f32(x.data(), n, y.data());
    for (float v : y) CHECK(std::isfinite(v));
  }
  CHECK(k::PackedModel::load((dir / "qnn_cnn_v5.qnnx").string()).has_conv_levels());
  for (const char* name : {"truncated.qnnx", "trailing.qnnx"}) {
    CAPTURE(name);
    CHECK_THROWS_AS(k::PackedModel::load((dir / name).string()), std::runtime_error);
  }
}

TEST_CASE("export cnn: models export cannot represent exactly are refused, naming the layer") {
  SUBCASE("a one-padded k-bit conv whose sums are too wide to be exact integers") {
    app::CnnConfig c = tiny_cnn("qnn", "binarynet", "one");
    c.wbits = c.abits = 16;
    Rng rng(1);
    auto m = app::build_cnn(c, rng);
    CHECK_THROWS_WITH_AS(export_model(*m, cnn_export_options(c)), doctest::Contains("too wide to be exact"), Error);
  }
  // A float conv, then a QuantConv2d with sign weights on its real outputs
  // (input quantizer iq, or none), flatten, a dense layer: on 3 x 8 x 8 images.
  auto sign_conv_after_float_conv = [](std::shared_ptr<Quantizer> iq) {
    Rng rng(1);
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Conv2d>(3, 4, 3, rng));
    QuantConv2dOptions o;
    o.input_quantizer = std::move(iq);
    o.weight_quantizer = std::make_shared<Sign>();
    seq->add(std::make_shared<QuantConv2d>(4, 4, 3, rng, o));
    seq->add(std::make_shared<Flatten>());
    seq->add(std::make_shared<Linear>(4 * 4 * 4, 10, rng));
    return seq;
  };
  ExportOptions eo8;
  eo8.input_dims = {3, 8, 8};
  SUBCASE("+-1 weights on real activations that are not the image") {
    CHECK_THROWS_WITH_AS(export_model(*sign_conv_after_float_conv(nullptr), eo8),
                         doctest::Contains("real-valued input that is not the image"), Error);
  }
  SUBCASE("no input map") {
    app::CnnConfig c = tiny_cnn("bnn", "binarynet");
    Rng rng(1);
    auto m = app::build_cnn(c, rng);
    CHECK_THROWS_WITH_AS(export_model(*m), doctest::Contains("input_dims"), Error);
  }
  SUBCASE("a binary first conv on pixels not scaled (2p-255)/256") {
    app::CnnConfig c = tiny_cnn("bnn", "binarynet");
    Rng rng(1);
    auto m = app::build_cnn(c, rng);
    ExportOptions eo = cnn_export_options(c);
    eo.input_scale = k::InputScale::minus_one_to_one;
    CHECK_THROWS_WITH_AS(export_model(*m, eo), doctest::Contains("(2p-255)/256"), Error);
  }
  SUBCASE("average pooling") {
    Rng rng(1);
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Conv2d>(3, 4, 3, rng));
    seq->add(std::make_shared<AvgPool2d>(2));
    seq->add(std::make_shared<Flatten>());
    seq->add(std::make_shared<Linear>(4 * 3 * 3, 10, rng));
    ExportOptions eo;
    eo.input_dims = {3, 8, 8};
    CHECK_THROWS_WITH_AS(export_model(*seq, eo), doctest::Contains("average pooling"), Error);
  }
  SUBCASE("a sign on real activations before a binary conv (not folded)") {
    CHECK_THROWS_WITH_AS(export_model(*sign_conv_after_float_conv(std::make_shared<Sign>()), eo8),
                         doctest::Contains("needs the sign folded"), Error);
  }
}

namespace {
fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("qnn_test_export_cnn_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
// A CIFAR-10 binary batch file of n records (label byte + 3072 CHW bytes).
void write_cifar_batch(const fs::path& p, int64_t n, int64_t first) {
  std::ofstream f(p, std::ios::binary);
  for (int64_t i = first; i < first + n; ++i) {
    const int y = (int)(i % 10);
    std::vector<uint8_t> rec(3073);
    rec[0] = (uint8_t)y;
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 32; ++h)
        for (int w = 0; w < 32; ++w)
          rec[(size_t)(1 + c * 1024 + h * 32 + w)] = (uint8_t)((y * 23 + c * 61 + ((h * 7 + w * 3 + (int)i * 13) % 40)) % 256);
    f.write((const char*)rec.data(), (std::streamsize)rec.size());
  }
  REQUIRE(f.good());
}
}  // namespace

TEST_CASE("export cnn: cifar_cnn --export, then the runner on the test set — the same test accuracy, exactly") {
  const fs::path root = scratch("cifar"), dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) write_cifar_batch(dir / ("data_batch_" + std::to_string(b) + ".bin"), 40, (b - 1) * 40);
  write_cifar_batch(dir / "test_batch.bin", 60, 1000);
  for (const char* model : {"bnn", "fp", "qnn"}) {
    CAPTURE(model);
    app::CnnAppOptions o;
    o.dataset = "cifar10";
    o.data = root.string();
    o.cnn.model = model;
    o.cnn.width = 0.125f;
    o.cnn.fc = 32;
    o.normalize = false;  // export takes the scaled pixels
    o.augment = "off";
    o.train.epochs = 1;
    o.train.batch = 50;
    o.train.limit_train = 150;
    o.train.val = 50;
    o.val_given = true;
    o.train.threads = 1;
    o.quiet = true;
    o.train.export_path = (root / (std::string(model) + ".qnnx")).string();
    const app::TrainResult res = app::run_cifar_cnn(o);
    REQUIRE(res.test.has_value());
    const Dataset test = load_image_dataset(root.string(), "test");
    k::PackedRunner r(k::PackedModel::load(o.train.export_path));
    std::vector<int32_t> pred((size_t)test.size());
    r.predict_u8(test.pixels.data(), test.size(), pred.data());
    int64_t right = 0;
    for (int64_t i = 0; i < test.size(); ++i) right += pred[(size_t)i] == test.y[(size_t)i];
    CHECK(double(right) / double(test.size()) == res.test->acc);
    // Stronger than the accuracy of a barely trained model: the logits of the
    // tested model, bit for bit.
    REQUIRE(res.model);
    k::set_num_threads(1);  // as the run (--threads 1)
    check_same_bits(runner_logits(r, test.pixels, test.size()),
                    framework_logits(*res.model, test.pixels, test.size(), 3, 32), std::string(model) + " test set");
  }
  k::set_num_threads(2);
  fs::remove_all(root.parent_path());  // the process's scratch folder, not only "cifar"
}

// ---- the runner's integer sign-conv path (packed_cnn.cpp sign_conv_layer) --------

TEST_CASE("export cnn: threshold_pack and pixel_rows SIMD variants equal scalar, odd shapes") {
  std::mt19937 g(17);
  for (int64_t cnt : {1, 3, 7, 8, 63, 64, 65, 130, 200}) {
    std::vector<int32_t> V((size_t)cnt), T((size_t)cnt);
    std::vector<uint8_t> F((size_t)cnt);
    for (int64_t j = 0; j < cnt; ++j) {
      V[(size_t)j] = (int32_t)(g() % 41) - 20;
      T[(size_t)j] = j % 9 == 0 ? V[(size_t)j] : (int32_t)(g() % 41) - 20;  // ties: V == T is "+1" unless flipped
      F[(size_t)j] = (uint8_t)(g() & 1);
    }
    const size_t words = (size_t)((cnt + 63) / 64);
    std::vector<uint64_t> want(words, 7), got(words, 9);
    k::pmodel::threshold_pack_scalar(V.data(), T.data(), F.data(), cnt, want.data());
    k::pmodel::threshold_pack_avx2(V.data(), T.data(), F.data(), cnt, got.data());
    CHECK_MESSAGE(got == want, "threshold_pack cnt=" << cnt);
    // The scalar reference against the definition, bit by bit.
    for (int64_t j = 0; j < cnt; ++j) {
      const bool neg = !((V[(size_t)j] >= T[(size_t)j]) != (F[(size_t)j] != 0));
      CHECK(((want[(size_t)(j / 64)] >> (j % 64)) & 1u) == (uint64_t)neg);
    }
    if (cnt % 64) CHECK((want.back() >> (cnt % 64)) == 0);  // bits >= cnt are 0
  }
  for (int64_t O : {1, 3, 8, 33, 63, 64, 65, 130})
    for (int64_t T : {1, 9, 27, 75}) {
      const int64_t P = 5, OP = (O + 7) / 8 * 8;
      std::vector<int32_t> X((size_t)(P * T)), S((size_t)(T * OP), 0), want((size_t)(P * O)), got((size_t)(P * O), -1);
      for (auto& x : X) x = (int32_t)(g() % 511) - 255;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t o = 0; o < O; ++o) S[(size_t)(t * OP + o)] = (g() & 1) ? 1 : -1;
      k::pmodel::pixel_rows_scalar(X.data(), P, T, S.data(), O, OP, want.data());
      k::pmodel::pixel_rows_avx2(X.data(), P, T, S.data(), O, OP, got.data());
      CHECK_MESSAGE(got == want, "pixel_rows O=" << O << " T=" << T);
      int64_t direct = 0;  // one entry against the definition
      for (int64_t t = 0; t < T; ++t) direct += (int64_t)X[(size_t)t] * S[(size_t)(t * OP + O - 1)];
      CHECK(want[(size_t)(O - 1)] == direct);
    }
}

namespace {

// A random +-1 conv_binary / dense_binary weight block, pad bits 0.
k::PackedVector random_sign_rows(int64_t rows, int64_t K, std::mt19937& g) {
  std::vector<float> w((size_t)(rows * K));
  for (auto& v : w) v = (g() & 1) ? 1.f : -1.f;
  k::PackedVector p = k::make_packed(rows, K);
  k::pack_rows(w.data(), rows, K, K, p.data());
  return p;
}

void random_sign_epilogue(k::PackedLayer& L, int64_t vmax, std::mt19937& g) {
  L.sign_out = true;
  const int64_t ch = L.channels();
  L.thresh.resize((size_t)ch), L.flip.resize((size_t)ch);
  for (int64_t o = 0; o < ch; ++o) {
    const int64_t span = std::max<int64_t>(1, vmax / 3);
    L.thresh[(size_t)o] = (int32_t)((int64_t)(g() % (uint64_t)(2 * span + 1)) - span);
    L.flip[(size_t)o] = (uint8_t)(g() % 3 == 0);
  }
}

// pixels8 conv (C0 -> C1, 3x3, pad 1, stride 1) -> packed conv (C1 -> O2 with
// the geometry under test) -> dense_binary 10 logits (float).
k::PackedModel sign_conv_model(int64_t C0, int64_t H, int64_t W, int64_t C1, int64_t O2, int64_t K2, int64_t st2,
                               int64_t pad2, bool one2, int64_t pool2, int64_t pools2, std::mt19937& g) {
  k::PackedModel m;
  m.input_scale = k::InputScale::odd_over_256;
  m.input_dims = {C0, H, W};
  k::PackedLayer a;
  a.type = k::LayerType::conv_binary;
  a.input = k::LayerInput::pixels8;
  a.geom = k::SpatialGeom{C0, H, W, C1, 3, 1, 1, false, 0, 0};
  a.in = C0 * H * W;
  a.out = C1 * a.out_h() * a.out_w();
  a.w_bits = random_sign_rows(C1, a.geom.taps(), g);
  random_sign_epilogue(a, 255 * a.geom.taps(), g);
  k::PackedLayer b;
  b.type = k::LayerType::conv_binary;
  b.input = k::LayerInput::packed;
  b.geom = k::SpatialGeom{C1, a.out_h(), a.out_w(), O2, K2, st2, pad2, one2, pool2, pools2};
  b.in = a.out;
  b.out = O2 * b.out_h() * b.out_w();
  b.w_bits = random_sign_rows(O2, b.geom.taps(), g);
  random_sign_epilogue(b, b.geom.taps(), g);
  k::PackedLayer d;
  d.type = k::LayerType::dense_binary;
  d.input = k::LayerInput::packed;
  d.in = b.out;
  d.out = 10;
  d.w_bits = random_sign_rows(10, d.in, g);
  m.layers = {a, b, d};
  return m;
}

}  // namespace

TEST_CASE("export cnn: the integer sign-conv path equals the float reference path (odd shapes, every ISA)") {
  qnn::test::IsaGuard guard;
  std::mt19937 g(23);
  struct Geo {
    int64_t K, stride, pad;
    bool one;
    int64_t pool, pool_s;
  };
  const Geo geos[] = {{3, 1, 1, false, 2, 2}, {3, 2, 1, false, 0, 0}, {3, 1, 1, true, 3, 2},
                      {1, 1, 0, false, 0, 0}, {3, 1, 0, false, 2, 1}, {1, 2, 0, false, 0, 0}};
  int cases = 0;
  for (int64_t C1 : {1, 3, 63, 64, 65, 130})
    for (const Geo& q : geos)
      for (auto [H, W] : {std::pair<int64_t, int64_t>{5, 7}, {1, 1}}) {
        const bool fits = H + 2 * q.pad >= q.K && W + 2 * q.pad >= q.K;
        if (!fits) continue;
        const int64_t OH = (H + 2 * q.pad - q.K) / q.stride + 1, OW = (W + 2 * q.pad - q.K) / q.stride + 1;
        if (q.pool > 0 && (OH < q.pool || OW < q.pool)) continue;
        const int64_t C0 = C1 % 2 ? 3 : 1, O2 = C1 == 64 ? 65 : C1 + 2;
        const k::PackedModel m = sign_conv_model(C0, H, W, C1, O2, q.K, q.stride, q.pad, q.one, q.pool, q.pool_s, g);
        REQUIRE_NOTHROW(m.validate());
        const std::string what = "C1=" + std::to_string(C1) + " O2=" + std::to_string(O2) + " " + std::to_string(H) +
                                 "x" + std::to_string(W) + " K=" + std::to_string(q.K) + " stride " +
                                 std::to_string(q.stride) + " pad " + std::to_string(q.pad) + (q.one ? " (one)" : "") +
                                 " pool " + std::to_string(q.pool);
        for (int64_t n : {1, 3}) {
          const std::vector<uint8_t> px = random_pixels(n, m.in_features(), (uint64_t)(cases + 31 * n));
          k::set_isa(k::Isa::scalar);
          k::PackedRunner ref(m);
          ref.set_reference_conv(true);
          const std::vector<float> want = runner_logits(ref, px, n);
          for (k::Isa isa : qnn::test::supported_isas()) {
            k::set_isa(isa);
            k::PackedRunner r(m);
            check_same_bits(runner_logits(r, px, n), want, what + " n=" + std::to_string(n) + " isa " + k::isa_name(isa));
          }
        }
        ++cases;
      }
  CHECK(cases >= 50);
}

TEST_CASE("export cnn: the runner's per-layer profile covers every layer and changes no logit") {
  app::CnnConfig c = tiny_cnn("bnn", "binarynet");
  Rng rng(9);
  auto m = app::build_cnn(c, rng);
  train_a_little(*m, 3, 32, true, 13);
  k::PackedRunner r(export_model(*m, cnn_export_options(c)));
  auto px = random_pixels(2, 3 * 32 * 32, 5);
  const std::vector<float> plain = runner_logits(r, px, 2);
  r.set_profile(true);
  const std::vector<float> profiled = runner_logits(r, px, 2);
  check_same_bits(profiled, plain, "profiled");
  REQUIRE(r.layer_seconds().size() == r.model().layers.size());
  double total = 0;
  for (double t : r.layer_seconds()) {
    CHECK(t >= 0.0);
    total += t;
  }
  CHECK(total > 0.0);
  r.set_reference_conv(true);
  check_same_bits(runner_logits(r, px, 2), plain, "reference conv path");
}
