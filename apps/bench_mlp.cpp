// apps/bench_mlp.cpp — end-to-end inference speed: FP32 vs BNN (vs k-bit) MLP.
//
//   build/apps/bench_mlp                       # 784-2048x3-10, random weights
//   build/apps/bench_mlp --hidden 4096 --layers 3 --threads 2 --json bench.json
//   build/apps/bench_mlp --fp fp.ckpt --bnn bnn.ckpt   # trained checkpoints (mnist_mlp --save)
//   build/apps/bench_mlp --wbits 2 --abits 2   # also a k-bit (qnn) MLP
//
// In one run, images/s at batch 1 and at batch --big-batch (default 1000) of
//   fp32 framework : the autograd framework's eval path (NoGradGuard forward),
//   fp32 runner    : the same model exported (fp .qnnx) through kernels/packed_model,
//   bnn framework  : the BNN through the autograd framework (for reference),
//   bnn runner     : the BNN exported (bnn .qnnx) through the packed runner,
//   qnn framework / qnn runner : the same for a k-bit MLP (mnist_mlp --model
//                    qnn --wbits W --abits A), only with --wbits/--abits,
// from uint8 pixels to logits (the framework paths get floats scaled as in
// training; building the input Tensor is part of their time, as in any
// evaluation loop). Each figure is the median of --reps timed repetitions
// after one warm-up; a repetition runs batches for at least --min-time
// seconds. Speed does not depend on the weights, so random initialisation is
// the default; --fp/--bnn take trained checkpoints (QNNCKPT, loaded into the
// same architecture) or .qnnx files (used by the runner directly).
// Also: export file sizes vs the FP32 checkpoint, and whether the runners'
// logits equal the framework's bit for bit on a batch.
#include <CLI/CLI.hpp>

#include "apps/common/cli_main.h"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <unistd.h>

#include "apps/common/flags.h"
#include "apps/common/mlp.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/serialize.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/sgemm.h"
#include "layers/quant/export.h"

using namespace qnn;
using json = nlohmann::json;
namespace k = qnn::kernels;

