// apps/qnn_infer.cpp — run an exported model (.qnnx, kernels/packed_model.h)
// on the MNIST / Fashion-MNIST (IDX files) or CIFAR-10 / SVHN (any layout
// data/images.h reads) test set: test accuracy and images/s.
//
//   build/apps/cifar_cnn --model bnn --normalize off --export /tmp/cnn.qnnx
//   build/apps/qnn_infer /tmp/cnn.qnnx --data datasets/cifar10
//   build/apps/mnist_mlp --model bnn --epochs 1 --export /tmp/bnn.qnnx
//   build/apps/qnn_infer /tmp/bnn.qnnx --batch 1
//   build/apps/mnist_mlp --model qnn --wbits 2 --abits 2 --epochs 1 --export /tmp/qnn.qnnx
//   build/apps/qnn_infer /tmp/qnn.qnnx --data datasets/mnist
//
// Which data. A model exported with metadata (apps/common/model_meta.h)
// names the data set it was trained on; that is the default --dataset (and
// --data datasets/<dataset>). Data that does not match the model — another
// data set, input shape or class count — is refused with both named, unless
// --allow-mismatch. MNIST and Fashion-MNIST files look alike, so with --data
// alone the data set is taken from the directory's name when it is "mnist"
// or "fashion-mnist", else assumed to be the model's. Files exported before
// metadata existed run as before (default mnist), with a one-line note.
//
// The images go in as the raw uint8 pixels of the IDX file; the runner scales
// them as the model was trained (its header says how). The logits are the
// training framework's, bit for bit, so the accuracy printed here equals the
// test accuracy mnist_mlp reported — for fp and k-bit (qnn) models, whose
// first layer is a float product (sgemm), at mnist_mlp's evaluation batch
// (1000, the default here) and thread count; for a BNN at any batch. Timing:
// --reps passes over the test set after one warm-up pass, median images/s;
// every pass must give the same predictions. There is no randomness, hence
// no --seed.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "apps/common/cli_main.h"
#include "apps/common/flags.h"
#include "apps/common/model_meta.h"
#include "core/fileio.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/images.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/sgemm.h"

using namespace qnn;
using json = nlohmann::json;
namespace k = qnn::kernels;

