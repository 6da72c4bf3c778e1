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

std::string adamw_decay_problem(double lr, double weight_decay) {
  if (lr * weight_decay <= 1.0) return "";
  return "lr * weight_decay = " + std::to_string(lr * weight_decay) +
         " > 1: AdamW multiplies the weights by 1 - lr * weight_decay each step, which would flip the sign of the weights";
}

Adam::Adam(std::vector<Tensor> params, float lr, Options opt) : Optimizer(std::move(params), lr), opt_(opt) {
  check_adam_hyper("adam", opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
}

namespace {

// The update loop, instantiated per clip and per decay form so that no
// version tests a flag or does a dead multiply per element. A plain function
// with __restrict pointers (not a lambda capturing them) so GCC vectorises
// every version. kNone is bit-identical to kL2 with wd = 0 (g + 0 * p == g
// for finite p), so plain Adam loses nothing to the decay forms.
enum class Decay { kNone, kL2, kDecoupled };

template <bool kClip, Decay kDecay>
void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
               float step_size, float inv_sqrt_bc2, float b1, float c1, float b2, float c2, float eps, float wd,
               float shrink, float lo, float hi) {
  QNN_OPTIM_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if constexpr (kDecay == Decay::kL2) gi += wd * p[i];  // Adam's L2: the decay is a gradient
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i];
    if constexpr (kDecay == Decay::kDecoupled) pi *= shrink;  // AdamW: 1 - lr * wd, outside m and v
    pi -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    if constexpr (kClip) pi = pi < lo ? lo : (pi > hi ? hi : pi);  // Clip's exact expression
    p[i] = pi;
  }
}

template <Decay kDecay>
void run_adam_loop(const ParamUpdate& u, float* m, float* v, float step_size, float inv_sqrt_bc2, float b1, float c1,
                   float b2, float c2, float eps, float wd, float shrink) {
  auto loop = u.clip ? adam_loop<true, kDecay> : adam_loop<false, kDecay>;
  loop(u.p, u.g, m, v, u.n, step_size, inv_sqrt_bc2, b1, c1, b2, c2, eps, wd, shrink, u.clip_lo, u.clip_hi);
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
  const float wd = opt_.weight_decay;
  if (wd == 0.0f) return run_adam_loop<Decay::kNone>(u, m, v, step_size, inv_sqrt_bc2, b1, c1, b2, c2, opt_.eps, 0, 1);
  if (!opt_.decoupled) return run_adam_loop<Decay::kL2>(u, m, v, step_size, inv_sqrt_bc2, b1, c1, b2, c2, opt_.eps, wd, 1);
  // The effective LR (with the parameter's lr_scale), as PyTorch uses its group's lr.
  const std::string problem = adamw_decay_problem(u.lr, wd);
  QNN_CHECK(problem.empty(), "adamw: " + problem + "; lower --lr or --weight-decay");
  const float shrink = (float)(1.0 - (double)u.lr * wd);
  run_adam_loop<Decay::kDecoupled>(u, m, v, step_size, inv_sqrt_bc2, b1, c1, b2, c2, opt_.eps, 0, shrink);
}

}  // namespace qnn
