// Layers: Module bookkeeping, Linear/BatchNorm/Dropout behaviour, summary, checkpoints.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/serialize.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"

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
