// core/ops.h — every differentiable operation, as a free function.
//
// Each op lives in core/ops_<family>.cpp with its forward and backward side by
// side and the shapes in comments. To add an op: write the forward, and if
// needs_grad(inputs) call record(out, "name", {inputs...}, backward) where
// backward ADDS into input.grad_data(). Then add a gradient check in
// tests/test_ops_grad.cpp. That is the whole recipe.
//
// Broadcasting (add/sub/mul/div): numpy rules on trailing dimensions, e.g.
// [N, C] op [C], [N, C, H, W] op [1, C, 1, 1], or a scalar {} with anything.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.h"

namespace qnn {

class Rng;

// ---- elementwise arithmetic (ops_elementwise.cpp) ---------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, float s);
Tensor mul_scalar(const Tensor& a, float s);
Tensor neg(const Tensor& a);
Tensor square(const Tensor& a);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(const Tensor& a, float s) { return mul_scalar(a, s); }
inline Tensor operator*(float s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// ---- activations (ops_elementwise.cpp) ----------------------------------------
Tensor relu(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor hardtanh(const Tensor& x, float lo = -1.f, float hi = 1.f);
Tensor hard_sigmoid(const Tensor& x);  // clip((x + 1) / 2, 0, 1), as in BinaryNet
Tensor clamp(const Tensor& x, float lo, float hi);

// Generic elementwise op with a hand-given derivative: y = f(x),
// dL/dx = dL/dy * df(x). Quantizers use this to pair a forward map with
// its surrogate (straight-through) gradient. Both callables get x.
Tensor map_with_grad(const Tensor& x, const char* name,
                     const std::function<float(float)>& f,
                     const std::function<float(float)>& df);

// ---- reductions and shapes (ops_reduce.cpp) -------------------------------------
Tensor sum(const Tensor& x);                              // -> {}
Tensor mean(const Tensor& x);                             // -> {}
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor transpose(const Tensor& x);                        // 2-D: [M, N] -> [N, M]
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);

// ---- linear algebra (ops_linear.cpp) --------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b);          // [M, K] x [K, N] -> [M, N]
// Fused y = x W^T + b:  x [N, in], W [out, in], b [out] (may be undefined).
Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b);

// ---- losses (ops_loss.cpp) -------------------------------------------------------
Tensor log_softmax(const Tensor& x);                      // over the last dim of [N, C]
Tensor softmax(const Tensor& x);
// Fused, numerically stable mean over the batch of -log softmax(logits)[label].
Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels);
// BinaryNet's squared hinge: mean over N*C of max(0, 1 - t*y)^2, t = 2*onehot-1.
Tensor squared_hinge(const Tensor& logits, const std::vector<int32_t>& labels);
Tensor mse(const Tensor& a, const Tensor& b);

// ---- regularisation and normalisation (ops_norm.cpp) ----------------------------
// Inverted dropout: in training zero each element with probability p and scale
// the rest by 1/(1-p); identity in evaluation or when p == 0.
Tensor dropout(const Tensor& x, float p, bool training, Rng& rng);

// Batch norm over dim 1 of [N, C] or [N, C, H, W].
// training: normalise with batch statistics (biased variance) and update
//   running = (1 - momentum) * running + momentum * batch (unbiased variance),
//   PyTorch's convention. evaluation: use running statistics.
// gamma/beta may be undefined (no affine).
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  Tensor& running_mean, Tensor& running_var, bool training,
                  float momentum, float eps);

// Batch norm at evaluation time is an affine map per channel,
//   y = x * scale + shift,  scale = gamma * istd,  shift = beta - mean * scale,
//   istd = 1 / sqrt(running_var + eps),
// computed in exactly this float arithmetic (no FMA: the build uses
// -ffp-contract=off). batch_norm() uses these two functions, and so does the
// model exporter, so a deployed model's folded thresholds reproduce the
// training framework's evaluation bit for bit.
inline float batch_norm_istd(float running_var, float eps) { return 1.0f / std::sqrt(running_var + eps); }
inline void batch_norm_fold(float gamma, float beta, float mean, float istd, float& scale, float& shift) {
  scale = gamma * istd;
  shift = beta - mean * scale;
}
inline float batch_norm_apply(float x, float scale, float shift) { return x * scale + shift; }

// ---- convolution and pooling (ops_conv.cpp), NCHW ---------------------------------
// x [N, C, H, W], w [O, C, KH, KW], b [O] or undefined -> [N, O, OH, OW],
// OH = (H + 2 pad - KH) / stride + 1 (likewise OW). Zero padding.
// One fused node: im2col + sgemm forward, col2im backward.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride = 1, int64_t pad = 0);
// The patch matrix of a convolution, as a differentiable op:
// x [N, C, H, W] -> rows [N*OH*OW, C*KH*KW]; row (n, oy, ox), column (c, ky, kx) -- the
// column order of w.reshape({O, C*KH*KW}), so conv2d(x, w) == rows_to_nchw(linear(im2col(x), w2d), ...).
// Taps outside the image hold pad_value (0: zero padding; +1: "one-padding" of binarized
// inputs). Backward: col2im (sums overlapping taps; padded taps get no gradient).
Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, int64_t stride, int64_t pad, float pad_value = 0.f);
// [N*OH*OW, O] (pixel-major rows, e.g. the output of linear on im2col rows) -> [N, O, OH, OW]; differentiable.
Tensor rows_to_nchw(const Tensor& rows, int64_t n, int64_t oh, int64_t ow);
// Max over k x k windows with the given stride (no padding; floor of the output size). Gradient to the
// arg-max (first maximum in window order on ties), added.
Tensor max_pool2d(const Tensor& x, int64_t k, int64_t stride);
Tensor avg_pool2d(const Tensor& x, int64_t k, int64_t stride);
// [N, d1, d2, ...] -> [N, d1*d2*...]; shares storage (a reshape with a node).
Tensor flatten(const Tensor& x);

