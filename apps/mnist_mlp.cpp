// apps/mnist_mlp.cpp — train and evaluate an MLP on MNIST or Fashion-MNIST,
// full precision or binarized/quantized (QNN paper recipe).
//
//   build/apps/mnist_mlp --hidden 2048 --layers 3 --epochs 3 --threads 2 --seed 1
//   build/apps/mnist_mlp --model bnn --epochs 30
//   build/apps/mnist_mlp --model bnn --epochs 0 --profile-steps 30 --kernels off
//
// --kernels on|off (default: env QNN_QUANT_KERNELS, else on): quantized
// layers compute with the XNOR / bit-serial kernels and fused ops
// (layers/quant/binary_linear_op.h). Identical results either way — same loss
// at every step, same weights — only speed and activation memory differ; the
// run header lists each layer's path and what its backward keeps.
//
// Protocol (as in the paper): the last 10,000 training images validate; the
// model of the best-validation epoch is the one tested, saved and exported.
// The loop, the shared flags and their ranges are apps/common/train_loop.h
// and apps/common/flags.h; this file holds the MLP's own flags and output.
#include <CLI/CLI.hpp>

#include "apps/common/cli_main.h"
#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>

#include "apps/common/flags.h"
#include "apps/common/mlp.h"
#include "apps/common/model_meta.h"
#include "apps/common/train_loop.h"
#include "core/fileio.h"
#include "kernels/denormals.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "layers/quant/quant.h"
#include "layers/quant/export.h"

using namespace qnn;
using json = nlohmann::json;
using app::f2d;

