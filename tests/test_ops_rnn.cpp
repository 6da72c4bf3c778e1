// tests/test_ops_rnn.cpp — embedding and the fused LSTM (core/ops_rnn.cpp):
// central differences, equality with the LSTM composed from elementary ops
// (tests/lstm_reference.h), in-recurrence quantizer plumbing, a 300-step run.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/grad_check.h"
#include "tests/lstm_reference.h"

using namespace qnn;
using namespace qnn::testing;

namespace {

// A leaf in [lo, hi), requiring grad (tests/grad_check.h's leaf defaults to [-2, 2)).
Tensor param(const Shape& s, Rng& rng, float lo = -1.f, float hi = 1.f) { return leaf(s, rng, lo, hi); }

// max |a - b| / (1 + |b|) over all elements
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs((double)a[i] - b[i]) / (1.0 + std::fabs(b[i])));
  return m;
}

// A smooth stand-in for a quantizer: forward a tanh(K x / a), backward its
// true derivative. With it the fused op's in-recurrence quantizer plumbing
// (what it saves, where it multiplies the surrogate in) can be checked by
// finite differences, which a staircase forward would not allow.
struct SmoothQ {
  float k = 1.5f, a = 1.2f;
  float f(float x) const { return a * std::tanh(k * x / a); }
  float df(float x) const {
    const float t = std::tanh(k * x / a);
    return k * (1.f - t * t);
  }
  ArrayQuant array() const {
    SmoothQ s = *this;
    return {[s](const float* x, float* y, int64_t n) {
              for (int64_t i = 0; i < n; ++i) y[i] = s.f(x[i]);
            },
            [s](const float* x, const float* g, float* gx, int64_t n) {
              for (int64_t i = 0; i < n; ++i) gx[i] += g[i] * s.df(x[i]);
            }};
  }
  std::function<Tensor(const Tensor&)> composed() const {
    SmoothQ s = *this;
    return [s](const Tensor& x) {
      return map_with_grad(x, "smooth_q", [s](float v) { return s.f(v); }, [s](float v) { return s.df(v); });
    };
  }
};

// A staircase quantizer (3 bits on [-1, 1]) with a tanh surrogate slope, for
// the fused-vs-composed comparison (no finite differences through it).
struct StairQ {
  static float f(float x) {
    const float c = x < -1.f ? -1.f : (x > 1.f ? 1.f : x);
    return std::round(c * 3.5f) / 3.5f;
  }
  static float df(float x) {
    const float t = std::tanh(2.f * x);
    return 2.f * (1.f - t * t);
  }
  static ArrayQuant array() {
    return {[](const float* x, float* y, int64_t n) {
              for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
            },
            [](const float* x, const float* g, float* gx, int64_t n) {
              for (int64_t i = 0; i < n; ++i) gx[i] += g[i] * df(x[i]);
            }};
  }
  static std::function<Tensor(const Tensor&)> composed() {
    return [](const Tensor& x) { return map_with_grad(x, "stair_q", f, df); };
  }
};

const char* gate_name(LstmGates g) { return g == LstmGates::hard ? "hard" : "smooth"; }

}  // namespace

// =============================================================================
// embedding
// =============================================================================

TEST_CASE("embedding: gathers rows, [B, T, E]") {
  Tensor table = Tensor::from_vector({4, 2}, {0, 0, 1, 2, 3, 4, 5, 6});
  Tensor y = embedding(table, {1, 3, 0, 2, 2, 1}, 2, 3);
  CHECK(y.shape() == Shape{2, 3, 2});
  CHECK(y.to_vector() == std::vector<float>{1, 2, 5, 6, 0, 0, 3, 4, 3, 4, 1, 2});
}

