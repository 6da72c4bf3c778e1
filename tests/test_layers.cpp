// Layers: Module bookkeeping, Linear/BatchNorm/Dropout behaviour, summary, checkpoints.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/serialize.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/pool.h"

using namespace qnn;

static std::shared_ptr<Sequential> small_net(Rng& rng) {
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Linear>(4, 3, rng));
  net->add(std::make_shared<BatchNorm1d>(3));
  net->add(ReLU());
  net->add(std::make_shared<Dropout>(0.5f, rng));
  net->add(std::make_shared<Linear>(3, 2, rng, LinearOptions{false, "glorot"}));
  return net;
}

TEST_CASE("Module: named parameters, buffers, counts") {
  Rng rng(1);
  auto net = small_net(rng);
  auto names = net->named_parameters();
  REQUIRE(names.size() == 5);
  CHECK(names[0].first == "0.weight");
  CHECK(names[1].first == "0.bias");
  CHECK(names[2].first == "1.weight");
  CHECK(names[4].first == "4.weight");
  CHECK(net->named_buffers().size() == 2);
  CHECK(net->named_buffers()[0].first == "1.running_mean");
  CHECK(net->num_parameters() == 4 * 3 + 3 + 3 + 3 + 3 * 2);
  for (auto& p : net->parameters()) CHECK(p.requires_grad());
}

TEST_CASE("Linear computes x W^T + b and checks shapes") {
  Rng rng(1);
  Linear l(3, 2, rng);
  l.weight.copy_from(Tensor::from_vector({2, 3}, {1, 2, 3, -1, 0, 1}));
  l.bias.copy_from(Tensor::from_vector({2}, {0.5f, -0.5f}));
  Tensor y = l(Tensor::from_vector({1, 3}, {1, 1, 1}));
  CHECK(y.to_vector() == std::vector<float>{6.5f, -0.5f});
  CHECK_THROWS_WITH_AS(l(Tensor::zeros({1, 4})), doctest::Contains("expected [N, 3]"), Error);
}

TEST_CASE("initialisations have the documented ranges") {
  Rng rng(3);
  Linear g(300, 100, rng, LinearOptions{false, "glorot"});
  const float s = std::sqrt(6.f / 400.f);
  float mx = 0;
  for (float v : g.weight.to_vector()) mx = std::max(mx, std::fabs(v));
  CHECK(mx <= s);
  CHECK(mx > 0.9f * s);
  CHECK_THROWS_AS(Linear(3, 2, rng, LinearOptions{true, "xavier_typo"}), Error);
}

TEST_CASE("train/eval mode propagates; dropout and batch norm follow it") {
  Rng rng(1);
  auto net = small_net(rng);
  Tensor x = Tensor::uniform({8, 4}, -1, 1, rng);
  net->train(true);
  Tensor a = (*net)(x);
  net->eval();
  CHECK(!(*net)[3].is_training());
  Tensor b = (*net)(x);
  Tensor c = (*net)(x);
  CHECK(b.to_vector() == c.to_vector());  // deterministic in eval
  auto& bn = dynamic_cast<BatchNorm1d&>((*net)[1]);
  CHECK(bn.running_mean.to_vector() != std::vector<float>(3, 0.f));  // updated by the training pass
}

TEST_CASE("summary counts every parameter at 32 bits for a float model") {
  Rng rng(1);
  auto net = small_net(rng);
  auto rows = summarize(*net);
  REQUIRE(rows.size() == 5);
  int64_t total = 0;
  for (auto& r : rows) {
    total += r.params;
    CHECK(r.bytes_packed() == doctest::Approx(r.bytes_fp32()));
  }
  CHECK(total == net->num_parameters());
  std::string t = summary_table(*net);
  CHECK(t.find("BatchNorm1d") != std::string::npos);
  CHECK(t.find("compression 1.00x") != std::string::npos);
}