namespace {

struct Options {
  std::string dataset = "mnist";
  std::string data;  // default datasets/<dataset>
  app::MlpConfig mlp;
  app::TrainFlags train;
  std::optional<int> lr_scale;  // --lr-scale 0|1
  bool allow_mismatch = false;  // --allow-mismatch
  float lr_decay = 0;           // resolved: the default schedule's per-epoch factor (0: over the run)
};

json config_json(const Options& o) {
  const auto& m = o.mlp;
  const auto& t = o.train;
  json c{{"dataset", o.dataset}, {"data", o.data}, {"model", m.model}, {"hidden", m.hidden},
         {"layers", m.layers}, {"wbits", *m.wbits}, {"abits", *m.abits}, {"surrogate", m.surrogate},
         {"weight_surrogate", m.weight_surrogate}, {"binarize", m.binarize}, {"shift_bn", m.shift_bn},
         {"lr_scale", *m.lr_scale ? 1 : 0}, {"dropout", f2d(*m.dropout)}, {"input_dropout", f2d(*m.input_dropout)},
         {"epochs", t.epochs}, {"batch", t.batch}, {"optimizer", *t.optimizer}, {"lr", f2d(*t.lr)},
         {"lr_end", f2d(*t.lr_end)}, {"schedule", t.schedule}, {"loss", *t.loss}, {"seed", t.seed},
         {"threads", *t.threads}, {"val", t.val}, {"patience", t.patience}, {"bn_momentum", f2d(m.bn_momentum)},
         {"bn_eps", f2d(*m.bn_eps)}, {"kernels", *m.kernels ? "on" : "off"}};
  if (o.lr_decay > 0) c["lr_decay"] = f2d(o.lr_decay);  // the default schedule: per epoch, lr_end its floor
  if (t.limit_train) c["limit_train"] = *t.limit_train;
  app::record_weight_decay(c, t);
  return c;
}

// --kernels: which QuantLinear layers compute with the bit-packed kernels, and
// what their backward keeps per training step (batch N) with and without them.
void print_kernel_paths(Module& model, bool on, int64_t N) {
  std::vector<QuantLinear*> ql;
  std::vector<Module*> stack{&model};
  while (!stack.empty()) {
    Module* m = stack.back();
    stack.pop_back();
    if (auto* q = dynamic_cast<QuantLinear*>(m)) ql.push_back(q);
    const auto& ch = m->children();
    for (auto it = ch.rbegin(); it != ch.rend(); ++it) stack.push_back(it->second.get());
  }
  if (ql.empty()) return;
  model.train(true);
  std::printf("# kernels %s (isa %s):", on ? "on" : "off", kernels::isa_name(kernels::active_isa()));
  for (QuantLinear* q : ql)
    std::printf(" %lldx%lld:%s", (long long)q->in_features(), (long long)q->out_features(),
                QuantLinear::path_name(q->kernel_path()));
  std::printf("\n");
  for (QuantLinear* q : ql) {
    if (q->kernel_path() != QuantLinear::KernelPath::binary && q->kernel_path() != QuantLinear::KernelPath::sign_weight)
      continue;
    const SavedBytes u = q->saved_bytes(N, false), f = q->saved_bytes(N, true);
    std::printf("#   %lldx%lld saved for backward at batch %lld: activations %.1f KiB float -> %.1f KiB packed, "
                "weights %.1f KiB float -> %.1f KiB packed%s\n",
                (long long)q->in_features(), (long long)q->out_features(), (long long)N, u.activation / 1024.0,
                f.activation / 1024.0, u.weight / 1024.0, f.weight / 1024.0, on ? "" : " (not in use: --kernels off)");
  }
}

int run(Options& o) {
  auto& m = o.mlp;
  auto& t = o.train;
  if (o.data.empty()) o.data = "datasets/" + o.dataset;
  if (o.lr_scale) m.lr_scale = *o.lr_scale == 1;
  if (t.kernels) m.kernels = t.kernels;
  o.lr_decay = app::resolve_training_defaults(m.model, t);
  app::resolve_training_flags(t);
  app::resolve_defaults(m);
  app::check_output_paths(t);  // before loading anything

  std::printf("# qnn mnist_mlp | %s | denormals %s\n", kernels::blas_info(), kernels::denormals_name());
  std::printf("# config %s\n", config_json(o).dump().c_str());

  // --eval-only needs no training images (and no --val / --limit-train check).
  Dataset train, val;
  if (!t.eval_only) {
    Dataset train_full = load_mnist(o.data, "train", app::mnist_options(t.limit_train.value_or(-1)));
    std::tie(train, val) = app::split_validation(train_full, t);
  }
  Dataset test = load_mnist(o.data, "test", app::mnist_options());
  if (t.eval_only)
    std::printf("# data %s: test %lld (--eval-only)\n", o.data.c_str(), (long long)test.size());
  else
    std::printf("# data %s: train %lld, validation %lld, test %lld\n", o.data.c_str(), (long long)train.size(),
                (long long)val.size(), (long long)test.size());
  m.in = test.sample_numel();
  m.classes = test.num_classes;

  std::optional<DataLoader> loader;
  if (!t.eval_only) loader.emplace(train, t.batch, true, t.seed);
  app::TrainJob job;
  job.flags = &t;
  job.build = [&] {
    Rng rng(t.seed);
    return app::build_mlp(m, rng);
  };
  if (loader)
    job.data = app::image_feeds(*loader, val, test);
  else
    job.data.test = app::image_eval_feed(test);
  job.config = config_json(o);
  job.lr_decay = o.lr_decay;
  // What the model is trained on, stored in checkpoints and exports and
  // checked when one is loaded (apps/common/model_meta.h).
  job.meta = app::make_model_meta(test, o.dataset, job.config);
  job.allow_meta_mismatch = o.allow_mismatch;
  int64_t params = 0;
  double bytes_packed = 0;
  job.describe_model = [&](Module& model) {
    std::printf("\n%s\n", summary_table(model).c_str());
    print_kernel_paths(model, *m.kernels, t.batch);
    json size = app::model_size_json(model);
    params = size["params"].get<int64_t>();
    bytes_packed = size["bytes_packed"].get<double>();
    return size;
  };
  job.after_test = [&](Module&, const app::EvalStats&) {
    std::printf("model size: %lld parameters, %.2f MiB fp32, %.2f MiB packed (%.1fx smaller)\n", (long long)params,
                params * 4.0 / (1 << 20), bytes_packed / (1 << 20), bytes_packed > 0 ? params * 4.0 / bytes_packed : 1.0);
  };
  job.export_check = [](Module& model) { export_model(model); };  // throws for unsupported models
  job.export_write = [&](Module& model, const std::string& path, const json& meta) {
    // The tested (best-validation) model as a packed .qnnx file for
    // apps/qnn_infer (layers/quant/export.h); pixels are scaled as trained.
    const PixelScale ps = app::mnist_options().scale;
    QNN_CHECK(ps == PixelScale::OddOver256, "--export: the packed format expects (2p-255)/256 pixel scaling");
    ExportOptions eo;
    eo.input_dims = {m.in};
    eo.input_scale = kernels::InputScale::odd_over_256;
    eo.meta = meta.dump();
    const int64_t bytes = export_model_file(model, path, eo);
    std::printf("# exported %s: %lld bytes (%.3f MiB, %.1fx smaller than fp32 parameters)\n", path.c_str(),
                (long long)bytes, bytes / 1048576.0, params * 4.0 / bytes);
    return json{{"path", path}, {"bytes", bytes}};
  };
  app::run_training(job);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress interleaves sensibly with stderr
  Options o;
  auto& m = o.mlp;
  CLI::App cli{"Train and evaluate an MLP on MNIST / Fashion-MNIST, full precision or binarized (qnn)."};
  cli.add_option("--dataset", o.dataset, "mnist | fashion-mnist")
      ->capture_default_str()
      ->check(app::one_of({"mnist", "fashion-mnist"}));
  cli.add_option("--data", o.data, "directory with the IDX files (default: datasets/<dataset>)");
  cli.add_option("--model", m.model, "fp | bnn | qnn")->capture_default_str()->check(app::one_of({"fp", "bnn", "qnn"}));
  cli.add_option("--hidden", m.hidden, "hidden width (>= 1)")
      ->capture_default_str()
      ->check(app::integer_in(1, 1 << 20, "an integer in 1..1048576"));
  cli.add_option("--layers", m.layers, "number of hidden layers (>= 0)")
      ->capture_default_str()
      ->check(app::integer_in(0, 1000, "an integer in 0..1000"));
  app::add_training_flags(cli, o.train);
  cli.add_option("--dropout", m.dropout, "dropout after each hidden block, in [0, 1) (default 0.2 fp, 0 bnn/qnn)")
      ->check(app::probability_below_one());
  cli.add_option("--input-dropout", m.input_dropout, "dropout on the input pixels, in [0, 1) (default 0 fp, 0.2 bnn/qnn)")
      ->check(app::probability_below_one());
  cli.add_option("--wbits", m.wbits, "qnn: weight bits, 1..16 or 32 (default 2; bnn: 1)")->check(app::bits_validator());
  cli.add_option("--abits", m.abits, "qnn: activation bits, 1..16 or 32 (default 2; bnn: 1)")->check(app::bits_validator());
  cli.add_option("--surrogate", m.surrogate, "pseudo-gradient: hardtanh | ste:C | tanh:K | periodic:K | identity")
      ->capture_default_str()
      ->check(app::surrogate_validator());
  cli.add_option("--weight-surrogate", m.weight_surrogate, "pseudo-gradient of the weight quantizers")
      ->capture_default_str()
      ->check(app::surrogate_validator());
  cli.add_option("--binarize", m.binarize, "det | stoch (stochastic sign, 1-bit activations)")
      ->capture_default_str()
      ->check(app::one_of({"det", "stoch"}));
  cli.add_flag("--shift-bn", m.shift_bn, "shift-based batch norm (AP2), quantized models");
  cli.add_option("--lr-scale", o.lr_scale, "1: Courbariaux's per-layer LR scale (default on for bnn/qnn), 0: off")
      ->check(app::one_of({"0", "1"}));
  cli.add_flag("--allow-mismatch", o.allow_mismatch,
               "--load a checkpoint whose metadata names other data (a warning instead of an error)");
  cli.add_option("--bn-eps", m.bn_eps, "batch-norm epsilon, > 0 (default 1e-5 fp, 1e-4 bnn/qnn)")
      ->check(app::positive_number());
  cli.add_option("--bn-momentum", m.bn_momentum, "batch-norm running-average momentum, in [0, 1]")
      ->capture_default_str()
      ->check(app::number_in(0, 1, false, false, "in [0, 1]"));
  return app::parse_and_run(cli, argc, argv, "mnist_mlp", [&] { return run(o); });
}
