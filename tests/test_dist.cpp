// tests/test_dist.cpp — one optimizer step over slices of the global batch
// (apps/common/dist.h): gradient accumulation (--micro-batches M) and
// data-parallel training (`mpirun -np P APP --dist mpi`) are the same
// computation, so `mpirun -np 2 APP --dist mpi --batch B` and
// `APP --batch B --micro-batches 2` must write the same checkpoint bytes
// (same --threads per process). The in-process tests check the accumulation
// itself (gradient sum order, batch-norm running statistics, generators);
// the mpirun tests are skipped, with the reason, when mpirun, an MPI build
// or MNIST is absent.
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
#include <vector>

#include "apps/common/dist.h"
#include "apps/common/train_loop.h"  // snapshot
#include "core/ops.h"
#include "core/rng.h"
#include "core/serialize.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "tests/imdb_test_util.h"

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
         " --limit-train 600 --val 100 --epochs 2 --hidden 64 --layers 1 --threads 1 --save " + save + " " +
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

// A tiny CIFAR-10 in the official binary layout: DIR/cifar-10-batches-bin/
// with 5 training batches of 60 images and a test batch of 100; each class
// has its own colour plus a little per-image texture.
void write_cifar_batch(const fs::path& p, int64_t n, int64_t first) {
  std::ofstream f(p, std::ios::binary);
  REQUIRE(f.good());
  for (int64_t i = first; i < first + n; ++i) {
    const int y = (int)(i % 10);
    std::vector<uint8_t> rec(3073);
    rec[0] = (uint8_t)y;
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 32; ++h)
        for (int w = 0; w < 32; ++w)
          rec[1 + c * 1024 + h * 32 + w] = (uint8_t)((y * 23 + c * 61 + ((h * 7 + w * 3 + (int)i * 13) % 40)) % 256);
    f.write((const char*)rec.data(), (std::streamsize)rec.size());
  }
  REQUIRE(f.good());
}

std::string write_cifar(const std::string& root) {
  const fs::path dir = fs::path(root) / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) write_cifar_batch(dir / ("data_batch_" + std::to_string(b) + ".bin"), 60, (b - 1) * 60);
  write_cifar_batch(dir / "test_batch.bin", 100, 1000);
  return root;
}

bool same_bytes(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  std::stringstream sa, sb;
  sa << fa.rdbuf();
  sb << fb.rdbuf();
  return fa.good() && fb.good() && !sa.str().empty() && sa.str() == sb.str();
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; ++at) ++n;
  return n;
}

}  // namespace

// ---- in one process: the accumulation itself ---------------------------------------

namespace {
std::vector<float> values(const Tensor& t) { return std::vector<float>(t.data(), t.data() + t.numel()); }
std::vector<float> grad_values(const Tensor& t) {
  return t.has_grad() ? std::vector<float>(t.grad_data(), t.grad_data() + t.numel()) : std::vector<float>{};
}
std::shared_ptr<Sequential> linear_bn(uint64_t seed) {
  Rng r(seed);
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Linear>(5, 3, r));
  m->add(std::make_shared<BatchNorm1d>(3));
  return m;
}
}  // namespace

TEST_CASE("micro-batches: gradient = slice 0's + slice 1's (each from zero, loss x rows/batch); running stats = the slices' mean") {
  REQUIRE(app::dist::size() == 1);
  Rng r(7);
  const Tensor x = Tensor::uniform({8, 5}, -1, 1, r);
  const std::vector<int32_t> y = {0, 1, 2, 0, 1, 2, 2, 1};
  auto rows = [&](int64_t b, int64_t e) {
    return std::make_pair(slice(x, 0, b, e), std::vector<int32_t>(y.begin() + b, y.begin() + e));
  };

  // Through the accumulator.
  auto m = linear_bn(3);
  m->train(true);
  app::dist::SliceAccumulator acc(*m, 2);
  acc.start_step(8);
  for (int k = 0; k < 2; ++k) {
    const auto [b, e] = acc.slice_rows(k);
    CHECK(b == 4 * k);
    CHECK(e == 4 * k + 4);
    acc.begin_slice(k);
    const auto [xs, ys] = rows(b, e);
    const Tensor loss = cross_entropy(m->forward(xs), ys);
    acc.scale_loss(loss, k).backward();
    acc.end_slice(k, loss.item(), 0);
  }
  const auto t = acc.finish();
  CHECK(t.rows == 8);

  // By hand, on an identical model: each slice from zero and from the
  // step's running statistics, summed in slice order.
  auto h = linear_bn(3);
  h->train(true);
  const NamedTensors start = app::snapshot(*h);
  std::vector<std::vector<float>> g[2], buf[2];
  double loss_sum = 0;
  for (int k = 0; k < 2; ++k) {
    NamedTensors st = h->state();
    assign_tensors(st, start, "start");
    h->zero_grad();
    const auto [xs, ys] = rows(4 * k, 4 * k + 4);
    const Tensor loss = cross_entropy(h->forward(xs), ys);
    loss_sum += (double)loss.item() * 4;
    mul_scalar(loss, 0.5f).backward();
    for (const Tensor& p : h->parameters()) g[k].push_back(grad_values(p));
    for (auto& [n, b] : h->named_buffers()) buf[k].push_back(values(b));
  }
  CHECK(t.loss == doctest::Approx(loss_sum / 8).epsilon(1e-12));
  const auto params = m->parameters();
  REQUIRE(params.size() == g[0].size());
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<float> got = grad_values(params[i]);
    REQUIRE(got.size() == g[0][i].size());
    for (size_t j = 0; j < got.size(); ++j) CHECK(got[j] == g[0][i][j] + g[1][i][j]);  // bit for bit
  }
  const auto bufs = m->named_buffers();
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::vector<float> got = values(bufs[i].second);
    for (size_t j = 0; j < got.size(); ++j)
      CHECK(got[j] == (float)(((double)buf[0][i][j] + (double)buf[1][i][j]) / 2.0));
  }
}

