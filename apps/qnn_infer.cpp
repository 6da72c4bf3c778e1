// apps/qnn_infer.cpp — run an exported model (.qnnx, kernels/packed_model.h)
// on the MNIST / Fashion-MNIST test set: test accuracy and images/s.
//
//   build/apps/mnist_mlp --model bnn --epochs 1 --export /tmp/bnn.qnnx
//   build/apps/qnn_infer /tmp/bnn.qnnx --data datasets/mnist --batch 1
//   build/apps/mnist_mlp --model qnn --wbits 2 --abits 2 --epochs 1 --export /tmp/qnn.qnnx
//   build/apps/qnn_infer /tmp/qnn.qnnx --data datasets/mnist
//
// The images go in as the raw uint8 pixels of the IDX file; the runner scales
// them as the model was trained (its header says how). The logits are the
// training framework's, bit for bit, so the accuracy printed here equals the
// test accuracy mnist_mlp reported — for fp and k-bit (qnn) models, whose
// first layer is a float product (sgemm), at mnist_mlp's evaluation batch
// (1000, the default here) and thread count; for a BNN at any batch. Timing:
// --reps passes over the test set after one warm-up pass, median images/s;
// every pass must give the same predictions.
#include <CLI/CLI.hpp>

#include "apps/common/cli_main.h"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "apps/common/mlp.h"
#include "core/fileio.h"
#include "data/idx.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/sgemm.h"

using namespace qnn;
using json = nlohmann::json;
namespace k = qnn::kernels;