// ---- sequences: embedding and the fused LSTM (ops_rnn.cpp) ----------------------
// Token ids are integers end to end (never floats): ids holds batch*steps ids,
// row-major [B, T]. table [V, E] -> [B, T, E]. Backward scatter-adds dy into
// the table rows; with freeze_padding_row, row 0 (the padding id) gets no
// gradient, so padding stays what it was initialised to. An id outside
// [0, V) is refused, naming its position.
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids, int64_t batch, int64_t steps,
                 bool freeze_padding_row = true);

// An elementwise quantizer applied *inside* the LSTM recurrence (core knows no
// quantizer objects, so a layer hands over two array loops; each runs once
// per time step on a whole [B, n] block, or on each thread's rows of it when
// `rowwise`, so it can be a vectorised loop).
struct ArrayQuant {
  std::function<void(const float* x, float* y, int64_t n)> forward;                   // y = q(x)
  std::function<void(const float* x, const float* g, float* gx, int64_t n)> backward;  // gx += g * S'(x)
  // true: both loops are pure elementwise maps (no state, no randomness, safe
  // to call concurrently), so the op may run them on each thread's block of
  // rows instead of on the whole block between barriers. False for a
  // stochastic quantizer (it draws per call).
  bool rowwise = false;
  explicit operator bool() const { return (bool)forward; }
};

// Gate nonlinearities: smooth = sigmoid / tanh (full-precision LSTM); hard =
// hard_sigmoid / hardtanh (Hubara et al., "Quantized Neural Networks", use
// these for quantized LSTMs), with the gradients of hard_sigmoid() and
// hardtanh() above (boundaries included).
enum class LstmGates { smooth, hard };

// The recurrent product h_{t-1} w_hh^T on quantizer levels (optional). When
// h_t and w_hh both hold levels of symmetric uniform quantizers (value =
// alpha * v / (2^bits - 1), v odd; 1 bit: +-alpha; kernels/bitserial.h), the
// product is the exact integer sum of v_h v_w, then ONE scale:
//   z += ((h_alpha / L_h) * (w_alpha / L_w)) * float(sum_k v_h v_w)
// `kernels` picks how the integer sum is found: XNOR-popcount (1 x 1 bit,
// kernels/xnor_gemm.h) or bit-serial (kernels/bitserial.h), else float FMAs
// on the integer values — the same bits either way. Ignored (the float
// product) unless 1 <= bits <= 16, alpha > 0 and H * L_h * L_w < 2^24.
struct LstmLevels {
  int h_bits = 0;  // 0: off
  float h_alpha = 1.0f;
  int w_bits = 0;
  float w_alpha = 1.0f;
  bool kernels = true;
};

// Options of the fused LSTM; nullptr means smooth gates, nothing quantized.
// Every quantizer is optional (empty: full precision at that point).
struct LstmQuant {
  LstmGates gates = LstmGates::smooth;
  ArrayQuant hidden;   // h_t = q_h(o * act(c_t)): the QNN paper's quantized activations
  ArrayQuant cell;     // c_t = q_c(f * c_{t-1} + i * g), carried to the next step
  ArrayQuant preact;   // the 4H gate pre-activations, before the gate nonlinearity
  LstmLevels levels;   // h_t and w_hh on levels: the integer recurrent product
};

// One LSTM layer over a whole sequence, as ONE autograd node with its own
// backward through time (an explicit loop over steps: no recursion, no
// per-step graph, whatever T). Zero initial state.
//   x [B, T, I], w_ih [4H, I], w_hh [4H, H], b [4H] (may be undefined); gate
//   order i, f, g, o (PyTorch's):
//     z_t = x_t w_ih^T + h_{t-1} w_hh^T + b            [B, 4H]
//     i, f, o = sigma(z_i, z_f, z_o), g = tanh(z_g)
//     c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)
//   The input projection of all T steps is one GEMM ([B*T, I] x [I, 4H]);
//   each step adds one [B, H] x [H, 4H] GEMM.
// Returns h_{T-1} [B, H], or every h_t as [B, T, H] if return_sequence.
// Weight quantization happens outside (the caller passes q_w(W)); the
// in-recurrence quantizers come in q.
// recurrent_scale s [4H] (optional, learnable): each gate row's recurrent
// product is scaled, z_t = x_t w_ih^T + s * (h_{t-1} w_hh^T) + b. With
// binary h and w_hh the product's spread is fixed (every term is +-1 times
// one scale); s lets training turn each gate's recurrence down or up
// (layers/quant/quant_lstm.h). On the levels product it multiplies the
// exact integer sum, so kernels on and off still give the same bits.
Tensor lstm(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b, const LstmQuant* q,
            bool return_sequence, const Tensor& recurrent_scale = Tensor());

// ---- metrics (no gradient) ---------------------------------------------------------
std::vector<int32_t> argmax_rows(const Tensor& x);        // [N, C] -> N labels
int64_t count_correct(const Tensor& logits, const std::vector<int32_t>& labels);

}  // namespace qnn