TEST_CASE("grad: embedding, with and without a frozen padding row") {
  Rng rng(11);
  const std::vector<int32_t> ids = {0, 3, 3, 1, 4, 0, 2, 3};  // repeats, padding twice
  const std::vector<int32_t> no_pad = {2, 3, 3, 1, 4, 1, 2, 3};
  for (bool freeze : {true, false}) {
    Tensor table = param({5, 3}, rng);
    // Frozen, row 0 deliberately disagrees with finite differences, so that
    // case is checked without padding ids, and row 0 separately below.
    expect_grad(std::string("embedding freeze=") + (freeze ? "yes" : "no"),
                [&](const std::vector<Tensor>& in) { return embedding(in[0], freeze ? no_pad : ids, 2, 4, freeze); },
                {table});
    table.zero_grad();
    Tensor y = embedding(table, ids, 2, 4, freeze);
    y.backward(Tensor::ones(y.shape()));
    const std::vector<float> g = table.grad().to_vector();
    CHECK(g[0] == (freeze ? 0.f : 2.f));
    CHECK(g[3 * 3] == 3.f);  // id 3 appears three times
  }
}

TEST_CASE("embedding: refuses ids out of range and wrong sizes") {
  Tensor table = Tensor::zeros({5, 3});
  CHECK_THROWS_WITH_AS(embedding(table, {1, 5}, 1, 2), doctest::Contains("id 5 at position 1"), Error);
  CHECK_THROWS_WITH_AS(embedding(table, {-1, 0}, 2, 1), doctest::Contains("outside the vocabulary"), Error);
  CHECK_THROWS_AS(embedding(table, {1, 2, 3}, 2, 2), Error);
  CHECK_THROWS_AS(embedding(Tensor::zeros({5}), {1}, 1, 1), Error);
}

// =============================================================================
// lstm: finite differences
// =============================================================================

TEST_CASE("grad: lstm, 5 steps, both gate flavours, last state and sequence") {
  for (LstmGates gates : {LstmGates::smooth, LstmGates::hard})
    for (bool seq : {false, true}) {
      Rng rng(seq ? 21 : 22);
      // B=2, T=5, I=3, H=4
      Tensor x = param({2, 5, 3}, rng), wih = param({16, 3}, rng, -0.6f, 0.6f), whh = param({16, 4}, rng, -0.6f, 0.6f);
      Tensor b = param({16}, rng, -0.3f, 0.3f);
      LstmQuant q;
      q.gates = gates;
      expect_grad(std::string("lstm ") + gate_name(gates) + (seq ? " sequence" : " last"),
                  [&](const std::vector<Tensor>& in) { return lstm(in[0], in[1], in[2], in[3], &q, seq); },
                  {x, wih, whh, b});
    }
}

TEST_CASE("grad: lstm with smooth in-recurrence quantizers (hidden, cell, pre-activations)") {
  for (LstmGates gates : {LstmGates::smooth, LstmGates::hard}) {
    Rng rng(31);
    Tensor x = param({2, 5, 3}, rng), wih = param({16, 3}, rng, -0.6f, 0.6f), whh = param({16, 4}, rng, -0.6f, 0.6f);
    Tensor b = param({16}, rng, -0.3f, 0.3f);
    LstmQuant q;
    q.gates = gates;
    q.hidden = SmoothQ{1.5f, 1.0f}.array();
    q.cell = SmoothQ{0.8f, 2.0f}.array();
    q.preact = SmoothQ{1.2f, 1.5f}.array();
    expect_grad(std::string("lstm quantized ") + gate_name(gates),
                [&](const std::vector<Tensor>& in) { return lstm(in[0], in[1], in[2], in[3], &q, true); },
                {x, wih, whh, b});
  }
}

TEST_CASE("grad: lstm with a learned recurrent scale, float and levels products") {
  for (LstmGates gates : {LstmGates::smooth, LstmGates::hard})
    for (bool seq : {false, true}) {
      Rng rng(seq ? 33 : 34);
      // B=2, T=5, I=3, H=4; s [4H] of both signs
      Tensor x = param({2, 5, 3}, rng), wih = param({16, 3}, rng, -0.6f, 0.6f), whh = param({16, 4}, rng, -0.6f, 0.6f);
      Tensor b = param({16}, rng, -0.3f, 0.3f), rs = param({16}, rng, -1.5f, 1.5f);
      LstmQuant q;
      q.gates = gates;
      q.hidden = SmoothQ{1.5f, 1.0f}.array();
      expect_grad(std::string("lstm recurrent scale ") + gate_name(gates) + (seq ? " sequence" : " last"),
                  [&](const std::vector<Tensor>& in) { return lstm(in[0], in[1], in[2], in[3], &q, seq, in[4]); },
                  {x, wih, whh, b, rs});
    }
}

