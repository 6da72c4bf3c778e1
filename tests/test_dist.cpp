// tests/test_dist.cpp — data-parallel training over MPI (apps/common/dist.h),
// end to end: `mpirun -np 2 mnist_mlp --dist mpi` against one process with
// the same global batch. Skipped when mpirun, an MPI build or MNIST is absent.
//
// What is compared, and why not bit for bit: two ranks compute the global
// batch's loss and gradient exactly in the mathematical sense (synchronised
// batch norm, the one-process dropout masks, slices' losses scaled by
// rows/batch), but a weight gradient summed over the batch is summed per
// slice and then across ranks, which rounds differently from one GEMM over
// the whole batch. So: the two-rank model equals the one-process model to a
// tight relative tolerance, and two two-rank runs are bit-identical (the
// cross-rank sums have a fixed order).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/serialize.h"

namespace fs = std::filesystem;
using namespace qnn;

namespace {

struct Run {
  int status = -1;
  std::string out;
};

Run run(const std::string& cmd) {
  Run r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool have_mpirun() { return run("command -v mpirun").status == 0; }

std::string data_dir() { return std::string(QNN_SOURCE_ROOT) + "/datasets/mnist"; }
bool have_mnist() { return fs::exists(data_dir() + "/train-images-idx3-ubyte") || fs::exists(data_dir() + "/train-images-idx3-ubyte.gz"); }

// mpirun as root needs these; --oversubscribe: 2 ranks on a machine that may report fewer slots.
const std::string kMpirun = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
                            "mpirun --allow-run-as-root --oversubscribe -np 2 ";

std::string train_args(const std::string& save, const std::string& extra = "") {
  return std::string(QNN_MNIST_MLP_BIN) + " --data " + data_dir() +
         " --limit-train 600 --val 100 --epochs 1 --hidden 64 --layers 1 --threads 1 --save " + save + " " +
         extra;
}

bool skip_reason(std::string& why) {
  if (!QNN_TEST_HAVE_MPI) why = "this build has no MPI";
  else if (!have_mpirun()) why = "mpirun not found";
  else if (!have_mnist()) why = "MNIST not fetched (scripts/fetch_data.sh mnist)";
  return !why.empty();
}

std::string tmp_dir() {
  const fs::path d = fs::temp_directory_path() / ("qnn-test-dist-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d.string();
}

// The largest |a - b| / max(|a|, |b|, 1e-3) over every tensor of two checkpoints.
double max_rel_diff(const std::string& a, const std::string& b, bool& same_bits) {
  const NamedTensors ta = load_tensors(a), tb = load_tensors(b);
  REQUIRE(ta.size() == tb.size());
  double worst = 0;
  same_bits = true;
  for (size_t i = 0; i < ta.size(); ++i) {
    REQUIRE(ta[i].first == tb[i].first);
    REQUIRE(ta[i].second.numel() == tb[i].second.numel());
    const float* x = ta[i].second.data();
    const float* y = tb[i].second.data();
    for (int64_t k = 0; k < ta[i].second.numel(); ++k) {
      if (x[k] != y[k]) same_bits = false;
      const double den = std::max({std::fabs((double)x[k]), std::fabs((double)y[k]), 1e-3});
      worst = std::max(worst, std::fabs((double)x[k] - (double)y[k]) / den);
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("dist: mpirun -np 2 --dist mpi trains the model one process trains with the same global batch") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  // SGD, not Adam: Adam divides each gradient by its own running size, so a
  // gradient that is exactly 0 in exact arithmetic but rounding noise in
  // floats (the weights of the constant border pixels in front of batch
  // norm) takes full-size steps in a direction the summation order decides.
  // Those weights then differ between any two summation orders, by about
  // lr x steps; SGD keeps a noise-sized gradient noise-sized.
  for (const std::string model : {"fp", "bnn"}) {
    CAPTURE(model);
    const std::string m = " --batch 50 --optimizer sgd --lr 0.1 --model " + model;
    const Run one = run(train_args(d + "/one.qnn", m + " --json " + d + "/one.json"));
    REQUIRE_MESSAGE(one.status == 0, one.out);
    const Run two = run(kMpirun + train_args(d + "/two.qnn", m + " --dist mpi --json " + d + "/two.json"));
    REQUIRE_MESSAGE(two.status == 0, two.out);
    bool same = false;
    const double rel = max_rel_diff(d + "/one.qnn", d + "/two.qnn", same);
    MESSAGE(model << ": largest relative difference one process vs two ranks: " << rel);
    // Same arithmetic up to the order of the batch sums: a handful of ulps,
    // grown by one epoch of Adam steps. A wrong split (per-rank batch-norm
    // statistics, a missing 1/2, correlated dropout masks) gives ~1e-1.
    CHECK(rel < 1e-3);
    // Only rank 0 prints: one test-accuracy line.
    size_t lines = 0;
    for (size_t at = 0; (at = two.out.find("test accuracy", at)) != std::string::npos; ++at) ++lines;
    CHECK(lines == 1);
    // Reproducible: a second two-rank run gives the same bits.
    const Run again = run(kMpirun + train_args(d + "/again.qnn", m + " --dist mpi"));
    REQUIRE_MESSAGE(again.status == 0, again.out);
    bool again_same = false;
    max_rel_diff(d + "/two.qnn", d + "/again.qnn", again_same);
    CHECK(again_same);
  }
  fs::remove_all(d);
}

TEST_CASE("dist: a --batch that the ranks cannot split evenly is refused with a message naming --batch") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  const Run r = run(kMpirun + train_args(d + "/x.qnn", "--dist mpi --batch 51"));
  CHECK(r.status != 0);
  CHECK_MESSAGE(r.out.find("--batch 51 is not a multiple of the 2 MPI ranks") != std::string::npos, r.out);
  fs::remove_all(d);
}
