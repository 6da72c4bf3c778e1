// tests/test_quant_kernels_kbit.cpp — the k-bit uniform_linear
// (layers/quant/binary_linear_op.h): uniform_levels reproduces the Uniform
// quantizer exactly, the bit-serial kernel and sgemm on the integer levels
// give the same bits (forward and every gradient, every ISA, odd shapes),
// the backward is the derivative of the surrogate relaxation (central
// differences), and shapes whose float products stop being exact are refused.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ops.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "layers/quant/quant.h"
#include "tests/isa_util.h"
#include "tests/quant_kernels_test_util.h"

using namespace qnn;
using namespace qnn::test;
namespace k = qnn::kernels;

// ---- uniform_linear (k-bit) -------------------------------------------------------------

TEST_CASE("uniform_levels: the quantizer's levels, exactly") {
  std::mt19937 rng(4);
  for (int bits : {1, 2, 3, 4, 8}) {
    for (float a : {1.0f, 0.75f, 2.0f}) {
      auto xv = awkward_values(rng, 4000, a);
      // decision thresholds exactly: even multiples of a/L
      const float L = float((1 << bits) - 1);
      for (int t = -(int)L + 1; t < (int)L; t += 2) xv.push_back((a * (float)(t + 1)) / L);
      for (float sp : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()})
        xv.push_back(sp);
      Uniform q(bits, a);
      const auto qv = q(Tensor::from_vector({(int64_t)xv.size()}, xv)).to_vector();
      std::vector<float> v(xv.size());
      uniform_levels(xv.data(), (int64_t)xv.size(), {bits, a}, v.data());
      bool ok = true;
      for (size_t i = 0; i < xv.size(); ++i) {
        if (std::fmod(std::fabs(v[i]), 2.0f) != 1.0f || std::fabs(v[i]) > L) ok = false;
        if ((a * v[i]) / L != qv[i]) ok = false;
      }
      CHECK_MESSAGE(ok, "bits " << bits << " a " << a);
    }
  }
}

TEST_CASE("uniform_linear: bit-serial and sgemm give identical bits (every ISA, bits 1..4, odd shapes)") {
  IsaGuard guard;
  k::set_num_threads(2);
  std::mt19937 rng(21);
  int64_t cases = 0;
  const std::vector<std::pair<int, int>> bit_pairs = {{2, 2}, {3, 3}, {4, 4}, {2, 4}, {1, 3}, {4, 1}};
  for (k::Isa isa : supported_isas()) {
    k::set_isa(isa);
    for (int64_t in : kIns)
      for (int64_t N : kNs)
        for (int64_t out : kOuts) {
          const auto [bx, bw] = bit_pairs[(size_t)(cases % bit_pairs.size())];
          auto xv = awkward_values(rng, N * in, 1.0f);
          auto wv = awkward_values(rng, out * in, 0.5f);
          const float wa = cases % 2 ? 0.5f : 1.0f;
          if (cases % 3 == 0)  // clipped weights: all |W| <= a, the hardtanh pass is skipped
            for (auto& v : wv) v = std::fmin(std::fmax(v, -wa), wa);
          const auto G = awkward_values(rng, N * out, 1.0f), bv = awkward_values(rng, out, 0.3f);
          const bool special = N * in > 2 && cases % 7 == 3;  // NaN and inf inputs: still identical
          if (special) {
            xv[0] = std::numeric_limits<float>::quiet_NaN();
            xv[1] = std::numeric_limits<float>::infinity();
            xv[2] = -std::numeric_limits<float>::infinity();
          }
          const auto surs = all_surrogates();
          UniformLinearSpec spec;
          spec.input_geo = {bx, 1.0f};
          spec.weight_geo = {bw, wa};
          spec.input_surrogate = surs[(size_t)(cases % surs.size())];
          spec.weight_surrogate = surs[(size_t)((cases + 2) % surs.size())];
          const std::vector<float>* pb = cases % 2 ? &bv : nullptr;
          Grads res[2];
          for (int on = 0; on < 2; ++on) {
            UniformLinearSpec s2 = spec;
            s2.use_kernels = on == 1;
            res[on] = run([&](const Tensor& x, const Tensor& W, const Tensor& b) { return uniform_linear(x, W, b, s2); },
                          {N, in}, xv, {out, in}, wv, pb, G);
          }
          INFO("isa " << std::string(k::isa_name(isa)) << " N " << N << " in " << in << " out " << out << " bits " << bx << "x"
                      << bw);
          CHECK_SAME(res[0].y, res[1].y, "y");
          CHECK_SAME(res[0].gx, res[1].gx, "dx");
          CHECK_SAME(res[0].gW, res[1].gW, "dW");
          if (pb) CHECK_SAME(res[0].gb, res[1].gb, "db");
          // Against the plain unfused graph Uniform(x), Uniform(W), linear: the
          // same function, rounded differently (scale before vs after the sum).
          Uniform qx(bx, spec.input_geo.a, spec.input_surrogate), qw(bw, spec.weight_geo.a, spec.weight_surrogate);
          const Grads ref = run([&](const Tensor& x, const Tensor& W, const Tensor& b) { return linear(qx(x), qw(W), b); },
                                {N, in}, xv, {out, in}, wv, pb, G);
          auto close = [](const Tensor& a, const Tensor& b) {
            double worst = 0, scale = 1e-6;
            for (int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, (double)std::fabs(b.data()[i]));
            for (int64_t i = 0; i < a.numel(); ++i)
              worst = std::max(worst, std::fabs((double)a.data()[i] - b.data()[i]) / scale);
            return worst;
          };
          if (special) {
            ++cases;
            continue;
          }
          CHECK(close(res[1].y, ref.y) < 1e-5);
          CHECK(close(res[1].gx, ref.gx) < 1e-5);
          CHECK(close(res[1].gW, ref.gW) < 1e-5);
          ++cases;
        }
  }
  MESSAGE(cases << " uniform_linear cases");
}

