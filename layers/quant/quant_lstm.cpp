#include "layers/quant/quant_lstm.h"

#include <cmath>
#include <cstring>

#include "core/autograd.h"
#include "layers/quant/binary_linear_op.h"  // quant_kernels_default

namespace qnn {

ArrayQuant array_quant(const std::shared_ptr<Quantizer>& q) {
  if (!q || q->is_identity()) return {};
  ArrayQuant a;
  // The quantizer object itself computes the levels (one code path for the
  // levels everywhere), on a copy of the block; no node is recorded: the
  // fused op does its own backward.
  a.forward = [q](const float* x, float* y, int64_t n) {
    NoGradGuard ng;
    const Tensor out = (*q)(Tensor::from_data({n}, x));
    std::memcpy(y, out.data(), (size_t)n * sizeof(float));
  };
  a.backward = [q](const float* x, const float* g, float* gx, int64_t n) {
    surrogate_backward(q->surrogate(), q->geometry(), x, g, gx, n);
  };
  // Sign and Uniform are pure elementwise maps (the grad mode NoGradGuard
  // sets is per thread), so the fused op may run them on each thread's rows
  // without meeting; a StochasticSign (or an unknown quantizer) draws per
  // call and gets the whole block.
  a.rowwise = dynamic_cast<const Sign*>(q.get()) || dynamic_cast<const Uniform*>(q.get());
  return a;
}

QuantLSTM::QuantLSTM(int64_t input, int64_t hidden, Rng& rng, QuantLSTMOptions opt)
    : LSTMBase(input, hidden, opt.bias, opt.return_sequence, rng, "QuantLSTM"), opt_(std::move(opt)) {
  if (opt_.weight_constraint) {
    opt_.weight_constraint.attach(weight_ih);
    opt_.weight_constraint.attach(weight_hh);
  }
  if (opt_.recurrent_scale != 0.f) {
    QNN_CHECK(std::isfinite(opt_.recurrent_scale) && opt_.recurrent_scale > 0.f,
              "QuantLSTM: recurrent_scale must be a positive number (0: none)");
    recurrent_scale = Tensor::full({4 * hidden}, opt_.recurrent_scale);
    register_parameter("recurrent_scale", recurrent_scale);
  }
}

void QuantLSTM::train(bool on) {
  Module::train(on);
  for (const auto* q : {&opt_.weight_quantizer, &opt_.hidden_quantizer, &opt_.cell_quantizer, &opt_.gate_quantizer,
                        &opt_.input_quantizer})
    if (*q) (*q)->train(on);
}

// See recurrent_levels: the most plane pairs worth the bit-packed product.
constexpr int kMaxRecurrentPlanePairs = 1;

LstmLevels recurrent_levels(const std::shared_ptr<Quantizer>& qh, const std::shared_ptr<Quantizer>& qw, bool kernels) {
  // Every output of these is a level alpha * v / L (a stochastic sign's too:
  // +-1, whatever it drew).
  auto on_levels = [](const std::shared_ptr<Quantizer>& q) {
    return q && q->bits() <= 16 && (q->name() == "sign" || q->name() == "stochastic_sign" || q->name() == "uniform");
  };
  LstmLevels l;
  if (!on_levels(qh) || !on_levels(qw)) return l;
  l.h_bits = qh->bits();
  l.h_alpha = qh->scale();
  l.w_bits = qw->bits();
  l.w_alpha = qw->scale();
  // The bit-packed product runs one popcount GEMM per pair of bit planes
  // (h_bits x w_bits of them) on rows of only H bits (two 64-bit words at
  // H = 100): past a few pairs the float FMAs on the same integer levels are
  // faster, and they give the same bits, so this choice changes no number.
  // Measured on the IMDB LSTM (H = 100, 1 thread, AVX2 without AVX-512,
  // training seq/s packed vs float): 1 x 1 bit 445 vs 452 (XNOR: even),
  // 1 x 2 261 vs 411, 2 x 2 201 vs 427, 4 x 4 78 vs 433 (docs/results-log.md).
  // So only the XNOR product stays packed; core's lstm() still takes the
  // bit-serial path for any caller that asks (LstmLevels::kernels).
  l.kernels = kernels && l.h_bits * l.w_bits <= kMaxRecurrentPlanePairs;
  return l;
}

bool QuantLSTM::kernels_enabled() const { return kernels_ < 0 ? quant_kernels_default() : kernels_ == 1; }

LstmQuant QuantLSTM::recurrence_quant() const {
  LstmQuant q;
  q.levels = recurrent_levels(opt_.hidden_quantizer, opt_.weight_quantizer, kernels_enabled());
  q.gates = opt_.gates;
  q.hidden = array_quant(opt_.hidden_quantizer);
  q.cell = array_quant(opt_.cell_quantizer);
  q.preact = array_quant(opt_.gate_quantizer);
  return q;
}

Tensor QuantLSTM::compute(const Tensor& x) {
  const Tensor xq = opt_.input_quantizer ? (*opt_.input_quantizer)(x) : x;
  const Tensor wi = opt_.weight_quantizer ? (*opt_.weight_quantizer)(weight_ih) : weight_ih;
  const Tensor wh = opt_.weight_quantizer ? (*opt_.weight_quantizer)(weight_hh) : weight_hh;
  const LstmQuant q = recurrence_quant();
  return lstm(xq, wi, wh, bias, &q, opt_.return_sequence, recurrent_scale);
}

Tensor QuantLSTM::forward(const Tensor& x) {
  check_lstm_input(x, in_, hidden_, "QuantLSTM");
  return compute(x);
}

LayerSummary QuantLSTM::summary_row() const {
  LayerSummary r = LSTMBase::summary_row();
  if (quantizes_weights()) {
    r.quant_params = weight_ih.numel() + weight_hh.numel();
    r.weight_bits = opt_.weight_quantizer->bits();
  }
  r.input_bits = opt_.hidden_quantizer ? opt_.hidden_quantizer->bits() : 32;
  return r;
}

}  // namespace qnn
