// tests/test_cnn.cpp — the CNN model builders (apps/common/cnn.h): layer
// order and shapes of BinaryNet's network and FINN's CNV, a forward/backward
// pass of every arch x model, and a few SGD steps that reduce the loss.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "apps/common/cnn.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "layers/basic.h"
#include "layers/conv.h"
#include "layers/pool.h"
#include "layers/residual.h"
#include "layers/quant/export.h"
#include "layers/quant/quant.h"
#include "optim/sgd.h"

using namespace qnn;
using namespace qnn::app;

namespace {

CnnConfig config(const std::string& arch, const std::string& model, float width = 0.25f) {
  CnnConfig c;
  c.arch = arch;
  c.model = model;
  c.width = width;
  c.fc = 64;  // keep the tests small; the default (1024 / 512) is checked separately
  c.kernels = 1;
  resolve_cnn_defaults(c);
  return c;
}

std::vector<std::string> types(const Module& m) {
  std::vector<std::string> t;
  for (const LayerSummary& r : summarize(m)) t.push_back(r.type);
  return t;
}

}  // namespace

TEST_CASE("build_cnn binarynet: Courbariaux's layer order (conv -> MP -> BN), widths, shapes") {
  Rng rng(1);
  CnnConfig c = config("binarynet", "bnn", 0.5f);
  c.fc = -1;
  resolve_cnn_defaults(c);
  CHECK(c.fc == 1024);  // svhn.py keeps 1024 FC at half the conv widths
  CHECK(c.bn_eps == doctest::Approx(1e-4));
  auto net = build_cnn(c, rng);
  const std::vector<std::string> want{
      "QuantConv2d", "BatchNorm2d", "QuantConv2d", "MaxPool2d",   "BatchNorm2d", "QuantConv2d", "BatchNorm2d",
      "QuantConv2d", "MaxPool2d",   "BatchNorm2d", "QuantConv2d", "BatchNorm2d", "QuantConv2d", "MaxPool2d",
      "BatchNorm2d", "Flatten",     "QuantLinear", "BatchNorm1d", "QuantLinear", "BatchNorm1d", "QuantLinear",
      "BatchNorm1d"};
  CHECK(types(*net) == want);
  const auto rows = summarize(*net, {-1, 3, 32, 32});
  CHECK(rows[0].output == "[-1, 64, 32, 32]");  // width 0.5: SVHN's 64-64-128-128-256-256
  CHECK(rows[0].input_bits == 32);              // the image stays real
  CHECK(rows[0].weight_bits == 1);
  CHECK(rows[2].input_bits == 1);
  CHECK(rows[12].output == "[-1, 256, 8, 8]");
  CHECK(rows[13].output == "[-1, 256, 4, 4]");
  CHECK(rows[16].output == "[-1, 1024]");
  CHECK(rows[16].params == 256 * 16 * 1024);
  CHECK(rows.back().output == "[-1, 10]");
  // the first conv has no input quantizer: it pads with 0 on the pm1 path
  auto* first = dynamic_cast<QuantConv2d*>(&(*std::static_pointer_cast<Sequential>(net))[0]);
  REQUIRE(first);
  CHECK(first->pad_value() == 0.0f);
  CHECK(first->kernel_path() == QuantKernelPath::sign_weight);
  auto* second = dynamic_cast<QuantConv2d*>(&(*std::static_pointer_cast<Sequential>(net))[2]);
  REQUIRE(second);
  CHECK(second->kernel_path() == QuantKernelPath::binary);  // zero padding (BinaryNet's): binary_conv2d corrects it
  CHECK(second->weight.param_attrs().lr_scale == doctest::Approx(glorot_lr_scale(64 * 9, 64 * 9)));

  // one-padding: every binary conv after the first takes the XNOR path
  CnnConfig one = config("binarynet", "bnn");
  one.pad_mode = "one";
  auto net1 = build_cnn(one, rng);
  int xnor = 0;
  for (const auto& [n, m] : net1->children())
    if (auto* q = dynamic_cast<QuantConv2d*>(m.get())) xnor += q->kernel_path() == QuantKernelPath::binary;
  CHECK(xnor == 5);
}