namespace {

struct Options {
  int64_t hidden = 2048, layers = 3, in = 784, classes = 10;
  int threads = 0;
  int reps = 7;
  double min_time = 0.25;
  int64_t big_batch = 1000;
  std::string fp_path, bnn_path, qnn_path, json_path, out_dir;
  int wbits = 0, abits = 0;  // > 0: also a k-bit (qnn) model
  double torch_b1 = 465;  // PyTorch 1.13 FP32 MLP at batch 1 (/work/shared/peers/README.md)
  uint64_t seed = 1;
  bool skip_framework = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool has_magic(const std::string& path, const char* magic, size_t n) {
  std::ifstream f(path, std::ios::binary);
  QNN_CHECK(f.good(), "cannot open '" + path + "'");
  std::string head(n, '\0');
  f.read(head.data(), (std::streamsize)n);
  return f.gcount() == (std::streamsize)n && std::memcmp(head.data(), magic, n) == 0;
}

// A model for the framework and its packed form for the runner.
struct Pair {
  std::shared_ptr<Module> module;
  k::PackedModel packed;
  int64_t export_bytes = 0;
  std::string source = "random";
  bool comparable = true;  // the runner runs the framework model's weights
};

Pair make_pair(const std::string& kind, const Options& o, const std::string& file, const std::string& out_dir) {
  app::MlpConfig c;
  c.model = kind;
  c.hidden = o.hidden;
  c.layers = o.layers;
  c.in = o.in;
  c.classes = o.classes;
  if (kind == "qnn") c.wbits = o.wbits, c.abits = o.abits;
  app::resolve_defaults(c);
  Rng rng(o.seed + (kind == "bnn") + 2 * (kind == "qnn"));
  Pair p;
  p.module = app::build_mlp(c, rng);
  const std::string exp_path = out_dir + "/bench_" + kind + ".qnnx";
  if (!file.empty() && has_magic(file, "QNNX", 4)) {
    p.packed = k::PackedModel::load(file);
    p.export_bytes = (int64_t)std::filesystem::file_size(file);
    p.source = file + " (runner only; the framework path uses random weights)";
    p.comparable = false;
    QNN_CHECK(p.packed.kind() == kind, "'" + file + "' is a " + p.packed.kind() + " model, expected " + kind);
    return p;
  }
  if (!file.empty()) {
    NamedTensors st = p.module->state();
    assign_tensors(st, load_tensors(file), file);
    p.source = file;
  }
  ExportOptions eo;
  eo.input_dims = {o.in};
  p.export_bytes = export_model_file(*p.module, exp_path, eo);
  p.packed = k::PackedModel::load(exp_path);  // run what the file holds
  return p;
}

struct Result {
  double ips = 0;
  std::vector<double> reps;
};

// Repetitions of "run batches for >= min_time"; images/s per repetition.
Result time_it(const Options& o, int64_t batch, int64_t pool, const std::function<void(int64_t, int64_t)>& run) {
  Result r;
  int64_t off = 0;
  for (int rep = -1; rep < o.reps; ++rep) {
    const double t0 = app::now_seconds();
    double el = 0;
    int64_t done = 0;
    do {
      if (off + batch > pool) off = 0;
      run(off, batch);
      off += batch;
      done += batch;
      el = app::now_seconds() - t0;
    } while (el < o.min_time);
    if (rep >= 0) r.reps.push_back(done / el);
  }
  r.ips = median(r.reps);
  return r;
}

int run(Options& o) {
  QNN_CHECK(o.reps >= 5, "--reps must be >= 5 (medians of at least 5 repetitions)");
  QNN_CHECK(o.big_batch >= 1, "--big-batch must be positive");
  if (o.threads <= 0) o.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  k::set_num_threads(o.threads);
  if (o.out_dir.empty()) o.out_dir = std::filesystem::temp_directory_path().string();
  std::printf("# bench_mlp | %s | kernels %s | threads %d\n", k::blas_info(), k::isa_name(k::active_isa()),
              o.threads);
  std::string arch = std::to_string(o.in);
  for (int64_t l = 0; l < o.layers; ++l) arch += "-" + std::to_string(o.hidden);
  arch += "-" + std::to_string(o.classes);
  std::printf("# MLP %s, median of %d reps (>= %.2f s each)\n", arch.c_str(), o.reps, o.min_time);

  const bool with_qnn = o.wbits > 0 || o.abits > 0;
  QNN_CHECK(!with_qnn || (o.wbits > 0 && o.abits > 0), "--wbits and --abits go together (a k-bit model)");
  QNN_CHECK(with_qnn || o.qnn_path.empty(), "--qnn needs --wbits and --abits (the k-bit model's architecture)");
  Pair fp = make_pair("fp", o, o.fp_path, o.out_dir);
  Pair bnn = make_pair("bnn", o, o.bnn_path, o.out_dir);
  fp.module->eval();
  bnn.module->eval();
  Pair qnn;
  if (with_qnn) {
    qnn = make_pair("qnn", o, o.qnn_path, o.out_dir);
    qnn.module->eval();
    std::printf("# k-bit model: %d-bit weights, %d-bit activations (%s)\n", o.wbits, o.abits, qnn.source.c_str());
  }
  // The FP32 checkpoint (what --save writes) for the size comparison.
  const std::string ckpt = o.out_dir + "/bench_fp.ckpt";
  save_tensors(ckpt, fp.module->state());
  const int64_t ckpt_bytes = (int64_t)std::filesystem::file_size(ckpt);

  // Input pool: random pixels, or the test images of --data.
  const int64_t pool = std::max<int64_t>(o.big_batch, 2000);
  std::vector<uint8_t> px((size_t)(pool * o.in));
  std::mt19937 gen(7);
  for (auto& v : px) v = (uint8_t)(gen() & 0xFF);
  std::vector<float> xf(px.size());
  for (size_t i = 0; i < px.size(); ++i) xf[i] = k::scale_input_pixel(k::InputScale::odd_over_256, px[i]);

  k::PackedRunner fp_run(fp.packed), bnn_run(bnn.packed);
  std::unique_ptr<k::PackedRunner> qnn_run;
  if (with_qnn) qnn_run = std::make_unique<k::PackedRunner>(qnn.packed);
  std::vector<float> logits((size_t)(pool * o.classes));
  auto framework = [&](Module& m) {
    return [&](int64_t off, int64_t b) {
      NoGradGuard ng;
      Tensor x = Tensor::from_data({b, o.in}, xf.data() + off * o.in);
      Tensor y = m.forward(x);
      (void)y;
    };
  };
  auto runner = [&](k::PackedRunner& r) {
    return [&](int64_t off, int64_t b) { r.logits_u8(px.data() + off * o.in, b, logits.data()); };
  };

  // Exactness on one batch: runner logits vs framework eval logits.
  auto same_logits = [&](Module& m, k::PackedRunner& r, int64_t b) {
    NoGradGuard ng;
    Tensor y = m.forward(Tensor::from_data({b, o.in}, xf.data()));
    std::vector<float> lg((size_t)(b * o.classes));
    r.logits_u8(px.data(), b, lg.data());
    return std::memcmp(lg.data(), y.data(), lg.size() * sizeof(float)) == 0;
  };
  const bool fp_exact = fp.comparable && same_logits(*fp.module, fp_run, 100);
  const bool bnn_exact = bnn.comparable && same_logits(*bnn.module, bnn_run, 100);
  const bool qnn_exact = with_qnn && qnn.comparable && same_logits(*qnn.module, *qnn_run, 100);

  struct Row {
    std::string name;
    std::function<void(int64_t, int64_t)> fn;
    Result b1, bb;
  };
  std::vector<Row> rows;
  if (!o.skip_framework) rows.push_back({"fp32 framework (autograd eval)", framework(*fp.module), {}, {}});
  rows.push_back({"fp32 runner (fp .qnnx)", runner(fp_run), {}, {}});
  if (!o.skip_framework) rows.push_back({"bnn framework (autograd eval)", framework(*bnn.module), {}, {}});
  rows.push_back({"bnn runner (bnn .qnnx)", runner(bnn_run), {}, {}});
  // The adaptive runner's two choices, forced (k::ThreadPolicy, packed_model.h).
  k::PackedRunner bnn_all(bnn.packed), bnn_one(bnn.packed);
  bnn_all.set_thread_policy(k::ThreadPolicy::all);
  bnn_one.set_thread_policy(k::ThreadPolicy::one);
  if (o.threads > 1) {
    rows.push_back({"  forced: all threads", runner(bnn_all), {}, {}});
    rows.push_back({"  forced: one thread", runner(bnn_one), {}, {}});
  }
  if (with_qnn) {
    if (!o.skip_framework) rows.push_back({"qnn framework (autograd eval)", framework(*qnn.module), {}, {}});
    rows.push_back({"qnn runner (qnn .qnnx)", runner(*qnn_run), {}, {}});
  }
  for (auto& r : rows) {
    r.b1 = time_it(o, 1, pool, r.fn);
    r.bb = time_it(o, o.big_batch, pool, r.fn);
    std::fprintf(stderr, "  %-32s done\n", r.name.c_str());
  }

  std::printf("\n%-32s %16s %16s\n", "images/s (median)", "batch 1", ("batch " + std::to_string(o.big_batch)).c_str());
  for (auto& r : rows) std::printf("%-32s %16.0f %16.0f\n", r.name.c_str(), r.b1.ips, r.bb.ips);
  auto find = [&](const std::string& prefix) -> const Row* {
    for (auto& r : rows)
      if (r.name.rfind(prefix, 0) == 0) return &r;
    return nullptr;
  };
  const Row* fpf = find("fp32 framework");
  const Row* fpr = find("fp32 runner");
  const Row* bnf = find("bnn framework");
  const Row* bnr = find("bnn runner");
  const Row* bn_all = find("  forced: all");
  const Row* bn_one = find("  forced: one");
  const Row* qnf = find("qnn framework");
  const Row* qnr = find("qnn runner");
  json ratios;
  std::printf("\nratios (batch 1 | batch %lld):\n", (long long)o.big_batch);
  auto ratio = [&](const std::string& key, const std::string& label, const Row* a, const Row* b) {
    if (!a || !b) return;
    const double r1 = a->b1.ips / b->b1.ips, rb = a->bb.ips / b->bb.ips;
    std::printf("  %-44s %8.1fx | %8.1fx\n", label.c_str(), r1, rb);
    ratios[key] = {{"batch_1", r1}, {"batch_big", rb}};
  };
  ratio("bnn_runner_vs_fp32_framework", "bnn runner / fp32 framework", bnr, fpf);
  ratio("bnn_runner_vs_fp32_runner", "bnn runner / fp32 runner", bnr, fpr);
  ratio("fp32_runner_vs_fp32_framework", "fp32 runner / fp32 framework", fpr, fpf);
  ratio("bnn_runner_vs_bnn_framework", "bnn runner / bnn framework", bnr, bnf);
  ratio("bnn_all_threads_vs_fp32_framework", "bnn runner (forced all threads) / fp32 framework", bn_all, fpf);
  ratio("bnn_one_thread_vs_fp32_framework", "bnn runner (forced one thread) / fp32 framework", bn_one, fpf);
  ratio("qnn_runner_vs_fp32_framework", "qnn runner / fp32 framework", qnr, fpf);
  ratio("qnn_runner_vs_qnn_framework", "qnn runner / qnn framework", qnr, qnf);
  const double vs_torch = bnr->b1.ips / o.torch_b1;
  std::printf("  %-44s %8.1fx   (reference %.0f images/s at batch 1)\n", "bnn runner / PyTorch FP32 (batch 1)", vs_torch,
              o.torch_b1);
  std::printf("adaptive bnn runner: %lld calls on 1 thread, %lld on %d threads\n", (long long)bnn_run.calls_one_thread(),
              (long long)bnn_run.calls_all_threads(), o.threads);
  ratios["bnn_runner_vs_torch_fp32_batch_1"] = vs_torch;

  const double MiB = 1048576.0;
  std::printf("\nsizes: fp32 checkpoint %lld B (%.2f MiB) | fp .qnnx %lld B (%.2f MiB) | bnn .qnnx %lld B (%.3f MiB) "
              "= 1/%.1f of the checkpoint\n",
              (long long)ckpt_bytes, ckpt_bytes / MiB, (long long)fp.export_bytes, fp.export_bytes / MiB,
              (long long)bnn.export_bytes, bnn.export_bytes / MiB, (double)ckpt_bytes / bnn.export_bytes);
  if (with_qnn)
    std::printf("       qnn .qnnx (%d-bit weights) %lld B (%.3f MiB) = 1/%.1f of the checkpoint\n", o.wbits,
                (long long)qnn.export_bytes, qnn.export_bytes / MiB, (double)ckpt_bytes / qnn.export_bytes);
  auto yn = [](bool comparable, bool v) { return !comparable ? "n/a" : v ? "yes" : "NO"; };
  std::printf("logits equal to the framework's, bit for bit (batch of 100): fp %s, bnn %s%s%s\n",
              yn(fp.comparable, fp_exact), yn(bnn.comparable, bnn_exact), with_qnn ? ", qnn " : "",
              with_qnn ? yn(qnn.comparable, qnn_exact) : "");

  if (!o.json_path.empty()) {
    json res = json::object();
    for (auto& r : rows)
      res[r.name] = {{"batch_1", {{"images_per_s", r.b1.ips}, {"reps", r.b1.reps}}},
                     {"batch_big", {{"images_per_s", r.bb.ips}, {"reps", r.bb.reps}}}};
    json out{{"arch", arch},
             {"threads", o.threads},
             {"big_batch", o.big_batch},
             {"reps", o.reps},
             {"min_time", o.min_time},
             {"isa", k::isa_name(k::active_isa())},
             {"fp_source", fp.source},
             {"bnn_source", bnn.source},
             {"results", res},
             {"ratios", ratios},
             {"torch_fp32_batch_1_reference", o.torch_b1},
             {"bytes", {{"fp32_checkpoint", ckpt_bytes}, {"fp_export", fp.export_bytes}, {"bnn_export", bnn.export_bytes}}},
             {"bnn_export_fraction_of_checkpoint", (double)bnn.export_bytes / ckpt_bytes},
             {"logits_exact", {{"fp", fp_exact}, {"bnn", bnn_exact}}},
             {"adaptive_calls", {{"one_thread", bnn_run.calls_one_thread()}, {"all_threads", bnn_run.calls_all_threads()}}}};
    if (with_qnn) {
      out["qnn_source"] = qnn.source;
      out["qnn_bits"] = {{"weights", o.wbits}, {"activations", o.abits}};
      out["bytes"]["qnn_export"] = qnn.export_bytes;
      out["logits_exact"]["qnn"] = qnn_exact;
    }
    write_file_atomic(o.json_path, out.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App cli{"Inference speed of an FP32 vs a BNN (and optionally a k-bit) MLP: framework eval path vs exported "
               "packed runner."};
  // Every number is checked against its range at parsing (apps/common/flags.h):
  // 0 in --threads / --wbits / --abits is "not given", never a typed value.
  cli.add_option("--hidden", o.hidden, "hidden width (>= 1)")->capture_default_str()->check(app::integer_in(1, 1 << 20, "an integer in 1..1048576"));
  cli.add_option("--layers", o.layers, "hidden layers (>= 0)")->capture_default_str()->check(app::integer_in(0, 1000, "an integer in 0..1000"));
  cli.add_option("--in", o.in, "input features (>= 1)")->capture_default_str()->check(app::integer_in(1, 1 << 24, "an integer >= 1"));
  cli.add_option("--classes", o.classes, "classes (>= 2)")->capture_default_str()->check(app::integer_in(2, 1 << 20, "an integer >= 2"));
  cli.add_option("--threads", o.threads, "threads, 1..1024 (default: all cores)")->check(app::integer_in(1, 1024, "an integer in 1..1024"));
  cli.add_option("--reps", o.reps, "timed repetitions per figure (>= 5; median reported)")
      ->capture_default_str()
      ->check(app::integer_in(5, 1000000, "an integer >= 5"));
  cli.add_option("--min-time", o.min_time, "seconds per repetition (at least; > 0)")->capture_default_str()->check(app::positive_number());
  cli.add_option("--big-batch", o.big_batch, "the large batch size (>= 1)")->capture_default_str()->check(app::integer_in(1, 1 << 24, "an integer >= 1"));
  cli.add_option("--fp", o.fp_path, "FP32 model: checkpoint (mnist_mlp --save) or .qnnx");
  cli.add_option("--bnn", o.bnn_path, "BNN model: checkpoint (mnist_mlp --model bnn --save) or .qnnx");
  cli.add_option("--wbits", o.wbits, "also a k-bit (qnn) MLP with these weight bits (1..16; with --abits)")
      ->check(app::integer_in(1, 16, "an integer in 1..16"));
  cli.add_option("--abits", o.abits, "the k-bit MLP's activation bits (1..16; with --wbits)")
      ->check(app::integer_in(1, 16, "an integer in 1..16"));
  cli.add_option("--qnn", o.qnn_path, "k-bit model: checkpoint (mnist_mlp --model qnn --save) or .qnnx");
  cli.add_option("--out-dir", o.out_dir, "where the exports and the checkpoint are written (default: temp dir)");
  cli.add_option("--torch-b1", o.torch_b1, "PyTorch FP32 images/s at batch 1, for the ratio (> 0)")->capture_default_str()->check(app::positive_number());
  cli.add_option("--seed", o.seed, "seed of the random weights (>= 0)")
      ->capture_default_str()
      ->check(app::integer_in(0, INT64_MAX, "an integer >= 0"));
  cli.add_flag("--skip-framework", o.skip_framework, "time only the runners");
  cli.add_option("--json", o.json_path, "write the results as JSON");
  return app::parse_and_run(cli, argc, argv, "bench_mlp", [&] { return run(o); });
}
