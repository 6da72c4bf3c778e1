// tests/test_quant_layers.cpp — layers/quant/ layers: QuantLinear / BinaryLinear
// / QuantAct against their analytic forward and STE gradients, weight
// constraints and lr_scale, ShiftBatchNorm against its AP2 formulas and central
// differences, model summaries (honest sizes) and quant_mlp.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "layers/quant/quant.h"
#include "tests/quant_test_util.h"

#if __has_include("optim/sgd.h") && __has_include("optim/adam.h")
#include "optim/adam.h"
#include "optim/sgd.h"
#define QNN_TEST_HAVE_OPTIM 1
#endif

using namespace qnn;
using qnn::test::randv;

namespace {

// Runs f with stderr redirected to a temporary file; returns what it printed.
std::string capture_stderr(const std::function<void()>& f) {
  std::fflush(stderr);
  char path[] = "/tmp/qnn_test_stderr_XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const int saved = dup(2);
  dup2(fd, 2);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::remove(path);
  return ss.str();
}

}  // namespace

// ---- QuantLinear ----------------------------------------------------------------------------------

TEST_CASE("QuantLinear: forward = sign(x) sign(W)^T; gradients are the analytic STE ones") {
  Rng rng(11);
  QuantLinearOptions o;
  o.input_quantizer = std::make_shared<Sign>();
  o.weight_quantizer = std::make_shared<Sign>();
  o.weight_constraint = Clip{-1, 1};
  o.bias = true;
  QuantLinear layer(7, 5, rng, o);
  // latent weights partly outside [-1, 1] so the cancellation shows
  const int64_t N = 6, in = 7, out = 5;
  auto wv = randv(out * in, -1.5f, 1.5f, rng);
  wv[3] = 1.0f;   // boundary: passes
  wv[4] = -1.0f;  // boundary: passes
  std::copy(wv.begin(), wv.end(), layer.weight.data());
  auto bv = randv(out, -0.5f, 0.5f, rng);
  std::copy(bv.begin(), bv.end(), layer.bias.data());
  auto xv = randv(N * in, -1.6f, 1.6f, rng);
  xv[0] = 1.0f;
  Tensor x = Tensor::from_vector({N, in}, xv);
  x.set_requires_grad(true);
  Tensor y = layer(x);
  auto Gv = randv(N * out, -1, 1, rng);
  y.backward(Tensor::from_vector({N, out}, Gv));

  auto sg = [](float v) { return v < 0 ? -1.0 : 1.0; };
  const auto yv = y.to_vector();
  const auto dW = layer.weight.grad().to_vector();
  const auto db = layer.bias.grad().to_vector();
  const auto dx = x.grad().to_vector();
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < out; ++j) {
      double s = bv[j];
      for (int64_t k = 0; k < in; ++k) s += sg(xv[i * in + k]) * sg(wv[j * in + k]);
      CHECK(yv[i * out + j] == doctest::Approx(s));
    }
  // dW = (G^T x_q) * 1{|W| <= 1}
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k) {
      double s = 0;
      for (int64_t i = 0; i < N; ++i) s += Gv[i * out + j] * sg(xv[i * in + k]);
      const double expect = std::fabs(wv[j * in + k]) <= 1.0f ? s : 0.0;
      CHECK(dW[j * in + k] == doctest::Approx(expect).epsilon(1e-5));
    }
  // db = column sums of G; dx = (G W_q) * 1{|x| <= 1}
  for (int64_t j = 0; j < out; ++j) {
    double s = 0;
    for (int64_t i = 0; i < N; ++i) s += Gv[i * out + j];
    CHECK(db[j] == doctest::Approx(s));
  }
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < in; ++k) {
      double s = 0;
      for (int64_t j = 0; j < out; ++j) s += Gv[i * out + j] * sg(wv[j * in + k]);
      const double expect = std::fabs(xv[i * in + k]) <= 1.0f ? s : 0.0;
      CHECK(dx[i * in + k] == doctest::Approx(expect).epsilon(1e-5));
    }
  CHECK(layer.binary_operands());
  CHECK_THROWS_WITH_AS(layer(Tensor::zeros({2, 6})), doctest::Contains("expected [N, 7]"), Error);
}

