// tests/test_quant_kernels.cpp — training with the bit-packed kernels
// (layers/quant/binary_linear_op.h, QuantLinear's kernel paths).
//
// The contract under test: switching the kernels on or off never changes a
// number. binary_linear must reproduce the unfused graph Sign(x), Sign(W),
// linear(xq, wq) (+ add(y, b)) BIT FOR BIT — forward output and every
// gradient — for every ISA variant, odd shapes and every surrogate. The k-bit
// uniform_linear (the same bits with the bit-serial kernel and with sgemm on
// its integer levels) is tested in test_quant_kernels_kbit.cpp; whole training
// runs (identical losses at every step, identical final weights) in
// test_quant_kernels_training.cpp.
//
// Gradients: for a straight-through op the meaningful check is that the fused
// backward equals the unfused graph's backward (above). In addition, with a
// smooth surrogate (tanh:K, periodic:K) the backward is the exact derivative of
//   L_x(x) = sum G * (S(x) sign(W)^T)    (sign(W) held fixed), and
//   L_W(W) = sum G * (sign(x) S(W)^T)    (sign(x) held fixed),
// which central differences check (in double).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "kernels/bitpack.h"
#include "kernels/isa.h"
#include "tests/isa_util.h"
#include "kernels/sgemm.h"
#include "layers/quant/quant.h"
#include "tests/quant_kernels_test_util.h"

using namespace qnn;
using namespace qnn::test;
namespace k = qnn::kernels;

namespace {

// The unfused graph QuantLinear builds with the kernels off (binary path).
Tensor unfused_binary(const Tensor& x, const Tensor& W, const Tensor& b, const Surrogate& sx, const Surrogate& sw) {
  Sign qx(sx), qw(sw);
  const Tensor xq = qx(x);
  const Tensor wq = qw(W);
  if (!b.defined()) return pm1_linear(xq, wq, b);
  return add(pm1_linear(xq, wq, Tensor()), b);
}

}  // namespace

// ---- packing --------------------------------------------------------------------------

TEST_CASE("pack_sign_mask: sign bits equal kernels::pack_rows, mask = |x| <= clip, pads 0, every ISA") {
  IsaGuard guard;
  std::mt19937 rng(7);
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    for (int64_t K : {1, 15, 16, 17, 63, 64, 65, 511, 512, 513, 784, 1000}) {
      const int64_t rows = 5, ld = K + 3, W = k::packed_words(K);
      std::vector<float> x = awkward_values(rng, rows * ld, 1.5f);
      x[0] = std::numeric_limits<float>::quiet_NaN();
      if (K > 2) x[2] = std::numeric_limits<float>::infinity();
      for (float clip : {1.0f, 0.5f}) {
        std::vector<uint64_t> s(rows * W, ~0ull), m(rows * W, ~0ull), ref(rows * W);
        detail::pack_sign_mask(x.data(), rows, K, ld, clip, s.data(), m.data());
        k::pack_rows(x.data(), rows, K, ld, ref.data());
        CHECK(s == ref);
        bool mask_ok = true;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t e = 0; e < W * 64; ++e) {
            const bool bit = (m[r * W + e / 64] >> (e % 64)) & 1;
            const bool want = e < K && std::fabs(x[r * ld + e]) <= clip;
            if (bit != want) mask_ok = false;
          }
        CHECK_MESSAGE(mask_ok, "isa " << std::string(k::isa_name(isa)) << " K " << K);
        // Without a mask buffer only the signs are written.
        std::vector<uint64_t> s2(rows * W, ~0ull);
        detail::pack_sign_mask(x.data(), rows, K, ld, clip, s2.data(), nullptr);
        CHECK(s2 == ref);
      }
    }
  }
}

// ---- binary_linear == unfused graph, bit for bit ----------------------------------------------