TEST_CASE("grad: lstm without bias and with inputs that need no gradient") {
  Rng rng(41);
  Tensor x = Tensor::uniform({3, 4, 2}, -1, 1, rng);  // no grad (an embedding that is frozen)
  Tensor wih = param({12, 2}, rng), whh = param({12, 3}, rng);
  expect_grad("lstm no bias",
              [&](const std::vector<Tensor>& in) { return lstm(in[0], in[1], in[2], Tensor(), nullptr, false); },
              {x, wih, whh});
}

// =============================================================================
// lstm: equals the composed cell
// =============================================================================

namespace {

// with_scale: a learned recurrent scale s [4H] on both sides.
void compare_fused_composed(const std::string& what, const LstmQuant& fq, ComposedLstmQuant cq, bool seq,
                            uint64_t seed, bool with_scale = false) {
  Rng rng(seed);
  Tensor x = param({2, 5, 3}, rng), wih = param({16, 3}, rng, -0.8f, 0.8f), whh = param({16, 4}, rng, -0.8f, 0.8f);
  Tensor b = param({16}, rng, -0.5f, 0.5f);
  Tensor rs = with_scale ? param({16}, rng, -1.5f, 1.5f) : Tensor();
  cq.recurrent_scale = rs;
  std::vector<Tensor> params = {x, wih, whh, b};
  if (with_scale) params.push_back(rs);
  std::vector<std::vector<float>> grads[2];
  std::vector<float> outs[2];
  for (int k = 0; k < 2; ++k) {
    for (Tensor t : params) t.zero_grad();
    Tensor y = k == 0 ? lstm(x, wih, whh, b, &fq, seq, rs) : lstm_composed(x, wih, whh, b, cq, seq);
    Rng rr(seed + 100);
    Tensor R = Tensor::normal(y.shape(), 0.f, 1.f, rr);  // a nonzero loss on every output
    sum(mul(y, R)).backward();
    outs[k] = y.to_vector();
    for (const Tensor& t : params) grads[k].push_back(t.grad().to_vector());
  }
  INFO(what);
  CHECK(max_rel_diff(outs[0], outs[1]) < 1e-5);
  const char* names[] = {"x", "w_ih", "w_hh", "b", "recurrent_scale"};
  for (size_t p = 0; p < params.size(); ++p) {
    INFO("gradient of " << names[p]);
    CHECK(max_rel_diff(grads[0][p], grads[1][p]) < 1e-5);
    double norm = 0;
    for (float v : grads[0][p]) norm += std::fabs(v);
    CHECK(norm > 1e-3);  // the comparison is not of two zeros
  }
}

}  // namespace

TEST_CASE("lstm: the fused op equals the cell composed from elementary ops, outputs and gradients") {
  for (LstmGates gates : {LstmGates::smooth, LstmGates::hard})
    for (bool seq : {false, true}) {
      LstmQuant fq;
      fq.gates = gates;
      ComposedLstmQuant cq;
      cq.gates = gates;
      compare_fused_composed(std::string("plain ") + gate_name(gates) + (seq ? " seq" : " last"), fq, cq, seq, 51);
      fq.hidden = StairQ::array();
      fq.cell = SmoothQ{0.8f, 2.0f}.array();
      fq.preact = StairQ::array();
      cq.hidden = StairQ::composed();
      cq.cell = SmoothQ{0.8f, 2.0f}.composed();
      cq.preact = StairQ::composed();
      compare_fused_composed(std::string("quantized ") + gate_name(gates) + (seq ? " seq" : " last"), fq, cq, seq,
                             52);
      compare_fused_composed(std::string("quantized, recurrent scale ") + gate_name(gates) + (seq ? " seq" : " last"),
                             fq, cq, seq, 53, true);
    }
}

TEST_CASE("lstm: the comparison with the composed cell can fail") {
  // A wrong gate order in the reference (o and f swapped through the flavour)
  // must be seen: hard gates against a smooth reference differ.
  Rng rng(61);
  Tensor x = param({2, 5, 3}, rng), wih = param({16, 3}, rng), whh = param({16, 4}, rng), b = param({16}, rng);
  LstmQuant fq;
  fq.gates = LstmGates::hard;
  const std::vector<float> a = lstm(x, wih, whh, b, &fq, true).to_vector();
  const std::vector<float> c = lstm_composed(x, wih, whh, b, ComposedLstmQuant{}, true).to_vector();
  CHECK(max_rel_diff(a, c) > 1e-2);
}

