// optim/sgd.cpp — see sgd.h for the formulas.
#include "optim/sgd.h"

#include <cmath>

#include "optim/update_loop.h"

namespace qnn {

SGD::SGD(std::vector<Tensor> params, float lr, Options opt) : Optimizer(std::move(params), lr), opt_(opt) {
  QNN_CHECK(std::isfinite(opt.momentum) && opt.momentum >= 0.0f, "sgd: momentum must be >= 0");
  QNN_CHECK(std::isfinite(opt.dampening) && opt.dampening >= 0.0f && opt.dampening <= 1.0f,
            "sgd: dampening must be in [0, 1]");
  QNN_CHECK(std::isfinite(opt.weight_decay) && opt.weight_decay >= 0.0f, "sgd: weight_decay must be >= 0");
  QNN_CHECK(!opt.nesterov || (opt.momentum > 0.0f && opt.dampening == 0.0f),
            "sgd: nesterov momentum requires momentum > 0 and dampening = 0");
}

void SGD::update(const ParamUpdate& u) {
  float* __restrict p = u.p;
  const float* __restrict g = u.g;
  const int64_t n = u.n;
  const float lr = u.lr, wd = opt_.weight_decay, mom = opt_.momentum;

  if (mom == 0.0f) {  // plain SGD: no state
    QNN_OPTIM_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
    return;
  }
  float* __restrict buf = slot(u, "momentum_buffer");
  // First update: buf = g exactly (PyTorch), i.e. keep = 0 and take = 1.
  const float keep = u.t == 1 ? 0.0f : mom;
  const float take = u.t == 1 ? 1.0f : 1.0f - opt_.dampening;
  const bool nesterov = opt_.nesterov;
  QNN_OPTIM_PARALLEL_FOR(n)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float b = keep * buf[i] + take * gi;
    buf[i] = b;
    p[i] -= lr * (nesterov ? gi + mom * b : b);
  }
}

}  // namespace qnn