TEST_CASE("QuantLinear: null quantizers = a plain Linear; quantized_weight derived, not stored") {
  Rng r1(3), r2(3);
  QuantLinear q(4, 3, r1, QuantLinearOptions{});
  Linear l(4, 3, r2, LinearOptions{false, "glorot"});
  Rng rx(4);
  Tensor x = Tensor::uniform({2, 4}, -1, 1, rx);
  CHECK(q(x).to_vector() == l(x).to_vector());
  CHECK(q.parameters().size() == 1);  // no bias, no hidden copies
  CHECK_FALSE(q.binary_operands());

  Rng r3(5);
  QuantLinearOptions o;
  o.weight_quantizer = std::make_shared<Uniform>(2, 1.0f);
  o.weight_constraint = Clip{};
  QuantLinear q2(4, 3, r3, o);
  const auto wq = q2.quantized_weight().to_vector();
  for (float v : wq) CHECK((v == -1.0f || v == 1.0f || v == 1.0f / 3 || v == -1.0f / 3));
  CHECK_FALSE(q2.quantized_weight().requires_grad());
  CHECK(q2.named_parameters().size() == 1);
}

TEST_CASE("Clip constraint travels with the weight (ParamAttrs) and clips") {
  Rng rng(1);
  BinaryLinear layer(5, 4, rng);
  const ParamAttrs* pa = layer.weight.param_attrs_if();
  REQUIRE(pa != nullptr);
  REQUIRE(pa->constraint);
  CHECK(pa->constraint_name == "clip[-1, 1]");
  std::vector<float> w{-3.0f, -1.0f, -0.2f, 0.0f, 0.7f, 1.0f, 1.5f};
  pa->constraint(w.data(), (int64_t)w.size());
  CHECK(w == std::vector<float>{-1.0f, -1.0f, -0.2f, 0.0f, 0.7f, 1.0f, 1.0f});
  // attach by hand
  Tensor t = Tensor::from_vector({3}, {-2.0f, 0.5f, 4.0f});
  Clip{-0.5f, 0.5f}.attach(t);
  t.param_attrs_if()->constraint(t.data(), t.numel());
  CHECK(t.to_vector() == std::vector<float>{-0.5f, 0.5f, 0.5f});
  CHECK_THROWS_AS((void)Constraint(Clip{1.0f, -1.0f}), Error);
}

#ifdef QNN_TEST_HAVE_OPTIM
TEST_CASE("optimizer step applies lr_scale and then the clip (via ParamAttrs)") {
  Rng rng(2);
  QuantLinearOptions o;
  o.input_quantizer = std::make_shared<Sign>();
  o.weight_quantizer = std::make_shared<Sign>();
  o.weight_constraint = Clip{-1, 1};
  o.glorot_lr_scale = true;
  QuantLinear layer(6, 4, rng, o);
  const float scale = glorot_lr_scale(6, 4);
  layer.weight.data()[0] = 0.99f;
  layer.weight.data()[1] = 0.0f;
  const auto before = layer.weight.to_vector();
  Tensor x = Tensor::uniform({3, 6}, -1, 1, rng);
  Tensor y = layer(x);
  y.backward(Tensor::ones({3, 4}));
  const auto g = layer.weight.grad().to_vector();
  const float lr = 0.05f;
  SGD opt(layer.parameters(), lr);
  opt.step();
  const auto after = layer.weight.to_vector();
  for (size_t i = 0; i < after.size(); ++i) {
    const float raw = before[i] - lr * scale * g[i];
    CHECK(after[i] == doctest::Approx(std::fmin(std::fmax(raw, -1.0f), 1.0f)).epsilon(1e-5));
    CHECK(std::fabs(after[i]) <= 1.0f);
  }
  // Adam too: every latent weight ends inside [-1, 1] after large steps
  Adam adam(layer.parameters(), 10.0f);
  for (int s = 0; s < 3; ++s) {
    layer.zero_grad();
    layer(x).backward(Tensor::ones({3, 4}));
    adam.step();
  }
  for (float v : layer.weight.to_vector()) CHECK(std::fabs(v) <= 1.0f);
}
#endif

