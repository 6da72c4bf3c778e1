// tests/test_quant_conv.cpp — QuantConv2d (layers/quant/quant_conv.h), the
// shared quantized product it runs on (quant_product.h), and the 4-D
// shift-based batch norm.
//
// The reference for every convolution here is a naive loop in double over
// (n, o, oy, ox, c, ky, kx) with an explicit value for taps outside the image
// (0: zero padding; +1: one-padding), written independently of im2col.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/quant/quant.h"

using namespace qnn;

namespace {

struct Geo {
  int64_t N, C, H, W, O, K, stride, pad;
  int64_t OH() const { return (H + 2 * pad - K) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - K) / stride + 1; }
};

// y[n, o, oy, ox] = sum w[o, c, ky, kx] * v(n, c, iy, ix) + b[o]; v = pv outside the image.
std::vector<double> ref_forward(const Geo& g, const std::vector<float>& xq, const std::vector<float>& wq,
                                const std::vector<float>& b, double pv) {
  std::vector<double> y(g.N * g.O * g.OH() * g.OW());
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t oy = 0; oy < g.OH(); ++oy)
        for (int64_t ox = 0; ox < g.OW(); ++ox) {
          double s = b.empty() ? 0.0 : b[o];
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t ky = 0; ky < g.K; ++ky)
              for (int64_t kx = 0; kx < g.K; ++kx) {
                const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                const bool in = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                const double v = in ? xq[((n * g.C + c) * g.H + iy) * g.W + ix] : pv;
                s += (double)wq[((o * g.C + c) * g.K + ky) * g.K + kx] * v;
              }
          y[((n * g.O + o) * g.OH() + oy) * g.OW() + ox] = s;
        }
  return y;
}

// Gradients of L = sum(y * G) w.r.t. the quantized values (padded taps get none).
void ref_backward(const Geo& g, const std::vector<float>& xq, const std::vector<float>& wq,
                  const std::vector<float>& G, double pv, std::vector<double>& dxq, std::vector<double>& dwq) {
  dxq.assign(xq.size(), 0.0);
  dwq.assign(wq.size(), 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t oy = 0; oy < g.OH(); ++oy)
        for (int64_t ox = 0; ox < g.OW(); ++ox) {
          const double gy = G[((n * g.O + o) * g.OH() + oy) * g.OW() + ox];
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t ky = 0; ky < g.K; ++ky)
              for (int64_t kx = 0; kx < g.K; ++kx) {
                const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                const bool in = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                const int64_t wi = ((o * g.C + c) * g.K + ky) * g.K + kx;
                const int64_t xi = ((n * g.C + c) * g.H + iy) * g.W + ix;
                dwq[wi] += gy * (in ? xq[xi] : pv);
                if (in) dxq[xi] += gy * wq[wi];
              }
        }
}

struct Result {
  std::vector<float> y, gx, gw, gb;
};

// Forward + backward(G) of `layer` on a leaf copy of x.
Result run(QuantConv2d& layer, const Tensor& x, const Tensor& G) {
  Tensor xl = x.detach().clone();
  xl.set_requires_grad(true);
  layer.zero_grad();
  Tensor y = layer(xl);
  y.backward(G);
  Result r;
  r.y = y.to_vector();
  r.gx = xl.grad().to_vector();
  r.gw = layer.weight.grad().to_vector();
  if (layer.bias.defined()) r.gb = layer.bias.grad().to_vector();
  return r;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  // memcmp on an empty vector's null data() is undefined (UBSan), hence the empty() case.
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (1.0 + std::fabs(want[i])))) {
      if (bad++ < 3) FAIL_CHECK(std::string(what) << "[" << i << "] = " << got[i] << ", expected " << want[i]);
    }
  CHECK_MESSAGE(bad == 0, std::string(what) << ": " << bad << " of " << got.size() << " differ");
}

// Sign / uniform quantizers' forward values, deterministic.
std::vector<float> quantized(Quantizer& q, const Tensor& t) {
  NoGradGuard ng;
  return q(t).to_vector();
}

// 1{|v| <= 1}: the hardtanh surrogate's derivative (a = 1).
double ste(float v) { return std::fabs(v) <= 1.0f ? 1.0 : 0.0; }