TEST_CASE("uniform_linear: central differences of the surrogate relaxation (periodic:3, 2 x 3 bits)") {
  // L_x(x) = sum G * s (S-levels(x) . v_W) where S-levels = S_x(x) / (a_x/L_x): the
  // surrogate of the level map; likewise for W.
  std::mt19937 rng(13);
  const int64_t N = 3, in = 33, out = 4;
  UniformLinearSpec spec;
  spec.input_geo = {2, 1.0f};
  spec.weight_geo = {3, 0.5f};
  spec.input_surrogate = Surrogate::periodic(3.0f);
  spec.weight_surrogate = Surrogate::tanh(2.0f);
  std::uniform_real_distribution<float> ud(-0.95f, 0.95f);
  std::vector<float> xv(N * in), wv(out * in), G(N * out);
  // The f3 of the student report "Investigation and Analysis on Quantized Neural Networks" (after Hubara et al., JMLR 2018) jumps by 2(1 - tanh K) at the levels (odd u), where
  // central differences would see the jump: keep x 0.01 away from +-1/3, +-1.
  for (auto& v : xv) {
    do v = ud(rng);
    while (std::fabs(std::fabs(v) - 1.0f / 3.0f) < 0.01f);
  }
  for (auto& v : wv) v = 0.5f * ud(rng);
  for (auto& v : G) v = ud(rng);
  Tensor x = leaf({N, in}, xv), W = leaf({out, in}, wv);
  uniform_linear(x, W, Tensor(), spec).backward(Tensor::from_vector({N, out}, G));
  auto q = [](const QuantGeometry& g, double v) {  // the quantized value, in double
    float lv;
    const float fv = (float)v;
    uniform_levels(&fv, 1, g, &lv);
    return (double)g.a * lv / ((1 << g.bits) - 1);
  };
  auto S = [](const Surrogate& s, const QuantGeometry& g, double v) { return (double)surrogate_value(s, g, (float)v); };
  auto L = [&](const std::vector<double>& xs, const std::vector<double>& ws, bool relax_x) {
    double tot = 0;
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < out; ++j) {
        double d = 0;
        for (int64_t kk = 0; kk < in; ++kk) {
          const double a = relax_x ? S(spec.input_surrogate, spec.input_geo, xs[i * in + kk])
                                   : q(spec.input_geo, xs[i * in + kk]);
          const double b = relax_x ? q(spec.weight_geo, ws[j * in + kk])
                                   : S(spec.weight_surrogate, spec.weight_geo, ws[j * in + kk]);
          d += a * b;
        }
        tot += G[i * out + j] * d;
      }
    return tot;
  };
  std::vector<double> xd(xv.begin(), xv.end()), wd(wv.begin(), wv.end());
  const double h = 2e-3;  // surrogate_value works in float: a larger step
  double worst = 0;
  for (int64_t e = 0; e < N * in; e += 3) {
    auto p = xd, m = xd;
    p[e] += h;
    m[e] -= h;
    const double num = (L(p, wd, true) - L(m, wd, true)) / (2 * h);
    worst = std::max(worst, std::fabs(num - x.grad().data()[e]) / (1e-2 + std::fabs(num)));
  }
  for (int64_t e = 0; e < out * in; e += 3) {
    auto p = wd, m = wd;
    p[e] += h;
    m[e] -= h;
    const double num = (L(xd, p, false) - L(xd, m, false)) / (2 * h);
    worst = std::max(worst, std::fabs(num - W.grad().data()[e]) / (1e-2 + std::fabs(num)));
  }
  CHECK(worst < 2e-2);
}

TEST_CASE("uniform_linear: rejects shapes where float products stop being exact") {
  CHECK(uniform_linear_exact(2048, 4, 4));
  CHECK(!uniform_linear_exact(100000, 4, 4));
  CHECK(!uniform_linear_exact(65, 16, 16));
  Tensor x = Tensor::zeros({2, 100000}), W = Tensor::zeros({1, 100000});
  UniformLinearSpec spec;
  spec.input_geo = {4, 1.0f};
  spec.weight_geo = {4, 1.0f};
  CHECK_THROWS_AS(uniform_linear(x, W, Tensor(), spec), Error);
}