TEST_CASE("binary_linear: forward and all gradients identical to the unfused graph (every ISA, odd shapes)") {
  IsaGuard guard;
  k::set_num_threads(2);
  std::mt19937 rng(11);
  int64_t cases = 0;
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    for (int64_t in : kIns)
      for (int64_t N : kNs)
        for (int64_t out : kOuts) {
          const auto xv = awkward_values(rng, N * in, 1.2f);
          auto wv = awkward_values(rng, out * in, 0.6f);
          if (cases % 4 < 2)  // clipped weights, as BinaryNet trains them (all-ones weight mask)
            for (auto& v : wv) v = std::fmin(std::fmax(v, -1.0f), 1.0f);
          auto G = awkward_values(rng, N * out, 1.0f);
          if (N > 1)  // a whole row of exact zeros (a sample with no loss)
            for (int64_t j = 0; j < out; ++j) G[j] = (j % 2) ? 0.0f : -0.0f;
          const auto bv = awkward_values(rng, out, 0.3f);
          const auto surs = all_surrogates();
          const Surrogate sx = surs[(size_t)(cases % surs.size())];
          const Surrogate sw = surs[(size_t)((cases / 2) % surs.size())];
          for (bool with_bias : {false, true}) {
            const std::vector<float>* pb = with_bias ? &bv : nullptr;
            BinaryLinearSpec spec;
            spec.input_surrogate = sx;
            spec.weight_surrogate = sw;
            auto fused = [&](const Tensor& x, const Tensor& W, const Tensor& b) { return binary_linear(x, W, b, spec); };
            auto unf = [&](const Tensor& x, const Tensor& W, const Tensor& b) { return unfused_binary(x, W, b, sx, sw); };
            const bool twice = (cases % 3) == 0;  // accumulate paths too
            const Grads a = run(fused, {N, in}, xv, {out, in}, wv, pb, G, twice);
            const Grads r = run(unf, {N, in}, xv, {out, in}, wv, pb, G, twice);
            INFO("isa " << std::string(k::isa_name(isa)) << " N " << N << " in " << in << " out " << out << " bias " << with_bias
                        << " sx " << sx.str() << " sw " << sw.str() << " twice " << twice);
            CHECK_SAME(a.y, r.y, "y");
            CHECK_SAME(a.gx, r.gx, "dx");
            CHECK_SAME(a.gW, r.gW, "dW");
            if (with_bias) CHECK_SAME(a.gb, r.gb, "db");
            ++cases;
          }
        }
  }
  MESSAGE(cases << " binary_linear cases");
}

TEST_CASE("binary_linear: BNN-size layer (100 x 2048 -> 2048), clipped and unclipped weights, identical") {
  IsaGuard guard;
  k::set_num_threads(2);
  std::mt19937 rng(17);
  const int64_t N = 100, in = 2048, out = 2048;
  const auto xv = awkward_values(rng, N * in, 1.0f);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  std::vector<float> wv(out * in);
  for (auto& v : wv) v = ud(rng);  // all |W| <= 1: the weight mask is all ones
  wv[5] = -1.0f;
  wv[6] = 1.0f;
  const auto G = awkward_values(rng, N * out, 1.0f);
  for (k::Isa isa : {k::best_isa(), k::Isa::scalar}) {
    k::set_isa(isa);
    for (Surrogate sw : {Surrogate::hardtanh(), Surrogate::hardtanh(0.5f)}) {
      BinaryLinearSpec spec;
      spec.weight_surrogate = sw;
      const Surrogate sx = spec.input_surrogate;
      const Grads a = run([&](const Tensor& x, const Tensor& W, const Tensor& b) { return binary_linear(x, W, b, spec); },
                          {N, in}, xv, {out, in}, wv, nullptr, G);
      const Grads r = run([&](const Tensor& x, const Tensor& W, const Tensor& b) { return unfused_binary(x, W, b, sx, sw); },
                          {N, in}, xv, {out, in}, wv, nullptr, G);
      INFO("isa " << std::string(k::isa_name(isa)) << " weight surrogate " << sw.str());
      CHECK_SAME(a.y, r.y, "y");
      CHECK_SAME(a.gx, r.gx, "dx");
      CHECK_SAME(a.gW, r.gW, "dW");
    }
  }
}