QuantConv2dOptions opts(std::shared_ptr<Quantizer> qi, std::shared_ptr<Quantizer> qw, int64_t stride, int64_t pad,
                        ConvPadding padding, bool bias) {
  QuantConv2dOptions o;
  o.stride = stride;
  o.pad = pad;
  o.padding = padding;
  o.input_quantizer = std::move(qi);
  o.weight_quantizer = std::move(qw);
  o.weight_constraint = Clip{-1.0f, 1.0f};
  o.bias = bias;
  return o;
}

// A layer, its weights spread over [-1.3, 1.3] (some outside the clip, so
// the weight surrogate's mask matters), bias random.
std::shared_ptr<QuantConv2d> make_layer(const Geo& g, QuantConv2dOptions o, uint64_t seed) {
  Rng rng(seed);
  auto l = std::make_shared<QuantConv2d>(g.C, g.O, g.K, rng, std::move(o));
  l->weight.copy_from(Tensor::uniform(l->weight.shape(), -1.3f, 1.3f, rng));
  if (l->bias.defined()) l->bias.copy_from(Tensor::uniform({g.O}, -0.5f, 0.5f, rng));
  return l;
}

// Checks a layer with deterministic quantizers against the naive reference
// (pad value pv): forward and the surrogate gradients (hardtanh, a = 1).
void check_against_reference(QuantConv2d& l, const Geo& g, const Tensor& x, const Tensor& G, double pv, double tol) {
  const Result r = run(l, x, G);
  const std::vector<float> xq = l.input_quantizer() ? quantized(*l.input_quantizer(), x) : x.to_vector();
  const std::vector<float> wq = quantized(*l.weight_quantizer(), l.weight);
  const std::vector<float> b = l.bias.defined() ? l.bias.to_vector() : std::vector<float>{};
  check_close(r.y, ref_forward(g, xq, wq, b, pv), tol, "y");
  std::vector<double> dxq, dwq;
  ref_backward(g, xq, wq, G.to_vector(), pv, dxq, dwq);
  const auto xv = x.to_vector(), wv = l.weight.to_vector();
  for (size_t i = 0; i < dxq.size(); ++i) dxq[i] *= l.input_quantizer() ? ste(xv[i]) : 1.0;
  for (size_t i = 0; i < dwq.size(); ++i) dwq[i] *= ste(wv[i]);
  check_close(r.gx, dxq, tol, "dx");
  check_close(r.gw, dwq, tol, "dW");
  if (!r.gb.empty()) {
    std::vector<double> db(g.O, 0.0);
    const auto Gv = G.to_vector();
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t p = 0; p < g.OH() * g.OW(); ++p) db[o] += Gv[(n * g.O + o) * g.OH() * g.OW() + p];
    check_close(r.gb, db, tol, "db");
  }
}

}  // namespace

TEST_CASE("QuantConv2d, zero padding: equals q_in then conv2d with q_w(W); binary layers keep the binary path") {
  for (const Geo g : {Geo{2, 3, 5, 6, 4, 3, 1, 1}, Geo{2, 5, 7, 5, 3, 3, 2, 1}, Geo{1, 2, 4, 4, 2, 2, 1, 0}}) {
    CAPTURE(g.C);
    Rng rng(10 + g.C);
    auto l = make_layer(g, opts(std::make_shared<Sign>(), std::make_shared<Sign>(), g.stride, g.pad, ConvPadding::zero, true), 7);
    CHECK(l->pad_value() == 0.0f);
    CHECK(l->rows_form() == (g.pad > 0 ? QuantInput::padded : QuantInput::quantized));
    // Zero taps are no +-1 value, but binary_conv2d corrects them exactly.
    CHECK(l->kernel_path() == QuantKernelPath::binary);
    const Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -1.5f, 1.5f, rng);
    const Tensor G = Tensor::uniform({g.N, g.O, g.OH(), g.OW()}, -1, 1, rng);
    const Result r = run(*l, x, G);

    // The unfused composition, through autograd: Sign node, Sign node, conv2d.
    Tensor xl = x.detach().clone(), wl = l->weight.detach().clone(), bl = l->bias.detach().clone();
    xl.set_requires_grad(true);
    wl.set_requires_grad(true);
    bl.set_requires_grad(true);
    Sign s;
    Tensor y = conv2d(s(xl), s(wl), bl, g.stride, g.pad);
    y.backward(G);
    CHECK(bits_equal(r.y, y.to_vector()));  // exact integer sums + one bias add in both
    // The binary layer sums the same products in pm1_gemm's order
    // (binary_conv_op.h), so its gradients are close, not bit-equal.
    const auto close = [](const std::vector<float>& a, const std::vector<float>& b) {
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5).scale(1.0));
    };
    close(r.gx, xl.grad().to_vector());
    close(r.gw, wl.grad().to_vector());
    close(r.gb, bl.grad().to_vector());
    check_against_reference(*l, g, x, G, 0.0, 1e-5);
  }
}