TEST_CASE("lr_scale: Courbariaux's 1/sqrt(1.5/(fan_in+fan_out)) stored on the weight only") {
  CHECK(glorot_lr_scale(784, 256) == doctest::Approx(1.0 / std::sqrt(1.5 / 1040.0)));
  CHECK(glorot_lr_scale(784, 256) == doctest::Approx(26.3312).epsilon(1e-4));
  Rng rng(1);
  QuantLinearOptions o;
  o.glorot_lr_scale = true;
  o.bias = true;
  QuantLinear l(784, 256, rng, o);
  CHECK(l.weight.param_attrs_if()->lr_scale == doctest::Approx(26.3312).epsilon(1e-4));
  CHECK(l.bias.param_attrs_if() == nullptr);
  QuantLinearOptions o2;
  o2.lr_scale = 0.25f;
  QuantLinear l2(3, 2, rng, o2);
  CHECK(l2.weight.param_attrs_if()->lr_scale == 0.25f);
  QuantLinearOptions o3;
  o3.lr_scale = 0.0f;
  CHECK_THROWS_WITH_AS(QuantLinear(3, 2, rng, o3), doctest::Contains("lr_scale"), Error);
}

TEST_CASE("QuantLinear warns once when quantized weights have no constraint") {
  Rng rng(1);
  QuantLinearOptions o;
  o.weight_quantizer = std::make_shared<Sign>();
  QuantLinear bad(3, 2, rng, o);
  Tensor x = Tensor::ones({1, 3});
  const std::string err = capture_stderr([&] {
    bad(x);
    bad(x);
  });
  CHECK(err.find("no constraint") != std::string::npos);
  CHECK(err.find("no constraint") == err.rfind("no constraint"));  // once
  BinaryLinear good(3, 2, rng);
  QuantLinear fp(3, 2, rng, QuantLinearOptions{});
  CHECK(capture_stderr([&] {
          good(x);
          fp(x);
        }) == "");
}

TEST_CASE("QuantAct: quantizer as a layer, follows train/eval") {
  Rng rng(3);
  auto q = std::make_shared<StochasticSign>(rng);
  Sequential s;
  s.add(std::make_shared<QuantAct>(q));
  s.eval();
  CHECK_FALSE(q->is_training());
  CHECK(s(Tensor::from_vector({1, 3}, {-0.1f, 0.0f, 0.4f})).to_vector() == std::vector<float>{-1, 1, 1});
  s.train();
  CHECK(q->is_training());
  auto row = summarize(s)[0];
  CHECK(row.params == 0);
  CHECK(row.type == "QuantAct");
  CHECK_THROWS_AS(QuantAct(nullptr), Error);
}

// ---- ShiftBatchNorm ----------------------------------------------------------------------------

namespace {

// Reference shift BN in double with the AP2 offsets frozen (see shift_batchnorm.h):
// every AP2(v) is v + delta_v, delta_v taken at the point the offsets were frozen.
struct ShiftRef {
  int64_t N, C;
  double eps;
  std::vector<double> dC, ds, dg;  // frozen offsets
  // y[N, C] for x, gamma, beta
  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& g,
                              const std::vector<double>& b) const {
    std::vector<double> y(N * C);
    for (int64_t c = 0; c < C; ++c) {
      double mu = 0;
      for (int64_t n = 0; n < N; ++n) mu += x[n * C + c];
      mu /= (double)N;
      double V = 0;
      for (int64_t n = 0; n < N; ++n) {
        const double cv = x[n * C + c] - mu;
        V += cv * (cv + dC[n * C + c]);
      }
      V /= (double)N;
      const double s = 1.0 / std::sqrt(V + eps) + ds[c];
      for (int64_t n = 0; n < N; ++n) y[n * C + c] = (g[c] + dg[c]) * (x[n * C + c] - mu) * s + b[c];
    }
    return y;
  }
};

}  // namespace

