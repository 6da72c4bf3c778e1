// tests/test_rnn_layers.cpp — Embedding, LSTM, QuantLSTM, SequenceClassifier
// (layers/embedding.h, layers/lstm.h, layers/quant/quant_lstm.h).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/basic.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/lstm.h"
#include "layers/quant/quant_lstm.h"
#include "optim/adam.h"
#include "tests/lstm_reference.h"

using namespace qnn;
using namespace qnn::testing;

namespace {

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs((double)a[i] - b[i]) / (1.0 + std::fabs(b[i])));
  return m;
}

std::function<Tensor(const Tensor&)> as_fn(const std::shared_ptr<Quantizer>& q) {
  if (!q) return {};
  return [q](const Tensor& x) { return (*q)(x); };
}

}  // namespace

TEST_CASE("LSTM: PyTorch initialisation, forget bias 1, parameter names, shapes") {
  Rng rng(1);
  LSTM l(3, 16, rng);
  const auto names = l.named_parameters();
  REQUIRE(names.size() == 3);
  CHECK(names[0].first == "weight_ih");
  CHECK(names[1].first == "weight_hh");
  CHECK(names[2].first == "bias");
  CHECK(l.weight_ih.shape() == Shape{64, 3});
  CHECK(l.weight_hh.shape() == Shape{64, 16});
  const float k = 0.25f;  // 1/sqrt(16)
  float lo = 1, hi = -1;
  for (float v : l.weight_hh.to_vector()) lo = std::min(lo, v), hi = std::max(hi, v);
  CHECK(lo >= -k);
  CHECK(hi <= k);
  CHECK(hi - lo > 1.5f * k);  // spread over the range, not a constant
  const std::vector<float> b = l.bias.to_vector();
  for (int j = 0; j < 64; ++j) {
    if (j >= 16 && j < 32) CHECK(b[(size_t)j] == 1.0f);
    else CHECK(std::fabs(b[(size_t)j]) <= k);
  }
  Tensor y = l.forward(Tensor::zeros({2, 5, 3}));
  CHECK(y.shape() == Shape{2, 16});
  CHECK(l.output_shape({-1, 300, 3}) == Shape{-1, 16});
  LSTM seq(3, 4, rng, {.return_sequence = true});
  CHECK(seq.forward(Tensor::zeros({2, 5, 3})).shape() == Shape{2, 5, 4});
  CHECK(seq.output_shape({-1, 300, 3}) == Shape{-1, 300, 4});
  CHECK_THROWS_WITH_AS(l.forward(Tensor::zeros({2, 5, 4})), doctest::Contains("expected [B, T, 3]"), Error);
  CHECK_THROWS_AS(l.output_shape({-1, 300, 4}), Error);
}

TEST_CASE("QuantLSTM: the fused op equals its composed form with tanh:K surrogates, outputs and gradients") {
  for (LstmGates gates : {LstmGates::hard, LstmGates::smooth})
    for (bool seq : {false, true}) {
      Rng rng(7);
      QuantLSTMOptions o;
      o.return_sequence = seq;
      o.gates = gates;
      o.weight_quantizer = std::make_shared<Uniform>(2, 1.0f, Surrogate::tanh(3));
      o.hidden_quantizer = std::make_shared<Uniform>(3, 1.0f, Surrogate::tanh(2));
      o.cell_quantizer = std::make_shared<Uniform>(4, 2.0f, Surrogate::tanh(2));
      o.gate_quantizer = std::make_shared<Uniform>(4, 3.0f, Surrogate::tanh(1.5f));
      o.input_quantizer = std::make_shared<Uniform>(3, 1.0f, Surrogate::tanh(2));
      QuantLSTM m(3, 4, rng, o);
      Tensor x = Tensor::uniform({2, 5, 3}, -1, 1, rng).set_requires_grad();
      const std::vector<Tensor> params = {x, m.weight_ih, m.weight_hh, m.bias};
      std::vector<float> out[2];
      std::vector<std::vector<float>> grads[2];
      for (int k = 0; k < 2; ++k) {
        for (Tensor t : params) t.zero_grad();
        Tensor y;
        if (k == 0) {
          y = m.forward(x);
        } else {
          ComposedLstmQuant cq;
          cq.gates = gates;
          cq.hidden = as_fn(o.hidden_quantizer);
          cq.cell = as_fn(o.cell_quantizer);
          cq.preact = as_fn(o.gate_quantizer);
          y = lstm_composed((*o.input_quantizer)(x), (*o.weight_quantizer)(m.weight_ih),
                            (*o.weight_quantizer)(m.weight_hh), m.bias, cq, seq);
        }
        Rng rr(99);
        sum(mul(y, Tensor::normal(y.shape(), 0.f, 1.f, rr))).backward();
        out[k] = y.to_vector();
        for (const Tensor& t : params) grads[k].push_back(t.grad().to_vector());
      }
      INFO((gates == LstmGates::hard ? "hard" : "smooth") << (seq ? " sequence" : " last"));
      CHECK(max_rel_diff(out[0], out[1]) < 1e-5);
      // h is quantized: every output is one of the 8 levels of Uniform(3).
      std::set<float> levels;
      for (float v : out[0]) levels.insert(v);
      CHECK(levels.size() <= 8);
      const char* names[] = {"x", "weight_ih", "weight_hh", "bias"};
      for (size_t p = 0; p < params.size(); ++p) {
        INFO("gradient of " << names[p]);
        CHECK(max_rel_diff(grads[0][p], grads[1][p]) < 1e-5);
        double norm = 0;
        for (float v : grads[0][p]) norm += std::fabs(v);
        CHECK(norm > 1e-4);
      }
    }
}

