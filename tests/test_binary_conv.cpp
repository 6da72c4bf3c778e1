// tests/test_binary_conv.cpp — binary_conv2d (layers/quant/binary_conv_op.h),
// QuantConv2d's binary path: kernels on and off give the same bits (forward,
// every gradient, whole training steps) for every SIMD variant; the off path
// (binary_conv2d_reference) is gradient-checked and both equal a naive conv.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/serialize.h"
#include "core/tensor.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/quant/quant.h"
#include "layers/quant/binary_conv_op.h"
#include "kernels/winograd.h"
#include "optim/adam.h"
#include "tests/grad_check.h"
#include "tests/isa_util.h"

using namespace qnn;

namespace {

// Winograd wherever it applies, whatever the batch: these shapes are below the
// default (auto) mode's size rule, and the Winograd backward is under test.
struct WinogradAlways {
  kernels::WinogradMode was = kernels::winograd_mode();
  WinogradAlways() { kernels::set_winograd(true); }
  ~WinogradAlways() { kernels::set_winograd_mode(was); }
};

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct Geo {
  int64_t N, C, H, W, O, K, stride, pad;
  bool one;  // one-padding
  bool bias;
  int64_t OH() const { return (H + 2 * pad - K) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - K) / stride + 1; }
};

QuantConv2dOptions binary_opts(const Geo& g, std::shared_ptr<Quantizer> in = std::make_shared<Sign>()) {
  QuantConv2dOptions o;
  o.stride = g.stride;
  o.pad = g.pad;
  o.padding = g.one ? ConvPadding::one : ConvPadding::zero;
  o.input_quantizer = std::move(in);
  o.weight_quantizer = std::make_shared<Sign>();
  o.weight_constraint = Clip{-1.0f, 1.0f};
  o.bias = g.bias;
  return o;
}

struct Run {
  std::vector<float> y, gx, gw, gb;
};

// Two forward/backward passes (the second accumulates into existing grads).
Run run_layer(QuantConv2d& l, const Tensor& x0, const Tensor& G) {
  Run r;
  l.zero_grad();
  Tensor x = x0.detach().clone();
  x.set_requires_grad(true);
  Tensor y = l.forward(x);
  y.backward(G);
  r.y = y.to_vector();
  l.forward(x).backward(G);
  r.gx = x.grad().to_vector();
  r.gw = l.weight.grad().to_vector();
  if (l.bias.defined()) r.gb = l.bias.grad().to_vector();
  return r;
}

// Naive conv in double of sign(x) and sign(w), pad value pv.
std::vector<double> naive(const Geo& g, const std::vector<float>& x, const std::vector<float>& w, double pv) {
  std::vector<double> y(size_t(g.N * g.O * g.OH() * g.OW()));
  auto sg = [](float v) { return v < 0 ? -1.0 : 1.0; };
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t oy = 0; oy < g.OH(); ++oy)
        for (int64_t ox = 0; ox < g.OW(); ++ox) {
          double s = 0;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t ky = 0; ky < g.K; ++ky)
              for (int64_t kx = 0; kx < g.K; ++kx) {
                const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                const bool in = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                const double v = in ? sg(x[size_t(((n * g.C + c) * g.H + iy) * g.W + ix)]) : pv;
                s += sg(w[size_t(((o * g.C + c) * g.K + ky) * g.K + kx)]) * v;
              }
          y[size_t(((n * g.O + o) * g.OH() + oy) * g.OW() + ox)] = s;
        }
  return y;
}

std::vector<Geo> odd_shapes() {
  std::vector<Geo> v;
  for (int64_t C : {1, 3, 63, 64, 65, 130})
    for (int64_t K : {1, 3})
      for (int64_t stride : {1, 2})
        for (int64_t pad : {0, 1}) {
          if (K == 1 && pad == 1 && stride == 2) continue;
          v.push_back(Geo{2, C, 5, 4, 5, K, stride, pad, false, C % 2 == 1});
          if (pad > 0) v.push_back(Geo{1, C, 3, 5, 3, K, stride, pad, true, C % 2 == 0});
        }
  // More than one chunk of 256 pixels in dq_W's reduction (pm1_gemm.cpp),
  // zero padding (the padded-tap bitmap) and one-padding, stride 1 and 2.
  v.push_back(Geo{3, 65, 12, 11, 9, 3, 1, 1, false, false});
  v.push_back(Geo{5, 64, 16, 13, 6, 3, 2, 1, false, true});
  v.push_back(Geo{2, 3, 13, 14, 5, 3, 1, 1, true, false});
  // 1-pixel images (the 3x3 kernel sees only padding but the centre), batch 1.
  for (bool one : {false, true}) {
    v.push_back(Geo{1, 65, 1, 1, 4, 3, 1, 1, one, true});
    v.push_back(Geo{3, 3, 1, 1, 2, 3, 2, 1, one, false});
    v.push_back(Geo{1, 64, 1, 1, 7, 1, 1, 0, one, true});
  }
  return v;
}

}  // namespace