TEST_CASE("build_cnn cnv: FINN's unpadded 64-64-MP-128-128-MP-256-256, 512-512-10, shapes") {
  Rng rng(2);
  CnnConfig c = config("cnv", "qnn", 1.0f);
  c.fc = -1;
  resolve_cnn_defaults(c);
  CHECK(c.fc == 512);
  CHECK(c.wbits == 2);
  auto net = build_cnn(c, rng);
  const std::vector<std::string> want{
      "QuantConv2d", "BatchNorm2d", "QuantConv2d", "BatchNorm2d", "MaxPool2d",   "QuantConv2d", "BatchNorm2d",
      "QuantConv2d", "BatchNorm2d", "MaxPool2d",   "QuantConv2d", "BatchNorm2d", "QuantConv2d", "BatchNorm2d",
      "Flatten",     "QuantLinear", "BatchNorm1d", "QuantLinear", "BatchNorm1d", "QuantLinear", "BatchNorm1d"};
  CHECK(types(*net) == want);
  const auto rows = summarize(*net, {-1, 3, 32, 32});
  CHECK(rows[0].output == "[-1, 64, 30, 30]");
  CHECK(rows[4].output == "[-1, 64, 14, 14]");
  CHECK(rows[9].output == "[-1, 128, 5, 5]");
  CHECK(rows[12].output == "[-1, 256, 1, 1]");
  CHECK(rows[15].params == 256 * 512);
  CHECK(rows[15].weight_bits == 2);
  CHECK(rows[15].input_bits == 2);
  // unpadded 2-bit convs: the bit-serial path
  auto* conv2 = dynamic_cast<QuantConv2d*>(&(*std::static_pointer_cast<Sequential>(net))[2]);
  REQUIRE(conv2);
  CHECK(conv2->kernel_path() == QuantKernelPath::levels);
}

TEST_CASE("build_cnn fp --dropout: after the hidden FC layers' ReLUs only, never between a conv and its BN") {
  Rng rng(3);
  CnnConfig c = config("binarynet", "fp");
  c.dropout = 0.3f;
  const std::vector<std::string> want{
      "Conv2d",  "BatchNorm2d", "ReLU",    "Conv2d",      "MaxPool2d", "BatchNorm2d", "ReLU",        "Conv2d",
      "BatchNorm2d", "ReLU",    "Conv2d",  "MaxPool2d",   "BatchNorm2d", "ReLU",      "Conv2d",      "BatchNorm2d",
      "ReLU",    "Conv2d",      "MaxPool2d", "BatchNorm2d", "ReLU",     "Flatten",     "Linear",      "BatchNorm1d",
      "ReLU",    "Dropout",     "Linear",  "BatchNorm1d", "ReLU",      "Dropout",     "Linear",      "BatchNorm1d"};
  CHECK(types(*build_cnn(c, rng)) == want);
  c.dropout = 0.0f;  // no Dropout layer at all when off
  int drops = 0;
  for (const std::string& t : types(*build_cnn(c, rng))) drops += t == "Dropout";
  CHECK(drops == 0);
}