TEST_CASE("QuantLSTM: binary weights and hidden state, constraint, summary bits and bytes") {
  Rng rng(3);
  QuantLSTMOptions o;
  o.weight_quantizer = std::make_shared<Sign>();
  o.hidden_quantizer = std::make_shared<Sign>();
  o.weight_constraint = Clip{-1, 1};
  QuantLSTM m(15, 8, rng, o);
  Tensor y = m.forward(Tensor::uniform({3, 6, 15}, -1, 1, rng));
  for (float v : y.to_vector()) CHECK(std::fabs(v) == 1.0f);
  // The constraint travels with both weight matrices (the optimizer applies it).
  for (Tensor* w : {&m.weight_ih, &m.weight_hh}) {
    REQUIRE(w->param_attrs_if());
    REQUIRE(w->param_attrs_if()->constraint);
    w->data()[0] = 3.0f;
    w->param_attrs().constraint(w->data(), w->numel());
    CHECK(w->data()[0] == 1.0f);
  }
  const LayerSummary r = m.summary_row();
  CHECK(r.params == 32 * 15 + 32 * 8 + 32);
  CHECK(r.quant_params == 32 * 15 + 32 * 8);
  CHECK(r.weight_bits == 1);
  CHECK(r.input_bits == 1);
  CHECK(r.bytes_packed() == doctest::Approx((32 * 15 + 32 * 8) / 8.0 + 32 * 4));
  QuantLSTM fp(15, 8, rng);  // no quantizers: full precision
  CHECK(fp.summary_row().quant_params == 0);
  CHECK(fp.summary_row().input_bits == 32);
  // Without quantizers and with smooth gates it is the plain LSTM.
  Rng r1(5), r2(5);
  QuantLSTMOptions smooth;
  smooth.gates = LstmGates::smooth;
  QuantLSTM q(4, 3, r1, smooth);
  LSTM l(4, 3, r2);
  Tensor xx = Tensor::uniform({2, 7, 4}, -1, 1, r1);
  CHECK(q.forward(xx).to_vector() == l.forward(xx).to_vector());
}

TEST_CASE("QuantLSTM: train/eval reaches the quantizers (stochastic hidden state)") {
  Rng rng(9);
  QuantLSTMOptions o;
  o.hidden_quantizer = std::make_shared<StochasticSign>(rng);
  QuantLSTM m(2, 4, rng, o);
  Tensor x = Tensor::uniform({2, 5, 2}, -1, 1, rng);
  NoGradGuard ng;
  m.eval();
  CHECK_FALSE(o.hidden_quantizer->is_training());
  CHECK(m.forward(x).to_vector() == m.forward(x).to_vector());  // deterministic sign
  m.train();
  CHECK(o.hidden_quantizer->is_training());
  bool differs = false;
  const std::vector<float> a = m.forward(x).to_vector();
  for (int k = 0; k < 5 && !differs; ++k) differs = m.forward(x).to_vector() != a;
  CHECK(differs);  // fresh draws per call
}

