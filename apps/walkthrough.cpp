// apps/walkthrough.cpp — how a binarized neural network trains, printed step
// by step on tensors small enough to read. Every step names the function in
// qnn that computes it. docs/bnn-training.md walks through this output.
//
//   build/apps/walkthrough [--seed 1] [--lr 0.01] [--threads 1]   (deterministic)
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "kernels/bitpack.h"
#include "kernels/sgemm.h"
#include "layers/batchnorm.h"
#include "layers/module.h"
#include "layers/quant/quant.h"
#include "optim/adam.h"

using namespace qnn;

namespace {

// Bits of a packed row, element 0 first (kernels/bitpack.h: bit k of word k/64).
std::string bit_string(const uint64_t* words, int64_t K) {
  std::string s;
  for (int64_t k = 0; k < K; ++k) s += ((words[k / 64] >> (k % 64)) & 1) ? '1' : '0';
  return s;
}

// ---- printing helpers --------------------------------------------------------------

std::string fmt(const std::vector<float>& v, int prec = 3) {
  std::string s = "[";
  char buf[48];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%*.*f", prec + 4, prec, (double)v[i]);
    s += buf;
  }
  return s + " ]";
}

void row(const char* label, const std::vector<float>& v, int prec = 3) {
  std::printf("  %-34s %s\n", label, fmt(v, prec).c_str());
}

// Prints a 2-D tensor, one labelled line per row (at most max_rows rows, max_cols columns).
void matrix(const char* label, const Tensor& t, int prec = 3, int64_t max_rows = 8, int64_t max_cols = 8) {
  const int64_t R = t.dim(0), C = t.dim(1);
  const float* p = t.data();
  std::printf("  %s  %s\n", label, shape_str(t.shape()).c_str());
  for (int64_t r = 0; r < std::min(R, max_rows); ++r) {
    std::vector<float> v(p + r * C, p + r * C + std::min(C, max_cols));
    std::printf("    row %-3lld %s%s\n", (long long)r, fmt(v, prec).c_str(), C > max_cols ? " ..." : "");
  }
  if (R > max_rows) std::printf("    ... (%lld more rows)\n", (long long)(R - max_rows));
}

// The first n values of a tensor (copied).
std::vector<float> head(const Tensor& t, int64_t n = 8) {
  const float* p = t.data();
  return std::vector<float>(p, p + std::min(n, t.numel()));
}

void section(const char* title) { std::printf("\n== %s\n", title); }

// dL/dx of q(x) for dL/dy = 1 (what the surrogate lets through).
std::vector<float> surrogate_grad_of(Quantizer& q, const std::vector<float>& xs) {
  Tensor x = Tensor::from_vector({(int64_t)xs.size()}, xs);
  x.set_requires_grad(true);
  q(x).backward(Tensor::ones({(int64_t)xs.size()}));
  return x.grad().to_vector();
}