TEST_CASE("summary: every row has an output shape, BatchNorm and Dropout included") {
  Rng rng(1);
  auto net = small_net(rng);  // Linear(4,3) BN ReLU Dropout Linear(3,2)
  auto rows = summarize(*net);
  REQUIRE(rows.size() == 5);
  // No input shape given: the batch is unknown (-1), features come from the Linears.
  const std::vector<std::string> want{"[-1, 3]", "[-1, 3]", "[-1, 3]", "[-1, 3]", "[-1, 2]"};
  for (size_t i = 0; i < rows.size(); ++i) CHECK(rows[i].output == want[i]);
  const std::string t = summary_table(*net);
  CHECK(t.find("BatchNorm1d      [-1, 3]") != std::string::npos);
  CHECK(t.find("Dropout          [-1, 3]") != std::string::npos);
  // With an input shape, the batch propagates too.
  rows = summarize(*net, {8, 4});
  CHECK(rows[1].output == "[8, 3]");
  CHECK(rows[4].output == "[8, 2]");
  // A leaf before any shape-fixing layer, with no input shape: nothing known, nothing printed.
  Sequential s;
  s.add(ReLU());
  s.add(std::make_shared<Linear>(4, 3, rng));
  rows = summarize(s);
  CHECK(rows[0].output == "");
  CHECK(rows[1].output == "[-1, 3]");
}

TEST_CASE("summary: output_shape agrees with the shapes forward produces (2-D BN, Flatten, Linear)") {
  Rng rng(2);
  Sequential net;
  net.add(std::make_shared<BatchNorm2d>(3));
  net.add(ReLU());
  net.add(std::make_shared<Flatten>());
  net.add(std::make_shared<Linear>(3 * 4 * 5, 7, rng));
  net.add(std::make_shared<BatchNorm1d>(7));
  net.add(std::make_shared<Dropout>(0.5f, rng));
  const Shape in{2, 3, 4, 5};
  const auto rows = summarize(net, in);
  REQUIRE(rows.size() == net.size());
  Tensor h = Tensor::uniform(in, -1, 1, rng);
  for (size_t i = 0; i < net.size(); ++i) {
    h = net[i](h);
    CHECK(rows[i].output == shape_str(h.shape()));
  }
  CHECK(net.output_shape(in) == h.shape());
  // Unknown spatial size: Flatten cannot know its width, the Linear after it fixes it.
  const auto rows2 = summarize(net);
  CHECK(rows2[0].output == "[-1, 3, -1, -1]");
  CHECK(rows2[2].output == "[-1, -1]");
  CHECK(rows2[3].output == "[-1, 7]");
  // Wide shapes widen the column; every row stays aligned with the header.
  const std::string t = summary_table(net, {-1, 3, 4, 5});
  std::vector<std::string> lines;
  for (size_t a = 0, b; (b = t.find('\n', a)) != std::string::npos; a = b + 1) lines.push_back(t.substr(a, b - a));
  REQUIRE(lines.size() == net.size() + 4);
  CHECK(lines[2].find("[-1, 3, 4, 5]") != std::string::npos);
  for (size_t i = 2; i < 2 + net.size(); ++i) CHECK(lines[i].size() == lines[0].size());
}

TEST_CASE("summary with an input shape checks the wiring: wrong widths are a qnn::Error") {
  Rng rng(3);
  auto net = small_net(rng);
  CHECK_THROWS_WITH_AS(summarize(*net, {-1, 5}), doctest::Contains("Linear: input [-1, 5] has 5 features, expected 4"),
                       Error);
  Sequential bad;
  bad.add(std::make_shared<Linear>(4, 3, rng));
  bad.add(std::make_shared<BatchNorm1d>(5));
  CHECK_THROWS_WITH_AS(summarize(bad), doctest::Contains("BatchNorm1d(5): input [-1, 3]"), Error);
  Sequential bad2;
  bad2.add(std::make_shared<BatchNorm2d>(3));
  CHECK_THROWS_AS(summarize(bad2, {-1, 3}), Error);  // 2-D input to a BatchNorm2d
}