TEST_CASE("sign_weight_linear (real x, sign W): identical to Sign(W) + pm1_weight_linear (every ISA, odd shapes)") {
  IsaGuard guard;
  k::set_num_threads(2);
  std::mt19937 rng(19);
  int64_t cases = 0;
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    for (int64_t in : kIns)
      for (int64_t N : kNs)
        for (int64_t out : kOuts) {
          const auto xv = awkward_values(rng, N * in, 1.0f);
          auto wv = awkward_values(rng, out * in, 0.6f);
          if (cases % 2 == 0)
            for (auto& v : wv) v = std::fmin(std::fmax(v, -1.0f), 1.0f);
          const auto G = awkward_values(rng, N * out, 1.0f), bv = awkward_values(rng, out, 0.3f);
          const auto surs = all_surrogates();
          const Surrogate sw = surs[(size_t)(cases % surs.size())];
          const std::vector<float>* pb = cases % 3 == 0 ? &bv : nullptr;
          const bool twice = cases % 5 == 0;
          const Grads a = run([&](const Tensor& x, const Tensor& W, const Tensor& b) { return sign_weight_linear(x, W, b, sw); },
                              {N, in}, xv, {out, in}, wv, pb, G, twice);
          const Grads r = run([&](const Tensor& x, const Tensor& W, const Tensor& b) { Sign q(sw); return pm1_weight_linear(x, q(W), b); },
                              {N, in}, xv, {out, in}, wv, pb, G, twice);
          INFO("isa " << std::string(k::isa_name(isa)) << " N " << N << " in " << in << " out " << out << " sw " << sw.str());
          CHECK_SAME(a.y, r.y, "y");
          CHECK_SAME(a.gx, r.gx, "dx");
          CHECK_SAME(a.gW, r.gW, "dW");
          if (pb) CHECK_SAME(a.gb, r.gb, "db");
          ++cases;
        }
  }
  // x without a gradient (the BNN's first layer): W's gradient only.
  std::mt19937 r2(1);
  const auto xv = awkward_values(r2, 7 * 65, 1.0f), wv = awkward_values(r2, 10 * 65, 0.5f), G = awkward_values(r2, 70, 1.0f);
  Tensor gW[2];
  for (int on = 0; on < 2; ++on) {
    Tensor x = Tensor::from_vector({7, 65}, xv), W = leaf({10, 65}, wv);
    Sign q;
    Tensor y = on ? sign_weight_linear(x, W, Tensor()) : pm1_weight_linear(x, q(W), Tensor());
    y.backward(Tensor::from_vector({7, 10}, G));
    gW[on] = W.grad().clone();
  }
  CHECK_SAME(gW[0], gW[1], "dW (x without grad)");
}

TEST_CASE("binary_linear: the output is the exact integer dot product; one node; eval records nothing") {
  std::mt19937 rng(3);
  const int64_t N = 7, in = 65, out = 10;
  const auto xv = awkward_values(rng, N * in, 1.0f), wv = awkward_values(rng, out * in, 1.0f);
  Tensor x = leaf({N, in}, xv), W = leaf({out, in}, wv);
  Tensor y = binary_linear(x, W, Tensor());
  REQUIRE(y.grad_fn());
  CHECK(std::string(y.grad_fn()->name) == "binary_linear");
  CHECK(graph_size(y) == 1);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < out; ++j) {
      int64_t d = 0;
      for (int64_t kk = 0; kk < in; ++kk)
        d += (xv[i * in + kk] < 0 ? -1 : 1) * (wv[j * in + kk] < 0 ? -1 : 1);
      CHECK(y.at({i, j}) == (float)d);
    }
  NoGradGuard ng;
  Tensor y2 = binary_linear(x, W, Tensor());
  CHECK(!y2.grad_fn());
  CHECK(same_bits(y, y2));
}

TEST_CASE("binary_linear: pre-quantized sides (stochastic sign) behave as pm1_linear() on the +-1 tensors") {
  IsaGuard guard;
  std::mt19937 rng(5);
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    for (int64_t in : {1, 65, 784}) {
      const int64_t N = 7, out = 33;
      const auto xv = awkward_values(rng, N * in, 1.0f), wv = awkward_values(rng, out * in, 1.0f);
      const auto G = awkward_values(rng, N * out, 1.0f);
      for (int mode = 0; mode < 3; ++mode) {
        BinaryLinearSpec spec;
        spec.quantize_input = mode != 0;
        spec.quantize_weight = mode != 1;
        auto fused = [&](const Tensor& x, const Tensor& W, const Tensor& b) {
          Rng r1(42);
          StochasticSign sq(r1);
          const Tensor xin = spec.quantize_input ? x : sq(x);
          const Tensor win = spec.quantize_weight ? W : sq(W);
          return binary_linear(xin, win, b, spec);
        };
        auto unf = [&](const Tensor& x, const Tensor& W, const Tensor& b) {
          Rng r1(42);
          StochasticSign sq(r1);
          Sign s;
          const Tensor xq = spec.quantize_input ? s(x) : sq(x);
          const Tensor wq = spec.quantize_weight ? s(W) : sq(W);
          return pm1_linear(xq, wq, b);
        };
        const Grads a = run(fused, {N, in}, xv, {out, in}, wv, nullptr, G, mode == 2);
        const Grads r = run(unf, {N, in}, xv, {out, in}, wv, nullptr, G, mode == 2);
        INFO("isa " << std::string(k::isa_name(isa)) << " in " << in << " mode " << mode);
        CHECK_SAME(a.y, r.y, "y");
        CHECK_SAME(a.gx, r.gx, "dx");
        CHECK_SAME(a.gW, r.gW, "dW");
      }
    }
  }
}