TEST_CASE("ShiftBatchNorm with ap2 = false is exactly float batch norm (forward, grads, running stats)") {
  Rng rng(21);
  const int64_t N = 9, C = 5;
  Tensor x = Tensor::uniform({N, C}, -2, 3, rng);
  x.set_requires_grad(true);
  Tensor x2 = x.detach().clone();
  x2.set_requires_grad(true);
  ShiftBatchNorm sbn(C, BatchNormOptions{0.1f, 1e-4f, true}, false);
  BatchNorm1d bn(C, BatchNormOptions{0.1f, 1e-4f, true});
  Tensor gam = Tensor::uniform({C}, 0.5f, 1.5f, rng), bet = Tensor::uniform({C}, -1, 1, rng);
  sbn.weight.copy_from(gam);
  bn.weight.copy_from(gam);
  sbn.bias.copy_from(bet);
  bn.bias.copy_from(bet);
  Tensor y1 = sbn(x), y2 = bn(x2);
  Tensor G = Tensor::uniform({N, C}, -1, 1, rng);
  y1.backward(G);
  y2.backward(G);
  auto close = [](const Tensor& a, const Tensor& b, double tol) {
    const auto va = a.to_vector(), vb = b.to_vector();
    REQUIRE(va.size() == vb.size());
    for (size_t i = 0; i < va.size(); ++i) CHECK(va[i] == doctest::Approx(vb[i]).epsilon(tol).scale(1.0));
  };
  close(y1, y2, 1e-5);
  close(x.grad(), x2.grad(), 1e-4);
  close(sbn.weight.grad(), bn.weight.grad(), 1e-4);
  close(sbn.bias.grad(), bn.bias.grad(), 1e-5);
  close(sbn.running_mean, bn.running_mean, 1e-6);
  close(sbn.running_var, bn.running_var, 1e-5);
  sbn.eval();
  bn.eval();
  close(sbn(x2.detach()), bn(x2.detach()), 1e-5);
}

TEST_CASE("ShiftBatchNorm: forward = the documented AP2 formulas, within AP2 tolerance of float BN") {
  Rng rng(31);
  const int64_t N = 16, C = 6;
  Tensor x = Tensor::uniform({N, C}, -3, 2, rng);
  ShiftBatchNorm sbn(C, BatchNormOptions{0.1f, 1e-4f, true});
  sbn.weight.copy_from(Tensor::uniform({C}, 0.3f, 2.0f, rng));
  sbn.bias.copy_from(Tensor::uniform({C}, -1, 1, rng));
  BatchNorm1d bn(C, BatchNormOptions{0.1f, 1e-4f, true});
  bn.weight.copy_from(sbn.weight);
  bn.bias.copy_from(sbn.bias);
  const auto y = sbn(x).to_vector();
  const auto yf = bn(x).to_vector();
  const auto xv = x.to_vector(), gv = sbn.weight.to_vector(), bv = sbn.bias.to_vector();
  for (int64_t c = 0; c < C; ++c) {
    double mu = 0;
    for (int64_t n = 0; n < N; ++n) mu += xv[n * C + c];
    mu /= N;
    double V = 0;
    for (int64_t n = 0; n < N; ++n) {
      const float cv = (float)(xv[n * C + c] - mu);
      V += (double)cv * ap2(cv);
    }
    V /= N;
    const float s = ap2((float)(1.0 / std::sqrt(V + 1e-4)));
    const float gp = ap2(gv[c]);
    // running statistics from the shift variance (unbiased), PyTorch momentum
    CHECK(sbn.running_mean.data()[c] == doctest::Approx(0.1 * mu));
    CHECK(sbn.running_var.data()[c] == doctest::Approx(0.9 + 0.1 * V * N / (N - 1)).epsilon(1e-5));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = n * C + c;
      const double expect = gp * s * (xv[i] - mu) + bv[c];
      CHECK(y[i] == doctest::Approx(expect).epsilon(1e-5).scale(1.0));
      // within 2^(+-1.25) of float batch norm (around beta)
      const double d = y[i] - bv[c], df = yf[i] - bv[c];
      if (std::fabs(df) > 1e-3) {
        CHECK(d * df > 0);
        CHECK(std::fabs(d / df) <= std::pow(2.0, 1.25) + 1e-4);
        CHECK(std::fabs(d / df) >= std::pow(2.0, -1.25) - 1e-4);
      }
    }
  }
  // evaluation: AP2(gamma) (x - running_mean) AP2(1/sqrt(running_var + eps)) + beta
  sbn.eval();
  const auto ye = sbn(x).to_vector();
  for (int64_t c = 0; c < C; ++c) {
    const float rm = sbn.running_mean.data()[c], rv = sbn.running_var.data()[c];
    const float s = ap2(1.0f / std::sqrt(rv + 1e-4f));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = n * C + c;
      CHECK(ye[i] == doctest::Approx(ap2(gv[c]) * s * (xv[i] - rm) + bv[c]).epsilon(1e-5).scale(1.0));
    }
  }
  CHECK_THROWS_WITH_AS(sbn(Tensor::zeros({2, 3, 4, 4})), doctest::Contains("expected [N, 6]"), Error);
}

