// apps/bench_cnn.cpp — end-to-end inference speed of CNN exports: FP32 vs BNN.
//
//   build/apps/bench_cnn                          # BinaryNet width 0.5, random weights
//   build/apps/bench_cnn --arch cnv --width 1 --threads 2 --json bench.json
//   build/apps/bench_cnn --threads 1 --profile    # + per-layer batch-1 times
//
// Builds the CNN of apps/common/cnn.h (cifar_cnn's models: --arch, --width,
// --fc) full precision and binarized, with random weights and batch-norm
// statistics (speed does not depend on them), exports both (.qnnx version 4,
// layers/quant/export.h) and times the packed runner from uint8 pixels to
// logits at batch 1 and at --big-batch (default 100): images/s, the median of
// --reps timed repetitions after one warm-up, each running batches for at
// least --min-time seconds. Also prints the file sizes against the FP32
// checkpoint (core/serialize.h, what cifar_cnn --save writes) and checks on
// one batch that each runner's logits equal the framework's eval logits bit
// for bit.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <unistd.h>

#include "apps/common/bench_util.h"
#include "apps/common/cli_main.h"
#include "apps/common/cnn.h"
#include "apps/common/flags.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/serialize.h"
#include "data/dataset.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/sgemm.h"
#include "layers/batchnorm.h"
#include "layers/quant/export.h"

using namespace qnn;
using json = nlohmann::json;
namespace k = qnn::kernels;