TEST_CASE("build_cnn: forward/backward of every arch x model on [2, 3, 32, 32] at width 0.25") {
  for (const std::string arch : {"binarynet", "cnv"})
    for (const std::string model : {"fp", "bnn", "qnn"}) {
      CAPTURE(arch);
      CAPTURE(model);
      Rng rng(3);
      auto net = build_cnn(config(arch, model), rng);
      const Tensor x = Tensor::uniform({2, 3, 32, 32}, -1, 1, rng);
      Tensor y = net->forward(x);
      CHECK(y.shape() == Shape{2, 10});
      Tensor loss = cross_entropy(y, {3, 7});
      loss.backward();
      // Every parameter receives a finite gradient, every conv / FC weight a
      // nonzero one. (Not every BN beta: at batch 2 a BN's outputs are
      // +-d/sqrt(d^2 + eps), inside the sign's clip, and the batch norm
      // after the next product makes the gradient sum over the batch vanish.)
      for (const auto& [name, p] : net->named_parameters()) {
        CAPTURE(name);
        REQUIRE(p.has_grad());
        double s = 0;
        bool finite = true;
        for (float g : p.grad().to_vector()) {
          s += std::fabs(g);
          finite = finite && std::isfinite(g);
        }
        CHECK(finite);
        if (p.ndim() >= 2) CHECK(s > 0);
      }
      net->eval();
      NoGradGuard ng;
      CHECK(net->forward(x).shape() == Shape{2, 10});
    }
}

TEST_CASE("build_cnn: a few SGD steps on a tiny synthetic set reduce the loss") {
  // Two classes told apart by the sign of the mean of channel 0.
  Rng data_rng(11);
  const int64_t N = 16;
  Tensor x = Tensor::uniform({N, 3, 32, 32}, -1, 1, data_rng);
  std::vector<int32_t> y(N);
  for (int64_t n = 0; n < N; ++n) {
    y[n] = (int32_t)(n % 2);
    float* p = x.data() + n * 3 * 32 * 32;
    for (int64_t i = 0; i < 32 * 32; ++i) p[i] = 0.5f * p[i] + (y[n] ? 0.5f : -0.5f);
  }
  for (const std::string arch : {"binarynet", "cnv"})
    for (const std::string model : {"fp", "bnn"}) {
      CAPTURE(arch);
      CAPTURE(model);
      Rng rng(5);
      CnnConfig c = config(arch, model);
      c.classes = 2;
      auto net = build_cnn(c, rng);
      SGD::Options so;
      so.momentum = 0.9f;
      SGD opt(net->parameters(), model == "fp" ? 0.05f : 0.01f, so);
      float first = 0, last = 0;
      for (int step = 0; step < 8; ++step) {
        Tensor loss = cross_entropy(net->forward(x), y);
        if (step == 0) first = loss.item();
        last = loss.item();
        opt.zero_grad();
        loss.backward();
        opt.step();
      }
      CHECK(last < first);
    }
}

TEST_CASE("CnnConfig: clear errors for impossible configurations") {
  CnnConfig c;
  c.arch = "vgg";
  CHECK_THROWS_WITH_AS(resolve_cnn_defaults(c), doctest::Contains("--arch must be binarynet or cnv"), Error);
  c = CnnConfig{};
  c.model = "bnn";
  c.dropout = 0.5f;
  CHECK_THROWS_WITH_AS(resolve_cnn_defaults(c), doctest::Contains("--dropout is for --model fp"), Error);
  c = CnnConfig{};
  c.pad_mode = "two";
  CHECK_THROWS_WITH_AS(resolve_cnn_defaults(c), doctest::Contains("--pad-mode"), Error);
  c = CnnConfig{};
  c.arch = "cnv";
  c.image = 16;
  CHECK_THROWS_WITH_AS(resolve_cnn_defaults(c), doctest::Contains("too small for cnv"), Error);
  c = CnnConfig{};
  c.width = 0;
  CHECK_THROWS_WITH_AS(resolve_cnn_defaults(c), doctest::Contains("--width"), Error);
  c = CnnConfig{};
  c.model = "qnn";
  c.wbits = 17;
  CHECK_THROWS_WITH_AS(resolve_cnn_defaults(c), doctest::Contains("--wbits"), Error);
  CHECK(scaled_channels(128, 0.25f) == 32);
  CHECK(scaled_channels(64, 0.001f) == 1);
}

