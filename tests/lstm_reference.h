// tests/lstm_reference.h — the LSTM composed from elementary ops, differentiated
// by the engine: the reference the fused core/ops_rnn.cpp lstm() must equal
// (outputs and every gradient, to float rounding). Each point where the fused
// op applies an ArrayQuant takes a Tensor -> Tensor map here (empty: none).
#pragma once

#include <functional>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace qnn::testing {

struct ComposedLstmQuant {
  LstmGates gates = LstmGates::smooth;
  std::function<Tensor(const Tensor&)> hidden, cell, preact;
  Tensor recurrent_scale;  // [4H] or undefined: z = ... + s * (h w_hh^T)
};

// x [B, T, I], w_ih [4H, I], w_hh [4H, H], b [4H]; gate order i, f, g, o.
inline Tensor lstm_composed(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b,
                            const ComposedLstmQuant& q, bool return_sequence) {
  const int64_t B = x.dim(0), T = x.dim(1), I = x.dim(2), H = w_hh.dim(1);
  const bool hard = q.gates == LstmGates::hard;
  auto sig = [&](const Tensor& v) { return hard ? hard_sigmoid(v) : sigmoid(v); };
  auto act = [&](const Tensor& v) { return hard ? hardtanh(v) : tanh(v); };
  Tensor h = Tensor::zeros({B, H}), c = Tensor::zeros({B, H});
  std::vector<Tensor> hs;
  for (int64_t t = 0; t < T; ++t) {
    Tensor xt = slice(x, 1, t, t + 1).reshape({B, I});
    Tensor rec = linear(h, w_hh, Tensor());
    if (q.recurrent_scale.defined()) rec = mul(rec, q.recurrent_scale);
    Tensor z = add(linear(xt, w_ih, b), rec);
    if (q.preact) z = q.preact(z);
    Tensor i = sig(slice(z, 1, 0, H)), f = sig(slice(z, 1, H, 2 * H));
    Tensor g = act(slice(z, 1, 2 * H, 3 * H)), o = sig(slice(z, 1, 3 * H, 4 * H));
    c = add(mul(f, c), mul(i, g));
    if (q.cell) c = q.cell(c);
    h = mul(o, act(c));
    if (q.hidden) h = q.hidden(h);
    if (return_sequence) hs.push_back(h.reshape({B, 1, H}));
  }
  return return_sequence ? concat(hs, 1) : h;
}

}  // namespace qnn::testing