TEST_CASE("QuantConv2d, one-padding: padded taps hold the top level; binary on XNOR, k-bit on bit-serial") {
  const Geo g{2, 3, 5, 6, 4, 3, 1, 1};
  Rng rng(3);
  const Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -1.5f, 1.5f, rng);
  const Tensor G = Tensor::uniform({g.N, g.O, g.OH(), g.OW()}, -1, 1, rng);
  {
    auto l = make_layer(g, opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false), 5);
    CHECK(l->pad_value() == 1.0f);
    CHECK(l->rows_form() == QuantInput::quantized);
    CHECK(l->kernel_path() == QuantKernelPath::binary);
    check_against_reference(*l, g, x, G, 1.0, 1e-5);
    // ... and it differs from zero padding at the border (the definition matters).
    const Result r = run(*l, x, G);
    std::vector<float> xq = quantized(*l->input_quantizer(), x), wq = quantized(*l->weight_quantizer(), l->weight);
    const auto y0 = ref_forward(g, xq, wq, {}, 0.0);
    int differ = 0;
    for (size_t i = 0; i < y0.size(); ++i) differ += r.y[i] != (float)y0[i];
    CHECK(differ > 0);
  }
  {  // 2-bit activations and weights: levels {-1, -1/3, 1/3, 1}, pad value +1
    auto l = make_layer(g, opts(std::make_shared<Uniform>(2), std::make_shared<Uniform>(2), 1, 1, ConvPadding::one, true), 6);
    CHECK(l->pad_value() == 1.0f);
    CHECK(l->kernel_path() == QuantKernelPath::levels);
    check_against_reference(*l, g, x, G, 1.0, 1e-5);
  }
  {  // 16 x 16 bits: too many for exact level sums, so the float product runs on the one-padded rows
    auto l = make_layer(g, opts(std::make_shared<Uniform>(16), std::make_shared<Uniform>(16), 1, 1, ConvPadding::one, true), 7);
    CHECK(l->pad_value() == 1.0f);
    CHECK(l->kernel_path() == QuantKernelPath::none);
    check_against_reference(*l, g, x, G, 1.0, 1e-5);
  }
  {  // Uniform{1, a = 0.5}: the top level is +a
    auto l = make_layer(g, opts(std::make_shared<Uniform>(1, 0.5f), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false), 8);
    CHECK(l->pad_value() == 0.5f);
  }
  {  // a first layer (real input) pads with 0 whatever the option says
    auto l = make_layer(g, opts(nullptr, std::make_shared<Sign>(), 1, 1, ConvPadding::one, false), 9);
    CHECK(l->pad_value() == 0.0f);
    CHECK(l->rows_form() == QuantInput::raw);
    CHECK(l->kernel_path() == QuantKernelPath::sign_weight);
    check_against_reference(*l, g, x, G, 0.0, 1e-5);
  }
}