TEST_CASE("model checkpoint round trip restores outputs; wrong model refused") {
  Rng rng(1);
  auto a = small_net(rng);
  auto b = small_net(rng);  // different init
  a->eval();
  b->eval();
  Tensor x = Tensor::uniform({2, 4}, -1, 1, rng);
  const std::string p = (std::filesystem::temp_directory_path() / "qnn_layers_ckpt.qnn").string();
  save_tensors(p, a->state());
  CHECK((*a)(x).to_vector() != (*b)(x).to_vector());
  NamedTensors st = b->state();
  assign_tensors(st, load_tensors(p), p);
  CHECK((*a)(x).to_vector() == (*b)(x).to_vector());
  Rng r2(1);
  Linear other(5, 3, r2);
  NamedTensors so = other.state();
  CHECK_THROWS_AS(assign_tensors(so, load_tensors(p), p), Error);
}

TEST_CASE("gradient flows through a Sequential to every parameter") {
  Rng rng(2);
  auto net = small_net(rng);
  Tensor x = Tensor::uniform({6, 4}, -1, 1, rng);
  Tensor loss = cross_entropy((*net)(x), {0, 1, 0, 1, 1, 0});
  loss.backward();
  for (auto& [n, p] : net->named_parameters()) CHECK_MESSAGE(p.has_grad(), n);
  net->zero_grad();
  for (auto& p : net->parameters()) CHECK(!p.has_grad());
}

// ---- convolutional layers ------------------------------------------------------------------------

TEST_CASE("Conv2d: the conv2d op on its [O, C, K, K] weight; shapes, fans, summary, errors") {
  Rng rng(4);
  Conv2d conv(3, 5, 3, rng, Conv2dOptions{2, 1, true, "he"});
  CHECK(conv.weight.shape() == Shape{5, 3, 3, 3});
  CHECK(conv.bias.shape() == Shape{5});
  conv.bias.copy_from(Tensor::uniform({5}, -1, 1, rng));
  Tensor x = Tensor::uniform({2, 3, 7, 6}, -1, 1, rng);
  Tensor y = conv(x);
  CHECK(y.shape() == Shape{2, 5, 4, 3});
  CHECK(y.to_vector() == conv2d(x, conv.weight, conv.bias, 2, 1).to_vector());
  CHECK(conv.output_shape({2, 3, 7, 6}) == y.shape());
  CHECK(conv.output_shape({}) == Shape{-1, 5, -1, -1});
  CHECK_THROWS_WITH_AS(conv.output_shape({-1, 4, 7, 6}), doctest::Contains("expected [N, 3, H, W]"), Error);
  CHECK_THROWS_WITH_AS(conv(Tensor::zeros({2, 4, 7, 6})), doctest::Contains("Conv2d(3 -> 5, 3x3, stride 2, pad 1)"),
                       Error);
  CHECK_THROWS_AS(conv(Tensor::zeros({2, 27})), Error);
  CHECK_THROWS_AS(Conv2d(3, 5, 0, rng), Error);
  CHECK_THROWS_AS(Conv2d(3, 5, 3, rng, Conv2dOptions{0, 0, true, "he"}), Error);
  const LayerSummary r = conv.summary_row();
  CHECK(r.type == "Conv2d");
  CHECK(r.params == 5 * 27 + 5);
  CHECK(r.bytes_packed() == doctest::Approx(4.0 * (5 * 27 + 5)));
  // He initialisation with fan_in = C K K: standard deviation sqrt(2 / (C K K)).
  Conv2d big(64, 64, 3, rng, Conv2dOptions{1, 1, false, "he"});
  CHECK(!big.bias.defined());
  double ss = 0;
  for (float v : big.weight.to_vector()) ss += (double)v * v;
  CHECK(std::sqrt(ss / big.weight.numel()) == doctest::Approx(std::sqrt(2.0 / 576.0)).epsilon(0.03));
  // A gradient reaches the weight and the input.
  Tensor xl = x.clone();
  xl.set_requires_grad(true);
  sum(conv(xl)).backward();
  CHECK(conv.weight.has_grad());
  CHECK(xl.has_grad());
}

