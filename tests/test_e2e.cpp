// End-to-end: train on real MNIST (fetched by scripts/fetch_data.sh mnist,
// which the test command runs) and check the accuracy on held-out images.
#include <doctest/doctest.h>

#include <filesystem>

#include "apps/common/mlp.h"
#include "kernels/sgemm.h"
#include "optim/optim.h"

using namespace qnn;

static std::string mnist_dir() { return std::string(QNN_SOURCE_ROOT) + "/datasets/mnist"; }

// Without the data these tests are SKIPPED (doctest's skip decorator, decided
// when the test cases register, before main): the summary line counts them as
// "skipped", never as "passed", so a run without datasets/mnist cannot look
// green. load_mnist takes raw or .gz files.
static bool have_mnist() {
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}) {
    const std::string p = mnist_dir() + "/" + f;
    if (!std::filesystem::exists(p) && !std::filesystem::exists(p + ".gz")) return false;
  }
  return true;
}
static const auto kNeedsMnist = doctest::skip(!have_mnist());

// Trains on the first n_train images, tests on the last n_test of the 60k set.
static double train_and_score(app::MlpConfig cfg, int64_t n_train, int64_t n_test, int epochs, float lr,
                              float lr_end, app::LossKind loss, const std::string& optimizer) {
  kernels::set_num_threads(2);
  Dataset all = load_mnist(mnist_dir(), "train", app::mnist_options());
  Dataset train = subset(all, 0, n_train);
  Dataset test = subset(all, all.size() - n_test, all.size());
  Rng rng(1);
  auto model = app::build_mlp(cfg, rng);
  auto opt = make_optimizer(optimizer, model->parameters(), lr);
  ExponentialLR sched(lr, lr_end, epochs);
  DataLoader loader(train, 100, true, 1);
  for (int e = 0; e < epochs; ++e) {
    opt->set_lr(sched.lr_at(e));
    app::train_epoch(*model, *opt, loader, e, loss);
  }
  return app::evaluate(*model, test, loss).acc;
}

TEST_CASE("e2e: full-precision MLP, 2,000 MNIST images, 1 epoch, > 85% on 1,000 others" * kNeedsMnist) {
  app::MlpConfig cfg;
  cfg.hidden = 256;
  cfg.layers = 2;
  app::resolve_defaults(cfg);
  const double acc = train_and_score(cfg, 2000, 1000, 1, 1e-3f, 1e-3f, app::LossKind::xent, "adam");
  MESSAGE("fp MLP accuracy " << acc);
  CHECK(acc > 0.85);
}

TEST_CASE("e2e: BNN (width 256), 5,000 MNIST images, 2 epochs, > 85% on 1,000 others" * kNeedsMnist) {
  app::MlpConfig cfg;
  cfg.model = "bnn";
  cfg.hidden = 256;
  cfg.layers = 3;
  app::resolve_defaults(cfg);
  const double acc = train_and_score(cfg, 5000, 1000, 2, 3e-3f, 3e-4f, app::LossKind::sqhinge, "adam");
  MESSAGE("BNN accuracy " << acc);
  CHECK(acc > 0.85);
}