TEST_CASE("QuantConv2d: kernels on and off are bit-identical, forward and backward, on every path") {
  struct Case {
    const char* name;
    std::function<QuantConv2dOptions(Rng&)> make;
    QuantKernelPath path;
    Geo g;
  };
  const std::vector<Case> cases{
      {"binary one-pad", [](Rng&) { return opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false); },
       QuantKernelPath::binary, Geo{2, 5, 6, 7, 3, 3, 1, 1}},
      {"binary one-pad, bias, stride 2", [](Rng&) { return opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 2, 1, ConvPadding::one, true); },
       QuantKernelPath::binary, Geo{2, 3, 7, 6, 5, 3, 2, 1}},
      {"binary zero-pad", [](Rng&) { return opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::zero, false); },
       QuantKernelPath::binary, Geo{2, 5, 6, 7, 3, 3, 1, 1}},
      {"2x2-bit one-pad", [](Rng&) { return opts(std::make_shared<Uniform>(2), std::make_shared<Uniform>(2), 1, 1, ConvPadding::one, true); },
       QuantKernelPath::levels, Geo{2, 3, 5, 5, 4, 3, 1, 1}},
      {"3x2-bit unpadded", [](Rng&) { return opts(std::make_shared<Uniform>(3), std::make_shared<Uniform>(2), 1, 0, ConvPadding::zero, false); },
       QuantKernelPath::levels, Geo{2, 3, 5, 6, 4, 3, 1, 0}},
      {"first layer, sign weights", [](Rng&) { return opts(nullptr, std::make_shared<Sign>(), 1, 1, ConvPadding::zero, false); },
       QuantKernelPath::sign_weight, Geo{2, 3, 6, 6, 4, 3, 1, 1}},
      {"stochastic input, one-pad", [](Rng& r) { return opts(std::make_shared<StochasticSign>(r), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false); },
       QuantKernelPath::binary, Geo{2, 4, 5, 5, 3, 3, 1, 1}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const Geo g = c.g;
    Result res[2];
    for (int on = 0; on < 2; ++on) {
      Rng qr(77);  // same draws for both layers
      auto l = make_layer(g, c.make(qr), 21);
      l->set_kernels(on == 1);
      CHECK(l->kernel_path() == c.path);
      CHECK(l->uses_kernels() == (on == 1 && c.path != QuantKernelPath::none));
      Rng rng(5);
      const Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -1.5f, 1.5f, rng);
      const Tensor G = Tensor::uniform({g.N, g.O, g.OH(), g.OW()}, -1, 1, rng);
      // Two steps, so the backward's accumulation into existing gradients is compared too.
      res[on] = run(*l, x, G);
      Tensor xl = x.detach().clone();
      xl.set_requires_grad(true);
      l->forward(xl).backward(G);
      const auto w2 = l->weight.grad().to_vector();
      REQUIRE(w2.size() == res[on].gw.size());
      for (size_t i = 0; i < w2.size(); ++i) res[on].gw.push_back(w2[i]);
    }
    CHECK(bits_equal(res[0].y, res[1].y));
    CHECK(bits_equal(res[0].gx, res[1].gx));
    CHECK(bits_equal(res[0].gw, res[1].gw));
    CHECK(bits_equal(res[0].gb, res[1].gb));
  }
}

TEST_CASE("QuantConv2d: set_quant_kernels reaches convolutions; the switch never changes the path") {
  Rng rng(2);
  Sequential net;
  auto c1 = net.add(std::make_shared<QuantConv2d>(3, 4, 3, rng, opts(nullptr, std::make_shared<Sign>(), 1, 1, ConvPadding::zero, false)));
  auto c2 = net.add(std::make_shared<QuantConv2d>(4, 4, 3, rng, opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::zero, false)));
  auto c3 = net.add(std::make_shared<QuantConv2d>(4, 4, 3, rng, opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false)));
  CHECK(set_quant_kernels(net, false) == 3);  // c1 pm1; c2 (zero taps), c3 binary_conv2d
  CHECK(!c1->kernels_enabled());
  CHECK(!c3->uses_kernels());
  CHECK(set_quant_kernels(net, true) == 3);
  CHECK(c3->uses_kernels());
  CHECK(c2->uses_kernels());
  CHECK(c3->kernel_path() == QuantKernelPath::binary);
}

namespace {

// Central differences of sum(f(inputs) * R) against autograd, element by element.
void grad_check(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> in, double tol) {
  for (Tensor& t : in) t.zero_grad();
  Tensor y = f(in);
  Rng rng(99);
  const Tensor R = Tensor::normal(y.shape(), 0.f, 1.f, rng);
  y.backward(R);
  auto L = [&]() {
    NoGradGuard ng;
    const auto yv = f(in).to_vector(), rv = R.to_vector();
    double s = 0;
    for (size_t i = 0; i < yv.size(); ++i) s += (double)yv[i] * rv[i];
    return s;
  };
  for (size_t k = 0; k < in.size(); ++k) {
    const auto an = in[k].grad().to_vector();
    float* p = in[k].data();
    for (int64_t i = 0; i < in[k].numel(); ++i) {
      const float v = p[i];
      p[i] = v + 1e-2f;
      const double hp = (double)p[i] - v, lp = L();
      p[i] = v - 1e-2f;
      const double hm = v - (double)p[i], lm = L();
      p[i] = v;
      const double num = (lp - lm) / (hp + hm);
      CHECK_MESSAGE(std::fabs(an[i] - num) <= tol * (1 + std::fabs(num)),
                    "input " << k << " element " << i << ": analytic " << an[i] << " vs numeric " << num);
    }
  }
}

}  // namespace

