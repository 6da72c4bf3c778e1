// layers/quant/quant_lstm.h — QuantLSTM: an LSTM with quantized weights and a
// quantized hidden state, as in Hubara et al., "Quantized Neural Networks"
// (JMLR 2018, the Penn Treebank experiments), with Brevitas' optional extra
// quantization points for studies.
//
//   z_t = q_x(x_t) q_w(W_ih)^T + h_{t-1} q_w(W_hh)^T + b
//   i, f, o = hard_sigmoid(q_z(z)),  g = hardtanh(q_z(z))    (gates = hard)
//   c_t = q_c(f c_{t-1} + i g),  h_t = q_h(o hardtanh(c_t))
//
// Quantizers are the MLP's objects (layers/quant/quantizer.h), larq/Brevitas
// style, each optional (null: full precision at that point):
//   weight_quantizer  W_ih and W_hh (latent weights are the parameters; the
//                     weight_constraint, e.g. Clip{-1, 1}, clips them)
//   hidden_quantizer  h_t, INSIDE the recurrence: the next step's product sees
//                     q_h(h). The paper's "activations".
//   cell_quantizer    c_t (carried to the next step quantized)
//   gate_quantizer    the 4H gate pre-activations z
//   input_quantizer   the input sequence x (e.g. the embedding output)
// Their surrogates are the MLP's (`hardtanh`, `tanh:K`, `periodic:K`, ...).
// The in-recurrence quantizers run inside the fused op (core/ops.h lstm())
// as ArrayQuant loops made by array_quant(): the quantizer's own forward (so
// the levels are bit for bit those of q(x) elsewhere) and its surrogate's
// backward (surrogate_backward). The weight and input quantizers are ordinary
// graph nodes before the op.
//
// The learned recurrent scale (QuantLSTMOptions::recurrent_scale):
//   z_t = q_x(x_t) q_w(W_ih)^T + s * (h_{t-1} q_w(W_hh)^T) + b,  s [4H] learned
// Why: with 1-bit weights (+-a) and a 1-bit hidden state (+-1) every term of
// the recurrent sum is +-a, so each gate's recurrent input has the same
// spread (a sqrt(H)) whatever the network learns: only signs can change, and
// the recurrence cannot be turned down to let the input through. Measured
// on a small IMDB run (apps/imdb_lstm.cpp has the figures), 1/1 bits learn
// nothing without s and do with it; 4/4 bits gain too. A small start (the
// recurrence almost off, the cell first integrating the input) learns best.
// On the levels product s multiplies the exact integer sum (core/ops.h).
//
// Summary: params = W_ih + W_hh + b (+ s); quant_params = W_ih + W_hh when weights
// are quantized; weight_bits; input_bits = the hidden state's bits (the
// recurrent product's input; 32 when h is not quantized).
//
// The products live in ONE place, compute() (and, per step, core/ops_rnn.cpp's
// recurrent_forward/backward). When h_t and W_hh are both on quantizer levels
// (Sign / StochasticSign / Uniform, 1..16 bits: recurrent_levels) the
// recurrent product is the exact integer sum times one scale (LstmLevels),
// with kernels on by XNOR-popcount (1 x 1 bit; k bits: float FMAs on the
// integer levels, which measured faster than bit-serial planes at H = 100,
// recurrent_levels says by how much), with kernels off by float FMAs on the
// integer levels: bit-identical.
#pragma once

#include <memory>
#include <string>

#include "core/ops.h"
#include "core/rng.h"
#include "layers/lstm.h"
#include "layers/module.h"
#include "layers/quant/constraints.h"
#include "layers/quant/quantizer.h"

namespace qnn {

struct QuantLSTMOptions {
  bool return_sequence = false;
  bool bias = true;
  LstmGates gates = LstmGates::hard;             // the QNN paper's choice for quantized LSTMs
  std::shared_ptr<Quantizer> weight_quantizer;   // W_ih and W_hh
  std::shared_ptr<Quantizer> hidden_quantizer;   // h_t (inside the recurrence)
  std::shared_ptr<Quantizer> cell_quantizer;     // c_t
  std::shared_ptr<Quantizer> gate_quantizer;     // gate pre-activations
  std::shared_ptr<Quantizer> input_quantizer;    // x
  Constraint weight_constraint;                  // e.g. Clip{-1, 1}; empty: none
  // > 0: learn a scale per gate row of the recurrent product (parameter
  // "recurrent_scale" [4H], initialised to this value); 0: none. See below.
  float recurrent_scale = 0.f;
};

// A quantizer as the fused LSTM's in-recurrence loop pair; empty for a null
// or 32-bit (identity) quantizer. forward = the quantizer itself (a
// stochastic one draws fresh randomness per call); backward adds
// g * S'(x) with the quantizer's surrogate and geometry.
ArrayQuant array_quant(const std::shared_ptr<Quantizer>& q);

class QuantLSTM : public LSTMBase {
 public:
  QuantLSTM(int64_t input, int64_t hidden, Rng& rng, QuantLSTMOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantLSTM"; }
  LayerSummary summary_row() const override;
  void train(bool on = true) override;  // also switches the quantizers

  const QuantLSTMOptions& options() const { return opt_; }
  bool quantizes_weights() const { return opt_.weight_quantizer && !opt_.weight_quantizer->is_identity(); }
  // The LstmQuant the fused op receives (gates + in-recurrence quantizers +
  // the levels product).
  LstmQuant recurrence_quant() const;
  // The bit-packed recurrent product (QuantProduct's switch): default
  // quant_kernels_default() (env QNN_QUANT_KERNELS); results identical.
  void set_kernels(bool on) { kernels_ = on ? 1 : 0; }
  bool kernels_enabled() const;

  // weight_ih, weight_hh, bias (LSTMBase): latent weights; bias undefined when opt.bias == false
  Tensor recurrent_scale;  // [4H], learned, with opt.recurrent_scale > 0; else undefined

 protected:
  // THE computation: q_x(x), q_w(W_ih), q_w(W_hh), then the fused op.
  virtual Tensor compute(const Tensor& x);

 private:
  QuantLSTMOptions opt_;
  int kernels_ = -1;  // -1: quant_kernels_default()
};

// The levels product for hidden quantizer qh and weight quantizer qw (empty
// LstmLevels, h_bits 0, unless both output quantizer levels).
LstmLevels recurrent_levels(const std::shared_ptr<Quantizer>& qh, const std::shared_ptr<Quantizer>& qw, bool kernels);

}  // namespace qnn
