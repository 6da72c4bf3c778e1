// optim/schedule.h — learning-rate schedules: lr as a function of the epoch.
//
// A schedule is a small object asked once per epoch (epoch is 0-based):
//   for (int e = 0; e < epochs; ++e) { opt.set_lr(sched->lr_at(e)); train_one_epoch(); }
//
//   Constant(lr)                          lr
//   Step(lr, step_size, gamma)            lr * gamma^floor(epoch / step_size)
//   Cosine(lr_max, lr_min, total)         lr_min + (lr_max - lr_min) * (1 + cos(pi * e / (total - 1))) / 2
//   Exponential(lr_start, lr_end, total)  lr_start * (lr_end / lr_start)^(e / (total - 1))
//   DecayLR(lr, gamma, lr_floor)          max(lr * gamma^e, lr_floor)
//
// Cosine and Exponential run from their first value at epoch 0 to exactly
// their last value at epoch total - 1 (the last epoch trained), and stay there
// for later epochs. With total == 1 the single epoch uses the first value.
//
// Exponential is the QNN/BinaryNet schedule. Courbariaux's Theano code
// multiplies the lr by decay = (lr_end / lr_start)^(1 / total) after every
// epoch, so its last epoch trains at lr_start * decay^(total-1), one decay
// factor above lr_end (which it would reach after the run). We use the
// exponent e / (total - 1) instead so the last epoch lands on lr_end; for the
// paper's 1000 epochs the two differ by a factor (lr_end/lr_start)^(1/1000)
// ~ 0.99 at most.
//
// DecayLR is the same exponential shape with a fixed factor per epoch, so the
// LR of epoch e does not depend on how many epochs the run has: a 3-epoch run
// trains its epochs at the LRs a 300-epoch run starts with, instead of
// squeezing the whole 10^4 decay into 3 epochs (which leaves the last epochs
// at ~1e-7, where a BNN stops learning). The floor keeps long runs from
// decaying into nothing. make_schedule builds it for "exponential" when
// ScheduleConfig::decay_per_epoch > 0; it then reports the name "exponential".
#pragma once

#include <memory>
#include <string>

namespace qnn {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual float lr_at(int epoch) const = 0;  // epoch >= 0, else qnn::Error
  virtual std::string name() const = 0;
  virtual std::string describe() const = 0;  // e.g. "exponential 0.003 -> 3e-07 over 1000 epochs"
};

class ConstantLR : public LrSchedule {
 public:
  explicit ConstantLR(float lr);
  float lr_at(int epoch) const override;
  std::string name() const override { return "constant"; }
  std::string describe() const override;

 private:
  float lr_;
};

class StepLR : public LrSchedule {
 public:
  StepLR(float lr, int step_size, float gamma = 0.1f);
  float lr_at(int epoch) const override;
  std::string name() const override { return "step"; }
  std::string describe() const override;

 private:
  float lr_;
  int step_size_;
  float gamma_;
};

class CosineLR : public LrSchedule {
 public:
  CosineLR(float lr_max, float lr_min, int total_epochs);
  float lr_at(int epoch) const override;
  std::string name() const override { return "cosine"; }
  std::string describe() const override;

 private:
  float lr_max_, lr_min_;
  int total_;
};

class ExponentialLR : public LrSchedule {
 public:
  ExponentialLR(float lr_start, float lr_end, int total_epochs);
  float lr_at(int epoch) const override;
  std::string name() const override { return "exponential"; }
  std::string describe() const override;

 private:
  float lr_start_, lr_end_;
  int total_;
};

class DecayLR : public LrSchedule {
 public:
  DecayLR(float lr, float gamma, float lr_floor);
  float lr_at(int epoch) const override;
  std::string name() const override { return "exponential"; }
  std::string describe() const override;  // "exponential 0.003 x0.9 per epoch, floor 3e-07"

 private:
  float lr_, gamma_, floor_;
};

// What make_schedule reads; each schedule uses the fields it needs:
//   constant: lr          step: lr, step_size, gamma
//   cosine, exponential: lr (start/max), lr_end (end/min), total_epochs
//   exponential with decay_per_epoch > 0: DecayLR(lr, decay_per_epoch, lr_end)
struct ScheduleConfig {
  float lr = 1e-3f;
  float lr_end = 0.0f;
  int total_epochs = 1;
  int step_size = 1;
  float gamma = 0.1f;
  float decay_per_epoch = 0.0f;  // > 0 (and < 1): per-epoch factor, lr_end is then the floor
};

// name: "constant" | "step" | "cosine" | "exponential" (alias "exp").
// Throws qnn::Error listing the valid names, or naming the bad value.
std::unique_ptr<LrSchedule> make_schedule(const std::string& name, const ScheduleConfig& cfg);

}  // namespace qnn