TEST_CASE("SequenceClassifier: ids in, children registered, summary, padding row frozen") {
  Rng rng(11);
  auto emb = std::make_shared<Embedding>(20, 5, rng);
  QuantLSTMOptions o;
  o.weight_quantizer = std::make_shared<Uniform>(2);
  o.hidden_quantizer = std::make_shared<Uniform>(2);
  o.weight_constraint = Clip{-1, 1};
  auto model = SequenceClassifier(emb, std::make_shared<QuantLSTM>(5, 6, rng, o), std::make_shared<Linear>(6, 1, rng));
  std::vector<std::string> names;
  for (auto& [n, t] : model.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"embedding.weight", "rnn.weight_ih", "rnn.weight_hh", "rnn.bias",
                                          "head.weight", "head.bias"});
  CHECK(model.num_parameters() == 20 * 5 + 24 * 5 + 24 * 6 + 24 + 6 + 1);
  for (float v : std::vector<float>(emb->weight.data(), emb->weight.data() + 5)) CHECK(v == 0.0f);  // padding row

  const std::vector<int32_t> ids = {0, 0, 3, 7, 19, 0, 1, 2, 2, 4};  // [2, 5], left-padded
  Tensor y = model.forward_ids(ids, 2, 5);
  CHECK(y.shape() == Shape{2, 1});
  sum(y).backward();
  const std::vector<float> ge = emb->weight.grad().to_vector();
  for (int e = 0; e < 5; ++e) CHECK(ge[(size_t)e] == 0.0f);  // row 0 frozen
  double g3 = 0;
  for (int e = 0; e < 5; ++e) g3 += std::fabs(ge[(size_t)(3 * 5 + e)]);
  CHECK(g3 > 0);
  CHECK_THROWS_WITH_AS(model.forward_ids({0, 20}, 1, 2), doctest::Contains("outside the vocabulary"), Error);
  CHECK_THROWS_WITH_AS(model.forward(Tensor::zeros({2, 5})), doctest::Contains("forward_ids"), Error);

  const std::string table = summary_table(model, {-1, 300});
  CHECK(table.find("Embedding") != std::string::npos);
  CHECK(table.find("QuantLSTM") != std::string::npos);
  CHECK(table.find("[-1, 300, 5]") != std::string::npos);
  CHECK(table.find("[-1, 6]") != std::string::npos);
  CHECK(table.find("[-1, 1]") != std::string::npos);
  const auto rows = summarize(model, {-1, 300});
  REQUIRE(rows.size() == 3);
  CHECK(rows[1].weight_bits == 2);
  CHECK(rows[1].input_bits == 2);
  CHECK(rows[1].name == "rnn");
}

TEST_CASE("SequenceClassifier: dropout on the embedded input and the last state, in training only") {
  Rng rng(12);
  auto emb = std::make_shared<Embedding>(20, 5, rng);
  auto rnn = std::make_shared<LSTM>(5, 6, rng);
  auto head = std::make_shared<Linear>(6, 2, rng);
  SequenceClassifier plain(emb, rnn, head);
  SequenceClassifier dropped(emb, rnn, head, std::make_shared<Dropout>(0.5f, rng));
  CHECK(dropped.named_parameters().size() == plain.named_parameters().size());  // dropout adds no parameter
  const std::vector<int32_t> ids = {0, 0, 3, 7, 19, 0, 1, 2, 2, 4};               // [2, 5]
  const std::vector<float> ref = plain.forward_ids(ids, 2, 5).to_vector();
  dropped.train(false);
  CHECK(dropped.forward_ids(ids, 2, 5).to_vector() == ref);  // evaluation: no dropout
  dropped.train(true);
  const std::vector<float> a = dropped.forward_ids(ids, 2, 5).to_vector();
  const std::vector<float> b = dropped.forward_ids(ids, 2, 5).to_vector();
  CHECK(a != ref);
  CHECK(a != b);  // fresh masks per call
}

