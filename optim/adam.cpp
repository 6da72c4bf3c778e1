// optim/adam.cpp — see adam.h for the formulas.
#include "optim/adam.h"

#include <algorithm>
#include <cmath>

#include "optim/update_loop.h"

namespace qnn {

void check_adam_hyper(const std::string& who, float beta1, float beta2, float eps, float weight_decay) {
  QNN_CHECK(beta1 >= 0.0f && beta1 < 1.0f, who + ": beta1 must be in [0, 1), got " + std::to_string(beta1));
  QNN_CHECK(beta2 >= 0.0f && beta2 < 1.0f, who + ": beta2 must be in [0, 1), got " + std::to_string(beta2));
  QNN_CHECK(std::isfinite(eps) && eps >= 0.0f, who + ": eps must be finite and >= 0");
  QNN_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0f, who + ": weight_decay must be finite and >= 0");
}

Adam::Adam(std::vector<Tensor> params, float lr, Options opt) : Optimizer(std::move(params), lr), opt_(opt) {
  check_adam_hyper("adam", opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
}

namespace {

// The update loop, instantiated with and without the fused clip so neither
// version tests a flag per element. A plain function with __restrict
// pointers (not a lambda capturing them) so GCC vectorises both versions.
// wd is the L2 factor added to g (Adam), shrink the factor p is multiplied
// by first (AdamW: 1 - lr * weight_decay; 1 for Adam).
template <bool kClip>
void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
               float step_size, float inv_sqrt_bc2, float b1, float c1, float b2, float c2, float eps, float wd,
               float shrink, float lo, float hi) {
  QNN_OPTIM_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i] * shrink - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    if constexpr (kClip) pi = pi < lo ? lo : (pi > hi ? hi : pi);  // Clip's exact expression
    p[i] = pi;
  }
}

}  // namespace

void Adam::update(const ParamUpdate& u) {
  // Per-tensor scalars, in double then rounded once.
  const double t = (double)u.t;
  const float step_size = (float)(u.lr / (1.0 - std::pow((double)opt_.beta1, t)));
  const float inv_sqrt_bc2 = (float)(1.0 / std::sqrt(1.0 - std::pow((double)opt_.beta2, t)));
  const float b1 = opt_.beta1, c1 = 1.0f - opt_.beta1;
  const float b2 = opt_.beta2, c2 = 1.0f - opt_.beta2;
  float* m = slot(u, "exp_avg");
  float* v = slot(u, "exp_avg_sq");
  const float wd = opt_.decoupled ? 0.0f : opt_.weight_decay;
  // The effective LR (with the parameter's lr_scale), as PyTorch uses its group's lr.
  const double shrink = opt_.decoupled ? 1.0 - (double)u.lr * opt_.weight_decay : 1.0;
  QNN_CHECK(shrink >= 0.0, "adamw: lr * weight_decay = " + std::to_string((double)u.lr * opt_.weight_decay) +
                               " > 1 would flip the sign of the weights; lower --lr or --weight-decay");
  auto loop = u.clip ? adam_loop<true> : adam_loop<false>;
  loop(u.p, u.g, m, v, u.n, step_size, inv_sqrt_bc2, b1, c1, b2, c2, opt_.eps, wd, (float)shrink, u.clip_lo, u.clip_hi);
}

}  // namespace qnn