TEST_CASE("build_cnn --shortcuts: Residual around the width-keeping layers, y = body(x) + MP(x), export refused") {
  Rng rng(5);
  CnnConfig c = config("binarynet", "bnn");
  c.shortcuts = true;
  auto net = build_cnn(c, rng);
  // conv 1 and the width-doubling convs 3, 5 and FC 1 stay plain; convs 2, 4, 6 and FC 2 get shortcuts.
  const std::vector<std::string> want{
      "QuantConv2d", "BatchNorm2d", "QuantConv2d", "MaxPool2d",   "BatchNorm2d", "+ MaxPool2(x)", "QuantConv2d",
      "BatchNorm2d", "QuantConv2d", "MaxPool2d",   "BatchNorm2d", "+ MaxPool2(x)", "QuantConv2d", "BatchNorm2d",
      "QuantConv2d", "MaxPool2d",   "BatchNorm2d", "+ MaxPool2(x)", "Flatten",     "QuantLinear", "BatchNorm1d",
      "QuantLinear", "BatchNorm1d", "+ x",         "QuantLinear", "BatchNorm1d"};
  CHECK(types(*net) == want);
  const auto rows = summarize(*net, {-1, 3, 32, 32});
  CHECK(rows[5].output == "[-1, 32, 16, 16]");  // width 0.25: 32 channels, pooled like the body
  CHECK(rows[23].output == "[-1, 64]");

  // The Residual computes body(x) + max_pool2d(x, 2), gradients included.
  auto* res = dynamic_cast<Residual*>(&(*std::static_pointer_cast<Sequential>(net))[2]);
  REQUIRE(res);
  CHECK(res->shortcut_pool() == 2);
  net->eval();
  Tensor x = Tensor::uniform({2, 32, 8, 6}, -1, 1, rng);
  Tensor y, want_y;
  {
    NoGradGuard ng;
    y = res->forward(x);
    want_y = add(res->body().forward(x), max_pool2d(x, 2, 2));
  }
  CHECK(y.to_vector() == want_y.to_vector());
  Tensor xg = x.detach();
  xg.set_requires_grad(true);
  Tensor z = res->forward(xg);
  sum(z).backward();
  // The gradient is the body's plus the pool's (1 at each window's arg-max).
  Tensor xb = x.detach(), xs = x.detach();
  xb.set_requires_grad(true);
  xs.set_requires_grad(true);
  sum(res->body().forward(xb)).backward();
  sum(max_pool2d(xs, 2, 2)).backward();
  const auto gb = xb.grad().to_vector(), gs = xs.grad().to_vector(), g = xg.grad().to_vector();
  int ones = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    CHECK(g[i] == gb[i] + gs[i]);
    ones += gs[i] == 1.0f;
  }
  CHECK(ones == 2 * 32 * 4 * 3);  // one arg-max per 2x2 window

  // The .qnnx format is a chain of layers: a model with a Residual is refused.
  CHECK_THROWS_WITH_AS(export_model(*net, ExportOptions{}), doctest::Contains("is not a chain of layers"), Error);

  // A body that changes the channels is refused with the shapes named.
  auto bad = std::make_shared<Sequential>();
  bad->add(std::make_shared<Conv2d>(4, 8, 3, rng, Conv2dOptions{1, 1, false, "he"}));
  Residual r(bad, 0);
  CHECK_THROWS_WITH_AS(r.forward(Tensor::uniform({1, 4, 5, 5}, -1, 1, rng)),
                       doctest::Contains("differs from the shortcut's"), Error);
  CHECK_THROWS_WITH_AS(r.output_shape({-1, 4, 5, 5}), doctest::Contains("the shortcut to"), Error);

  // cnv has no width-keeping layer of the same map size: refused.
  CnnConfig cnv = config("cnv", "bnn");
  cnv.shortcuts = true;
  CHECK_THROWS_WITH_AS(validate_cnn(cnv), doctest::Contains("--shortcuts is for --arch binarynet"), Error);
}