// The TinyModel of the student report "Investigation and Analysis on Quantized
// Neural Networks" (after Hubara et al., JMLR 2018): 1024 -> 2048 -> 2048 -> 10; the two hidden
// layers have binary weights, a bias and batch norm; the classifier keeps
// full-precision weights (its input is the binary activation of layer 2).
std::shared_ptr<Sequential> tiny_model(Rng& rng) {
  auto m = std::make_shared<Sequential>();
  QuantLinearOptions h1;
  h1.weight_quantizer = std::make_shared<Sign>();
  h1.weight_constraint = Clip{-1, 1};
  h1.bias = true;
  m->add(std::make_shared<QuantLinear>(1024, 2048, rng, h1));  // real input
  m->add(std::make_shared<BatchNorm1d>(2048));
  QuantLinearOptions h2 = h1;
  h2.input_quantizer = std::make_shared<Sign>();  // binary activations in
  m->add(std::make_shared<QuantLinear>(2048, 2048, rng, h2));
  m->add(std::make_shared<BatchNorm1d>(2048));
  QuantLinearOptions cls;
  cls.input_quantizer = std::make_shared<Sign>();  // weights stay fp32
  cls.bias = true;
  m->add(std::make_shared<QuantLinear>(2048, 10, rng, cls));
  return m;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qnn walkthrough: one binarized network, step by step (see docs/bnn-training.md)"};
  uint64_t seed = 1;
  float lr = 0.01f;
  int threads = 1;
  // Digits only: CLI11 would read "-1" into a uint64_t as 2^64 - 1.
  const CLI::Validator seed_range(
      [](std::string& v) {
        const bool digits = !v.empty() && v.size() <= 19 && v.find_first_not_of("0123456789") == std::string::npos;
        return digits ? std::string() : "must be an integer >= 0 (up to 19 digits), got " + v;
      },
      "an integer >= 0");
  const CLI::Validator lr_range(
      [](std::string& v) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        const bool ok = !v.empty() && *end == '\0' && std::isfinite(x) && x > 0 && x <= 100;
        return ok ? std::string() : "must be a number in (0, 100], got " + v;
      },
      "a number in (0, 100]");
  app.add_option("--seed", seed, "random seed of every draw (weights, data, stochastic sign)")
      ->capture_default_str()
      ->check(seed_range);
  app.add_option("--lr", lr, "Adam learning rate of the training step")->capture_default_str()->check(lr_range);
  // The printed numbers do not depend on it (tested); it exists so every app takes --threads.
  app.add_option("--threads", threads, "threads for BLAS and OpenMP (1..1024)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024).description("an integer in 1..1024"));
  CLI11_PARSE(app, argc, argv);
  kernels::set_num_threads(threads);

  try {
    Rng rng(seed);
    std::printf("qnn walkthrough: training a binarized neural network, one function at a time.\n");
    std::printf("Every line names the qnn function that computed it.\n");

    // ---- 1. binarization and surrogate gradients -----------------------------------
    section("1. Binarize a tensor: Sign  (layers/quant/quantizer.cpp: quantize, QuantForward::sign)");
    const std::vector<float> xs{-1.5f, -1.0f, -0.3f, 0.0f, 0.2f, 0.9f, 1.0f, 1.7f};
    Sign ste(Surrogate::hardtanh()), tanh3(Surrogate::tanh(3.0f));
    row("x", xs, 2);
    row("sign(x)  (sign(0) = +1)", ste(Tensor::from_vector({8}, xs)).to_vector(), 2);
    std::printf("  backward with dL/dy = 1: the surrogate decides dL/dx  (surrogate.cpp: surrogate_backward)\n");
    row("hardtanh/STE: 1{|x| <= 1}", surrogate_grad_of(ste, xs), 2);
    row("tanh:3: 3 (1 - tanh^2(3x))", surrogate_grad_of(tanh3, xs), 2);

    Rng srng = rng.split();
    StochasticSign stoch(srng);
    std::vector<float> p(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) p[i] = std::fmin(std::fmax(0.5f * (xs[i] + 1.0f), 0.0f), 1.0f);
    std::printf("  StochasticSign (QuantForward::stochastic_sign): +1 with probability hard_sigmoid(x)\n");
    row("P(+1) = clip((x+1)/2, 0, 1)", p, 2);
    row("one draw", stoch(Tensor::from_vector({8}, xs)).to_vector(), 2);

    section("2. k-bit: Uniform{bits=2, a=1}  (quantizer.cpp: quantize, QuantForward::uniform)");
    Uniform u2(2, 1.0f, Surrogate::periodic(3.0f));
    row("levels()", u2.levels(), 3);
    row("x", xs, 3);
    row("q(x)  (ties round up: q(0) = 1/3)", u2(Tensor::from_vector({8}, xs)).to_vector(), 3);
    row("periodic:3 gradient", surrogate_grad_of(u2, xs), 3);
    std::printf("  (periodic:3: slope 3 on each threshold -2/3, 0, 2/3, smallest on the levels, 0 beyond a)\n");

    // ---- 3. a binary layer -------------------------------------------------------------
    section("3. A binary layer: latent vs binary weights  (layers/quant/quant_linear.cpp)");
    BinaryLinear layer(8, 3, rng);  // Sign on input and weights, Clip{-1, 1}
    std::printf("  BinaryLinear(8 -> 3): the parameter is the real 'latent' weight; forward uses sign(W)\n");
    matrix("weight (latent, glorot init)       QuantLinear::weight", layer.weight);
    matrix("sign(weight), derived each forward  QuantLinear::quantized_weight", layer.quantized_weight(), 0);
    std::printf("  constraint carried by the weight: %s (ParamAttrs.constraint, applied by Optimizer::step)\n",
                layer.weight.param_attrs_if()->constraint_name.c_str());

    Tensor xb = Tensor::from_vector({1, 8}, {1, -1, -1, 1, 1, 1, -1, 1});
    Tensor y = layer(xb);
    row("x (already +-1)", xb.to_vector(), 0);
    row("y = sign(x) sign(W)^T   (linear)", y.to_vector(), 0);
    // The same dot products with bits: pack, XOR, popcount (kernels/bitpack.h).
    const int64_t K = 8;
    const Tensor wb = layer.quantized_weight();
    kernels::PackedVector px = kernels::make_packed(1, K), pw = kernels::make_packed(3, K);
    kernels::pack_rows(xb.data(), 1, K, K, px.data());
    kernels::pack_rows(wb.data(), 3, K, K, pw.data());
    const int64_t words = kernels::packed_words(K);
    std::printf("  XNOR-popcount (kernels::pack_rows; bit 1 means -1):  dot = K - 2 popcount(x XOR w)\n");
    for (int64_t j = 0; j < 3; ++j) {
      int pop = 0;
      for (int64_t w = 0; w < words; ++w) pop += __builtin_popcountll(px[w] ^ pw[j * words + w]);
      std::printf("    unit %lld: x bits %s, w bits %s, popcount(XOR) = %d, dot = %lld - 2*%d = %lld\n",
                  (long long)j, bit_string(px.data(), K).c_str(), bit_string(pw.data() + j * words, K).c_str(), pop,
                  (long long)K, pop, (long long)(K - 2 * pop));
    }

    // ---- 4. AP2 -----------------------------------------------------------------------------
    section("4. AP2(x) = sign(x) 2^round(log2|x|)  (core/ap2.h: ap2)");
    for (float v : {0.0f, 1e-30f, 0.3f, -3.0f, 5.7f}) {
      const float a = ap2(v);
      if (a == 0.0f)
        std::printf("  ap2(%-6g) = 0\n", (double)v);
      else
        std::printf("  ap2(%-6g) = %-12g = %s2^%d\n", (double)v, (double)a, a < 0 ? "-" : "",
                    (int)std::lround(std::log2(std::fabs((double)a))));
    }

    // ---- 5. shift-based batch norm ---------------------------------------------------------
    section("5. Shift-based batch norm  (layers/quant/shift_batchnorm.cpp: shift_batch_norm)");
    const int64_t N = 6, C = 2;
    Tensor xbn = Tensor::from_vector({N, C}, {1.0f, 10.f, 2.5f, 14.f, -0.5f, 7.f, 3.0f, 11.f, 0.5f, 6.f, 1.5f, 12.f});
    const float eps = 1e-4f, gamma = 0.7f;
    matrix("x (channels = columns)", xbn, 2);
    std::printf("  by hand with core/ap2.h, the formulas of shift_batch_norm (gamma = %.2f, eps = %g):\n",
                (double)gamma, (double)eps);
    std::printf("    %-8s %8s %10s %14s %12s %12s %8s\n", "channel", "mean", "var=E[C^2]", "E[C*AP2(C)]",
                "1/std", "AP2(1/std)", "AP2(g)");
    for (int64_t c = 0; c < C; ++c) {
      double mu = 0, v = 0, vs = 0;
      for (int64_t n = 0; n < N; ++n) mu += xbn.data()[n * C + c];
      mu /= N;
      for (int64_t n = 0; n < N; ++n) {
        const float cv = (float)(xbn.data()[n * C + c] - mu);
        v += (double)cv * cv;
        vs += (double)cv * ap2(cv);
      }
      v /= N;
      vs /= N;
      const float inv = 1.0f / std::sqrt((float)vs + eps);
      std::printf("    %-8lld %8.4f %10.4f %14.4f %12.4f %12.4f %8.3f\n", (long long)c, mu, v, vs, (double)inv,
                  (double)ap2(inv), (double)ap2(gamma));
    }
    BatchNormOptions bo{0.1f, eps, true};
    BatchNorm1d bn(C, bo);
    ShiftBatchNorm sbn(C, bo), sbn_exact(C, bo, /*ap2=*/false);
    for (BatchNorm* b : std::initializer_list<BatchNorm*>{&bn, &sbn, &sbn_exact}) b->weight.fill(gamma);
    matrix("float BatchNorm1d             (batch_norm)", bn(xbn), 4);
    matrix("ShiftBatchNorm, ap2 = false   (== float BN)", sbn_exact(xbn), 4);
    matrix("ShiftBatchNorm (AP2-rounded)  (shift_batch_norm)", sbn(xbn), 4);
    row("running_var after one batch, float", bn.running_var.to_vector(), 4);
    row("running_var after one batch, shift", sbn.running_var.to_vector(), 4);

    // ---- 6. model summary ------------------------------------------------------------------
    section("6. The QNN report's TinyModel, 1024-2048-2048-10  (layers/module.cpp: summary_table)");
    auto tiny = tiny_model(rng);
    std::printf("%s", summary_table(*tiny).c_str());
    double fp = 0, packed = 0;
    for (const auto& r : summarize(*tiny)) {
      fp += r.bytes_fp32();
      packed += r.bytes_packed();
    }
    std::printf("  QNN report:  FP 25.296936 MB, binary 0.79053 MB   (= 25.296936 / 32: every parameter at 1 bit)\n");
    std::printf("  qnn:         FP %.6f MB, packed %.6f MB  (binary weights 1 bit; biases, BN and the\n",
                fp / 1e6, packed / 1e6);
    std::printf("               classifier stay fp32): compression %.2fx, not 32x\n", fp / packed);

    // ---- 7. one training step --------------------------------------------------------------
    section("7. One training step of a tiny BNN 8-16-4 (squared hinge, Adam)");
    QuantMLPOptions mo;
    mo.hidden = {16};
    mo.act_in_linear = true;  // the sign of the activations inside the next QuantLinear
    auto net = quant_mlp(8, 4, rng, mo);
    std::printf("%s", summary_table(*net).c_str());
    auto& l0 = static_cast<QuantLinear&>((*net)[0]);
    // Put two latent weights near the clip so this one step has something to clip.
    l0.weight.data()[0] = 0.995f;
    l0.weight.data()[1] = -0.990f;
    Tensor X = Tensor::uniform({6, 8}, -1, 1, rng);
    std::vector<int32_t> T{0, 1, 2, 3, 1, 2};
    std::printf("  data: x [6, 8] uniform(-1, 1), labels {0, 1, 2, 3, 1, 2}\n");
    std::printf("  layer 0 weight lr_scale = 1/sqrt(1.5/(8+16)) = %.3f  (glorot_lr_scale, in ParamAttrs.lr_scale)\n",
                (double)l0.weight.param_attrs_if()->lr_scale);

    Tensor logits = (*net)(X);
    Tensor loss = squared_hinge(logits, T);
    matrix("logits = model(x)  (forward through quant_mlp's layers)", logits, 3);
    std::printf("  loss = squared_hinge(logits, labels) = mean(max(0, 1 - t*y)^2) = %.5f\n", (double)loss.item());
    loss.backward();
    const std::vector<float> w_before = head(l0.weight), sign_before = head(l0.quantized_weight());
    row("latent W[0, :8] before", w_before, 4);
    row("dL/dW[0, :8]  (STE: 1{|W| <= 1})", head(l0.weight.grad()), 4);
    row("sign(W[0, :8]) before", sign_before, 0);

    // Every binary weight of the model before the step, to count flips after it.
    auto all_signs = [&]() {
      std::vector<float> v;
      for (size_t i = 0; i < net->size(); ++i)
        if (auto* ql = dynamic_cast<QuantLinear*>(&(*net)[i])) {
          const auto w = ql->quantized_weight().to_vector();
          v.insert(v.end(), w.begin(), w.end());
        }
      return v;
    };
    const std::vector<float> model_signs_before = all_signs();

    // Wrap the clip so we can print what the optimizer hands it.
    ParamAttrs& pa = l0.weight.param_attrs();
    auto clip = pa.constraint;
    std::vector<float> w_unclipped;
    pa.constraint = [&](float* w, int64_t n) {
      w_unclipped.assign(w, w + 8);
      clip(w, n);
    };
    Adam opt(net->parameters(), lr);
    opt.step();  // update every parameter, then its constraint (Optimizer::step)
    pa.constraint = clip;
    std::printf("  Adam(lr = %g).step() (optim/adam.cpp: Adam::update, then Optimizer::step applies the clip):\n",
                (double)lr);
    std::printf("  w -= lr * lr_scale * m_hat / (sqrt(v_hat) + eps); the first step moves each w by ~lr * lr_scale\n");
    row("after the Adam update (unclipped)", w_unclipped, 4);
    row("after the clip to [-1, 1]", head(l0.weight), 4);
    const std::vector<float> sign_after = head(l0.quantized_weight());
    row("sign(W[0, :8]) after", sign_after, 0);
    int flips = 0;
    for (size_t i = 0; i < sign_after.size(); ++i) flips += sign_after[i] != sign_before[i];
    const std::vector<float> model_signs_after = all_signs();
    int model_flips = 0;
    for (size_t i = 0; i < model_signs_after.size(); ++i) model_flips += model_signs_after[i] != model_signs_before[i];
    std::printf("  binary weights that flipped this step: %d in W[0, :8], %d of %zu in the whole model\n", flips,
                model_flips, model_signs_after.size());
    net->zero_grad();
    const float loss_after = squared_hinge((*net)(X), T).item();
    std::printf("  loss on the same batch after the step: %.5f (before %.5f)\n", (double)loss_after,
                (double)loss.item());
    std::printf("\nDone. docs/bnn-training.md explains each step.\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "walkthrough: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
