// optim/adamax.cpp — see adamax.h for the formulas and the AP2 choices.
#include "optim/adamax.h"

#include <cmath>

#include "core/ap2.h"
#include "optim/adam.h"  // check_adam_hyper
#include "optim/update_loop.h"

namespace qnn {
namespace {
// A comparison, not std::fmax: fmax must honour NaN rules and is a libm call
// per element unless -ffinite-math-only; this compiles to one maxps.
inline float max_f(float a, float b) { return a > b ? a : b; }
}  // namespace

AdaMax::AdaMax(std::vector<Tensor> params, float lr, Options opt) : Optimizer(std::move(params), lr), opt_(opt) {
  check_adam_hyper("adamax", opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
}

void AdaMax::update(const ParamUpdate& u) {
  float* __restrict p = u.p;
  const float* __restrict g = u.g;
  float* __restrict m = slot(u, "exp_avg");
  float* __restrict w = slot(u, "exp_inf");
  const int64_t n = u.n;
  const float step_size = (float)(u.lr / (1.0 - std::pow((double)opt_.beta1, (double)u.t)));
  const float b1 = opt_.beta1, c1 = 1.0f - opt_.beta1, b2 = opt_.beta2;
  const float eps = opt_.eps, wd = opt_.weight_decay;

  QNN_OPTIM_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float wi = max_f(b2 * w[i], std::fabs(gi));
    m[i] = mi;
    w[i] = wi;
    p[i] -= step_size * mi / (wi + eps);
  }
}

ShiftAdaMax::ShiftAdaMax(std::vector<Tensor> params, float lr, Options opt)
    : Optimizer(std::move(params), lr), opt_(opt) {
  check_adam_hyper("adamax-shift", opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
}

void ShiftAdaMax::update(const ParamUpdate& u) {
  float* __restrict p = u.p;
  const float* __restrict g = u.g;
  float* __restrict m = slot(u, "exp_avg");
  float* __restrict w = slot(u, "exp_inf");
  const int64_t n = u.n;
  // Power-of-two step size from the base lr (see header), then the
  // unrounded per-layer scale, as Torch7 applies its GLRvec.
  const float step_size =
      ap2((float)(u.base_lr / (1.0 - std::pow((double)opt_.beta1, (double)u.t)))) * u.lr_scale;
  const float b1 = opt_.beta1, c1 = 1.0f - opt_.beta1, b2 = opt_.beta2;
  const float eps = opt_.eps, wd = opt_.weight_decay;

  QNN_OPTIM_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float wi = max_f(b2 * w[i], std::fabs(gi));
    m[i] = mi;
    w[i] = wi;
    p[i] -= step_size * (mi / detail::ap2_nonneg(wi + eps));  // two exact shifts of m
  }
}

}  // namespace qnn
