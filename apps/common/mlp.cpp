#include "apps/common/mlp.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "layers/quant/quant.h"

namespace qnn::app {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void resolve_defaults(MlpConfig& c) {
  const bool fp = c.model == "fp";
  QNN_CHECK(fp || c.model == "bnn" || c.model == "qnn", "--model must be fp, bnn or qnn, got '" + c.model + "'");
  if (c.model == "bnn") {
    QNN_CHECK((c.wbits < 0 || c.wbits == 1) && (c.abits < 0 || c.abits == 1),
              "--model bnn means 1-bit weights and activations; use --model qnn for --wbits/--abits");
    c.wbits = c.abits = 1;
  }
  if (c.model == "qnn") {
    if (c.wbits < 0) c.wbits = 2;
    if (c.abits < 0) c.abits = 2;
  }
  if (fp) {
    QNN_CHECK(c.wbits < 0 && c.abits < 0, "--wbits/--abits need --model qnn (or bnn)");
    c.wbits = c.abits = 32;
  }
  auto bits_ok = [](int b) { return b == 32 || (b >= 1 && b <= 16); };
  QNN_CHECK(bits_ok(c.wbits), "--wbits must be 1..16 or 32, got " + std::to_string(c.wbits));
  QNN_CHECK(bits_ok(c.abits), "--abits must be 1..16 or 32, got " + std::to_string(c.abits));
  QNN_CHECK(c.binarize == "det" || c.binarize == "stoch", "--binarize must be det or stoch, got '" + c.binarize + "'");
  QNN_CHECK(c.binarize == "det" || c.abits == 1,
            "--binarize stoch needs 1-bit activations (stochastic binarization has two levels), got --abits " +
                std::to_string(c.abits));
  QNN_CHECK(!(fp && c.shift_bn), "--shift-bn is for quantized models (--model bnn|qnn)");
  parse_surrogate(c.surrogate);  // throws with a clear message on bad input
  parse_surrogate(c.weight_surrogate);
  if (c.dropout < 0) c.dropout = fp ? 0.2f : 0.0f;
  if (c.input_dropout < 0) c.input_dropout = fp ? 0.0f : 0.2f;
  if (c.lr_scale < 0) c.lr_scale = fp ? 0 : 1;
  if (c.bn_eps < 0) c.bn_eps = fp ? 1e-5f : 1e-4f;
  if (c.kernels < 0) c.kernels = quant_kernels_default() ? 1 : 0;  // QNN_QUANT_KERNELS
  validate(c);
}

void validate(const MlpConfig& c) {
  QNN_CHECK(c.model == "fp" || c.model == "bnn" || c.model == "qnn",
            "--model must be fp, bnn or qnn, got '" + c.model + "'");
  QNN_CHECK(c.hidden > 0, "--hidden must be positive");
  QNN_CHECK(c.layers >= 0, "--layers must be >= 0");
  QNN_CHECK(c.dropout >= 0 && c.dropout < 1, "--dropout must be in [0, 1)");
  QNN_CHECK(c.input_dropout >= 0 && c.input_dropout < 1, "--input-dropout must be in [0, 1)");
}

std::shared_ptr<Module> build_mlp(const MlpConfig& c, Rng& rng) {
  validate(c);
  BatchNormOptions bn{c.bn_momentum, c.bn_eps, true};
  if (c.model != "fp") {
    // The QNN paper's MLP: the activation quantizer sits in the next layer's
    // input (larq style), so a hidden layer sees quantized inputs and weights.
    QuantMLPOptions o;
    o.hidden = std::vector<int64_t>(c.layers, c.hidden);
    o.weight_bits = c.wbits;
    o.act_bits = c.abits;
    o.surrogate = parse_surrogate(c.surrogate);
    o.weight_surrogate = parse_surrogate(c.weight_surrogate);
    o.stochastic_acts = c.binarize == "stoch";
    o.dropout_in = c.input_dropout;
    o.dropout_hidden = c.dropout;
    o.act_in_linear = c.dropout == 0;
    o.bn = bn;
    o.shift_bn = c.shift_bn;
    o.glorot_lr_scale = c.lr_scale > 0;
    auto net = quant_mlp(c.in, c.classes, rng, o);
    if (c.kernels >= 0) set_quant_kernels(*net, c.kernels == 1);  // per layer, not process-wide
    return net;
  }
  auto net = std::make_shared<Sequential>();
  if (c.input_dropout > 0) net->add(std::make_shared<Dropout>(c.input_dropout, rng));
  int64_t fin = c.in;
  for (int64_t l = 0; l < c.layers; ++l) {
    // No bias: batch norm right after makes it redundant (its beta is the bias).
    net->add(std::make_shared<Linear>(fin, c.hidden, rng, LinearOptions{false, "he"}));
    net->add(std::make_shared<BatchNorm1d>(c.hidden, bn));
    net->add(ReLU());
    if (c.dropout > 0) net->add(std::make_shared<Dropout>(c.dropout, rng));
    fin = c.hidden;
  }
  net->add(std::make_shared<Linear>(fin, c.classes, rng, LinearOptions{false, "glorot"}));
  net->add(std::make_shared<BatchNorm1d>(c.classes, bn));
  return net;
}

LossKind parse_loss(const std::string& s) {
  if (s == "xent" || s == "ce" || s == "cross-entropy") return LossKind::xent;
  if (s == "sqhinge" || s == "hinge") return LossKind::sqhinge;
  fail("--loss must be xent or sqhinge, got '" + s + "'");
}

Tensor compute_loss(LossKind k, const Tensor& logits, const std::vector<int32_t>& y) {
  return k == LossKind::xent ? cross_entropy(logits, y) : squared_hinge(logits, y);
}

EpochStats train_epoch(Module& model, Optimizer& opt, const DataLoader& loader, int64_t epoch, LossKind loss_kind,
                       const std::function<void(int64_t, int64_t, double)>& progress) {
  model.train(true);
  EpochStats st;
  const double t0 = now_seconds();
  double loss_sum = 0;
  int64_t correct = 0, seen = 0, step = 0;
  const int64_t total = loader.num_batches();
  for (const Batch& b : loader.epoch(epoch)) {
    Tensor logits = model.forward(b.x);
    Tensor loss = compute_loss(loss_kind, logits, b.y);
    const float lv = loss.item();
    if (!std::isfinite(lv))
      throw Diverged("training diverged: the loss is " + std::string(std::isnan(lv) ? "NaN" : "infinite") + " at epoch " +
           std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) + " (try a lower --lr)");
    correct += count_correct(logits, b.y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    loss_sum += (double)lv * b.size();
    seen += b.size();
    ++step;
    if (progress) progress(step, total, loss_sum / seen);
  }
  st.seconds = now_seconds() - t0;
  st.images = seen;
  st.loss = seen ? loss_sum / seen : 0;
  st.acc = seen ? (double)correct / seen : 0;
  st.images_per_s = st.seconds > 0 ? seen / st.seconds : 0;
  return st;
}

EvalStats evaluate(Module& model, const Dataset& ds, LossKind loss_kind, int64_t batch) {
  NoGradGuard no_grad;
  model.train(false);
  EvalStats st;
  const double t0 = now_seconds();
  DataLoader loader(ds, batch, false, 0);
  double loss_sum = 0;
  int64_t correct = 0;
  for (const Batch& b : loader.epoch(0)) {
    Tensor logits = model.forward(b.x);
    loss_sum += (double)compute_loss(loss_kind, logits, b.y).item() * b.size();
    correct += count_correct(logits, b.y);
  }
  st.seconds = now_seconds() - t0;
  st.loss = ds.size() ? loss_sum / ds.size() : 0;
  st.acc = ds.size() ? (double)correct / ds.size() : 0;
  return st;
}

Progress::Progress(std::string label) : label_(std::move(label)), t0_(now_seconds()), tty_(isatty(2)) {}

void Progress::update(int64_t done, int64_t total, double loss) {
  const double t = now_seconds();
  if (done < total && t - last_ < 0.5) return;
  last_ = t;
  if (!tty_ && done < total) return;
  const double el = t - t0_;
  const double eta = done > 0 ? el * (total - done) / done : 0;
  std::fprintf(stderr, "\r%s %5.1f%% [%lld/%lld] loss %.4f  %.0fs elapsed, eta %.0fs   ", label_.c_str(),
               100.0 * done / std::max<int64_t>(total, 1), (long long)done, (long long)total, loss, el, eta);
  if (done >= total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void Progress::finish() {}

}  // namespace qnn::app