namespace {

struct Options {
  std::string arch = "binarynet";
  float width = 0.5f;
  int64_t fc = -1;
  int threads = 0;
  int reps = 5;
  double min_time = 0.3;
  int64_t big_batch = 100;
  uint64_t seed = 1;
  std::string json_path;
  bool profile = false;
};

// Median images/s of the runner at batch b.
double time_runner(k::PackedRunner& r, const std::vector<uint8_t>& px, int64_t D, int64_t b, const Options& o) {
  const int64_t pool = (int64_t)px.size() / D;
  std::vector<float> out((size_t)(b * r.model().num_classes()));
  r.logits_u8(px.data(), b, out.data());  // warm-up
  std::vector<double> ips;
  for (int rep = 0; rep < o.reps; ++rep) {
    int64_t images = 0, off = 0;
    const double t0 = app::now_s();
    double t;
    do {
      if (off + b > pool) off = 0;
      r.logits_u8(px.data() + off * D, b, out.data());
      off += b, images += b;
      t = app::now_s() - t0;
    } while (t < o.min_time);
    ips.push_back((double)images / t);
  }
  std::sort(ips.begin(), ips.end());
  return ips[ips.size() / 2];
}

// Per-layer milliseconds per batch-1 call (PackedRunner::set_profile: CPU time
// of the calling thread, so use --threads 1): the minimum over --reps rounds
// of each layer's mean over a round of --min-time seconds — minima, since on
// a shared machine a layer is only ever slowed down (caches, memory bus).
std::vector<double> profile_runner(k::PackedRunner& r, const std::vector<uint8_t>& px, int64_t D, const Options& o) {
  const int64_t pool = (int64_t)px.size() / D, nl = (int64_t)r.model().layers.size();
  std::vector<float> out((size_t)r.model().num_classes());
  std::vector<double> best((size_t)nl, 1e30);
  for (int rep = 0; rep < o.reps; ++rep) {
    r.set_profile(true);
    int64_t calls = 0;
    const double t0 = app::now_s();
    do {
      r.logits_u8(px.data() + (calls % pool) * D, 1, out.data());
      ++calls;
    } while (app::now_s() - t0 < o.min_time);
    for (int64_t i = 0; i < nl; ++i)
      best[(size_t)i] = std::min(best[(size_t)i], 1e3 * r.layer_seconds()[(size_t)i] / (double)calls);
  }
  r.set_profile(false);
  return best;
}

std::string layer_label(const k::PackedLayer& L) {
  char b[160];
  const k::SpatialGeom& g = L.geom;
  if (L.type == k::LayerType::max_pool)
    std::snprintf(b, sizeof b, "%s %s %lldx%lldx%lld /%lld", k::layer_type_name(L.type), k::layer_input_name(L.input),
                  (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.pool_k);
  else if (L.spatial())
    std::snprintf(b, sizeof b, "%s %s %lldx%lldx%lld -> %lld k%lld%s%s", k::layer_type_name(L.type),
                  k::layer_input_name(L.input), (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.O,
                  (long long)g.K, g.pool_k > 0 ? " +pool" : "", L.sign_out ? " +sign" : "");
  else
    std::snprintf(b, sizeof b, "%s %s %lld -> %lld%s", k::layer_type_name(L.type), k::layer_input_name(L.input),
                  (long long)L.in, (long long)L.out, L.sign_out ? " +sign" : "");
  return b;
}

bool same_logits(Module& m, k::PackedRunner& r, const std::vector<uint8_t>& px, int64_t n, const app::CnnConfig& c) {
  const int64_t D = c.in_channels * c.image * c.image;
  std::vector<float> x((size_t)(n * D));
  for (size_t i = 0; i < x.size(); ++i) x[i] = scale_pixel(px[i], PixelScale::OddOver256);
  NoGradGuard ng;
  m.eval();
  Tensor y = m.forward(Tensor::from_data({n, c.in_channels, c.image, c.image}, x.data()));
  std::vector<float> out((size_t)(n * r.model().num_classes()));
  r.logits_u8(px.data(), n, out.data());
  return std::memcmp(out.data(), y.data(), out.size() * sizeof(float)) == 0;
}

int run(const Options& o) {
  const int threads = o.threads > 0 ? o.threads : (int)std::max(1u, std::thread::hardware_concurrency());
  k::set_num_threads(threads);
  std::printf("# qnn bench_cnn | %s | kernels %s | threads %d\n", k::blas_info(), k::isa_name(k::active_isa()), threads);
  const std::string tmp = (std::filesystem::temp_directory_path() / ("qnn_bench_cnn_" + std::to_string(::getpid()))).string();
  json results = json::array();
  json sizes;
  json profile = json::array();
  std::mt19937 g((unsigned)o.seed);
  const int64_t D = 3 * 32 * 32, pool = std::max<int64_t>(o.big_batch, 200);
  std::vector<uint8_t> px((size_t)(pool * D));
  for (auto& v : px) v = (uint8_t)(g() & 0xFF);
  int64_t ckpt_bytes = 0;
  for (const std::string model : {"fp", "bnn"}) {
    app::CnnConfig c;
    c.model = model;
    c.arch = o.arch;
    c.width = o.width;
    c.fc = o.fc;
    app::resolve_cnn_defaults(c);
    Rng rng(o.seed);
    auto m = app::build_cnn(c, rng);
    app::random_bn(*m, rng);
    m->train(false);
    if (model == "fp") {
      save_tensors(tmp + ".ckpt", m->state());
      ckpt_bytes = (int64_t)std::filesystem::file_size(tmp + ".ckpt");
      std::filesystem::remove(tmp + ".ckpt");
    }
    ExportOptions eo;
    eo.input_dims = {3, 32, 32};
    eo.input_scale = k::InputScale::odd_over_256;
    const int64_t bytes = export_model_file(*m, tmp + ".qnnx", eo);
    k::PackedRunner r(k::PackedModel::load(tmp + ".qnnx"));
    std::filesystem::remove(tmp + ".qnnx");
    const bool exact = same_logits(*m, r, px, 8, c);
    sizes[model + "_qnnx_bytes"] = bytes;
    std::printf("%s %s width %g: .qnnx %lld bytes; runner logits %s the framework's\n", model.c_str(), o.arch.c_str(),
                (double)o.width, (long long)bytes, exact ? "equal (bit for bit)" : "DIFFER from");
    for (int64_t b : {int64_t(1), o.big_batch}) {
      const double ips = time_runner(r, px, D, b, o);
      std::printf("  %-4s runner  batch %-5lld %10.1f images/s\n", model.c_str(), (long long)b, ips);
      results.push_back({{"model", model}, {"batch", b}, {"images_per_s", ips}, {"exact", exact}});
    }
    if (o.profile) {
      const std::vector<double> ms = profile_runner(r, px, D, o);
      double total = 0;
      for (double v : ms) total += v;
      std::printf("  %s batch-1 profile (ms per image, min over %d rounds; total %.3f ms = %.0f images/s):\n",
                  model.c_str(), o.reps, total, 1e3 / total);
      for (size_t i = 0; i < ms.size(); ++i) {
        const std::string what = layer_label(r.model().layers[i]);
        std::printf("    %2zu  %-46s %8.3f ms %5.1f %%\n", i, what.c_str(), ms[i], 100.0 * ms[i] / total);
        profile.push_back({{"model", model}, {"layer", i}, {"what", what}, {"ms", ms[i]}});
      }
    }
  }
  sizes["fp32_checkpoint_bytes"] = ckpt_bytes;
  const double ratio = (double)ckpt_bytes / (double)sizes["bnn_qnnx_bytes"].get<int64_t>();
  std::printf("sizes: fp32 checkpoint %lld bytes, fp .qnnx %lld, bnn .qnnx %lld (1/%.1f of the checkpoint)\n",
              (long long)ckpt_bytes, (long long)sizes["fp_qnnx_bytes"].get<int64_t>(),
              (long long)sizes["bnn_qnnx_bytes"].get<int64_t>(), ratio);
  auto ips_of = [&](const std::string& m, int64_t b) {
    for (auto& r : results)
      if (r["model"] == m && r["batch"] == b) return r["images_per_s"].get<double>();
    return 0.0;
  };
  for (int64_t b : {int64_t(1), o.big_batch})
    std::printf("bnn / fp runner speed-up at batch %lld: %.1fx\n", (long long)b, ips_of("bnn", b) / ips_of("fp", b));
  if (!o.json_path.empty()) {
    json out{{"arch", o.arch},  {"width", o.width},     {"threads", threads},      {"reps", o.reps},
             {"min_time", o.min_time}, {"isa", k::isa_name(k::active_isa())}, {"results", results}, {"sizes", sizes}};
    if (o.profile) out["profile"] = profile;
    write_file_atomic(o.json_path, out.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App cli{"Inference speed of CNN exports (cifar_cnn's models, random weights): FP32 vs BNN through the packed "
               "runner at batch 1 and --big-batch; file sizes vs the FP32 checkpoint."};
  cli.add_option("--arch", o.arch, "binarynet | cnv")->capture_default_str()->check(app::one_of({"binarynet", "cnv"}));
  cli.add_option("--width", o.width, "conv channel multiplier, in (0, 4]")
      ->capture_default_str()
      ->check(app::number_in(0, 4, true, false, "a number in (0, 4]"));
  cli.add_option("--fc", o.fc, "hidden FC width (default: the arch's)")->check(app::integer_in(1, 65536, "1..65536"));
  cli.add_option("--threads", o.threads, "OpenMP / BLAS threads (default: all cores)")
      ->check(app::integer_in(1, 1024, "an integer in [1, 1024]"));
  cli.add_option("--reps", o.reps, "timed repetitions (median)")->capture_default_str()->check(app::integer_in(1, 100, "1..100"));
  cli.add_option("--min-time", o.min_time, "seconds per repetition")
      ->capture_default_str()
      ->check(app::number_in(0, 60, true, false, "in (0, 60]"));
  cli.add_option("--big-batch", o.big_batch, "the large batch")
      ->capture_default_str()
      ->check(app::integer_in(2, 10000, "an integer in [2, 10000]"));
  cli.add_option("--seed", o.seed, "random weights' seed")->capture_default_str();
  cli.add_option("--json", o.json_path, "write the results as JSON");
  cli.add_flag("--profile", o.profile,
               "also time each layer at batch 1 (CPU ms per image of the calling thread: use with --threads 1; JSON "
               "\"profile\": {model, layer, what, ms})");
  return app::parse_and_run(cli, argc, argv, "bench_cnn", [&] { return run(o); });
}