TEST_CASE("lstm: evaluation (no gradient) gives the training forward exactly, and one node") {
  Rng rng(71);
  Tensor x = param({3, 7, 2}, rng), wih = param({8, 2}, rng), whh = param({8, 2}, rng), b = param({8}, rng);
  LstmQuant q;
  q.hidden = StairQ::array();
  q.cell = SmoothQ{}.array();
  for (bool seq : {false, true}) {
    Tensor y = lstm(x, wih, whh, b, &q, seq);
    CHECK(graph_size(y) == 1);  // one node for the whole sequence
    Tensor ye;
    {
      NoGradGuard ng;
      ye = lstm(x, wih, whh, b, &q, seq);
    }
    CHECK_FALSE(ye.requires_grad());
    CHECK(ye.to_vector() == y.to_vector());
    CHECK(ye.shape() == (seq ? Shape{3, 7, 2} : Shape{3, 2}));
  }
}

TEST_CASE("lstm: 300 steps, B=2, forward and backward as one node") {
  Rng rng(81);
  Tensor x = param({2, 300, 15}, rng), wih = param({64, 15}, rng, -0.25f, 0.25f);
  Tensor whh = param({64, 16}, rng, -0.25f, 0.25f), b = param({64}, rng, -0.25f, 0.25f);
  for (LstmGates gates : {LstmGates::smooth, LstmGates::hard}) {
    LstmQuant q;
    q.gates = gates;
    q.hidden = StairQ::array();
    Tensor y = lstm(x, wih, whh, b, &q, false);
    CHECK(graph_size(y) == 1);
    for (Tensor t : {x, wih, whh, b}) t.zero_grad();
    sum(y).backward();
    for (Tensor t : {x, wih, whh, b}) {
      REQUIRE(t.has_grad());
      bool finite = true;
      for (float v : t.grad().to_vector()) finite = finite && std::isfinite(v);
      CHECK(finite);
    }
    // The first step still receives a gradient through 299 recurrent steps.
    double first = 0;
    const std::vector<float> gx = x.grad().to_vector();
    for (int i = 0; i < 15; ++i) first += std::fabs(gx[i]);
    CHECK(first > 0);
  }
}

TEST_CASE("lstm: refuses bad shapes") {
  Tensor x = Tensor::zeros({2, 5, 3});
  CHECK_THROWS_WITH_AS(lstm(Tensor::zeros({2, 3}), Tensor::zeros({16, 3}), Tensor::zeros({16, 4}), Tensor(),
                            nullptr, false),
                       doctest::Contains("[B, T, I]"), Error);
  CHECK_THROWS_WITH_AS(lstm(x, Tensor::zeros({16, 2}), Tensor::zeros({16, 4}), Tensor(), nullptr, false),
                       doctest::Contains("w_ih"), Error);
  CHECK_THROWS_WITH_AS(lstm(x, Tensor::zeros({16, 3}), Tensor::zeros({12, 4}), Tensor(), nullptr, false),
                       doctest::Contains("w_hh"), Error);
  CHECK_THROWS_WITH_AS(lstm(x, Tensor::zeros({16, 3}), Tensor::zeros({16, 4}), Tensor::zeros({15}), nullptr, false),
                       doctest::Contains("bias"), Error);
}

// =============================================================================
// the levels product (LstmLevels): kernels on and off give the same bits
// =============================================================================

