// optim/optimizer.cpp — the shared step loop, state export, and the factory.
#include "optim/optimizer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "layers/quant/constraints.h"
#include "optim/adam.h"
#include "optim/adamax.h"
#include "optim/sgd.h"

namespace qnn {

Optimizer::Optimizer(std::vector<Tensor> params, float lr)
    : params_(std::move(params)), lr_(lr), param_steps_(params_.size(), 0), slots_(params_.size()) {
  QNN_CHECK(std::isfinite(lr) && lr >= 0.0f, "optimizer: learning rate must be finite and >= 0, got " + std::to_string(lr));
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    QNN_CHECK(params_[i].defined(), "optimizer: parameter " + std::to_string(i) + " is an undefined tensor");
    // A parameter listed twice would be updated twice per step.
    QNN_CHECK(seen.insert(params_[i].impl()).second,
              "optimizer: parameter " + std::to_string(i) + " appears twice in the parameter list");
  }
}

void Optimizer::set_shard(int64_t begin, int64_t end) {
  QNN_CHECK(can_shard(), name() + ": set_shard needs an elementwise update rule and elementwise constraints");
  QNN_CHECK(0 <= begin && begin <= end, name() + ": set_shard: bad range [" + std::to_string(begin) + ", " +
                                            std::to_string(end) + ")");
  shard_ = true;
  shard_begin_ = begin;
  shard_end_ = end;
}

bool Optimizer::can_shard() const {
  if (!elementwise()) return false;
  for (const Tensor& p : params_) {
    const ParamAttrs* a = p.param_attrs_if();
    if (a && a->constraint && !as_clip(a->constraint)) return false;
  }
  return true;
}

void Optimizer::step() {
  ++step_count_;
  int64_t base = 0;  // first element of parameter i, the parameters laid end to end
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const int64_t numel = p.numel();
    int64_t lo = 0, hi = numel;  // this process's elements of p
    if (shard_) {
      lo = std::clamp(shard_begin_ - base, int64_t(0), numel);
      hi = std::clamp(shard_end_ - base, lo, numel);
    }
    base += numel;
    if (!p.has_grad()) continue;  // not reached by backward (yet): leave it alone
    Tensor g = p.grad();
    QNN_CHECK(g.numel() == p.numel(), name() + ": gradient of parameter " + std::to_string(i) + " has shape " +
                                          shape_str(g.shape()) + ", parameter has " + shape_str(p.shape()));
    const ParamAttrs* attrs = p.param_attrs_if();
    ParamUpdate u;
    u.index = i;
    u.offset = lo;
    u.p = p.data() + lo;
    u.g = g.data() + lo;
    u.n = hi - lo;  // 0 when the shard misses p: update() still allocates its state
    u.base_lr = lr_;
    u.lr_scale = attrs ? attrs->lr_scale : 1.0f;
    u.lr = lr_ * u.lr_scale;
    u.t = ++param_steps_[i];
    // The library's Clip goes into the update loop when the optimizer can
    // fuse it (BinaryNet's clip of the latent weights: one pass over them,
    // not two). Recognised by the callable's type, so a constraint the user
    // replaced or wrapped (even around a Clip) is never skipped.
    const Clip* fused = attrs && fuses_clip() ? as_clip(attrs->constraint) : nullptr;
    u.clip = fused != nullptr;
    if (fused) u.clip_lo = fused->lo, u.clip_hi = fused->hi;
    update(u);
    // Any other constraint runs after the update, once per tensor, on the
    // whole buffer (it may be elementwise or not, e.g. a max-norm; sharded,
    // it is a Clip: can_shard).
    if (attrs && attrs->constraint && !u.clip && u.n > 0) attrs->constraint(u.p, u.n);
  }
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

void Optimizer::set_lr(float lr) {
  QNN_CHECK(std::isfinite(lr) && lr >= 0.0f, name() + ": learning rate must be finite and >= 0, got " + std::to_string(lr));
  lr_ = lr;
}

float* Optimizer::slot(size_t index, const std::string& slot_name) {
  auto& m = slots_.at(index);
  auto it = m.find(slot_name);
  if (it == m.end()) it = m.emplace(slot_name, Tensor::zeros(params_[index].shape())).first;
  return it->second.data();
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("step_count", Tensor::scalar((float)step_count_));
  for (size_t i = 0; i < params_.size(); ++i) {
    if (param_steps_[i] == 0 && slots_[i].empty()) continue;  // never updated
    const std::string pre = std::to_string(i) + ".";
    out.emplace_back(pre + "step", Tensor::scalar((float)param_steps_[i]));
    for (const auto& [k, t] : slots_[i]) out.emplace_back(pre + k, t);
  }
  return out;
}