TEST_CASE("micro-batches: without batch norm the summed gradient is the whole batch's; dropout masks differ per slice") {
  Rng r(11);
  const Tensor x = Tensor::uniform({6, 5}, -1, 1, r);
  const std::vector<int32_t> y = {0, 1, 2, 1, 0, 2};
  Rng ra(5), rb(5);
  Linear a(5, 3, ra), b(5, 3, rb);
  // The whole batch at once.
  cross_entropy(b.forward(x), y).backward();
  // Three slices of two rows (x 1/3 each).
  app::dist::SliceAccumulator acc(a, 3);
  acc.start_step(6);
  for (int k = 0; k < 3; ++k) {
    acc.begin_slice(k);
    const Tensor loss = cross_entropy(a.forward(slice(x, 0, 2 * k, 2 * k + 2)),
                                      std::vector<int32_t>(y.begin() + 2 * k, y.begin() + 2 * k + 2));
    acc.scale_loss(loss, k).backward();
    acc.end_slice(k, loss.item(), 0);
  }
  acc.finish();
  const auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto ga = grad_values(pa[i]), gb = grad_values(pb[i]);
    REQUIRE(ga.size() == gb.size());
    for (size_t j = 0; j < ga.size(); ++j) CHECK(ga[j] == doctest::Approx(gb[j]).epsilon(1e-5));
  }

  // Dropout: each slice draws its own mask (the same mask in every slice
  // would be correlated noise), and the draws repeat from the same state.
  auto masks = [](uint64_t seed) {
    Rng rr(seed);
    Dropout drop(0.5f, rr);
    drop.train(true);
    app::dist::SliceAccumulator acc2(drop, 2);
    acc2.start_step(4);
    std::vector<std::vector<float>> out;
    for (int k = 0; k < 2; ++k) {
      acc2.begin_slice(k);
      out.push_back(values(drop.forward(Tensor::ones({2, 64}))));
      acc2.end_slice(k, 0.f, 0);
    }
    acc2.finish();
    out.push_back(values(drop.forward(Tensor::ones({2, 64}))));  // the next step's draw
    return out;
  };
  const auto m1 = masks(9), m2 = masks(9);
  CHECK(m1[0] != m1[1]);
  CHECK(m1 == m2);
}

TEST_CASE("dist: mpirun -np 2 --dist mpi writes the bytes one process writes with --micro-batches 2") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  // Adam (the default) and 2 epochs: Adam divides each gradient by its own
  // running size, so any difference in rounding (a gradient summed in
  // another order) grows into visibly different weights; only the same
  // operations in the same order give the same bytes. fp has dropout
  // (masks per slice); bnn has batch norm after every layer (statistics
  // per slice, running statistics averaged over the slices).
  for (const std::string model : {"bnn", "fp"}) {
    CAPTURE(model);
    const std::string m = " --batch 50 --model " + model;
    const Run one = run(train_args(d + "/one.qnn", m + " --micro-batches 2 --json " + d + "/one.json"));
    REQUIRE_MESSAGE(one.status == 0, one.out);
    const Run two = run(kMpirun + train_args(d + "/two.qnn", m + " --dist mpi --json " + d + "/two.json"));
    REQUIRE_MESSAGE(two.status == 0, two.out);
    CHECK(same_bytes(d + "/one.qnn", d + "/two.qnn"));
    bool same = false;
    const double rel = max_rel_diff(d + "/one.qnn", d + "/two.qnn", same);
    CHECK_MESSAGE(same, "largest relative difference --micro-batches 2 vs two ranks: " << rel);
    // Only rank 0 prints: one test-accuracy line, one "# saved".
    CHECK(count(two.out, "test accuracy") == 1);
    CHECK(count(two.out, "# saved") == 1);
    // The slicing is part of the run's config (so --resume checks it), the same in both.
    std::ifstream j1(d + "/one.json"), j2(d + "/two.json");
    std::stringstream s1, s2;
    s1 << j1.rdbuf();
    s2 << j2.rdbuf();
    CHECK(s1.str().find("\"batch_slices\": 2") != std::string::npos);
    CHECK(s2.str().find("\"batch_slices\": 2") != std::string::npos);
  }
  // Slicing is not a no-op: per-slice batch norm is another model than the
  // whole batch's (so the equality above is not the trivial one).
  const std::string m = " --batch 50 --model bnn";
  const Run whole = run(train_args(d + "/whole.qnn", m));
  REQUIRE_MESSAGE(whole.status == 0, whole.out);
  CHECK_FALSE(same_bytes(d + "/whole.qnn", d + "/one.qnn"));
  fs::remove_all(d);
}

