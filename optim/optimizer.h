// optim/optimizer.h — the Optimizer base class and the make_optimizer factory.
//
// An optimizer owns handles to the parameters it updates (Tensors share
// storage, so updating through the handle updates the model). One step():
//
//   for each parameter p that has a gradient (others are skipped):
//     t_p += 1                                  // this parameter's step number
//     update(p, grad, lr * lr_scale)            // the subclass's rule, in place
//     constraint(p)                             // e.g. clip to [-1, 1]
//
// lr_scale and constraint come from the parameter's ParamAttrs (core/tensor.h):
// they travel with the parameter, so a training loop cannot forget the
// BinaryNet weight clip or Courbariaux's per-layer learning-rate scale. The
// constraint is always honoured as given; only the library's own Clip,
// recognised by its type, may be fused into the update loop (same bits).
//
// Per-parameter state (moments) lives in named "slots", allocated lazily (zeros,
// the parameter's shape) on the parameter's first update. state() exports the
// slots and step counters as named tensors so a checkpoint can resume training:
//   "step_count"          scalar, number of step() calls
//   "<i>.step"            scalar, number of updates of parameter i (bias correction)
//   "<i>.<slot>"          e.g. "3.exp_avg", "3.exp_avg_sq"
// i is the parameter's position in the list given to the constructor, so load
// into an optimizer built over the same parameter list (same model, same order).
// Steps are stored as float: exact up to 2^24 = 16.7M steps.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qnn {

// What the base class hands a subclass for one parameter's update.
struct ParamUpdate {
  size_t index = 0;        // position in params()
  float* p = nullptr;      // parameter values (updated in place)
  const float* g = nullptr;  // its gradient
  int64_t n = 0;           // number of elements
  float lr = 0.0f;         // effective learning rate = base_lr * lr_scale
  float base_lr = 0.0f;    // the optimizer's lr()
  float lr_scale = 1.0f;   // from ParamAttrs (1 if none)
  int64_t t = 0;           // this parameter's step number, 1 on its first update
  // When set, update() must finish with p = min(max(p, clip_lo), clip_hi),
  // written as Clip's own expression (p < lo ? lo : (p > hi ? hi : p)) so
  // the result is bit-identical to running the constraint after the update.
  // Set only when the parameter's constraint is the library's Clip itself
  // (layers/quant/constraints.h as_clip) and the optimizer fuses_clip().
  bool clip = false;
  float clip_lo = 0.0f, clip_hi = 0.0f;
  // First element of this update within the parameter: p and g already
  // point at it; per-parameter state must too (slot(u, name) does that).
  // 0 unless the optimizer is sharded (set_shard), when n may even be 0.
  int64_t offset = 0;
};

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, float lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient, then its constraint.
  virtual void step();
  // Drop every parameter's gradient (the next backward starts from zero).
  void zero_grad();

  // Sharded update (data-parallel training, as ZeRO's stage 1): step()
  // updates only elements [begin, end) of the parameters laid end to end in
  // list order; every parameter's step count still advances. Each rank of a
  // data-parallel run updates its own shard, then the ranks exchange the
  // updated values: the same bits as every rank updating everything, for
  // half (1/P) of the memory traffic. Needs can_shard(). clear_shard()
  // returns to whole-parameter updates.
  void set_shard(int64_t begin, int64_t end);
  void clear_shard() { shard_ = false; }
  bool sharded() const { return shard_; }
  // True when the update rule is elementwise (elementwise()) and every
  // parameter's constraint is absent or the library's Clip (elementwise);
  // a user's constraint may look at the whole tensor (a max-norm).
  bool can_shard() const;

  void set_lr(float lr);
  float lr() const { return lr_; }
  int64_t step_count() const { return step_count_; }
  virtual std::string name() const = 0;
  const std::vector<Tensor>& params() const { return params_; }

  // Checkpointing (see the header comment for the names). The tensors
  // returned are the live slots: save them before the next step().
  std::vector<std::pair<std::string, Tensor>> state() const;
  // Restores values (copies). Fails with a clear message on an unknown name,
  // a parameter index out of range or a shape mismatch.
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state);

 protected:
  // The update rule, in place on u.p. Called only for parameters with a gradient.
  virtual void update(const ParamUpdate& u) = 0;
  // True if update() honours ParamUpdate::clip. Any constraint that is not
  // a Clip (a user's function, a wrapper around a Clip), and every
  // constraint of an optimizer that does not fuse, is called by step() after
  // the update, as given.
  virtual bool fuses_clip() const { return false; }
  // True if update() treats every element on its own (element i of p, its
  // gradient and its state, nothing else) and uses slot(u, name): the rule
  // may then run on a slice of the parameter (set_shard). The library's
  // optimizers are; a user's optimizer is assumed not to be.
  virtual bool elementwise() const { return false; }
  // The names of the per-parameter buffers this optimizer keeps (for load_state).
  virtual std::vector<std::string> slot_names() const = 0;
  // A per-parameter state buffer, zero-initialised on first use.
  float* slot(size_t index, const std::string& name);
  // The same buffer at the update's first element (u.offset): what update()
  // indexes with [0, u.n).
  float* slot(const ParamUpdate& u, const std::string& name) { return slot(u.index, name) + u.offset; }

 private:
  std::vector<Tensor> params_;
  float lr_;
  int64_t step_count_ = 0;
  bool shard_ = false;
  int64_t shard_begin_ = 0, shard_end_ = 0;
  std::vector<int64_t> param_steps_;
  std::vector<std::map<std::string, Tensor>> slots_;
};

// Hyper-parameters for make_optimizer. Unset optionals take the optimizer's
// own default (Adam 0.9/0.999/1e-8, AdaMax 0.9/0.999/1e-8, shift-based AdaMax
// 1-2^-3 / 1-2^-10 / 2^-27).
struct OptimizerConfig {
  float weight_decay = 0.0f;  // L2 added to the gradient; adamw: decoupled decay of p (adam.h)
  float momentum = 0.0f;      // sgd
  float dampening = 0.0f;     // sgd
  bool nesterov = false;      // sgd (needs momentum > 0, dampening 0)
  std::optional<float> beta1 = {}, beta2 = {}, eps = {};  // adam, adamax, adamax-shift
};

// name: "sgd" | "adam" | "adamw" | "adamax" | "adamax-shift". Throws qnn::Error listing
// the valid names for anything else, and for invalid hyper-parameters.
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, std::vector<Tensor> params,
                                          float lr, const OptimizerConfig& cfg = {});

}  // namespace qnn