TEST_CASE("pm1_linear, pm1_weight_linear: central differences on real operands; backward adds into gradients") {
  // L(x, W, b) = sum G * (x W^T + b), evaluated in double.
  using Op = Tensor (*)(const Tensor&, const Tensor&, const Tensor&);
  for (auto [name, op] : {std::pair<const char*, Op>{"pm1_linear", pm1_linear},
                          std::pair<const char*, Op>{"pm1_weight_linear", pm1_weight_linear}}) {
    CAPTURE(name);
    std::mt19937 rng(21);
    std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
    const int64_t N = 3, in = 9, out = 5;  // in = 9, out = 5: ragged last groups of four
    std::vector<float> xv(N * in), wv(out * in), bv(out), G(N * out);
    for (auto* v : {&xv, &wv, &bv, &G})
      for (auto& e : *v) e = ud(rng);
    Tensor x = leaf({N, in}, xv), W = leaf({out, in}, wv), b = leaf({out}, bv);
    Tensor y = op(x, W, b);
    CHECK(std::string(y.grad_fn()->name) == name);
    y.backward(Tensor::from_vector({N, out}, G));
    auto L = [&](const std::vector<double>& xs, const std::vector<double>& ws, const std::vector<double>& bs) {
      double s = 0;
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < out; ++j) {
          double d = bs[j];
          for (int64_t kk = 0; kk < in; ++kk) d += xs[i * in + kk] * ws[j * in + kk];
          s += G[i * out + j] * d;
        }
      return s;
    };
    std::vector<double> xd(xv.begin(), xv.end()), wd(wv.begin(), wv.end()), bd(bv.begin(), bv.end());
    // The forward itself: close to the exact product.
    double worst_y = 0;
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < out; ++j) {
        double d = bd[j];
        for (int64_t kk = 0; kk < in; ++kk) d += xd[i * in + kk] * wd[j * in + kk];
        worst_y = std::max(worst_y, std::fabs(d - y.data()[i * out + j]));
      }
    CHECK(worst_y < 1e-5);
    const double h = 1e-3;
    double worst = 0;
    auto probe = [&](std::vector<double>& v, size_t i, float got) {
      const double keep = v[i];
      v[i] = keep + h;
      const double up = L(xd, wd, bd);
      v[i] = keep - h;
      const double dn = L(xd, wd, bd);
      v[i] = keep;
      worst = std::max(worst, std::fabs((up - dn) / (2 * h) - got));
    };
    for (size_t i = 0; i < xd.size(); ++i) probe(xd, i, x.grad().data()[i]);
    for (size_t i = 0; i < wd.size(); ++i) probe(wd, i, W.grad().data()[i]);
    for (size_t i = 0; i < bd.size(); ++i) probe(bd, i, b.grad().data()[i]);
    CHECK(worst < 1e-4);
    // A second backward adds: every gradient doubles (exactly, in float: v + v).
    const std::vector<float> gx1(x.grad().data(), x.grad().data() + N * in);
    op(x, W, b).backward(Tensor::from_vector({N, out}, G));
    for (int64_t i = 0; i < N * in; ++i) CHECK(x.grad().data()[i] == 2 * gx1[i]);
  }
}

