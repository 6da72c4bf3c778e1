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

// ---- metrics (no gradient) ---------------------------------------------------------
std::vector<int32_t> argmax_rows(const Tensor& x);        // [N, C] -> N labels
int64_t count_correct(const Tensor& logits, const std::vector<int32_t>& labels);

}  // namespace qnn