void Optimizer::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  const std::vector<std::string> names = slot_names();
  std::string expected = "step_count, <i>.step";
  for (const auto& s : names) expected += ", <i>." + s;
  const std::string where = name() + ": load_state: ";

  for (const auto& [key, t] : state) {
    QNN_CHECK(t.defined(), where + "entry '" + key + "' is an undefined tensor");
    if (key == "step_count") {
      QNN_CHECK(t.numel() == 1, where + "'step_count' must hold one value");
      step_count_ = (int64_t)t.item();
      continue;
    }
    const size_t dot = key.find('.');
    size_t index = 0;
    const char* b = key.data();
    auto [end, ec] = std::from_chars(b, b + (dot == std::string::npos ? key.size() : dot), index);
    QNN_CHECK(dot != std::string::npos && ec == std::errc() && end == b + dot,
              where + "unknown entry '" + key + "' (expected " + expected + ")");
    QNN_CHECK(index < params_.size(), where + "entry '" + key + "' refers to parameter " + std::to_string(index) +
                                          " but this optimizer has " + std::to_string(params_.size()) +
                                          " parameters (a different model?)");
    const std::string field = key.substr(dot + 1);
    if (field == "step") {
      QNN_CHECK(t.numel() == 1, where + "'" + key + "' must hold one value");
      param_steps_[index] = (int64_t)t.item();
      continue;
    }
    bool known = false;
    for (const auto& s : names) known = known || s == field;
    QNN_CHECK(known, where + "unknown entry '" + key + "' (expected " + expected + ")");
    const Tensor& p = params_[index];
    QNN_CHECK(t.numel() == p.numel(), where + "entry '" + key + "' has shape " + shape_str(t.shape()) +
                                          " but parameter " + std::to_string(index) + " has shape " +
                                          shape_str(p.shape()));
    slot(index, field);  // allocate if needed
    slots_[index].at(field).copy_from(t);
  }
}

// ---- factory -------------------------------------------------------------------

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, std::vector<Tensor> params, float lr,
                                          const OptimizerConfig& cfg) {
  auto adam_only = [&](const char* what) {
    QNN_CHECK(cfg.momentum == 0.0f && cfg.dampening == 0.0f && !cfg.nesterov,
              "make_optimizer: '" + name + "' does not take " + what + " (momentum/dampening/nesterov are for sgd)");
  };
  if (name == "sgd") {
    QNN_CHECK(!cfg.beta1 && !cfg.beta2 && !cfg.eps, "make_optimizer: 'sgd' does not take beta1/beta2/eps");
    SGD::Options o;
    o.momentum = cfg.momentum;
    o.dampening = cfg.dampening;
    o.nesterov = cfg.nesterov;
    o.weight_decay = cfg.weight_decay;
    return std::make_unique<SGD>(std::move(params), lr, o);
  }
  if (name == "adam" || name == "adamw") {
    adam_only("momentum");
    Adam::Options o;
    o.decoupled = name == "adamw";
    if (cfg.beta1) o.beta1 = *cfg.beta1;
    if (cfg.beta2) o.beta2 = *cfg.beta2;
    if (cfg.eps) o.eps = *cfg.eps;
    o.weight_decay = cfg.weight_decay;
    return std::make_unique<Adam>(std::move(params), lr, o);
  }
  if (name == "adamax") {
    adam_only("momentum");
    AdaMax::Options o;
    if (cfg.beta1) o.beta1 = *cfg.beta1;
    if (cfg.beta2) o.beta2 = *cfg.beta2;
    if (cfg.eps) o.eps = *cfg.eps;
    o.weight_decay = cfg.weight_decay;
    return std::make_unique<AdaMax>(std::move(params), lr, o);
  }
  if (name == "adamax-shift") {
    adam_only("momentum");
    ShiftAdaMax::Options o;
    if (cfg.beta1) o.beta1 = *cfg.beta1;
    if (cfg.beta2) o.beta2 = *cfg.beta2;
    if (cfg.eps) o.eps = *cfg.eps;
    o.weight_decay = cfg.weight_decay;
    return std::make_unique<ShiftAdaMax>(std::move(params), lr, o);
  }
  fail("make_optimizer: unknown optimizer '" + name + "' (expected one of: sgd, adam, adamw, adamax, adamax-shift)");
}

}  // namespace qnn