namespace {

// A uniform quantizer's forward on `bits` levels of [-a, a] (round to the
// nearest odd level; 1 bit: sign), hardtanh surrogate: what QuantLSTM hands
// over, written out here so core's test needs no layers.
ArrayQuant level_quant(int bits, float a) {
  const float L = (float)((1 << bits) - 1);
  return {[bits, a, L](const float* x, float* y, int64_t n) {
            for (int64_t i = 0; i < n; ++i) {
              if (bits == 1) {
                y[i] = x[i] < 0 ? -a : a;
                continue;
              }
              const float c = x[i] < -a ? -a : (x[i] > a ? a : x[i]);
              const float v = 2.f * std::floor(c * L / (2.f * a)) + 1.f;
              y[i] = a * std::min(L, v) / L;
            }
          },
          [](const float* x, const float* g, float* gx, int64_t n) {
            for (int64_t i = 0; i < n; ++i) gx[i] += std::fabs(x[i]) <= 1.f ? g[i] : 0.f;
          },
          true};
}

// w on the levels of Uniform{bits, a}
Tensor level_weight(const Shape& s, int bits, float a, Rng& rng) {
  Tensor w = Tensor::uniform(s, -a, a, rng);
  const ArrayQuant q = level_quant(bits, a);
  q.forward(w.data(), w.data(), w.numel());
  w.set_requires_grad(true);
  return w;
}

struct LevelsRun {
  std::vector<float> y, gx, gwih, gwhh, gb, gs;
};

LevelsRun run_levels(int64_t B, int64_t T, int64_t I, int64_t H, int hbits, int wbits, bool kernels, bool seq,
                     bool use_levels = true, bool with_scale = false) {
  Rng rng(1000 + B * 7 + T * 3 + H);
  const float wa = 0.3f;
  Tensor x = param({B, T, I}, rng), wih = param({4 * H, I}, rng, -0.3f, 0.3f);
  Tensor whh = level_weight({4 * H, H}, wbits, wa, rng), b = param({4 * H}, rng, -0.5f, 0.5f);
  LstmQuant q;
  q.gates = LstmGates::hard;
  q.hidden = level_quant(hbits, 1.0f);
  if (use_levels) q.levels = LstmLevels{hbits, 1.0f, wbits, wa, kernels};
  Tensor rs = with_scale ? param({4 * H}, rng, 0.05f, 2.f) : Tensor();
  Tensor y = lstm(x, wih, whh, b, &q, seq, rs);
  Tensor gy = Tensor::uniform(y.shape(), -1, 1, rng);
  y.backward(gy);
  return {y.to_vector(),          x.grad().to_vector(), wih.grad().to_vector(), whh.grad().to_vector(),
          b.grad().to_vector(), with_scale ? rs.grad().to_vector() : std::vector<float>{}};
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace

TEST_CASE("lstm levels: XNOR / bit-serial kernels on and off give the same bits, odd shapes") {
  struct Shape4 {
    int64_t B, T, I, H;
  };
  for (Shape4 s : {Shape4{1, 1, 3, 37}, Shape4{1, 6, 2, 70}, Shape4{19, 5, 4, 70}, Shape4{9, 1, 1, 130},
                   Shape4{17, 4, 3, 64}})
    for (auto [hb, wb] : {std::pair{1, 1}, std::pair{2, 2}, std::pair{1, 3}, std::pair{3, 2}})
      for (bool seq : {false, true})
        for (bool scale : {false, true}) {  // with a learned recurrent scale s [4H]
          CAPTURE(s.B);
          CAPTURE(s.T);
          CAPTURE(s.H);
          CAPTURE(hb);
          CAPTURE(wb);
          CAPTURE(seq);
          CAPTURE(scale);
          const LevelsRun on = run_levels(s.B, s.T, s.I, s.H, hb, wb, true, seq, true, scale);
          const LevelsRun off = run_levels(s.B, s.T, s.I, s.H, hb, wb, false, seq, true, scale);
          CHECK(same_bits(on.y, off.y));
          CHECK(same_bits(on.gx, off.gx));
          CHECK(same_bits(on.gwih, off.gwih));
          CHECK(same_bits(on.gwhh, off.gwhh));
          CHECK(same_bits(on.gb, off.gb));
          CHECK(same_bits(on.gs, off.gs));
          // The levels product is the float product up to rounding (scale after
          // the exact sum): against the plain op, to float rounding.
          const LevelsRun plain = run_levels(s.B, s.T, s.I, s.H, hb, wb, true, seq, false, scale);
          CHECK(max_rel_diff(on.gwih, plain.gwih) < 1e-3);
          CHECK(max_rel_diff(on.y, plain.y) < 1e-3);
          if (scale) CHECK(max_rel_diff(on.gs, plain.gs) < 1e-3);
        }
}
