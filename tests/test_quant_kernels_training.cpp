// tests/test_quant_kernels_training.cpp — whole training runs with the
// bit-packed kernels on and off (BNN, stochastic binarization, a 3-bit x
// 2-bit QNN; Adam and SGD) at a fixed seed, for every ISA: identical losses
// at every step, in evaluation, and identical final weights. Trains on MNIST
// (datasets/mnist) when present, on random pixels otherwise.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "apps/common/mlp.h"
#include "core/autograd.h"
#include "core/rng.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "layers/quant/quant.h"
#include "optim/optim.h"
#include "tests/isa_util.h"
#include "tests/quant_kernels_test_util.h"

using namespace qnn;
namespace k = qnn::kernels;

namespace {

using qnn::test::IsaGuard;
using qnn::test::same_bits;
using qnn::test::supported_isas;

struct RunResult {
  std::vector<float> losses;
  std::vector<std::pair<std::string, Tensor>> state;
};

Dataset training_data() {
  const std::string dir = std::string(QNN_SOURCE_ROOT) + "/datasets/mnist";
  if (std::filesystem::exists(dir + "/train-images-idx3-ubyte")) return load_mnist(dir, "train", app::mnist_options(2000));
  MESSAGE("MNIST not found: training-run equality on random data");
  Dataset d;
  d.name = "random";
  d.sample_shape = {784};
  d.num_classes = 10;
  std::mt19937 rng(1);
  for (int64_t i = 0; i < 2000; ++i) {
    for (int j = 0; j < 784; ++j) d.x.push_back((float)(2 * (int)(rng() % 256) - 255) / 256.0f);
    d.y.push_back((int32_t)(rng() % 10));
  }
  return d;
}

RunResult train_steps(app::MlpConfig cfg, bool kernels_on, const Dataset& data, int steps, const std::string& optim) {
  cfg.kernels = kernels_on;
  app::resolve_defaults(cfg);
  Rng rng(1);
  auto model = app::build_mlp(cfg, rng);
  auto opt = make_optimizer(optim, model->parameters(), 3e-3f);
  DataLoader loader(data, 100, true, 1);
  RunResult r;
  model->train(true);
  int step = 0;
  for (const Batch& b : loader.epoch(0)) {
    if (step++ == steps) break;
    Tensor loss = app::compute_loss(app::LossKind::sqhinge, model->forward(b.x), b.y);
    r.losses.push_back(loss.item());
    opt->zero_grad();
    loss.backward();
    opt->step();
  }
  // and an evaluation pass (the kernels' no-grad forward)
  NoGradGuard ng;
  model->train(false);
  Batch b = loader.epoch(1).batch(0);
  r.losses.push_back(app::compute_loss(app::LossKind::sqhinge, model->forward(b.x), b.y).item());
  r.state = model->state();
  return r;
}

void check_identical_runs(const app::MlpConfig& cfg, const std::string& label, const std::string& optim = "adam") {
  static const Dataset data = training_data();
  IsaGuard guard;
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    const RunResult on = train_steps(cfg, true, data, 20, optim);
    const RunResult off = train_steps(cfg, false, data, 20, optim);
    INFO(label << " isa " << std::string(k::isa_name(isa)));
    REQUIRE(on.losses.size() == 21);
    CHECK(same_bits(on.losses.data(), off.losses.data(), 21));
    CHECK(on.losses.front() != on.losses[19]);  // it did train
    REQUIRE(on.state.size() == off.state.size());
    for (size_t i = 0; i < on.state.size(); ++i) {
      INFO("tensor " << on.state[i].first);
      CHECK_SAME(on.state[i].second, off.state[i].second, on.state[i].first);
    }
  }
}

}  // namespace

TEST_CASE("training: BNN 784-64-64-10, 20 steps, kernels on vs off -> identical losses and weights") {
  k::set_num_threads(2);
  app::MlpConfig cfg;
  cfg.model = "bnn";
  cfg.hidden = 64;
  cfg.layers = 2;
  {
    Rng rng(1);
    app::MlpConfig c2 = cfg;
    app::resolve_defaults(c2);
    auto m = app::build_mlp(c2, rng);
    CHECK(set_quant_kernels(*m, true) == 3);  // real x sign, the hidden 64x64 product, the classifier
  }
  check_identical_runs(cfg, "bnn");
  app::MlpConfig t = cfg;
  t.surrogate = "tanh:3";
  check_identical_runs(t, "bnn tanh:3", "sgd");
}

TEST_CASE("training: stochastic binarization and a QNN (3-bit acts, 2-bit weights), kernels on vs off -> identical") {
  k::set_num_threads(2);
  app::MlpConfig s;
  s.model = "bnn";
  s.hidden = 64;
  s.layers = 2;
  s.binarize = "stoch";
  check_identical_runs(s, "bnn stoch");
  app::MlpConfig q;
  q.model = "qnn";
  q.hidden = 64;
  q.layers = 2;
  q.wbits = 2;
  q.abits = 3;
  q.surrogate = "periodic:3";
  check_identical_runs(q, "qnn 3x2 bits");
}