TEST_CASE("SequenceClassifier: learns a toy sequence task (a QuantLSTM trains)") {
  // Label = does token 2 occur in the sequence? Needs memory across steps.
  Rng rng(21);
  const int64_t B = 32, T = 12;
  std::vector<int32_t> ids((size_t)(B * T));
  std::vector<int32_t> y((size_t)B);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) ids[(size_t)(b * T + t)] = 3 + (int32_t)rng.below(5);
    y[(size_t)b] = (int32_t)(b % 2);
    if (y[(size_t)b]) ids[(size_t)(b * T + (int64_t)rng.below(T))] = 2;
  }
  QuantLSTMOptions o;
  o.weight_quantizer = std::make_shared<Uniform>(4, 1.0f);
  o.hidden_quantizer = std::make_shared<Uniform>(4, 1.0f);
  o.weight_constraint = Clip{-1, 1};
  SequenceClassifier model(std::make_shared<Embedding>(8, 4, rng), std::make_shared<QuantLSTM>(4, 8, rng, o),
                           std::make_shared<Linear>(8, 2, rng));
  Adam opt(model.parameters(), 0.03f);
  float first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    Tensor loss = cross_entropy(model.forward_ids(ids, B, T), y);
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    opt.step();
  }
  CHECK(first > 0.6f);
  CHECK(last < 0.5f * first);
}

TEST_CASE("QuantLSTM: --kernels on and off train bit-identically (2 steps, 1-bit and 2-bit), levels path taken") {
  for (int bits : {1, 2})
  for (float rscale : {0.f, 0.3f}) {  // without and with the learned recurrent scale
    CAPTURE(bits);
    CAPTURE(rscale);
    std::vector<std::vector<float>> result[2];
    for (int k = 0; k < 2; ++k) {
      Rng rng(21);
      QuantLSTMOptions o;
      const float a = 0.1f;  // lstm_weight_scale(100): the IMDB recipe's levels
      o.weight_quantizer = make_quantizer("uniform", bits, {}, nullptr, a);
      o.hidden_quantizer = quantizer_for_bits(bits, {});
      o.weight_constraint = Clip{-a, a};
      o.recurrent_scale = rscale;
      QuantLSTM m(5, 70, rng, o);  // H = 70: not a multiple of 64
      std::vector<Tensor*> params = {&m.weight_ih, &m.weight_hh, &m.bias};
      if (rscale > 0) params.push_back(&m.recurrent_scale);
      m.set_kernels(k == 0);
      REQUIRE(m.kernels_enabled() == (k == 0));
      const LstmQuant rq = m.recurrence_quant();
      CHECK(rq.levels.h_bits == bits);  // the levels product is used
      CHECK(rq.levels.w_bits == bits);
      CHECK(rq.levels.w_alpha == a);
      // packed only where it pays: 1 x 1 bit (XNOR); k bits use float FMAs on the levels
      CHECK(rq.levels.kernels == (k == 0 && bits == 1));
      Tensor x = Tensor::uniform({3, 4, 5}, -1, 1, rng);
      for (int step = 0; step < 2; ++step) {
        for (Tensor* p : params) p->zero_grad();
        Tensor y = m.forward(x);
        sum(mul(y, y)).backward();
        for (Tensor* p : params) {
          result[k].push_back(p->grad().to_vector());
          float* w = p->data();
          const float* g = p->grad().data();
          for (int64_t i = 0; i < p->numel(); ++i) w[i] -= 0.05f * g[i];  // plain SGD
        }
        result[k].push_back(y.to_vector());
      }
      for (Tensor* p : params) result[k].push_back(p->to_vector());
    }
    REQUIRE(result[0].size() == result[1].size());
    for (size_t i = 0; i < result[0].size(); ++i) {
      CAPTURE(i);
      REQUIRE(result[0][i].size() == result[1][i].size());
      CHECK(std::memcmp(result[0][i].data(), result[1][i].data(), result[0][i].size() * sizeof(float)) == 0);
    }
  }
  // Real-valued h (no hidden quantizer): no levels product.
  CHECK(recurrent_levels(nullptr, std::make_shared<Sign>(), true).h_bits == 0);
  CHECK(recurrent_levels(std::make_shared<Sign>(), std::make_shared<Uniform>(2, 0.5f), true).w_alpha == 0.5f);
}
