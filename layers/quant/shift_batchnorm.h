// layers/quant/shift_batchnorm.h — Courbariaux's shift-based batch norm, over
// [N, C] (ShiftBatchNorm, after a dense layer) or [N, C, H, W]
// (ShiftBatchNorm2d, after a convolution: statistics per channel over N, H, W).
//
// BinaryNet (Courbariaux et al. 2016, Algorithm 3; Hubara's Torch7
// BatchNormalizationShiftPow2) replaces the multiplications of batch norm by
// shifts: every factor that multiplies a whole activation is a power of two,
// AP2(v) = sign(v) 2^round(log2|v|) (core/ap2.h). Per channel, over the
// m values of a mini-batch (m = N for x [N, C], N H W for x [N, C, H, W]):
//
//   mu    = mean(x)                                  exact
//   C     = x - mu                                   exact  ("centred input")
//   var   = mean(C * AP2(C))                         AP2-rounded: ONE factor of
//                                                    the square (C AP2(C) >= 0)
//   inv   = 1 / sqrt(var + eps)                      exact
//   yhat  = C * AP2(inv)                             AP2-rounded: the normaliser
//   y     = AP2(gamma) * yhat + beta                 AP2-rounded: gamma; beta exact
//
// So the rounded quantities are exactly three: AP2(C) inside the variance,
// AP2(inv) and AP2(gamma). Each makes the result differ from float batch norm
// by a factor in [2^-1/2, 2^1/2] (var, hence inv by [2^-1/4, 2^1/4] before
// its own rounding); overall |y - beta| is within 2^(+-1.25) of float BN's.
//
// Running statistics and evaluation are those of BatchNorm (same buffers,
// same PyTorch-convention momentum, unbiased running variance built from the
// *shift* variance above). Evaluation:
//   y = AP2(gamma) * (x - running_mean) * AP2(1 / sqrt(running_var + eps)) + beta.
// (Torch7 defaults are momentum 0.125, eps 1e-5; this layer takes whatever
// BatchNormOptions says, BatchNorm's defaults otherwise.)
//
// Gradient. AP2 is piecewise constant, so its true derivative is 0 (gamma
// would never learn). As for every rounding in BinaryNet, each AP2 is treated
// as straight-through in the backward pass: dAP2(v)/dv := 1. The backward
// (hand-written, one node) is the exact gradient of the forward with every
// AP2(v) replaced by v + (AP2(v0) - v0), the offset frozen at the current
// point; tests/test_quant_layers.cpp checks it against central differences of that
// function. Written out, with g = dL/dy, gp = AP2(gamma), s = AP2(inv),
// r = AP2(C):
//   dbeta  = sum g                  dgamma = sum g * yhat
//   dV     = -1/2 inv^3 * gp * sum(g * C)
//   dC_i   = gp s g_i + dV (r_i + C_i) / m
//   dx_i   = dC_i - mean(dC)
// With ap2 = false nothing is rounded and this is exactly float batch norm.
#pragma once

#include "layers/batchnorm.h"

namespace qnn {

// The op. x [N, C] or [N, C, H, W]; gamma, beta [C] (may be undefined: no affine);
// running_mean, running_var [C], updated in place in training.
Tensor shift_batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                        Tensor& running_var, bool training, float momentum, float eps, bool ap2 = true);

// The layer: a BatchNorm1d (or BatchNorm2d with spatial_dims = 2; same
// parameters "weight"/"bias", buffers "running_mean"/"running_var", so
// checkpoints are interchangeable) whose forward is shift_batch_norm.
class ShiftBatchNorm : public BatchNorm {
 public:
  explicit ShiftBatchNorm(int64_t channels, BatchNormOptions opt = {}, bool ap2 = true, int spatial_dims = 0)
      : BatchNorm(channels, spatial_dims, opt), ap2_(ap2) {
    QNN_CHECK(spatial_dims == 0 || spatial_dims == 2,
              "ShiftBatchNorm: spatial_dims must be 0 ([N, C]) or 2 ([N, C, H, W]), got " + std::to_string(spatial_dims));
  }
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return spatial_dims_ == 0 ? "ShiftBatchNorm1d" : "ShiftBatchNorm2d"; }
  bool ap2() const { return ap2_; }

 private:
  bool ap2_;
};

// [N, C, H, W]: statistics per channel over N, H and W.
class ShiftBatchNorm2d : public ShiftBatchNorm {
 public:
  explicit ShiftBatchNorm2d(int64_t channels, BatchNormOptions opt = {}, bool ap2 = true)
      : ShiftBatchNorm(channels, opt, ap2, 2) {}
};

}  // namespace qnn