TEST_CASE("QuantConv2d without quantizers: gradient check (x, W, b), and it equals conv2d") {
  const Geo g{2, 3, 5, 4, 2, 3, 2, 1};
  Rng rng(4);
  QuantConv2dOptions o;
  o.stride = g.stride;
  o.pad = g.pad;
  o.bias = true;
  auto l = std::make_shared<QuantConv2d>(g.C, g.O, g.K, rng, o);
  l->bias.copy_from(Tensor::uniform({g.O}, -1, 1, rng));
  CHECK(l->kernel_path() == QuantKernelPath::none);
  Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -2, 2, rng);
  x.set_requires_grad(true);
  grad_check([&](const std::vector<Tensor>& in) { return l->forward(in[0]); }, {x, l->weight, l->bias}, 2e-3);
  const auto a = l->forward(x).to_vector(), b = conv2d(x, l->weight, l->bias, g.stride, g.pad).to_vector();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5).scale(1.0));
}

TEST_CASE("QuantConv2d: summary bits and bytes, Glorot LR scale with the conv fans, constraint attached") {
  Rng rng(1);
  QuantConv2dOptions o = opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false);
  o.glorot_lr_scale = true;
  QuantConv2d l(64, 128, 3, rng, o);
  const LayerSummary r = l.summary_row();
  CHECK(r.type == "QuantConv2d");
  CHECK(r.params == 128 * 64 * 9);
  CHECK(r.quant_params == 73728);
  CHECK(r.weight_bits == 1);
  CHECK(r.input_bits == 1);
  CHECK(r.bytes_fp32() == 294912);
  CHECK(r.bytes_packed() == doctest::Approx(9216.0));
  CHECK(l.output_shape({-1, 64, 32, 32}) == Shape{-1, 128, 32, 32});
  CHECK_THROWS_WITH_AS(l.output_shape({-1, 3, 32, 32}), doctest::Contains("expected [N, 64, H, W]"), Error);
  // BinaryNet's Conv2DLayer: num_inputs = 9 * 64, num_units = 9 * 128.
  CHECK(l.weight.param_attrs().lr_scale == doctest::Approx(1.0 / std::sqrt(1.5 / (576.0 + 1152.0))));
  CHECK(l.weight.param_attrs().lr_scale == glorot_lr_scale(576, 1152));
  // The constraint travels with the [O, C, K, K] weight.
  const ParamAttrs* pa = l.weight.param_attrs_if();
  REQUIRE(pa);
  REQUIRE(pa->constraint);
  l.weight.data()[0] = 3.0f;
  l.weight.data()[1] = -2.5f;
  pa->constraint(l.weight.data(), l.weight.numel());
  CHECK(l.weight.data()[0] == 1.0f);
  CHECK(l.weight.data()[1] == -1.0f);

  // 2-bit weights with a bias, real input: bias stays 32-bit.
  QuantConv2dOptions o2 = opts(nullptr, std::make_shared<Uniform>(2), 1, 0, ConvPadding::zero, true);
  QuantConv2d l2(3, 8, 5, rng, o2);
  const LayerSummary r2 = l2.summary_row();
  CHECK(r2.params == 8 * 3 * 25 + 8);
  CHECK(r2.quant_params == 600);
  CHECK(r2.weight_bits == 2);
  CHECK(r2.input_bits == 32);
  CHECK(r2.bytes_packed() == doctest::Approx(600 * 2 / 8.0 + 8 * 4));
  CHECK(l2.output_shape({-1, 3, 32, 32}) == Shape{-1, 8, 28, 28});
}

TEST_CASE("QuantConv2d: bad input and options are a qnn::Error naming the problem") {
  Rng rng(1);
  QuantConv2d l(3, 4, 3, rng, opts(std::make_shared<Sign>(), std::make_shared<Sign>(), 1, 1, ConvPadding::one, false));
  CHECK_THROWS_WITH_AS(l(Tensor::zeros({2, 4, 5, 5})), doctest::Contains("expected [N, 3, H, W]"), Error);
  CHECK_THROWS_WITH_AS(l(Tensor::zeros({2, 3 * 25})), doctest::Contains("QuantConv2d(3 -> 4"), Error);
  CHECK_THROWS_AS(QuantConv2d(0, 4, 3, rng), Error);
  QuantConv2dOptions bad;
  bad.stride = 0;
  CHECK_THROWS_WITH_AS(QuantConv2d(3, 4, 3, rng, bad), doctest::Contains("stride"), Error);
  CHECK_THROWS_WITH_AS(parse_conv_padding("ones"), doctest::Contains("zero or one"), Error);
  CHECK(parse_conv_padding("one") == ConvPadding::one);
}

