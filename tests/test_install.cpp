// tests/test_install.cpp — qnn as a library: the umbrella header <qnn/qnn.h>
// in-tree, and `meson install` + pkg-config + the out-of-tree example
// (docs/examples/custom_layer) end to end, by tests/install_test.sh.
//
// This executable links libqnn itself (not the per-folder libraries), so it
// also shows that the installed library holds every folder's code.
#include <doctest/doctest.h>

#include <qnn/qnn.h>  // in-tree through build/include/qnn/ (meson.build)

#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <string>

using namespace qnn;

TEST_CASE("install: <qnn/qnn.h> gives core, layers, quant, optim and data in-tree; libqnn links them") {
  // data: a 2-class float dataset of 8 samples and a loader over it.
  Dataset ds;
  ds.name = "toy";
  ds.sample_shape = {4};
  ds.num_classes = 2;
  ds.class_names = {"a", "b"};
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 4; ++j) ds.x.push_back(i % 2 ? 1.0f + 0.1f * j : -1.0f - 0.1f * j);
    ds.y.push_back(i % 2);
  }
  ds.validate();
  DataLoader loader(ds, 8, false, 1);
  const Batch b = loader.epoch(0).batch(0);
  REQUIRE(b.x.shape() == Shape{8, 4});

  // layers (binary, batch norm, real) and an optimizer.
  Rng rng(5);
  Sequential model;
  model.add(std::make_shared<BinaryLinear>(4, 6, rng, BinaryLinearOptions{.binarize_input = false}));
  model.add(std::make_shared<BatchNorm1d>(6));
  model.add(std::make_shared<Linear>(6, 2, rng));
  Adam opt(model.parameters(), 1e-2f);
  const float before = cross_entropy(model(b.x), b.y).item();
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    Tensor loss = cross_entropy(model(b.x), b.y);
    loss.backward();
    opt.step();
  }
  const float after = cross_entropy(model(b.x), b.y).item();
  CHECK(after < before);
  CHECK(summarize(model, {-1, 4}).back().output == "[-1, 2]");
}

TEST_CASE("install: meson install, qnn.pc and the out-of-tree custom_layer example") {
  const std::string cmd = std::string("bash '") + QNN_SOURCE_ROOT + "/tests/install_test.sh' '" + QNN_BUILD_ROOT +
                          "' '" + QNN_SOURCE_ROOT + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("install test: ok") != std::string::npos);
}