namespace {

struct Options {
  std::string model_path;
  std::string dataset = "mnist";
  std::string data;  // default datasets/<dataset>
  int64_t batch = 1000;
  int threads = 0;
  int reps = 3;
  int64_t limit = -1;
  std::string policy = "auto";
  std::string json_path;
};

std::string fmt_g(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", (double)v);
  return b;
}

std::string layer_line(size_t i, const k::PackedLayer& L) {
  const bool lv = L.type == k::LayerType::dense_levels;
  std::string in = k::layer_input_name(L.input);
  if (lv && L.input != k::LayerInput::real)
    in += "(" + std::to_string(L.in_bits) + "-bit, a=" + fmt_g(L.in_alpha) + ")";
  std::string s = std::to_string(i) + "  " + k::layer_type_name(L.type) + "  " + std::to_string(L.in) + " -> " +
                  std::to_string(L.out) + "  in=" + in + "  " + std::to_string(L.weight_bits()) + "-bit weights" +
                  (lv ? " (a=" + fmt_g(L.w_alpha) + ")" : std::string()) + "  ";
  if (L.sign_out)
    s += "-> sign (integer thresholds)";
  else
    s += std::string("-> float") + (L.bias.empty() ? "" : " +bias") + (L.affine ? " +bn" : "") + (L.relu ? " +relu" : "");
  return s;
}

int run(Options& o) {
  if (o.data.empty()) o.data = "datasets/" + o.dataset;
  QNN_CHECK(o.dataset == "mnist" || o.dataset == "fashion-mnist",
            "--dataset must be mnist or fashion-mnist, got '" + o.dataset + "'");
  QNN_CHECK(o.batch > 0, "--batch must be positive");
  QNN_CHECK(o.reps >= 1, "--reps must be >= 1");
  if (o.threads <= 0) o.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  k::set_num_threads(o.threads);

  QNN_CHECK(std::filesystem::exists(o.model_path), "model file '" + o.model_path + "' does not exist");
  k::PackedModel pm = k::PackedModel::load(o.model_path);
  const int64_t file_bytes = (int64_t)std::filesystem::file_size(o.model_path);
  QNN_CHECK(pm.input_scale != k::InputScale::none,
            "'" + o.model_path + "' takes float input (no pixel scaling); qnn_infer feeds uint8 images");

  // Test images as raw bytes (the runner scales them as the model was trained).
  const std::string img_path = find_idx(o.data, "t10k-images-idx3-ubyte");
  const std::string lbl_path = find_idx(o.data, "t10k-labels-idx1-ubyte");
  QNN_CHECK(!img_path.empty() && !lbl_path.empty(),
            o.data + ": no t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte (raw or .gz); fetch them with "
            "scripts/fetch_data.sh " + o.dataset);
  IdxArray img = read_idx_images(img_path);
  IdxArray lbl = read_idx_labels(lbl_path, (int)pm.num_classes());
  int64_t n = img.shape[0];
  const int64_t D = img.shape[1] * img.shape[2];
  QNN_CHECK(lbl.shape[0] == n, lbl_path + " has " + std::to_string(lbl.shape[0]) + " labels but " + img_path +
                                   " has " + std::to_string(n) + " images");
  QNN_CHECK(D == pm.in_features(), "'" + o.model_path + "' takes " + std::to_string(pm.in_features()) +
                                       " inputs but the images have " + std::to_string(D) + " pixels");
  if (o.limit > 0) n = std::min(n, o.limit);

  std::printf("# qnn_infer | %s | kernels %s | threads %d\n", k::blas_info(), k::isa_name(k::active_isa()), o.threads);
  std::printf("# model %s: %s, %zu layers, %lld bytes (%.3f MiB), input scaling %s\n", o.model_path.c_str(),
              pm.kind().c_str(), pm.layers.size(), (long long)file_bytes, file_bytes / 1048576.0,
              k::input_scale_name(pm.input_scale));
  for (size_t i = 0; i < pm.layers.size(); ++i) std::printf("#   %s\n", layer_line(i, pm.layers[i]).c_str());
  std::printf("# weights: %lld, stored in %lld bytes (%.2f bits per weight; fp32: %lld bytes)\n",
              (long long)pm.weight_count(), (long long)(pm.weight_storage_bits() / 8),
              pm.weight_count() ? (double)pm.weight_storage_bits() / (double)pm.weight_count() : 0.0,
              (long long)(4 * pm.weight_count()));
  std::printf("# data %s: %lld test images, batch %lld\n", img_path.c_str(), (long long)n, (long long)o.batch);

  k::PackedRunner runner(std::move(pm));
  QNN_CHECK(o.policy == "auto" || o.policy == "all" || o.policy == "one",
            "--thread-policy must be auto, all or one, got '" + o.policy + "'");
  runner.set_thread_policy(o.policy == "all" ? k::ThreadPolicy::all
                           : o.policy == "one" ? k::ThreadPolicy::one
                                               : k::ThreadPolicy::adaptive);
  std::vector<int32_t> pred(n), first;
  auto pass = [&]() {
    const double t0 = app::now_seconds();
    for (int64_t i = 0; i < n; i += o.batch) {
      const int64_t b = std::min(o.batch, n - i);
      runner.predict_u8(img.data.data() + i * D, b, pred.data() + i);
    }
    return app::now_seconds() - t0;
  };
  pass();  // warm-up (caches, thread pool)
  first = pred;
  std::vector<double> secs;
  for (int r = 0; r < o.reps; ++r) {
    secs.push_back(pass());
    QNN_CHECK(pred == first, "predictions differ between passes (rep " + std::to_string(r + 1) + ")");
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += pred[i] == (int32_t)lbl.data[i];
  const double acc = n ? (double)correct / n : 0.0;
  std::vector<double> sorted = secs;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                       : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  const double ips = med > 0 ? n / med : 0;
  std::printf("test accuracy %.4f (%.2f%%) | %lld/%lld correct\n", acc, 100 * acc, (long long)correct, (long long)n);
  const int64_t c1 = runner.calls_one_thread(), cN = runner.calls_all_threads();
  std::printf("speed: %.0f images/s (batch %lld, up to %d threads, median of %d passes; %.3f ms per pass)\n", ips,
              (long long)o.batch, o.threads, o.reps, med * 1e3);
  std::printf("threads: policy %s; calls on 1 thread %lld, on %d threads %lld\n", o.policy.c_str(), (long long)c1,
              o.threads, (long long)cN);
  if (!o.json_path.empty()) {
    json out{{"model", o.model_path},
             {"model_kind", runner.model().kind()},
             {"weight_storage_bits", runner.model().weight_storage_bits()},
             {"file_bytes", file_bytes},
             {"layers", runner.model().layers.size()},
             {"data", img_path},
             {"images", n},
             {"correct", correct},
             {"test_acc", acc},
             {"images_per_s", ips},
             {"batch", o.batch},
             {"threads", o.threads},
             {"thread_policy", o.policy},
             {"calls_one_thread", c1},
             {"calls_all_threads", cN},
             {"reps", o.reps},
             {"seconds_per_pass", secs},
             {"isa", k::isa_name(k::active_isa())}};
    write_file_atomic(o.json_path, out.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App cli{"Run an exported .qnnx model (mnist_mlp --export) on the MNIST / Fashion-MNIST test set."};
  cli.add_option("model", o.model_path, "the .qnnx file")->required();
  cli.add_option("--dataset", o.dataset, "mnist | fashion-mnist")->capture_default_str();
  cli.add_option("--data", o.data, "directory with the IDX files (default: datasets/<dataset>)");
  cli.add_option("--batch", o.batch, "images per call")->capture_default_str();
  cli.add_option("--threads", o.threads, "OpenMP / BLAS threads (default: all cores)");
  cli.add_option("--reps", o.reps, "timed passes over the test set (median reported)")->capture_default_str();
  cli.add_option("--limit", o.limit, "use only the first N test images");
  cli.add_option("--thread-policy", o.policy,
                 "auto: time 1 vs all threads as it runs and keep the faster (shared machines); all; one")
      ->capture_default_str();
  cli.add_option("--json", o.json_path, "write the results as JSON (test_acc, images_per_s, ...)");
  return app::parse_and_run(cli, argc, argv, "qnn_infer", [&] { return run(o); });
}