// ---- shift-based batch norm on [N, C, H, W] ------------------------------------------------------

TEST_CASE("ShiftBatchNorm2d on [N, C, H, W] = the 1-d layer on the [N*H*W, C] rows, bit for bit") {
  const int64_t N = 3, C = 4, H = 3, W = 5;
  Rng rng(12);
  const Tensor x4 = Tensor::uniform({N, C, H, W}, -2, 3, rng);
  const Tensor G4 = Tensor::uniform({N, C, H, W}, -1, 1, rng);
  // [N, C, H, W] -> [N*H*W, C]: row (n, p), column c.
  auto to_rows = [&](const Tensor& t) {
    const auto v = t.to_vector();
    std::vector<float> r(v.size());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = 0; p < H * W; ++p) r[(n * H * W + p) * C + c] = v[(n * C + c) * H * W + p];
    return Tensor::from_vector({N * H * W, C}, r);
  };
  for (bool ap2 : {true, false}) {
    ShiftBatchNorm2d b4(C, BatchNormOptions{0.1f, 1e-4f, true}, ap2);
    ShiftBatchNorm b1(C, BatchNormOptions{0.1f, 1e-4f, true}, ap2);
    CHECK(b4.type_name() == "ShiftBatchNorm2d");
    const Tensor gam = Tensor::uniform({C}, -1.5f, 1.5f, rng), bet = Tensor::uniform({C}, -1, 1, rng);
    b4.weight.copy_from(gam);
    b1.weight.copy_from(gam);
    b4.bias.copy_from(bet);
    b1.bias.copy_from(bet);
    for (bool train : {true, false}) {
      b4.train(train);
      b1.train(train);
      b4.zero_grad();
      b1.zero_grad();
      Tensor xa = x4.clone(), xb = to_rows(x4);
      xa.set_requires_grad(true);
      xb.set_requires_grad(true);
      Tensor ya = b4(xa), yb = b1(xb);
      ya.backward(G4);
      yb.backward(to_rows(G4));
      CHECK(bits_equal(to_rows(ya).to_vector(), yb.to_vector()));
      CHECK(bits_equal(to_rows(xa.grad()).to_vector(), xb.grad().to_vector()));
      CHECK(bits_equal(b4.weight.grad().to_vector(), b1.weight.grad().to_vector()));
      CHECK(bits_equal(b4.bias.grad().to_vector(), b1.bias.grad().to_vector()));
      CHECK(bits_equal(b4.running_mean.to_vector(), b1.running_mean.to_vector()));
      CHECK(bits_equal(b4.running_var.to_vector(), b1.running_var.to_vector()));
    }
  }
  ShiftBatchNorm2d b(C);
  CHECK_THROWS_WITH_AS(b(Tensor::zeros({2, C})), doctest::Contains("expected [N, 4, H, W]"), Error);
  CHECK_THROWS_WITH_AS(b(Tensor::zeros({2, C + 1, 2, 2})), doctest::Contains("expected [N, 4, H, W]"), Error);
  CHECK_THROWS_AS(ShiftBatchNorm(C, {}, true, 1), Error);
  // one value per channel cannot be normalised in training
  CHECK_THROWS_WITH_AS(b(Tensor::zeros({1, C, 1, 1})), doctest::Contains("more than one value per channel"), Error);
}