TEST_CASE("MaxPool2d / AvgPool2d: the pooling ops, stride defaults to the window, shapes and errors") {
  Rng rng(5);
  Tensor x = Tensor::uniform({2, 3, 7, 6}, -1, 1, rng);
  MaxPool2d mp(2);
  AvgPool2d ap(3, 2);
  CHECK(mp.stride() == 2);
  CHECK(mp(x).to_vector() == max_pool2d(x, 2, 2).to_vector());
  CHECK(ap(x).to_vector() == avg_pool2d(x, 3, 2).to_vector());
  CHECK(mp(x).shape() == Shape{2, 3, 3, 3});
  CHECK(mp.output_shape({2, 3, 7, 6}) == mp(x).shape());
  CHECK(ap.output_shape({2, 3, 7, 6}) == ap(x).shape());
  CHECK(mp.output_shape({-1, 3, -1, -1}) == Shape{-1, 3, -1, -1});
  CHECK(mp.summary_row().params == 0);
  CHECK_THROWS_WITH_AS(mp(Tensor::zeros({2, 6})), doctest::Contains("MaxPool2d(2, stride 2)"), Error);
  CHECK_THROWS_WITH_AS(ap(Tensor::zeros({1, 1, 2, 5})), doctest::Contains("smaller than the window"), Error);
  CHECK_THROWS_AS(MaxPool2d(0), Error);
}

TEST_CASE("BatchNorm2d on [N, C, H, W]: per-channel statistics over N, H, W; Flatten is the flatten op") {
  Rng rng(6);
  const int64_t N = 3, C = 2, H = 4, W = 5;
  Tensor x = Tensor::uniform({N, C, H, W}, -2, 3, rng);
  BatchNorm2d bn(C, BatchNormOptions{0.1f, 1e-5f, true});
  const auto y = bn(x).to_vector();
  const auto xv = x.to_vector();
  for (int64_t c = 0; c < C; ++c) {
    double m = 0, v = 0, mx = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < H * W; ++p) {
        m += y[(n * C + c) * H * W + p];
        mx += xv[(n * C + c) * H * W + p];
      }
    m /= N * H * W;
    mx /= N * H * W;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < H * W; ++p) v += std::pow(y[(n * C + c) * H * W + p] - m, 2);
    v /= N * H * W;
    CHECK(m == doctest::Approx(0.0).scale(1.0).epsilon(1e-5));
    CHECK(v == doctest::Approx(1.0).epsilon(1e-3));
    CHECK(bn.running_mean.data()[c] == doctest::Approx(0.1 * mx).epsilon(1e-5));
  }
  CHECK_THROWS_AS(bn(Tensor::zeros({N, C})), Error);

  Flatten fl;
  Tensor xl = x.clone();
  xl.set_requires_grad(true);
  Tensor f = fl(xl);
  CHECK(f.shape() == Shape{N, C * H * W});
  CHECK(f.to_vector() == xv);  // row-major order kept
  sum(f).backward();
  CHECK(xl.grad().to_vector() == std::vector<float>(xv.size(), 1.0f));
}

TEST_CASE("summary of a small CNN: output shapes agree with forward (conv, pool, BN2d, Flatten, Linear)") {
  Rng rng(7);
  Sequential net;
  net.add(std::make_shared<Conv2d>(3, 4, 3, rng, Conv2dOptions{1, 1, false, "he"}));
  net.add(std::make_shared<MaxPool2d>(2));
  net.add(std::make_shared<BatchNorm2d>(4));
  net.add(ReLU());
  net.add(std::make_shared<Conv2d>(4, 6, 3, rng, Conv2dOptions{1, 0, false, "he"}));
  net.add(std::make_shared<AvgPool2d>(2));
  net.add(std::make_shared<Flatten>());
  net.add(std::make_shared<Linear>(6 * 1 * 1, 3, rng));  // 8x10 -> 8x10 -> 4x5 -> 2x3 -> 1x1
  const Shape in{2, 3, 8, 10};
  const auto rows = summarize(net, in);
  Tensor h = Tensor::uniform(in, -1, 1, rng);
  for (size_t i = 0; i < net.size(); ++i) {
    h = net[i](h);
    CHECK(rows[i].output == shape_str(h.shape()));
  }
  CHECK(h.shape() == Shape{2, 3});
  CHECK(rows[0].params == 4 * 27);
}