TEST_CASE("binary_conv2d: kernels on and off are bit-identical (forward, dx, dW, db) on odd shapes, every ISA") {
  test::IsaGuard guard;
  WinogradAlways wino;
  for (kernels::Isa isa : test::supported_isas()) {
    kernels::set_isa(isa);
    CAPTURE(kernels::isa_name(isa));
    for (const Geo& g : odd_shapes()) {
      CAPTURE(g.C);
      CAPTURE(g.K);
      CAPTURE(g.stride);
      CAPTURE(g.pad);
      CAPTURE(g.one);
      CAPTURE(g.H);
      Run r[2];
      Rng rng(40 + g.C);
      // Inputs on both sides of the hardtanh clip, some exact zeros (sign +1).
      Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -1.5f, 1.5f, rng);
      x.data()[0] = 0.0f;
      const Tensor G = Tensor::uniform({g.N, g.O, g.OH(), g.OW()}, -1, 1, rng);
      for (int on = 0; on < 2; ++on) {
        Rng wr(7);
        QuantConv2d l(g.C, g.O, g.K, wr, binary_opts(g));
        if (g.bias) l.bias.data()[0] = 0.25f;
        l.set_kernels(on == 1);
        REQUIRE(l.kernel_path() == QuantKernelPath::binary);
        CHECK(l.uses_kernels() == (on == 1));
        r[on] = run_layer(l, x, G);
        if (on == 1) {  // the forward is the exact conv of the signs (+ b)
          const auto ref = naive(g, x.to_vector(), l.weight.to_vector(), g.one ? 1.0 : 0.0);
          int bad = 0;
          for (size_t i = 0; i < ref.size(); ++i) {
            const double b = g.bias ? l.bias.to_vector()[(i / size_t(g.OH() * g.OW())) % size_t(g.O)] : 0.0;
            bad += r[on].y[i] != float(ref[i] + b);
          }
          CHECK(bad == 0);
        }
      }
      CHECK(bits_equal(r[0].y, r[1].y));
      CHECK(bits_equal(r[0].gx, r[1].gx));
      CHECK(bits_equal(r[0].gw, r[1].gw));
      CHECK(bits_equal(r[0].gb, r[1].gb));
    }
  }
}

TEST_CASE("binary_conv2d: the straight-through gradients equal a naive double reference") {
  // L = sum(y * G): dq_x[n,c,iy,ix] = sum G * sign(w), dq_W = sum G * tap value
  // (0 or +1 on padding); dx = 1{|x| <= 1} dq_x, dW = 1{|W| <= 1} dq_W.
  // The third shape takes the Winograd backward (3x3, stride 1, C >= 16, no bias, zero padding).
  WinogradAlways wino;
  for (const Geo& g : {Geo{2, 5, 5, 4, 3, 3, 1, 1, false, false}, Geo{2, 65, 4, 5, 3, 3, 2, 1, true, false},
                       Geo{3, 24, 7, 5, 6, 3, 1, 1, false, false}}) {
    CAPTURE(g.one);
    CAPTURE(g.C);
    CHECK(binary_conv_winograd(g.N, kernels::make_patch_geom(g.C, g.H, g.W, 3, 3, g.stride, g.pad), g.O, g.one,
                               g.bias) == (g.C == 24));
    Rng rng(3);
    const Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -1.5f, 1.5f, rng);
    const Tensor G = Tensor::uniform({g.N, g.O, g.OH(), g.OW()}, -1, 1, rng);
    Rng wr(9);
    QuantConv2d l(g.C, g.O, g.K, wr, binary_opts(g));
    l.weight.data()[1] = 1.5f;  // outside the clip: no weight gradient there
    l.set_kernels(true);
    const Run r = run_layer(l, x, G);
    const auto xv = x.to_vector(), wv = l.weight.to_vector(), gv = G.to_vector();
    std::vector<double> dx(xv.size()), dw(wv.size());
    auto sg = [](float v) { return v < 0 ? -1.0 : 1.0; };
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t oy = 0; oy < g.OH(); ++oy)
          for (int64_t ox = 0; ox < g.OW(); ++ox) {
            const double gy = gv[size_t(((n * g.O + o) * g.OH() + oy) * g.OW() + ox)];
            for (int64_t c = 0; c < g.C; ++c)
              for (int64_t ky = 0; ky < g.K; ++ky)
                for (int64_t kx = 0; kx < g.K; ++kx) {
                  const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                  const bool in = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                  const size_t wi = size_t(((o * g.C + c) * g.K + ky) * g.K + kx);
                  const size_t xi = size_t(((n * g.C + c) * g.H + iy) * g.W + ix);
                  dw[wi] += gy * (in ? sg(xv[xi]) : (g.one ? 1.0 : 0.0));
                  if (in) dx[xi] += gy * sg(wv[wi]);
                }
          }
    for (size_t i = 0; i < xv.size(); ++i)
      CHECK(r.gx[i] == doctest::Approx(2 * (std::fabs(xv[i]) <= 1 ? dx[i] : 0.0)).epsilon(1e-5).scale(1.0));
    for (size_t i = 0; i < wv.size(); ++i)
      CHECK(r.gw[i] == doctest::Approx(2 * (std::fabs(wv[i]) <= 1 ? dw[i] : 0.0)).epsilon(1e-5).scale(1.0));
  }
}