TEST_CASE("ShiftBatchNorm gradient = central differences of the AP2-frozen (straight-through) function") {
  Rng rng(41);
  const int64_t N = 7, C = 4;
  const double eps = 1e-4;
  for (bool train : {true, false}) {
    ShiftBatchNorm sbn(C, BatchNormOptions{0.1f, (float)eps, true});
    sbn.weight.copy_from(Tensor::uniform({C}, -1.8f, 1.8f, rng));
    sbn.bias.copy_from(Tensor::uniform({C}, -1, 1, rng));
    sbn.running_mean.copy_from(Tensor::uniform({C}, -0.5f, 0.5f, rng));
    sbn.running_var.copy_from(Tensor::uniform({C}, 0.5f, 2.0f, rng));
    sbn.train(train);
    Tensor x = Tensor::uniform({N, C}, -2, 2, rng);
    x.set_requires_grad(true);
    const auto rm0 = sbn.running_mean.to_vector(), rv0 = sbn.running_var.to_vector();
    Tensor y = sbn(x);
    Tensor R = Tensor::uniform({N, C}, -1, 1, rng);
    y.backward(R);
    const auto xv = x.to_vector(), gv = sbn.weight.to_vector(), bv = sbn.bias.to_vector(), Rv = R.to_vector();

    // Freeze the AP2 offsets at this point (computed the way the layer does, in float).
    ShiftRef ref{N, C, eps, std::vector<double>(N * C, 0.0), std::vector<double>(C), std::vector<double>(C)};
    std::vector<double> mean_used(C), inv_used(C);
    for (int64_t c = 0; c < C; ++c) {
      if (train) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) acc += xv[n * C + c];
        const float mu = (float)(acc / N);
        double V = 0;
        for (int64_t n = 0; n < N; ++n) {
          const float cv = xv[n * C + c] - mu;
          ref.dC[n * C + c] = (double)ap2(cv) - cv;
          V += (double)cv * ap2(cv);
        }
        const float inv = 1.0f / std::sqrt((float)(V / N) + (float)eps);
        ref.ds[c] = (double)ap2(inv) - inv;
      }
      ref.dg[c] = (double)ap2(gv[c]) - gv[c];
    }
    std::vector<double> xd(xv.begin(), xv.end()), gd(gv.begin(), gv.end()), bd(bv.begin(), bv.end());
    // evaluation mode reference: constants from the running statistics
    auto eval_forward = [&](const std::vector<double>& xx, const std::vector<double>& g, const std::vector<double>& b) {
      std::vector<double> out(N * C);
      for (int64_t c = 0; c < C; ++c) {
        const double s = ap2(1.0f / std::sqrt(rv0[c] + (float)eps));
        for (int64_t n = 0; n < N; ++n)
          out[n * C + c] = (g[c] + ref.dg[c]) * (xx[n * C + c] - rm0[c]) * s + b[c];
      }
      return out;
    };
    auto L = [&](const std::vector<double>& xx, const std::vector<double>& g, const std::vector<double>& b) {
      const auto out = train ? ref.forward(xx, g, b) : eval_forward(xx, g, b);
      double s = 0;
      for (int64_t i = 0; i < N * C; ++i) s += out[i] * Rv[i];
      return s;
    };
    // the frozen function reproduces the layer's output at this point
    const auto y0 = train ? ref.forward(xd, gd, bd) : eval_forward(xd, gd, bd);
    const auto yv = y.to_vector();
    for (int64_t i = 0; i < N * C; ++i) CHECK(yv[i] == doctest::Approx(y0[i]).epsilon(1e-5).scale(1.0));

    const double h = 1e-5;
    auto fd = [&](std::vector<double>& v, size_t i) {
      const double old = v[i];
      v[i] = old + h;
      const double lp = L(xd, gd, bd);
      v[i] = old - h;
      const double lm = L(xd, gd, bd);
      v[i] = old;
      return (lp - lm) / (2 * h);
    };
    const auto dx = x.grad().to_vector(), dg = sbn.weight.grad().to_vector(), db = sbn.bias.grad().to_vector();
    for (size_t i = 0; i < xd.size(); ++i)
      CHECK_MESSAGE(dx[i] == doctest::Approx(fd(xd, i)).epsilon(1e-3).scale(1.0), "train " << train << " dx " << i);
    for (int64_t c = 0; c < C; ++c) {
      CHECK(dg[c] == doctest::Approx(fd(gd, c)).epsilon(1e-3).scale(1.0));
      CHECK(db[c] == doctest::Approx(fd(bd, c)).epsilon(1e-3).scale(1.0));
    }
  }
}