TEST_CASE("ShiftBatchNorm2d gradient = central differences of the AP2-frozen function on [N, C, H, W]") {
  const int64_t N = 2, C = 3, H = 2, W = 3, S = H * W, M = N * S;
  const double eps = 1e-4;
  Rng rng(43);
  for (bool train : {true, false}) {
    ShiftBatchNorm2d sbn(C, BatchNormOptions{0.1f, (float)eps, true});
    sbn.weight.copy_from(Tensor::uniform({C}, -1.8f, 1.8f, rng));
    sbn.bias.copy_from(Tensor::uniform({C}, -1, 1, rng));
    sbn.running_mean.copy_from(Tensor::uniform({C}, -0.5f, 0.5f, rng));
    sbn.running_var.copy_from(Tensor::uniform({C}, 0.5f, 2.0f, rng));
    sbn.train(train);
    Tensor x = Tensor::uniform({N, C, H, W}, -2, 2, rng);
    x.set_requires_grad(true);
    const auto rm0 = sbn.running_mean.to_vector(), rv0 = sbn.running_var.to_vector();
    Tensor y = sbn(x);
    const Tensor R = Tensor::uniform({N, C, H, W}, -1, 1, rng);
    y.backward(R);
    const auto xv = x.to_vector(), gv = sbn.weight.to_vector(), bv = sbn.bias.to_vector(), Rv = R.to_vector();
    auto idx = [&](int64_t n, int64_t c, int64_t p) { return (n * C + c) * S + p; };

    // Frozen AP2 offsets (every AP2(v) becomes v + (AP2(v0) - v0)), taken as the layer computes them.
    std::vector<double> dCen(N * C * S, 0.0), ds(C, 0.0), dg(C);
    for (int64_t c = 0; c < C; ++c) {
      if (train) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < S; ++p) acc += xv[idx(n, c, p)];
        const float mu = (float)(acc / M);
        double V = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < S; ++p) {
            const float cv = xv[idx(n, c, p)] - mu;
            dCen[idx(n, c, p)] = (double)ap2(cv) - cv;
            V += (double)cv * ap2(cv);
          }
        const float inv = 1.0f / std::sqrt((float)(V / M) + (float)eps);
        ds[c] = (double)ap2(inv) - inv;
      }
      dg[c] = (double)ap2(gv[c]) - gv[c];
    }
    auto forward = [&](const std::vector<double>& xx, const std::vector<double>& g, const std::vector<double>& b) {
      std::vector<double> out(N * C * S);
      for (int64_t c = 0; c < C; ++c) {
        double mu, s;
        if (train) {
          mu = 0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t p = 0; p < S; ++p) mu += xx[idx(n, c, p)];
          mu /= (double)M;
          double V = 0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t p = 0; p < S; ++p) {
              const double cv = xx[idx(n, c, p)] - mu;
              V += cv * (cv + dCen[idx(n, c, p)]);
            }
          s = 1.0 / std::sqrt(V / (double)M + eps) + ds[c];
        } else {
          mu = rm0[c];
          s = ap2(1.0f / std::sqrt(rv0[c] + (float)eps));
        }
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < S; ++p) out[idx(n, c, p)] = (g[c] + dg[c]) * (xx[idx(n, c, p)] - mu) * s + b[c];
      }
      return out;
    };
    std::vector<double> xd(xv.begin(), xv.end()), gd(gv.begin(), gv.end()), bd(bv.begin(), bv.end());
    const auto y0 = forward(xd, gd, bd);
    const auto yv = y.to_vector();
    for (size_t i = 0; i < yv.size(); ++i) CHECK(yv[i] == doctest::Approx(y0[i]).epsilon(1e-5).scale(1.0));
    auto L = [&]() {
      const auto out = forward(xd, gd, bd);
      double s = 0;
      for (size_t i = 0; i < out.size(); ++i) s += out[i] * Rv[i];
      return s;
    };
    const double h = 1e-5;
    auto fd = [&](std::vector<double>& v, size_t i) {
      const double old = v[i];
      v[i] = old + h;
      const double lp = L();
      v[i] = old - h;
      const double lm = L();
      v[i] = old;
      return (lp - lm) / (2 * h);
    };
    const auto dx = x.grad().to_vector(), dgam = sbn.weight.grad().to_vector(), db = sbn.bias.grad().to_vector();
    for (size_t i = 0; i < xd.size(); ++i)
      CHECK_MESSAGE(dx[i] == doctest::Approx(fd(xd, i)).epsilon(1e-3).scale(1.0), "train " << train << " dx " << i);
    for (int64_t c = 0; c < C; ++c) {
      CHECK(dgam[c] == doctest::Approx(fd(gd, c)).epsilon(1e-3).scale(1.0));
      CHECK(db[c] == doctest::Approx(fd(bd, c)).epsilon(1e-3).scale(1.0));
    }
  }
}