TEST_CASE("binary_conv2d_reference: gradient check on real values (the off path's backward), both pad values") {
  // The reference is linear in xq and wq for any values, so central
  // differences check its backward (pm1 sums, col2im, bias) directly.
  for (float pv : {0.0f, 1.0f}) {
    CAPTURE(pv);
    Rng rng(11);
    const Tensor x = Tensor::uniform({2, 3, 4, 5}, -1, 1, rng).set_requires_grad(true);
    const Tensor w = Tensor::uniform({4, 3, 3, 3}, -1, 1, rng).set_requires_grad(true);
    const Tensor b = Tensor::uniform({4}, -1, 1, rng).set_requires_grad(true);
    const auto res = testing::grad_check(
        [pv](const std::vector<Tensor>& in) { return binary_conv2d_reference(in[0], in[1], in[2], 2, 1, pv); },
        {x, w, b});
    CHECK_MESSAGE(res.ok, res.msg);
  }
  // With a smooth surrogate the composition q_in -> reference is what the
  // off path differentiates; its input gradient is S'(x) times the above.
}

TEST_CASE("binary_conv2d: stochastic input (pre-quantized side) and non-hardtanh surrogates stay bit-identical") {
  const Geo g{2, 66, 4, 4, 3, 3, 1, 1, false, true};
  Rng rng(5);
  const Tensor x = Tensor::uniform({g.N, g.C, g.H, g.W}, -1.5f, 1.5f, rng);
  const Tensor G = Tensor::uniform({g.N, g.O, g.OH(), g.OW()}, -1, 1, rng);
  for (int variant = 0; variant < 2; ++variant) {
    CAPTURE(variant);
    Run r[2];
    for (int on = 0; on < 2; ++on) {
      Rng qr(77), wr(8);
      std::shared_ptr<Quantizer> in = variant == 0 ? std::shared_ptr<Quantizer>(std::make_shared<StochasticSign>(qr))
                                                   : std::shared_ptr<Quantizer>(std::make_shared<Sign>(parse_surrogate("tanh:2")));
      QuantConv2d l(g.C, g.O, g.K, wr, binary_opts(g, in));
      l.set_kernels(on == 1);
      REQUIRE(l.kernel_path() == QuantKernelPath::binary);
      r[on] = run_layer(l, x, G);
    }
    CHECK(bits_equal(r[0].y, r[1].y));
    CHECK(bits_equal(r[0].gx, r[1].gx));
    CHECK(bits_equal(r[0].gw, r[1].gw));
    CHECK(bits_equal(r[0].gb, r[1].gb));
  }
}

TEST_CASE("binary_conv2d: a tiny binary CNN trains bit-identically with the kernels on and off") {
  auto train = [](bool on, const std::string& path) {
    Rng rng(1);
    Sequential net;
    QuantConv2dOptions first;
    first.pad = 1;
    first.weight_quantizer = std::make_shared<Sign>();
    first.weight_constraint = Clip{-1.0f, 1.0f};
    net.add(std::make_shared<QuantConv2d>(3, 8, 3, rng, first));
    net.add(std::make_shared<BatchNorm2d>(8));
    const Geo g1{0, 8, 0, 0, 0, 3, 1, 1, false, false}, g2{0, 70, 0, 0, 0, 3, 2, 1, true, false};
    net.add(std::make_shared<QuantConv2d>(8, 70, 3, rng, binary_opts(g1)));
    net.add(std::make_shared<BatchNorm2d>(70));
    net.add(std::make_shared<QuantConv2d>(70, 6, 3, rng, binary_opts(g2)));
    net.add(std::make_shared<Flatten>());
    set_quant_kernels(net, on);
    net.train(true);
    Adam opt(net.parameters(), 1e-2f);
    Rng data(2);
    const Tensor x = Tensor::uniform({4, 3, 6, 6}, -1, 1, data);
    const std::vector<int32_t> labels{0, 1, 2, 3};
    for (int step = 0; step < 3; ++step) {
      opt.zero_grad();
      Tensor logits = net.forward(x);           // [4, 6*3*3]
      Tensor loss = squared_hinge(logits, labels);
      loss.backward();
      opt.step();
    }
    save_tensors(path, net.named_parameters());
  };
  const std::string a = "/tmp/qnn_test_binary_conv_on.ckpt", b = "/tmp/qnn_test_binary_conv_off.ckpt";
  train(true, a);
  train(false, b);
  auto bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
  };
  const auto ba = bytes(a), bb = bytes(b);
  CHECK(ba.size() > 1000);
  CHECK(ba == bb);
  std::remove(a.c_str());
  std::remove(b.c_str());
}
