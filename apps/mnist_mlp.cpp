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
#include <CLI/CLI.hpp>

#include "apps/common/cli_main.h"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <thread>

#include "apps/common/mlp.h"
#include "core/fileio.h"
#include "core/profiler.h"
#include "core/serialize.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "layers/quant/quant.h"
#include "layers/quant/export.h"
#include "optim/optim.h"

using namespace qnn;
using json = nlohmann::json;

namespace {

struct Options {
  std::string dataset = "mnist";
  std::string data;  // default datasets/<dataset>
  app::MlpConfig mlp;
  int epochs = 3;
  int64_t batch = 100;
  std::string optimizer = "adam";
  float lr = -1, lr_end = -1;  // <0: model-dependent defaults
  std::string schedule = "exponential";
  std::string loss = "";       // default: xent (fp), sqhinge (bnn/qnn)
  uint64_t seed = 1;
  int threads = 0;
  int64_t val = 10000;
  int patience = 0;            // 0 = no early stopping
  std::string json_path, save_path, load_path;
  std::string export_path;     // --export: deployable packed model (.qnnx)
  bool eval_only = false;
  int64_t limit_train = -1;
  int profile_steps = 0;
};

json config_json(const Options& o) {
  const auto& m = o.mlp;
  return json{{"dataset", o.dataset}, {"data", o.data}, {"model", m.model}, {"hidden", m.hidden},
              {"layers", m.layers}, {"wbits", m.wbits}, {"abits", m.abits}, {"surrogate", m.surrogate}, {"weight_surrogate", m.weight_surrogate},
              {"binarize", m.binarize}, {"shift_bn", m.shift_bn}, {"lr_scale", m.lr_scale},
              {"dropout", m.dropout}, {"input_dropout", m.input_dropout}, {"epochs", o.epochs},
              {"batch", o.batch}, {"optimizer", o.optimizer}, {"lr", o.lr}, {"lr_end", o.lr_end},
              {"schedule", o.schedule}, {"loss", o.loss}, {"seed", o.seed}, {"threads", o.threads},
              {"val", o.val}, {"patience", o.patience}, {"bn_momentum", m.bn_momentum}, {"bn_eps", m.bn_eps},
              {"kernels", m.kernels < 0 ? "default" : m.kernels ? "on" : "off"}};
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

// Copy of a model's state, to come back to the best-validation epoch.
NamedTensors snapshot(const Module& m) {
  NamedTensors s;
  for (auto& [n, t] : m.state()) s.emplace_back(n, t.clone());
  return s;
}

int run(Options& o) {
  auto& m = o.mlp;
  if (o.data.empty()) o.data = "datasets/" + o.dataset;
  QNN_CHECK(o.dataset == "mnist" || o.dataset == "fashion-mnist",
            "--dataset must be mnist or fashion-mnist, got '" + o.dataset + "'");
  QNN_CHECK(o.epochs >= 0, "--epochs must be >= 0");
  QNN_CHECK(o.batch > 0, "--batch must be positive");
  QNN_CHECK(o.val >= 0, "--val must be >= 0");
  const bool quant = m.model != "fp";
  if (o.loss.empty()) o.loss = quant ? "sqhinge" : "xent";
  if (o.lr < 0) o.lr = quant ? 3e-3f : 1e-3f;
  if (o.lr_end < 0) o.lr_end = quant ? 3e-7f : o.lr * 0.1f;
  QNN_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be a positive number");
  if (o.threads <= 0) o.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  kernels::set_num_threads(o.threads);
  const app::LossKind loss_kind = app::parse_loss(o.loss);
  app::resolve_defaults(m);

  std::printf("# qnn mnist_mlp | %s\n", kernels::blas_info());
  std::printf("# config %s\n", config_json(o).dump().c_str());

  Dataset train_full = load_mnist(o.data, "train", app::mnist_options(o.limit_train > 0 ? o.limit_train : -1));
  Dataset test = load_mnist(o.data, "test", app::mnist_options());
  QNN_CHECK(o.val < train_full.size(), "--val " + std::to_string(o.val) + " leaves no training images");
  auto [train, val] = split_tail(train_full, o.val);
  std::printf("# data %s: train %lld, validation %lld, test %lld\n", o.data.c_str(), (long long)train.size(),
              (long long)val.size(), (long long)test.size());

  Rng rng(o.seed);
  m.in = train.sample_numel();
  m.classes = train.num_classes;
  std::shared_ptr<Module> model = app::build_mlp(m, rng);
  if (!o.load_path.empty()) {
    NamedTensors st = model->state();
    assign_tensors(st, load_tensors(o.load_path), o.load_path);
    std::printf("# loaded %s\n", o.load_path.c_str());
  }
  if (!o.export_path.empty()) export_model(*model);  // --export: refuse unsupported models before training
  std::printf("\n%s\n", summary_table(*model).c_str());
  print_kernel_paths(*model, m.kernels == 1, o.batch);
  const auto rows = summarize(*model);
  double bytes_packed = 0;
  int64_t params = model->num_parameters();
  json layers = json::array();
  for (const auto& r : rows) {
    bytes_packed += r.bytes_packed();
    layers.push_back({{"name", r.name}, {"type", r.type}, {"params", r.params}, {"quant_params", r.quant_params},
                      {"weight_bits", r.quant_params ? r.weight_bits : 32}, {"input_bits", r.input_bits}});
  }

  json out;
  out["config"] = config_json(o);
  out["epochs"] = json::array();
  int best_epoch = 0;
  double best_val = -1, best_val_loss = INFINITY;
  NamedTensors best;

  if (o.profile_steps > 0) {
    // Where does a training step's time go? Median over the steps after 3
    // warm-up steps; the model is then rebuilt so training starts fresh.
    auto popt = make_optimizer(o.optimizer, model->parameters(), o.lr);
    DataLoader pl(train, o.batch, true, o.seed);
    auto ep = pl.epoch(0);
    std::vector<double> tf, tb, ts;
    for (int i = 0; i < o.profile_steps + 3; ++i) {
      if (i == 3) profiler::reset(), profiler::enable(true);
      Batch b = ep.batch(i % ep.size());
      model->train(true);
      double t0 = app::now_seconds();
      Tensor logits = model->forward(b.x);
      Tensor loss;
      {
        profiler::Scope timed("fwd ", "loss");
        loss = app::compute_loss(loss_kind, logits, b.y);
      }
      loss.item();
      double t1 = app::now_seconds();
      popt->zero_grad();
      loss.backward();
      double t2 = app::now_seconds();
      {
        profiler::Scope timed("", "optimizer step");
        popt->step();
      }
      double t3 = app::now_seconds();
      if (i >= 3) tf.push_back(t1 - t0), tb.push_back(t2 - t1), ts.push_back(t3 - t2);
    }
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2] * 1e3; };
    double sum = 0;
    for (size_t i = 0; i < tf.size(); ++i) sum += tf[i] + tb[i] + ts[i];
    const double mean_ms = sum * 1e3 / tf.size();
    std::printf("profile batch=%lld steps=%d median_ms forward=%.2f backward=%.2f optimizer=%.2f total=%.2f "
                "(%.0f img/s) | mean step %.2f ms (%.0f img/s)\n",
                (long long)o.batch, o.profile_steps, med(tf), med(tb), med(ts), med(tf) + med(tb) + med(ts),
                o.batch * 1e3 / (med(tf) + med(tb) + med(ts)), mean_ms, o.batch * 1e3 / mean_ms);
    profiler::enable(false);
    profiler::print(stdout, o.profile_steps);
    Rng fresh(o.seed);
    model = app::build_mlp(m, fresh);
  }
  if (!o.eval_only && o.epochs > 0) {
    auto opt = make_optimizer(o.optimizer, model->parameters(), o.lr);
    ScheduleConfig sc;
    sc.lr = o.lr;
    sc.lr_end = o.lr_end;
    sc.total_epochs = o.epochs;
    auto sched = make_schedule(o.schedule, sc);
    std::printf("# optimizer %s, schedule %s, loss %s\n", opt->name().c_str(), sched->describe().c_str(),
                o.loss.c_str());
    DataLoader loader(train, o.batch, true, o.seed);
    int since_best = 0;
    for (int e = 0; e < o.epochs; ++e) {
      const float lr = sched->lr_at(e);
      opt->set_lr(lr);
      app::Progress prog("epoch " + std::to_string(e + 1) + "/" + std::to_string(o.epochs));
      auto st = app::train_epoch(*model, *opt, loader, e, loss_kind,
                                 [&](int64_t d, int64_t t, double l) { prog.update(d, t, l); });
      app::EvalStats vs = val.size() ? app::evaluate(*model, val, loss_kind) : app::EvalStats{};
      std::printf("epoch %3d  lr %.3g  train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs %.0f img/s\n", e + 1,
                  lr, st.loss, st.acc, vs.loss, vs.acc, st.seconds, st.images_per_s);
      std::fflush(stdout);
      out["epochs"].push_back({{"epoch", e + 1}, {"train_loss", st.loss}, {"train_acc", st.acc},
                               {"val_loss", vs.loss}, {"val_acc", vs.acc}, {"seconds", st.seconds},
                               {"images_per_s", st.images_per_s}, {"lr", lr}});
      if (vs.acc > best_val || val.size() == 0) {
        best_val = vs.acc;
        best_epoch = e + 1;
        best = snapshot(*model);
      }
      if (vs.loss < best_val_loss) {
        best_val_loss = vs.loss;
        since_best = 0;
      } else if (o.patience > 0 && ++since_best >= o.patience) {
        std::printf("# early stop: validation loss has not improved for %d epoch(s)\n", o.patience);
        break;
      }
    }
    if (!best.empty()) {
      NamedTensors st = model->state();
      assign_tensors(st, best, "best-epoch snapshot");
    }
  }
  app::EvalStats ts = app::evaluate(*model, test, loss_kind);
  std::printf("test accuracy %.4f (%.2f%%) at best-validation epoch %d | test loss %.4f\n", ts.acc, 100 * ts.acc,
              best_epoch, ts.loss);
  std::printf("model size: %lld parameters, %.2f MiB fp32, %.2f MiB packed (%.1fx smaller)\n", (long long)params,
              params * 4.0 / (1 << 20), bytes_packed / (1 << 20), bytes_packed > 0 ? params * 4.0 / bytes_packed : 1.0);
  if (!o.save_path.empty()) {
    save_tensors(o.save_path, model->state());
    std::printf("# saved %s\n", o.save_path.c_str());
  }
  if (!o.export_path.empty()) {
    // --export: the tested (best-validation) model as a packed .qnnx file for
    // apps/qnn_infer (layers/quant/export.h); pixels are scaled as trained.
    const PixelScale ps = app::mnist_options().scale;
    QNN_CHECK(ps == PixelScale::OddOver256, "--export: the packed format expects (2p-255)/256 pixel scaling");
    ExportOptions eo;
    eo.input_dims = {m.in};
    eo.input_scale = kernels::InputScale::odd_over_256;
    const int64_t bytes = export_model_file(*model, o.export_path, eo);
    std::printf("# exported %s: %lld bytes (%.3f MiB, %.1fx smaller than fp32 parameters)\n", o.export_path.c_str(),
                (long long)bytes, bytes / 1048576.0, params * 4.0 / bytes);
    out["export"] = {{"path", o.export_path}, {"bytes", bytes}};
  }
  out["best_epoch"] = best_epoch;
  out["best_val_acc"] = best_val < 0 ? json(nullptr) : json(best_val);
  out["test_acc"] = ts.acc;
  out["test_loss"] = ts.loss;
  out["model"] = {{"params", params}, {"bytes_fp32", params * 4}, {"bytes_packed", bytes_packed}, {"layers", layers}};
  if (!o.json_path.empty()) write_file_atomic(o.json_path, out.dump(2) + "\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress interleaves sensibly with stderr
  Options o;
  auto& m = o.mlp;
  CLI::App cli{"Train and evaluate an MLP on MNIST / Fashion-MNIST, full precision or binarized (qnn)."};
  cli.add_option("--dataset", o.dataset, "mnist | fashion-mnist")->capture_default_str();
  cli.add_option("--data", o.data, "directory with the IDX files (default: datasets/<dataset>)");
  cli.add_option("--model", m.model, "fp | bnn | qnn")->capture_default_str();
  cli.add_option("--hidden", m.hidden, "hidden width")->capture_default_str();
  cli.add_option("--layers", m.layers, "number of hidden layers")->capture_default_str();
  cli.add_option("--epochs", o.epochs, "training epochs")->capture_default_str();
  cli.add_option("--batch", o.batch, "batch size")->capture_default_str();
  cli.add_option("--optimizer", o.optimizer, "adam | sgd | adamax | adamax-shift")->capture_default_str();
  cli.add_option("--lr", o.lr, "start learning rate (default 1e-3 fp, 3e-3 bnn/qnn)");
  cli.add_option("--lr-end", o.lr_end, "final learning rate of the decay (default lr/10 fp, 3e-7 bnn/qnn)");
  cli.add_option("--schedule", o.schedule, "exponential | cosine | step | constant")->capture_default_str();
  cli.add_option("--loss", o.loss, "xent | sqhinge (default xent fp, sqhinge bnn/qnn)");
  cli.add_option("--dropout", m.dropout, "dropout after each hidden block (default 0.2 fp, 0 bnn/qnn)");
  cli.add_option("--input-dropout", m.input_dropout, "dropout on the input pixels (default 0 fp, 0.2 bnn/qnn)");
  cli.add_option("--wbits", m.wbits, "qnn: weight bits, 1..16 or 32 (bnn: 1)");
  cli.add_option("--abits", m.abits, "qnn: activation bits, 1..16 or 32 (bnn: 1)");
  cli.add_option("--surrogate", m.surrogate, "pseudo-gradient: hardtanh | ste:C | tanh:K | periodic:K | identity")
      ->capture_default_str();
  cli.add_option("--weight-surrogate", m.weight_surrogate, "pseudo-gradient of the weight quantizers")
      ->capture_default_str();
  cli.add_option("--binarize", m.binarize, "det | stoch (stochastic sign, 1-bit activations)")->capture_default_str();
  cli.add_flag("--shift-bn", m.shift_bn, "shift-based batch norm (AP2), quantized models");
  cli.add_option("--lr-scale", m.lr_scale, "1: Courbariaux's per-layer LR scale (default on for bnn/qnn), 0: off");
  cli.add_option("--bn-eps", m.bn_eps, "batch-norm epsilon (default 1e-5 fp, 1e-4 bnn/qnn)");
  cli.add_option("--bn-momentum", m.bn_momentum, "batch-norm running-average momentum")->capture_default_str();
  cli.add_option_function<std::string>(
         "--kernels", [&m](const std::string& v) { m.kernels = v == "on" ? 1 : 0; },
         "on | off: bit-packed kernels / fused ops for quantized layers (identical results; default: env "
         "QNN_QUANT_KERNELS, else on)")
      ->check(CLI::IsMember({"on", "off"}));
  cli.add_option("--val", o.val, "validation images taken from the end of the training set")->capture_default_str();
  cli.add_option("--patience", o.patience, "early stopping: epochs without validation-loss improvement (0 = off)")
      ->capture_default_str();
  cli.add_option("--limit-train", o.limit_train, "use only the first N training images (quick runs)");
  cli.add_option("--seed", o.seed, "seed for every random choice")->capture_default_str();
  cli.add_option("--threads", o.threads, "threads for BLAS and OpenMP (default: all cores)");
  cli.add_option("--json", o.json_path, "write config, per-epoch metrics and results as JSON");
  cli.add_option("--save", o.save_path, "save the best-validation model (checkpoint)");
  cli.add_option("--load", o.load_path, "load a checkpoint before training / evaluation");
  cli.add_option("--export", o.export_path, "write the tested model as a packed .qnnx file (run it with qnn_infer)");
  cli.add_option("--profile-steps", o.profile_steps, "time forward/backward/optimizer over N steps first");
  cli.add_flag("--eval-only", o.eval_only, "only evaluate (with --load)");
  return app::parse_and_run(cli, argc, argv, "mnist_mlp", [&] { return run(o); });
}
