// layers/lstm.h — LSTM (one layer, full precision) and SequenceClassifier
// (Embedding -> LSTM or QuantLSTM -> head), the model of the IMDB experiment.
//
// LSTM: x [B, T, I] -> h_{T-1} [B, H] (or every h_t, [B, T, H], with
// return_sequence), gate order i, f, g, o, zero initial state; the whole
// sequence is ONE autograd node (core/ops.h lstm(): backprop through time in
// a loop, any T). Parameters, as PyTorch names them without the layer suffix:
//   weight_ih [4H, I], weight_hh [4H, H], bias [4H] (PyTorch's b_ih + b_hh in one).
// Initialisation as PyTorch: every value U(-1/sqrt(H), 1/sqrt(H)); then the
// forget-gate bias (bias[H .. 2H)) is set to 1 (Jozefowicz et al.'s advice,
// Keras' unit_forget_bias), so early training does not forget everything.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"
#include "layers/embedding.h"
#include "layers/module.h"

namespace qnn {

struct LSTMOptions {
  bool return_sequence = false;  // false: [B, H] (last step); true: [B, T, H]
  bool bias = true;
  LstmGates gates = LstmGates::smooth;  // hard: hard_sigmoid / hardtanh
};

// The PyTorch-style initialisation above, shared by LSTM and QuantLSTM.
void init_lstm_parameters(Tensor& w_ih, Tensor& w_hh, Tensor* bias, int64_t hidden, Rng& rng);
// [B, T, I] -> [B, H] or [B, T, H] (output_shape of LSTM and QuantLSTM).
Shape lstm_output_shape(const Shape& in, int64_t input, int64_t hidden, bool return_sequence, const std::string& who);
// Throws unless x is [B, T, input] with B, T > 0.
void check_lstm_input(const Tensor& x, int64_t input, int64_t hidden, const std::string& who);

// What LSTM and QuantLSTM share, in one place: the size check, the three
// parameters (allocated, initialised by init_lstm_parameters, registered as
// "weight_ih", "weight_hh" and, with bias, "bias", in that order), the output
// shape and the summary row's output column. `who` names the layer in errors.
class LSTMBase : public Module {
 public:
  LayerSummary summary_row() const override;
  Shape output_shape(const Shape& in) const override;
  int64_t input_size() const { return in_; }
  int64_t hidden_size() const { return hidden_; }
  bool return_sequence() const { return return_sequence_; }
  Tensor weight_ih, weight_hh, bias;  // bias undefined without a bias

 protected:
  LSTMBase(int64_t input, int64_t hidden, bool with_bias, bool return_sequence, Rng& rng, std::string who);
  int64_t in_, hidden_;
  bool return_sequence_;
  std::string who_;
};

class LSTM : public LSTMBase {
 public:
  LSTM(int64_t input, int64_t hidden, Rng& rng, LSTMOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LSTM"; }

 private:
  LSTMOptions opt_;
};

// Embedding -> recurrent layer (LSTM, QuantLSTM, or any Module taking
// [B, T, E]) -> head (e.g. Linear(H, 1) or Linear(H, classes)). Children are
// registered as "embedding", "rnn", "head", so parameters ("rnn.weight_ih"),
// checkpoints, train/eval and summaries work as for any Module
// (summary_table(model, {-1, T}) prints every shape).
// With a `dropout` module (registered as "dropout"), it drops the embedded
// sequence before the recurrent layer and the recurrent output before the
// head, in training only (Zaremba et al.'s non-recurrent dropout: the
// recurrence itself is left alone).
class SequenceClassifier : public Module {
 public:
  SequenceClassifier(std::shared_ptr<Embedding> embedding, std::shared_ptr<Module> rnn,
                     std::shared_ptr<Module> head, std::shared_ptr<Module> dropout = nullptr);
  // ids: B*T token ids, row-major [B, T] -> head output, e.g. [B, classes].
  Tensor forward_ids(const std::vector<int32_t>& ids, int64_t batch, int64_t steps);
  // Refuses: the model takes integer ids (forward_ids).
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SequenceClassifier"; }

  Embedding& embedding() const { return *emb_; }
  Module& rnn() const { return *rnn_; }
  Module& head() const { return *head_; }

 private:
  std::shared_ptr<Embedding> emb_;
  std::shared_ptr<Module> rnn_, head_, dropout_;
};

}  // namespace qnn