// ---- summaries -----------------------------------------------------------------------------------

TEST_CASE("summary: BinaryLinear 784 -> 256 is 200704 weights at 1 bit = 25088 bytes; BN stays 32-bit") {
  Rng rng(1);
  Sequential m;
  m.add(std::make_shared<BinaryLinear>(784, 256, rng, BinaryLinearOptions{false}));  // first layer: real input
  m.add(std::make_shared<BatchNorm1d>(256));
  m.add(std::make_shared<BinaryLinear>(256, 10, rng));
  const auto rows = summarize(m);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].type == "BinaryLinear");
  CHECK(rows[0].params == 200704);
  CHECK(rows[0].quant_params == 200704);
  CHECK(rows[0].weight_bits == 1);
  CHECK(rows[0].input_bits == 32);
  CHECK(rows[0].bytes_fp32() == 802816);
  CHECK(rows[0].bytes_packed() == 25088.0);
  CHECK(rows[1].params == 512);
  CHECK(rows[1].quant_params == 0);
  CHECK(rows[1].bytes_packed() == 2048.0);
  CHECK(rows[2].input_bits == 1);
  CHECK(rows[2].bytes_packed() == 320.0);
  const std::string table = summary_table(m);
  CHECK(table.find("BinaryLinear") != std::string::npos);

  // k-bit weights with a bias: the bias stays fp32
  QuantLinearOptions o;
  o.weight_quantizer = std::make_shared<Uniform>(2, 1.0f);
  o.input_quantizer = std::make_shared<Uniform>(4, 1.0f);
  o.weight_constraint = Clip{};
  o.bias = true;
  QuantLinear q(100, 10, rng, o);
  const auto r = q.summary_row();
  CHECK(r.params == 1010);
  CHECK(r.quant_params == 1000);
  CHECK(r.weight_bits == 2);
  CHECK(r.input_bits == 4);
  CHECK(r.bytes_packed() == 1000 * 2 / 8.0 + 10 * 4.0);
  // identity weight quantizer = full precision
  QuantLinearOptions o32;
  o32.weight_quantizer = std::make_shared<Uniform>(32, 1.0f);
  const auto r32 = QuantLinear(5, 5, rng, o32).summary_row();
  CHECK(r32.quant_params == 0);
  CHECK(r32.weight_bits == 32);
}