TEST_CASE("binary_linear: central differences of the surrogate relaxation (tanh:3, periodic:2)") {
  // dL/dx of L_x(x) = sum G * (S(x) sign(W)^T) and dL/dW of L_W(W) = sum G * (sign(x) S(W)^T).
  std::mt19937 rng(9);
  const int64_t N = 3, in = 65, out = 4;
  for (Surrogate s : {Surrogate::tanh(3.0f), Surrogate::periodic(2.0f)}) {
    std::uniform_real_distribution<float> ud(-0.9f, 0.9f);
    std::vector<float> xv(N * in), wv(out * in), G(N * out);
    for (auto& v : xv) v = ud(rng);
    for (auto& v : wv) v = ud(rng);
    for (auto& v : G) v = ud(rng);
    BinaryLinearSpec spec;
    spec.input_surrogate = s;
    spec.weight_surrogate = s;
    Tensor x = leaf({N, in}, xv), W = leaf({out, in}, wv);
    binary_linear(x, W, Tensor(), spec).backward(Tensor::from_vector({N, out}, G));
    auto sgn = [](double v) { return v < 0 ? -1.0 : 1.0; };
    auto Lx = [&](const std::vector<double>& xs) {
      double L = 0;
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < out; ++j) {
          double d = 0;
          for (int64_t kk = 0; kk < in; ++kk) d += std::tanh(s.param * xs[i * in + kk]) * sgn(wv[j * in + kk]);
          L += G[i * out + j] * d;
        }
      return L;
    };
    auto LW = [&](const std::vector<double>& ws) {
      double L = 0;
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < out; ++j) {
          double d = 0;
          for (int64_t kk = 0; kk < in; ++kk) d += sgn(xv[i * in + kk]) * std::tanh(s.param * ws[j * in + kk]);
          L += G[i * out + j] * d;
        }
      return L;
    };
    // For bits = 1 on [-1, 1] the periodic surrogate equals tanh:K (surrogate.h).
    const double h = 1e-4;
    double worst = 0;
    std::vector<double> xd(xv.begin(), xv.end()), wd(wv.begin(), wv.end());
    for (int64_t e = 0; e < N * in; e += 7) {
      auto p = xd, m = xd;
      p[e] += h;
      m[e] -= h;
      const double num = (Lx(p) - Lx(m)) / (2 * h);
      worst = std::max(worst, std::fabs(num - x.grad().data()[e]) / (1e-3 + std::fabs(num)));
    }
    for (int64_t e = 0; e < out * in; e += 5) {
      auto p = wd, m = wd;
      p[e] += h;
      m[e] -= h;
      const double num = (LW(p) - LW(m)) / (2 * h);
      worst = std::max(worst, std::fabs(num - W.grad().data()[e]) / (1e-3 + std::fabs(num)));
    }
    INFO("surrogate " << s.str());
    CHECK(worst < 1e-3);
  }
}

// ---- QuantLinear switch -----------------------------------------------------------------

