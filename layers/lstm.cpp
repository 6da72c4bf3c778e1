#include "layers/lstm.h"

#include <cmath>
#include <utility>

namespace qnn {

void init_lstm_parameters(Tensor& w_ih, Tensor& w_hh, Tensor* bias, int64_t hidden, Rng& rng) {
  const float k = 1.0f / std::sqrt((float)hidden);
  for (Tensor* t : {&w_ih, &w_hh, bias}) {
    if (!t || !t->defined()) continue;
    float* p = t->data();
    for (int64_t i = 0, n = t->numel(); i < n; ++i) p[i] = rng.uniform(-k, k);
  }
  if (bias && bias->defined())
    for (int64_t j = hidden; j < 2 * hidden; ++j) bias->data()[j] = 1.0f;  // forget gate
}

Shape lstm_output_shape(const Shape& in, int64_t input, int64_t hidden, bool return_sequence, const std::string& who) {
  if (in.empty()) return return_sequence ? Shape{-1, -1, hidden} : Shape{-1, hidden};
  QNN_CHECK(in.size() == 3 && (in[2] == -1 || in[2] == input),
            who + ": input " + shape_str(in) + " should be [B, T, " + std::to_string(input) + "]");
  return return_sequence ? Shape{in[0], in[1], hidden} : Shape{in[0], hidden};
}

void check_lstm_input(const Tensor& x, int64_t input, int64_t hidden, const std::string& who) {
  QNN_CHECK(x.defined() && x.ndim() == 3 && x.dim(2) == input && x.dim(0) > 0 && x.dim(1) > 0,
            who + "(" + std::to_string(input) + " -> " + std::to_string(hidden) + "): input is " +
                (x.defined() ? shape_str(x.shape()) : std::string("undefined")) + ", expected [B, T, " +
                std::to_string(input) + "]");
}

LSTMBase::LSTMBase(int64_t input, int64_t hidden, bool with_bias, bool return_sequence, Rng& rng, std::string who)
    : in_(input), hidden_(hidden), return_sequence_(return_sequence), who_(std::move(who)) {
  QNN_CHECK(input > 0 && hidden > 0, who_ + ": sizes must be positive, got " + std::to_string(input) + " -> " +
                                         std::to_string(hidden));
  weight_ih = Tensor::empty({4 * hidden, input});
  weight_hh = Tensor::empty({4 * hidden, hidden});
  if (with_bias) bias = Tensor::empty({4 * hidden});
  init_lstm_parameters(weight_ih, weight_hh, &bias, hidden, rng);
  register_parameter("weight_ih", weight_ih);
  register_parameter("weight_hh", weight_hh);
  if (with_bias) register_parameter("bias", bias);
}

LayerSummary LSTMBase::summary_row() const {
  LayerSummary r = Module::summary_row();
  r.output = return_sequence_ ? "[-1, -1, " + std::to_string(hidden_) + "]" : "[-1, " + std::to_string(hidden_) + "]";
  return r;
}

Shape LSTMBase::output_shape(const Shape& in) const {
  return lstm_output_shape(in, in_, hidden_, return_sequence_, who_);
}

LSTM::LSTM(int64_t input, int64_t hidden, Rng& rng, LSTMOptions opt)
    : LSTMBase(input, hidden, opt.bias, opt.return_sequence, rng, "LSTM"), opt_(opt) {}

Tensor LSTM::forward(const Tensor& x) {
  check_lstm_input(x, in_, hidden_, "LSTM");
  LstmQuant q;
  q.gates = opt_.gates;
  return lstm(x, weight_ih, weight_hh, bias, &q, opt_.return_sequence);
}

SequenceClassifier::SequenceClassifier(std::shared_ptr<Embedding> embedding, std::shared_ptr<Module> rnn,
                                       std::shared_ptr<Module> head, std::shared_ptr<Module> dropout)
    : emb_(std::move(embedding)), rnn_(std::move(rnn)), head_(std::move(head)), dropout_(std::move(dropout)) {
  QNN_CHECK(emb_ && rnn_ && head_, "SequenceClassifier: embedding, rnn and head must all be given");
  register_module("embedding", emb_);
  if (dropout_) register_module("dropout", dropout_);  // before rnn: the summary shows it on [B, T, E]
  register_module("rnn", rnn_);
  register_module("head", head_);
}

Tensor SequenceClassifier::forward_ids(const std::vector<int32_t>& ids, int64_t batch, int64_t steps) {
  Tensor x = emb_->forward_ids(ids, batch, steps);  // [B, T, E]
  if (dropout_) x = dropout_->forward(x);
  Tensor h = rnn_->forward(x);                      // [B, H] (or [B, T, H])
  if (dropout_) h = dropout_->forward(h);
  return head_->forward(h);
}

Tensor SequenceClassifier::forward(const Tensor& x) {
  fail("SequenceClassifier: takes integer token ids through forward_ids(ids, B, T), not a float tensor (got " +
       (x.defined() ? shape_str(x.shape()) : std::string("undefined")) + ")");
}

}  // namespace qnn