TEST_CASE("the QNN report's TinyModel: honest size 917544 bytes, not 25.296936 MB / 32") {
  Rng rng(1);
  Sequential m;
  QuantLinearOptions h1;
  h1.weight_quantizer = std::make_shared<Sign>();
  h1.weight_constraint = Clip{};
  h1.bias = true;
  m.add(std::make_shared<QuantLinear>(1024, 2048, rng, h1));
  m.add(std::make_shared<BatchNorm1d>(2048));
  QuantLinearOptions h2 = h1;
  h2.input_quantizer = std::make_shared<Sign>();
  m.add(std::make_shared<QuantLinear>(2048, 2048, rng, h2));
  m.add(std::make_shared<BatchNorm1d>(2048));
  QuantLinearOptions cls;
  cls.input_quantizer = std::make_shared<Sign>();
  cls.bias = true;
  m.add(std::make_shared<QuantLinear>(2048, 10, rng, cls));
  int64_t params = 0;
  double fp = 0, packed = 0;
  for (const auto& r : summarize(m)) {
    params += r.params;
    fp += r.bytes_fp32();
    packed += r.bytes_packed();
  }
  CHECK(params == 6324234);
  CHECK(fp == 25296936.0);
  CHECK(packed == 917544.0);  // 6291456 weights / 8 + 32778 fp32 values * 4
  CHECK(fp / 32 == doctest::Approx(790529.25));  // the report's "0.79053 MB"
}

// ---- quant_mlp ---------------------------------------------------------------------------------------

TEST_CASE("quant_mlp: layouts, train/eval, a training step reaches every latent weight") {
  Rng rng(8);
  QuantMLPOptions o;
  o.hidden = {32, 16};
  o.dropout_in = 0.2f;
  o.dropout_hidden = 0.5f;
  auto m = quant_mlp(20, 4, rng, o);
  std::vector<std::string> types;
  for (const auto& r : summarize(*m)) types.push_back(r.type);
  CHECK(types == std::vector<std::string>{"Dropout", "QuantLinear", "BatchNorm1d", "QuantAct", "Dropout",
                                          "QuantLinear", "BatchNorm1d", "QuantAct", "Dropout", "QuantLinear",
                                          "BatchNorm1d"});
  Tensor x = Tensor::uniform({8, 20}, -1, 1, rng);
  std::vector<int32_t> labels{0, 1, 2, 3, 0, 1, 2, 3};
  Tensor loss = squared_hinge((*m)(x), labels);
  loss.backward();
  for (auto& [name, p] : m->named_parameters()) {
    CHECK_MESSAGE(p.has_grad(), name);
    if (p.ndim() == 2) {
      CHECK(p.param_attrs_if()->constraint_name == "clip[-1, 1]");
      CHECK(p.param_attrs_if()->lr_scale > 1.0f);
    }
  }
  m->eval();
  const auto a = (*m)(x).to_vector();
  CHECK(a == (*m)(x).to_vector());  // deterministic in eval

  // larq-style: the activation quantizer inside the next QuantLinear
  QuantMLPOptions l;
  l.hidden = {32, 16};
  l.act_in_linear = true;
  l.weight_bits = 2;
  l.surrogate = Surrogate::tanh(3);
  l.shift_bn = true;
  auto ml = quant_mlp(20, 4, rng, l);
  const auto rows = summarize(*ml);
  REQUIRE(rows.size() == 6);
  CHECK(rows[0].input_bits == 32);
  CHECK(rows[2].input_bits == 1);
  CHECK(rows[4].input_bits == 1);
  CHECK(rows[2].weight_bits == 2);
  CHECK(rows[1].type == "ShiftBatchNorm1d");
  squared_hinge((*ml)(x), labels).backward();
  for (auto& [name, p] : ml->named_parameters()) CHECK_MESSAGE(p.has_grad(), name);

  // stochastic weights; full-precision activations use HardTanh
  QuantMLPOptions s;
  s.hidden = {8};
  s.stochastic_weights = true;
  s.act_bits = 32;
  auto ms = quant_mlp(20, 4, rng, s);
  CHECK(summarize(*ms)[2].type == "HardTanh");

  QuantMLPOptions bad;
  bad.act_in_linear = true;
  bad.dropout_hidden = 0.5f;
  CHECK_THROWS_WITH_AS(quant_mlp(20, 4, rng, bad), doctest::Contains("act_in_linear"), Error);
  QuantMLPOptions bad2;
  bad2.weight_bits = 0;
  CHECK_THROWS_WITH_AS(quant_mlp(20, 4, rng, bad2), doctest::Contains("weight_bits"), Error);
  QuantMLPOptions bad3;
  bad3.act_bits = 2;
  bad3.stochastic_acts = true;
  CHECK_THROWS_WITH_AS(quant_mlp(20, 4, rng, bad3), doctest::Contains("1 bit only"), Error);
}
