// Export of k-bit (qnn) MLPs (layers/quant/export.h, .qnnx version 2) and the
// runner's level-plane layers (kernels/level_planes.h): the uniform quantizer's
// arithmetic bit for bit, runner logits equal to the framework's eval logits,
// k bits per weight in the file, damaged k-bit files refused with the problem named.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "apps/common/mlp.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/ops.h"
#include "data/dataset.h"
#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "kernels/level_planes.h"
#include "kernels/packed_model.h"
#include "kernels/sgemm.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/quant/export.h"
#include "layers/quant/quant.h"
#include "optim/optim.h"
#include "tests/export_test_util.h"
#include "tests/isa_util.h"

using namespace qnn;
using namespace qnn::test;
namespace k = qnn::kernels;

namespace {

// A few optimizer steps on random pixels, so that the latent weights move
// across level boundaries and the batch norms' running statistics are far
// from their initial (0, 1); then gammas / betas perturbed so that negative
// and zero scales appear too.
void train_a_little(Module& m, int64_t in, int64_t classes, uint64_t seed, int steps = 6) {
  Rng rng(seed);
  auto opt = make_optimizer("adam", m.parameters(), 1e-2f);
  const int64_t B = 32;
  for (int s = 0; s < steps; ++s) {
    const auto px = random_pixels(B, in, seed * 100 + (uint64_t)s);
    std::vector<float> x(px.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = scale_pixel(px[i], PixelScale::OddOver256);
    std::vector<int32_t> y((size_t)B);
    for (auto& v : y) v = (int32_t)(rng.next_u64() % (uint64_t)classes);
    m.train(true);
    Tensor loss = squared_hinge(m.forward(Tensor::from_data({B, in}, x.data())), y);
    opt->zero_grad();
    loss.backward();
    opt->step();
  }
  std::vector<Module*> ls;
  leaves(m, ls);
  for (Module* l : ls)
    if (auto* bn = dynamic_cast<BatchNorm*>(l))
      for (int64_t c = 0; c < bn->channels(); ++c) {
        float& g = bn->weight.data()[c];
        if (c % 5 == 1) g = -std::fabs(g) - 0.2f;
        if (c % 7 == 3) g = 0.0f;
        bn->bias.data()[c] += 0.3f * rng.normal();
      }
}

struct QnnVariant {
  const char* name;
  int wbits, abits;
  bool act_in_linear;  // false: QuantAct + dropout
  bool shift_bn = false, bias = false;
  int input_bits = 32;
};

std::shared_ptr<Sequential> qnn_mlp(const QnnVariant& v, const std::vector<int64_t>& hidden, int64_t in, uint64_t seed,
                                    int64_t classes = 10) {
  QuantMLPOptions o;
  o.hidden = hidden;
  o.weight_bits = v.wbits;
  o.act_bits = v.abits;
  o.input_bits = v.input_bits;
  o.act_in_linear = v.act_in_linear;
  o.dropout_in = 0.2f;
  o.dropout_hidden = v.act_in_linear ? 0.0f : 0.3f;
  o.shift_bn = v.shift_bn;
  o.bias = v.bias;
  Rng rng(seed);
  auto m = quant_mlp(in, classes, rng, o);
  if (v.bias)  // biases far from 0 (BN would otherwise absorb them in training)
    for (auto& [name, t] : m->named_parameters())
      if (name.find("bias") != std::string::npos && t.numel() > 0)
        for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = rng.normal() * 0.5f;
  train_a_little(*m, in, classes, seed);
  return m;
}

// Runner logits vs framework eval logits, bit for bit: batch 1, 5 and 100,
// 1 and 2 threads, every ISA, uint8 input.
void check_runner_equals_framework(Module& m, const k::PackedModel& pm, int64_t in, const std::string& name) {
  IsaGuard guard;
  k::PackedRunner r(pm);
  for (int threads : {1, 2}) {
    k::set_num_threads(threads);
    for (k::Isa isa : isas()) {
      k::set_isa(isa);
      for (int64_t n : {1, 5, 100}) {
        auto px = random_pixels(n, in, 13 * n + threads);
        check_same_bits(runner_logits(r, px, n), framework_logits(m, px, n, in),
                        name + " n=" + std::to_string(n) + " threads=" + std::to_string(threads) +
                            " isa=" + k::isa_name(isa));
      }
    }
  }
  k::set_num_threads(2);
}

}  // namespace

TEST_CASE("export: the uniform quantizer's arithmetic in kernels/level_planes.h is the quantizer's, bit for bit") {
  IsaGuard guard;
  std::mt19937 g(17);
  std::normal_distribution<float> nd(0.0f, 1.2f);
  for (int bits : {1, 2, 3, 4, 8, 16}) {
    for (float a : {1.0f, 0.75f, 3.0f}) {
      std::vector<float> x(1000);
      for (auto& v : x) v = nd(g) * a;
      const float L = float((1 << bits) - 1);
      for (int t = -(int)L + 1; t < (int)L && x.size() < 1300; t += 2) x.push_back((a * (float)(t + 1)) / L);  // ties
      for (float sp : {0.0f, -0.0f, a, -a, 1e-30f, -1e-30f, std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()})
        x.push_back(sp);
      const int64_t n = (int64_t)x.size();
      Uniform q(bits, a);
      const std::vector<float> want = q(Tensor::from_vector({n}, x)).to_vector();
      std::vector<float> got((size_t)n), lv((size_t)n);
      k::uniform_values(x.data(), n, bits, a, got.data());
      k::uniform_levels(x.data(), n, bits, a, lv.data());
      bool values_ok = true, levels_ok = true;
      for (int64_t i = 0; i < n; ++i) {
        values_ok = values_ok && std::memcmp(&got[(size_t)i], &want[(size_t)i], 4) == 0;
        const float dec = k::level_value((int32_t)lv[(size_t)i], bits, a);
        levels_ok = levels_ok && std::memcmp(&dec, &want[(size_t)i], 4) == 0;
      }
      CHECK_MESSAGE(values_ok, "uniform_values bits " << bits << " a " << a);
      CHECK_MESSAGE(levels_ok, "level_value(uniform_levels) bits " << bits << " a " << a);
      // Plane packing (every ISA) holds exactly those levels, pads 0.
      for (int64_t K : {1, 37, 64, 65, 130}) {
        const int64_t rows = n / K;
        std::vector<int32_t> want_v((size_t)(rows * K)), back((size_t)(rows * K));
        for (size_t i = 0; i < want_v.size(); ++i) want_v[i] = (int32_t)lv[i];
        k::PackedVector ref((size_t)k::plane_packed_words(rows, K, bits));
        k::pack_planes(want_v.data(), rows, K, bits, ref.data());
        for (k::Isa isa : isas()) {
          k::set_isa(isa);
          k::PackedVector P((size_t)k::plane_packed_words(rows, K, bits), ~uint64_t(0));
          k::pack_level_planes(x.data(), rows, K, bits, a, P.data());
          CHECK_MESSAGE(P == ref, "pack_level_planes bits " << bits << " K " << K << " isa " << std::string(k::isa_name(isa)));
        }
      }
    }
  }
  CHECK_THROWS_AS(k::uniform_values(nullptr, 0, 17, 1.0f, nullptr), std::invalid_argument);
  CHECK_THROWS_AS(k::pack_level_planes(nullptr, 0, 0, 2, NAN, nullptr), std::invalid_argument);
}

TEST_CASE("export: k-bit (qnn) MLPs — runner logits equal the framework's eval logits bit for bit") {
  using LI = k::LayerInput;
  struct Case {
    QnnVariant v;
    LI first, hidden;  // the expected input kinds of layer 0 and of layers 1..
    k::LayerType first_type = k::LayerType::dense_levels;
  };
  const std::vector<Case> cases = {
      {{"2-bit, activation quantizer in the next QuantLinear", 2, 2, true}, LI::real, LI::levels},
      {{"3-bit, QuantAct + dropout", 3, 3, false}, LI::real, LI::levels_f32},
      {{"2-bit, QuantAct + dropout, shift-based batch norm", 2, 2, false, true}, LI::real, LI::levels_f32},
      {{"3-bit, shift-based batch norm, biases", 3, 3, true, true, true}, LI::real, LI::levels},
      {{"4-bit weights, 2-bit activations, biases", 4, 2, true, false, true}, LI::real, LI::levels},
      {{"2-bit weights, 1-bit activations", 2, 1, true}, LI::real, LI::levels},
      {{"2-bit weights, QuantAct(sign) + dropout", 2, 1, false}, LI::real, LI::levels_f32},
      {{"1-bit weights, 2-bit activations", 1, 2, true}, LI::pixels8, LI::levels, k::LayerType::dense_binary},
      {{"1-bit weights, QuantAct(2-bit) + dropout", 1, 2, false}, LI::pixels8, LI::levels_f32,
       k::LayerType::dense_binary},
      {{"2-bit input quantizer on the pixels", 2, 2, true, false, false, 2}, LI::levels, LI::levels},
  };
  for (const Case& c : cases) {
    auto m = qnn_mlp(c.v, {33, 29}, 37, 61);
    const k::PackedModel pm = export_model(*m);
    INFO(c.v.name);
    CHECK(pm.kind() == "qnn");
    REQUIRE(pm.layers.size() == 3);
    CHECK(pm.layers[0].type == c.first_type);
    CHECK(pm.layers[0].input == c.first);
    for (size_t i = 1; i < 3; ++i) {
      CHECK(pm.layers[i].type == k::LayerType::dense_levels);
      CHECK(pm.layers[i].input == c.hidden);
      CHECK(pm.layers[i].wbits == c.v.wbits);
      CHECK(pm.layers[i].in_bits == c.v.abits);
      CHECK(pm.layers[i].affine);
      CHECK(!pm.layers[i].sign_out);
    }
    for (const auto& L : pm.layers) CHECK(L.bias.empty() == !c.v.bias);
    check_runner_equals_framework(*m, pm, 37, c.v.name);
  }
}

TEST_CASE("export: k-bit layers with ranges a != 1, Uniform{1, a} weights, and products too wide to be exact") {
  Rng rng(71);
  auto ql = [&](int64_t in, int64_t out, std::shared_ptr<Quantizer> iq, std::shared_ptr<Quantizer> wq, bool bias) {
    QuantLinearOptions lo;
    lo.input_quantizer = std::move(iq);
    lo.weight_quantizer = std::move(wq);
    lo.weight_constraint = Clip{-1.0f, 1.0f};
    lo.bias = bias;
    return std::make_shared<QuantLinear>(in, out, rng, lo);
  };
  auto seq = std::make_shared<Sequential>();
  seq->add(ql(37, 300, nullptr, std::make_shared<Uniform>(1, 0.5f), true));  // real input, +-0.5 weights
  seq->add(std::make_shared<BatchNorm1d>(300));
  // 8 x 8 bits over 300 inputs: 300 * 255 * 255 >= 2^24, so the framework
  // takes the unfused path linear(q(x), q(W)) -> levels_f32.
  seq->add(ql(300, 31, std::make_shared<Uniform>(8, 1.5f), std::make_shared<Uniform>(8, 0.75f), false));
  seq->add(std::make_shared<BatchNorm1d>(31));
  seq->add(ql(31, 10, std::make_shared<Uniform>(3, 2.0f), std::make_shared<Uniform>(2, 0.5f), true));
  seq->add(std::make_shared<ShiftBatchNorm>(10));
  train_a_little(*seq, 37, 10, 72);
  const k::PackedModel pm = export_model(*seq);
  REQUIRE(pm.layers.size() == 3);
  CHECK(pm.layers[0].input == k::LayerInput::real);
  CHECK(pm.layers[0].wbits == 1);
  CHECK(pm.layers[0].w_alpha == 0.5f);
  CHECK(pm.layers[1].input == k::LayerInput::levels_f32);
  CHECK(pm.layers[1].in_alpha == 1.5f);
  CHECK(pm.layers[2].input == k::LayerInput::levels);
  CHECK(pm.layers[2].in_bits == 3);
  CHECK(pm.layers[2].in_alpha == 2.0f);
  CHECK(pm.layers[2].w_alpha == 0.5f);
  // The stored levels decode to exactly the weight quantizer's output.
  for (size_t i = 0; i < 3; ++i) {
    auto* q = dynamic_cast<QuantLinear*>(seq->children()[2 * i].second.get());
    REQUIRE(q);
    const Tensor wq = q->quantized_weight();
    const std::vector<float> dec = pm.layers[i].level_weights();
    CHECK(std::memcmp(dec.data(), wq.data(), dec.size() * 4) == 0);
  }
  check_runner_equals_framework(*seq, pm, 37, "ranges a != 1");
}

TEST_CASE("export: k-bit runner on float input (logits_f32) equals the framework and logits_u8") {
  k::set_num_threads(2);
  for (bool act_in_linear : {true, false}) {
    auto m = qnn_mlp({"qnn", 2, 2, act_in_linear}, {65, 40}, 70, 81);
    k::PackedRunner r(export_model(*m));
    // Arbitrary floats (not pixels): the first layer is a float product.
    const int64_t n = 23;
    std::vector<float> x((size_t)(n * 70));
    Rng rng(3);
    for (auto& v : x) v = rng.normal() * 0.8f;
    std::vector<float> got((size_t)(n * 10));
    r.logits_f32(x.data(), n, got.data());
    NoGradGuard ng;
    m->eval();
    const Tensor y = m->forward(Tensor::from_data({n, 70}, x.data()));
    check_same_bits(got, std::vector<float>(y.data(), y.data() + y.numel()), "logits_f32");
    // Pixels as floats give the same logits as the pixels themselves.
    const auto px = random_pixels(n, 70, 5);
    for (size_t i = 0; i < x.size(); ++i) x[i] = scale_pixel(px[i], PixelScale::OddOver256);
    r.logits_f32(x.data(), n, got.data());
    check_same_bits(got, runner_logits(r, px, n), "logits_f32 vs logits_u8");
  }
}

TEST_CASE("export: k-bit file round trip, version 2, k bits per weight; fp / bnn files stay version 1") {
  for (int bits : {2, 3}) {
    auto m = qnn_mlp({"qnn", bits, bits, true}, {256, 256}, 784, 90 + bits);
    const std::string path = tmp_path("qnn" + std::to_string(bits) + ".qnnx");
    const int64_t bytes = export_model_file(*m, path);
    const std::string file = read_file(path);
    CHECK(bytes == (int64_t)file.size());
    CHECK(peek<uint32_t>(file, 4) == 2);   // version
    CHECK(peek<uint32_t>(file, 16) == 2);  // kind: qnn
    const k::PackedModel pm = k::PackedModel::load(path);
    CHECK(pm.kind() == "qnn");
    CHECK(pm.to_bytes() == file);
    const k::PackedModel mem = export_model(*m);
    CHECK(mem.to_bytes() == file);
    // k bits per weight: the planes hold ceil(in / 64) words per row and plane.
    CHECK(pm.weight_storage_bits() == (int64_t)bits * (784 * 256 + 256 * 256 + 256 * 10));
    const int64_t plane_bytes = (int64_t)bits * 8 * (256 * 13 + 256 * 4 + 10 * 4);
    CHECK(bytes > plane_bytes);
    CHECK(bytes < plane_bytes + 8 * 1024);  // + BN (12 B per channel), headers
    CHECK((double)bytes < 1.1 * pm.weight_storage_bits() / 8.0 + 8 * 1024);
    // The runner on the loaded file = the runner on the in-memory export.
    k::PackedRunner a(pm), b(mem);
    const auto px = random_pixels(20, 784, 8);
    check_same_bits(runner_logits(a, px, 20), runner_logits(b, px, 20), "loaded vs in-memory");
    check_same_bits(runner_logits(a, px, 20), framework_logits(*m, px, 20, 784), "loaded vs framework");
    std::filesystem::remove(path);
  }
  CHECK(peek<uint32_t>(export_model(*bnn({64}, 3, true)).to_bytes(), 4) == 1);
  app::MlpConfig c;
  c.hidden = 32;
  c.layers = 1;
  app::resolve_defaults(c);
  Rng rng(4);
  CHECK(peek<uint32_t>(export_model(*app::build_mlp(c, rng)).to_bytes(), 4) == 1);
}

TEST_CASE("export: damaged k-bit files are refused with the problem named") {
  // 37 -> 33 (real input, 2-bit weights) -> 29 (levels input) -> 10.
  auto m = qnn_mlp({"qnn", 2, 2, true}, {33, 29}, 37, 95);
  const std::string good = export_model(*m).to_bytes();
  const std::string path = tmp_path("bad_qnn.qnnx");
  auto err = [&](const std::string& bytes) { return load_error(bytes, path); };
  REQUIRE(err(good).empty());
  // Layer records: 40-byte header, then the payload; a dense_levels payload
  // starts with weight_alpha f32, input_bits u32, input_alpha f32, then the
  // plane words (one per row and plane at in = 37 or 33).
  const size_t L0 = 40, L1 = L0 + 40 + peek<uint64_t>(good, L0 + 32);
  REQUIRE(peek<uint32_t>(good, L0) == 3);
  REQUIRE(peek<uint32_t>(good, L1) == 3);
  REQUIRE(peek<uint32_t>(good, L1 + 4) == 4);  // levels input
  auto lied = [&](auto edit) {
    std::string b = good;
    edit(b);
    fix_crc(b);
    return err(b);
  };
  auto has = [](const std::string& e, const std::string& what) {
    CHECK_MESSAGE(e.find(what) != std::string::npos, "expected '" << what << "' in: " << e);
  };
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 8, 0); }), "0-bit weights");
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 8, 17); }), "17-bit weights");
  // Weight bits that change the payload size consistently: the plane data no longer fit / match.
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 8, 3); }), "header inconsistent: layer 0");
  has(lied([&](std::string& b) { poke<float>(b, L0 + 40, NAN); }), "weight alpha nan");
  has(lied([&](std::string& b) { poke<float>(b, L0 + 40, -1.0f); }), "weight alpha -1");
  has(lied([&](std::string& b) { poke<float>(b, L1 + 48, NAN); }), "input alpha nan");
  has(lied([&](std::string& b) { poke<float>(b, L1 + 48, 0.0f); }), "input alpha 0");
  has(lied([&](std::string& b) { poke<uint32_t>(b, L1 + 44, 0); }), "0-bit input quantizer");
  has(lied([&](std::string& b) { poke<uint32_t>(b, L1 + 44, 32); }), "32-bit input quantizer");
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 44, 2); }), "real input but input quantizer fields");
  has(lied([&](std::string& b) { poke<uint64_t>(b, L0 + 32, peek<uint64_t>(b, L0 + 32) + 8); }),
      "payload bytes for its sizes and flags but declares");
  // Bit 40 of the first plane word of layer 0 (in = 37): a padding bit.
  has(lied([&](std::string& b) { poke<uint64_t>(b, L0 + 52, peek<uint64_t>(b, L0 + 52) | (uint64_t(1) << 40)); }),
      "weight row 0 plane 0 has nonzero padding bits");
  has(lied([&](std::string& b) { poke<uint32_t>(b, L0 + 4, 1); }), "a dense_levels layer cannot take packed input");
  has(lied([&](std::string& b) { poke<uint32_t>(b, 16, 1); }), "the header says bnn but the layers are qnn");
  has(lied([&](std::string& b) { poke<uint32_t>(b, 4, 1); }), "unknown type 3 (dense_levels needs format version 2)");
  has(lied([&](std::string& b) { poke<uint32_t>(b, 4, 6); }), "version 6, this build reads versions 1 to 5");
  // Unchecked (no fix_crc): a flipped plane bit is caught by the CRC.
  std::string b = good;
  b[L0 + 60] ^= 4;
  has(err(b), "CRC mismatch");
  std::filesystem::remove(path);
  // In memory (what to_bytes would refuse to write).
  const k::PackedModel pm = export_model(*m);
  auto invalid = [&](auto edit) {
    k::PackedModel bad = pm;
    edit(bad);
    try {
      bad.validate("test");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  has(invalid([](k::PackedModel& q) {
        q.layers[0].sign_out = true;
        q.layers[0].affine = false;
        q.layers[0].center.clear(), q.layers[0].scale.clear(), q.layers[0].shift.clear();
        q.layers[0].thresh.assign(33, 0);
        q.layers[0].flip.assign(33, 0);
      }),
      "sign epilogue needs a binary layer");
  has(invalid([](k::PackedModel& q) { q.layers[1].wbits = 3; }), "weight plane array has");
  has(invalid([](k::PackedModel& q) { q.layers[1].in_bits = 16, q.layers[1].wbits = 16; }), "can reach 2^24");
  has(invalid([](k::PackedModel& q) { q.layers[1].w_f32.assign(33 * 29, 0.f); }), "has float or 1-bit packed weights");
  has(invalid([](k::PackedModel& q) { q.layers[0].type = k::LayerType::dense_f32; }), "k-bit weight fields");
  has(invalid([](k::PackedModel& q) { q.layers[2].input = k::LayerInput::real; }), "real input but input quantizer");
  // Non-finite stored floats (a fuzzer's find: a NaN reached the level quantizer's float-to-int step).
  REQUIRE(!pm.layers[0].scale.empty());
  has(invalid([](k::PackedModel& q) { q.layers[0].scale[3] = NAN; }), "scale entry 3 is not finite");
  has(invalid([](k::PackedModel& q) { q.layers[0].shift[0] = INFINITY; }), "shift entry 0 is not finite");
  has(invalid([](k::PackedModel& q) { q.layers[0].center[1] = -INFINITY; }), "center entry 1 is not finite");
}