namespace {

const std::vector<std::string> kDatasets = {"mnist", "fashion-mnist", "cifar10", "svhn"};
bool image_dataset(const std::string& d) { return d == "cifar10" || d == "svhn"; }

struct Options {
  std::string model_path;
  std::optional<std::string> dataset;  // default: the model's (metadata), else mnist
  std::optional<std::string> data;     // default: datasets/<dataset>
  bool allow_mismatch = false;
  int64_t batch = 1000;
  std::optional<int> threads;  // default: all cores
  int reps = 3;
  std::optional<int64_t> limit;
  std::string policy = "auto";
  std::string json_path;
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string fmt_g(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", (double)v);
  return b;
}

std::string layer_line(size_t i, const k::PackedLayer& L) {
  const bool lv = L.levels();
  std::string in = k::layer_input_name(L.input);
  if (lv && L.input != k::LayerInput::real)
    in += "(" + std::to_string(L.in_bits) + "-bit, a=" + fmt_g(L.in_alpha) + ")";
  std::string s = std::to_string(i) + "  " + k::layer_type_name(L.type) + "  " + std::to_string(L.in) + " -> " +
                  std::to_string(L.out) + "  in=" + in + "  " + std::to_string(L.weight_bits()) + "-bit weights" +
                  (lv ? " (a=" + fmt_g(L.w_alpha) + ")" : std::string()) + "  ";
  if (L.spatial()) {
    const k::SpatialGeom& g = L.geom;
    s = std::to_string(i) + "  " + k::layer_type_name(L.type) + "  " + std::to_string(g.C) + "x" + std::to_string(g.H) +
        "x" + std::to_string(g.W) + " -> " + std::to_string(L.out_channels()) + "x" + std::to_string(L.out_h()) + "x" +
        std::to_string(L.out_w()) + "  in=" + in + "  ";
    if (L.type != k::LayerType::max_pool)
      s += std::to_string(g.K) + "x" + std::to_string(g.K) + " stride " + std::to_string(g.stride) + " pad " +
           std::to_string(g.pad) + (g.pad > 0 ? (g.pad_one ? " (+1)" : " (0)") : "") + "  " +
           std::to_string(L.weight_bits()) + "-bit weights  ";
    if (g.pool_k > 0) s += "max-pool " + std::to_string(g.pool_k) + "/" + std::to_string(g.pool_s) + "  ";
    if (L.type == k::LayerType::max_pool) return s;
  }
  if (L.sign_out)
    s += "-> sign (integer thresholds)";
  else
    s += std::string("-> float") + (L.bias.empty() ? "" : " +bias") + (L.affine ? " +bn" : "") + (L.relu ? " +relu" : "");
  return s;
}

// The data set a --data directory holds, judged by its name (datasets/mnist,
// datasets/fashion-mnist as scripts/fetch_data.sh lays them out); "" if the
// name does not say.
std::string dataset_of_dir(const std::string& dir) {
  std::filesystem::path p(dir);
  std::string last = p.filename().string();
  if (last.empty()) last = p.parent_path().filename().string();  // "datasets/mnist/"
  return std::find(kDatasets.begin(), kDatasets.end(), last) != kDatasets.end() ? last : "";
}

int run(Options& o) {
  // The model first: its metadata decides the default data set.
  QNN_CHECK(std::filesystem::is_regular_file(o.model_path),
            "model file '" + o.model_path + "' does not exist (or is not a file)");
  k::PackedModel pm = k::PackedModel::load(o.model_path);
  const int64_t file_bytes = (int64_t)std::filesystem::file_size(o.model_path);
  QNN_CHECK(pm.input_scale != k::InputScale::none,
            "'" + o.model_path + "' takes float input (no pixel scaling); qnn_infer feeds uint8 images");
  const json meta = app::parse_model_meta(pm.meta, "'" + o.model_path + "'");
  const std::string trained_on = app::meta_dataset(meta);

  // Which data set the user's data is: --dataset, else the --data directory's
  // name, else the model's (the files cannot tell MNIST from Fashion-MNIST).
  std::string dataset, dataset_source;
  if (o.dataset) {
    dataset = *o.dataset, dataset_source = "--dataset";
  } else if (o.data && !dataset_of_dir(*o.data).empty()) {
    dataset = dataset_of_dir(*o.data), dataset_source = "the name of --data " + *o.data;
  } else if (std::find(kDatasets.begin(), kDatasets.end(), trained_on) != kDatasets.end()) {
    dataset = trained_on, dataset_source = o.data ? "assumed: the model's (--dataset to say otherwise)" : "the model's";
  } else {
    dataset = "mnist", dataset_source = trained_on.empty() ? "default (the model has no metadata)"
                                                           : "default (the model's data set '" + trained_on +
                                                                 "' is not one qnn_infer reads)";
  }
  const std::string data_dir = o.data ? *o.data : "datasets/" + dataset;

  const int threads = o.threads ? *o.threads : (int)std::max(1u, std::thread::hardware_concurrency());
  k::set_num_threads(threads);

  std::printf("# qnn_infer | %s | kernels %s | threads %d\n", k::blas_info(), k::isa_name(k::active_isa()), threads);
  std::printf("# model %s: %s, %zu layers, %lld bytes (%.3f MiB), input scaling %s\n", o.model_path.c_str(),
              pm.kind().c_str(), pm.layers.size(), (long long)file_bytes, file_bytes / 1048576.0,
              k::input_scale_name(pm.input_scale));
  std::printf("# trained on: %s\n", app::describe_model_meta(meta).c_str());
  if (meta.is_object() && meta.contains("arch")) std::printf("# arch %s\n", meta["arch"].dump().c_str());
  for (size_t i = 0; i < pm.layers.size(); ++i) std::printf("#   %s\n", layer_line(i, pm.layers[i]).c_str());
  std::printf("# weights: %lld, stored in %lld bytes (%.2f bits per weight; fp32: %lld bytes)\n",
              (long long)pm.weight_count(), (long long)(pm.weight_storage_bits() / 8),
              pm.weight_count() ? (double)pm.weight_storage_bits() / (double)pm.weight_count() : 0.0,
              (long long)(4 * pm.weight_count()));
  std::printf("# data %s: %s (%s)\n", data_dir.c_str(), dataset.c_str(), dataset_source.c_str());

  // Test images as raw bytes (the runner scales them as the model was trained).
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  std::string src;
  int64_t D = 0, n = 0;
  std::string meta_note;
  if (image_dataset(dataset)) {
    // CIFAR-10 / SVHN in any layout data/images.h reads; CHW uint8 samples.
    Dataset ds = load_image_dataset(data_dir, "test");
    src = data_dir + " (" + detect_image_layout(data_dir) + ")";
    meta_note = app::check_model_meta(meta, ds, dataset, o.allow_mismatch, "model '" + o.model_path + "'",
                                      "--allow-mismatch");
    D = shape_numel(ds.sample_shape);
    QNN_CHECK(D == pm.in_features(), "'" + o.model_path + "' takes " + std::to_string(pm.in_features()) +
                                         " inputs but the images in " + src + " are " + shape_str(ds.sample_shape));
    QNN_CHECK(pm.num_classes() >= ds.num_classes, "'" + o.model_path + "' has " + std::to_string(pm.num_classes()) +
                                                      " outputs; " + dataset + " has " +
                                                      std::to_string(ds.num_classes) + " classes");
    n = ds.size();
    pixels = std::move(ds.pixels);
    labels = std::move(ds.y);
  } else {
    const std::string img_path = find_idx(data_dir, "t10k-images-idx3-ubyte");
    const std::string lbl_path = find_idx(data_dir, "t10k-labels-idx1-ubyte");
    QNN_CHECK(!img_path.empty() && !lbl_path.empty(),
              data_dir + ": no t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte (raw or .gz); fetch them with "
              "scripts/fetch_data.sh " + dataset);
    IdxArray img = read_idx_images(img_path);
    D = img.shape[1] * img.shape[2];
    // The data as model_meta sees it: MNIST-format files hold 10 classes of
    // H x W images, which the MLPs take flattened.
    Dataset desc;
    desc.name = dataset + "/test";
    desc.sample_shape = {D};
    desc.num_classes = 10;
    desc.class_names = mnist_class_names_for(dataset);
    meta_note =
        app::check_model_meta(meta, desc, dataset, o.allow_mismatch, "model '" + o.model_path + "'", "--allow-mismatch");
    // Checked even with --allow-mismatch: the runner cannot take other sizes.
    QNN_CHECK(D == pm.in_features(), "'" + o.model_path + "' takes " + std::to_string(pm.in_features()) +
                                         " inputs but the images in " + img_path + " have " + std::to_string(D) +
                                         " pixels");
    QNN_CHECK(pm.num_classes() >= 10, "'" + o.model_path + "' has " + std::to_string(pm.num_classes()) +
                                          " outputs; " + dataset + " has 10 classes");
    IdxArray lbl = read_idx_labels(lbl_path, (int)pm.num_classes());
    n = img.shape[0];
    QNN_CHECK(lbl.shape[0] == n, lbl_path + " has " + std::to_string(lbl.shape[0]) + " labels but " + img_path +
                                     " has " + std::to_string(n) + " images");
    pixels.assign(img.data.begin(), img.data.end());
    labels.resize((size_t)n);
    for (int64_t i = 0; i < n; ++i) labels[(size_t)i] = (int32_t)lbl.data[(size_t)i];
    src = img_path;
  }
  if (o.limit) n = std::min(n, *o.limit);
  std::printf("# test images %s: %lld, batch %lld\n", src.c_str(), (long long)n, (long long)o.batch);
  k::PackedRunner runner(std::move(pm));
  runner.set_thread_policy(o.policy == "all" ? k::ThreadPolicy::all
                           : o.policy == "one" ? k::ThreadPolicy::one
                                               : k::ThreadPolicy::adaptive);
  std::vector<int32_t> pred(n), first;
  auto pass = [&]() {
    const double t0 = now_seconds();
    for (int64_t i = 0; i < n; i += o.batch) {
      const int64_t b = std::min(o.batch, n - i);
      runner.predict_u8(pixels.data() + i * D, b, pred.data() + i);
    }
    return now_seconds() - t0;
  };
  pass();  // warm-up (caches, thread pool)
  first = pred;
  std::vector<double> secs;
  for (int r = 0; r < o.reps; ++r) {
    secs.push_back(pass());
    QNN_CHECK(pred == first, "predictions differ between passes (rep " + std::to_string(r + 1) + ")");
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += pred[i] == labels[(size_t)i];
  const double acc = n ? (double)correct / n : 0.0;
  std::vector<double> sorted = secs;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                       : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  const double ips = med > 0 ? n / med : 0;
  std::printf("test accuracy %.4f (%.2f%%) | %lld/%lld correct\n", acc, 100 * acc, (long long)correct, (long long)n);
  const int64_t c1 = runner.calls_one_thread(), cN = runner.calls_all_threads();
  std::printf("speed: %.0f images/s (batch %lld, up to %d threads, median of %d passes; %.3f ms per pass)\n", ips,
              (long long)o.batch, threads, o.reps, med * 1e3);
  std::printf("threads: policy %s; calls on 1 thread %lld, on %d threads %lld\n", o.policy.c_str(), (long long)c1,
              threads, (long long)cN);
  if (!o.json_path.empty()) {
    json out{{"model", o.model_path},
             {"model_kind", runner.model().kind()},
             {"model_meta", meta},
             {"weight_storage_bits", runner.model().weight_storage_bits()},
             {"file_bytes", file_bytes},
             {"layers", runner.model().layers.size()},
             {"dataset", dataset},
             {"data", src},
             {"meta_check", meta_note.empty() ? json("ok") : json(meta_note)},
             {"images", n},
             {"correct", correct},
             {"test_acc", acc},
             {"images_per_s", ips},
             {"batch", o.batch},
             {"threads", threads},
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
  CLI::App cli{
      "Run an exported .qnnx model (mnist_mlp / cifar_cnn --export) on the MNIST / Fashion-MNIST / CIFAR-10 / SVHN "
      "test set: test accuracy and images/s. The data set defaults to the one the model was trained on (stored in the file); mismatching data "
      "is refused unless --allow-mismatch. Deterministic: no randomness, so no --seed."};
  cli.add_option("model", o.model_path, "the .qnnx file (mnist_mlp --export)")->required();
  cli.add_option("--dataset", o.dataset, "the test data's data set (default: the model's, else mnist)")
      ->check(app::one_of(kDatasets));
  cli.add_option("--data", o.data,
                 "directory with the IDX files (MNIST-like) or the images (CIFAR-10 / SVHN, any layout of data/images.h) "
                 "(default: datasets/<dataset>)");
  cli.add_flag("--allow-mismatch", o.allow_mismatch,
               "run even if the data is not what the model was trained on (data set, input shape, classes)");
  cli.add_option("--batch", o.batch, "images per call")
      ->capture_default_str()
      ->check(app::integer_in(1, 1 << 20, "an integer in [1, 1048576]"));
  cli.add_option("--threads", o.threads, "OpenMP / BLAS threads (default: all cores)")
      ->check(app::integer_in(1, 1024, "an integer in [1, 1024]"));
  cli.add_option("--reps", o.reps, "timed passes over the test set (median reported)")
      ->capture_default_str()
      ->check(app::integer_in(1, 1000, "an integer in [1, 1000]"));
  cli.add_option("--limit", o.limit, "use only the first N test images (default: all)")
      ->check(app::integer_in(1, int64_t(1) << 40, "an integer >= 1"));
  cli.add_option("--thread-policy", o.policy,
                 "auto: time 1 vs all threads as it runs and keep the faster (shared machines); all; one")
      ->capture_default_str()
      ->check(app::one_of({"auto", "all", "one"}));
  cli.add_option("--json", o.json_path, "write the results as JSON (test_acc, images_per_s, dataset, model_meta, ...)");
  return app::parse_and_run(cli, argc, argv, "qnn_infer", [&] { return run(o); });
}