TEST_CASE("QuantLinear: kernel paths, the switch (per layer, default, env) and identical layer outputs") {
  Rng rng(1);
  BinaryLinearOptions bo;
  bo.bias = true;
  BinaryLinear bl(65, 33, rng, bo);
  CHECK(bl.kernel_path() == QuantLinear::KernelPath::binary);
  BinaryLinearOptions first;
  first.binarize_input = false;
  BinaryLinear fl(65, 33, rng, first);
  CHECK(fl.kernel_path() == QuantLinear::KernelPath::sign_weight);

  QuantLinearOptions qo;
  qo.input_quantizer = std::make_shared<Uniform>(2);
  qo.weight_quantizer = std::make_shared<Uniform>(3, 0.5f);
  qo.weight_constraint = Clip{-1.0f, 1.0f};
  QuantLinear ql(65, 33, rng, qo);
  CHECK(ql.kernel_path() == QuantLinear::KernelPath::levels);
  QuantLinearOptions big = qo;
  big.input_quantizer = std::make_shared<Uniform>(16);
  big.weight_quantizer = std::make_shared<Uniform>(16);
  QuantLinear qb(65, 33, rng, big);
  CHECK(qb.kernel_path() == QuantLinear::KernelPath::none);  // 65 * 65535^2 >= 2^24

  QuantLinearOptions so;
  so.input_quantizer = std::make_shared<StochasticSign>(rng);
  so.weight_quantizer = std::make_shared<Uniform>(2);
  so.weight_constraint = Clip{-1.0f, 1.0f};
  QuantLinear sl(65, 33, rng, so);
  CHECK(sl.kernel_path() == QuantLinear::KernelPath::none);  // stochastic x k-bit: unfused
  sl.train(false);
  CHECK(sl.kernel_path() == QuantLinear::KernelPath::levels);  // deterministic in evaluation

  {
    QuantKernelsGuard g(false);
    CHECK(!bl.kernels_enabled());
    bl.set_kernels(true);
    CHECK(bl.kernels_enabled());
    CHECK(bl.uses_kernels());
    bl.reset_kernels();
    CHECK(!bl.uses_kernels());
  }
  Sequential seq;
  auto a = seq.add(std::make_shared<BinaryLinear>(65, 33, rng, bo));
  seq.add(std::make_shared<BinaryLinear>(33, 10, rng, bo));
  CHECK(set_quant_kernels(seq, false) == 2);
  CHECK(!a->uses_kernels());
  CHECK(set_quant_kernels(seq, true) == 2);
  CHECK(a->uses_kernels());

  // The layers' outputs and gradients do not depend on the switch.
  std::mt19937 mt(2);
  const auto xv = awkward_values(mt, 7 * 65, 1.0f);
  const auto G = awkward_values(mt, 7 * 33, 1.0f);
  for (QuantLinear* layer : {static_cast<QuantLinear*>(&bl), &ql, static_cast<QuantLinear*>(&fl)}) {
    Grads res[2];
    for (int on = 0; on < 2; ++on) {
      layer->set_kernels(on == 1);
      layer->zero_grad();
      Tensor x = leaf({7, 65}, xv);
      Tensor y = layer->forward(x);
      const std::string want = layer == &bl ? (on ? "binary_linear" : "add")
                               : layer == &fl ? (on ? "sign_weight_linear" : "pm1_weight_linear")
                                              : "uniform_linear";
      CHECK(std::string(y.grad_fn()->name) == want);
      y.backward(Tensor::from_vector({7, 33}, G));
      res[on] = {y.detach().clone(), x.grad().clone(), layer->weight.grad().clone(),
                 layer->bias.defined() ? layer->bias.grad().clone() : Tensor()};
    }
    CHECK_SAME(res[0].y, res[1].y, "layer y");
    CHECK_SAME(res[0].gx, res[1].gx, "layer dx");
    CHECK_SAME(res[0].gW, res[1].gW, "layer dW");
    CHECK(same_bits(res[0].gb, res[1].gb));
  }
}

TEST_CASE("quant_kernels_default: QNN_QUANT_KERNELS is read on first use; set/guard override") {
  // The variable was read (or defaulted) by earlier tests already; the API
  // wins from then on.
  set_quant_kernels_default(true);
  CHECK(quant_kernels_default());
  {
    QuantKernelsGuard g(false);
    CHECK(!quant_kernels_default());
  }
  CHECK(quant_kernels_default());
}

TEST_CASE("memory accounting: packed sign + mask vs float xq, packed vs float sign(W)") {
  BinaryLinearSpec spec;
  const SavedBytes u = binary_linear_unfused_bytes(100, 2048, 2048, spec);
  const SavedBytes f = binary_linear_fused_bytes(100, 2048, 2048, spec);
  CHECK(u.activation == 100 * 2048 * 4);
  CHECK(f.activation == 2 * 100 * 2048 / 8);  // sign + hardtanh mask: 16x smaller
  CHECK(u.weight == 2048 * 2048 * 4);
  CHECK(f.weight == 2 * 2048 * 2048 / 8);     // sign + mask: 16x smaller
  spec.input_surrogate = Surrogate::tanh(3);
  CHECK(binary_linear_fused_bytes(100, 2048, 2048, spec).activation == 100 * 2048 / 8);  // x itself kept by the graph
  CHECK(binary_linear_fused_bytes(7, 65, 10, spec).activation == 7 * 64);  // rows padded to 512 bits
  reset_binary_linear_stats();
  Tensor x = leaf({7, 65}, std::vector<float>(7 * 65, 0.5f)), W = leaf({10, 65}, std::vector<float>(650, -0.5f));
  binary_linear(x, W, Tensor());
  CHECK(binary_linear_stats().calls == 1);
  CHECK(binary_linear_stats().fused_bytes == binary_linear_fused_bytes(7, 65, 10, {}).total());
  CHECK(binary_linear_stats().unfused_bytes == binary_linear_unfused_bytes(7, 65, 10, {}).total());
}