TEST_CASE("dist: mpirun -np 2 on one host (shared memory, sharded optimizer) equals the collective path, optimizer state included") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  // The default on one host: every rank sums and updates half of the
  // parameters, then they swap halves. QNN_DIST_SHM=0: MPI_Allreduce and a
  // whole update on every rank. Same model; and the run-state checkpoint
  // of rank 0 must hold the whole optimizer state (its moments completed by
  // the other rank at the end of each epoch), else a resumed run differs.
  const std::string m = " --batch 50 --model bnn --dist mpi";
  const Run shm = run(kMpirun + train_args(d + "/shm.qnn", m + " --checkpoint " + d + "/shm.ckpt"));
  REQUIRE_MESSAGE(shm.status == 0, shm.out);
  CHECK_MESSAGE(shm.out.find("optimizer step sharded") != std::string::npos, shm.out);
  const Run col = run("QNN_DIST_SHM=0 " + kMpirun + train_args(d + "/col.qnn", m + " --checkpoint " + d + "/col.ckpt"));
  REQUIRE_MESSAGE(col.status == 0, col.out);
  CHECK_MESSAGE(col.out.find("MPI_Allreduce") != std::string::npos, col.out);
  CHECK(same_bytes(d + "/shm.qnn", d + "/col.qnn"));
  const NamedTensors a = load_tensors(d + "/shm.ckpt"), b = load_tensors(d + "/col.ckpt");
  REQUIRE(a.size() == b.size());
  int moments = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    REQUIRE(a[i].first == b[i].first);
    REQUIRE(a[i].second.numel() == b[i].second.numel());
    CHECK(std::equal(a[i].second.data(), a[i].second.data() + a[i].second.numel(), b[i].second.data()));
    moments += a[i].first.find("exp_avg_sq") != std::string::npos;
  }
  CHECK(moments >= 2);  // Adam's moments are in the file, and were compared
  fs::remove_all(d);
}

TEST_CASE("dist: mpirun -np 2 cifar_cnn --dist mpi (augmentation on) equals --micro-batches 2") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  const std::string data = write_cifar(d + "/cifar");
  const std::string args = std::string(QNN_CIFAR_CNN_BIN) + " --data " + data +
                           " --width 0.125 --limit-train 200 --val 40 --epochs 2 --batch 40 --threads 1 --model bnn";
  const Run one = run(args + " --micro-batches 2 --save " + d + "/one.qnn");
  REQUIRE_MESSAGE(one.status == 0, one.out);
  const Run two = run(kMpirun + args + " --dist mpi --save " + d + "/two.qnn");
  REQUIRE_MESSAGE(two.status == 0, two.out);
  CHECK(same_bytes(d + "/one.qnn", d + "/two.qnn"));
  fs::remove_all(d);
}

TEST_CASE("dist: mpirun -np 2 imdb_lstm --dist mpi (1-bit QuantLSTM) equals --micro-batches 2") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  std::ofstream(d + "/reviews.json") << qnn::test::tiny_reviews(40);  // 40 + 40: 20 + 20 train, 20 + 20 test
  const std::string args = std::string(QNN_IMDB_LSTM_BIN) + " --data " + d +
                           " --model qnn --wbits 1 --abits 1 --hidden 8 --vocab 40 --maxlen 12 --val 8 --epochs 2"
                           " --batch 8 --threads 1";
  const Run one = run(args + " --micro-batches 2 --save " + d + "/one.qnn");
  REQUIRE_MESSAGE(one.status == 0, one.out);
  const Run two = run(kMpirun + args + " --dist mpi --save " + d + "/two.qnn");
  REQUIRE_MESSAGE(two.status == 0, two.out);
  CHECK(two.out.find("shared memory, optimizer step sharded") != std::string::npos);
  CHECK(same_bytes(d + "/one.qnn", d + "/two.qnn"));
  fs::remove_all(d);
}

TEST_CASE("dist: --micro-batches that --batch cannot split evenly is refused, naming both flags") {
  std::string why;
  if (skip_reason(why)) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string d = tmp_dir();
  const Run r = run(kMpirun + train_args(d + "/x.qnn", "--dist mpi --batch 50 --micro-batches 2"));
  CHECK(r.status != 0);
  CHECK_MESSAGE(r.out.find("--batch 50 is not a multiple of the 2 MPI ranks x --micro-batches 2") != std::string::npos,
                r.out);
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
