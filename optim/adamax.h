// optim/adamax.h — AdaMax and its shift-based variant (BinaryNet).
//
// AdaMax (Kingma & Ba 2015, Algorithm 2: Adam with the infinity norm).
// Per parameter p with gradient g, at its step t (1-based):
//   g = g + weight_decay * p                      (L2, if > 0)
//   m = beta1 * m + (1 - beta1) * g
//   u = max(beta2 * u, |g|)
//   p = p - lr / (1 - beta1^t) * m / (u + eps)
// eps is added to the denominator, as in the paper; torch.optim.Adamax adds
// it inside the max instead (u = max(beta2 u, |g| + eps)): one of the
// deliberate differences listed in docs/quantizers-vs-pytorch.md.
//
// ShiftAdaMax (Courbariaux, Hubara et al., "Binarized Neural Networks", 2016,
// Algorithm 4 "shift-based AdaMax"; Hubara's Torch7 BinaryNet,
// adaMax_binary_clip_shift.lua). Same m and u as AdaMax; the update is
//   s = AP2(lr / (1 - beta1^t)) * lr_scale
//   p = p - s * m / AP2(u + eps)
// with AP2(x) = sign(x) 2^round(log2|x|) (core/ap2.h).
//
// What is AP2-rounded, and why:
//   * the step size lr / (1 - beta1^t): a per-step scalar. Rounded to a power
//     of two, multiplying by it is a bit shift. Torch7: `stepSize =
//     2^round(log2(stepSize))`; paper Alg. 4: "alpha >><< (1 - beta1)".
//   * the infinity norm u in the denominator: per element. Rounded to a power
//     of two, dividing m by it is a bit shift. Torch7: `v = 2^round(log2(v))`
//     before the division; paper Alg. 4: "m >><< v_t^-1".
//   So with lr_scale = 1 the update is m shifted twice: m * 2^(a - b) for
//   integers a, b — no multiplier needed (the paper's motivation: hardware
//   without fast multiplication, and the speed-up claimed in its §"Shift
//   based AdaMax"). Exactly: delta / m is a power of two (tested).
// What is NOT rounded:
//   * m itself and the moment updates (with the default 1 - beta1 = 2^-3 and
//     1 - beta2 = 2^-10 those are shift-and-add in fixed point anyway);
//   * the stored state u: we round only the copy used in the division and
//     keep u exact. (The Torch7 code writes AP2(u) + eps back into its state,
//     so its u is re-rounded every step; the paper's algorithm keeps u.)
//   * lr_scale (per-layer Glorot factor): multiplied after the rounding, as the
//     Torch7 code does with its GLRvec (`x:addcmul(-stepSize, tmp, GLRvec)`).
// eps: Torch7 computes m / (AP2(u) + eps); we compute m / AP2(u + eps), which
// keeps the divisor an exact power of two and never zero; for u >> eps the
// two agree.
// Defaults (paper Alg. 4 / docs/design.md §3): lr 2^-10, 1 - beta1 = 2^-3,
// 1 - beta2 = 2^-10; eps 2^-27 (the Torch7 default epsilon). The Torch7
// function's own defaults are lr 0.002, beta1 0.9, beta2 0.999, and its MNIST
// script passes LR 2^-6 (halved every 20 epochs): pass those explicitly to
// reproduce that run.
#pragma once

#include <bit>
#include <cstdint>

#include "optim/optimizer.h"

namespace qnn {

class AdaMax : public Optimizer {
 public:
  struct Options {
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;
  };
  AdaMax(std::vector<Tensor> params, float lr, Options opt);
  AdaMax(std::vector<Tensor> params, float lr = 2e-3f) : AdaMax(std::move(params), lr, Options{}) {}
  std::string name() const override { return "adamax"; }
  bool elementwise() const override { return true; }
  const Options& options() const { return opt_; }

 protected:
  void update(const ParamUpdate& u) override;
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_inf"}; }

 private:
  Options opt_;
};

class ShiftAdaMax : public Optimizer {
 public:
  struct Options {
    float beta1 = 1.0f - 0x1p-3f;   // 0.875
    float beta2 = 1.0f - 0x1p-10f;  // 0.9990234375
    float eps = 0x1p-27f;
    float weight_decay = 0.0f;
  };
  ShiftAdaMax(std::vector<Tensor> params, float lr, Options opt);
  ShiftAdaMax(std::vector<Tensor> params, float lr = 0x1p-10f) : ShiftAdaMax(std::move(params), lr, Options{}) {}
  std::string name() const override { return "adamax-shift"; }
  bool elementwise() const override { return true; }
  const Options& options() const { return opt_; }

 protected:
  void update(const ParamUpdate& u) override;
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_inf"}; }

 private:
  Options opt_;
};

namespace detail {
// AP2 of a non-negative float by bit manipulation, vectorisable (no log2):
// round(log2 x) goes up exactly when the mantissa 1.f exceeds sqrt(2).
// Equals qnn::ap2(x) for every positive finite x (tested); 0 and denormals
// give 2^-126, +inf gives 2^127 (never 0, never inf: a safe divisor).
inline float ap2_nonneg(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  uint32_t e = bits & 0x7F800000u;        // biased exponent, in place
  const uint32_t mant = bits & 0x007FFFFFu;
  e += (mant > 0x003504F3u) ? 0x00800000u : 0u;  // 0x3FB504F3 = float(sqrt 2), below sqrt 2
  e = e < 0x00800000u ? 0x00800000u : e;         // zero / denormal -> 2^-126
  e = e > 0x7F000000u ? 0x7F000000u : e;         // cap at 2^127
  return std::bit_cast<float>(e);
}
}  // namespace detail

}  // namespace qnn
