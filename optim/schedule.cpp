// optim/schedule.cpp — see schedule.h for the formulas.
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

#include "core/tensor.h"  // fail, QNN_CHECK

namespace qnn {
namespace {

void check_lr(const char* who, const char* what, float v, bool allow_zero) {
  QNN_CHECK(std::isfinite(v) && (allow_zero ? v >= 0.0f : v > 0.0f),
            std::string(who) + ": " + what + " must be finite and " + (allow_zero ? ">= 0" : "> 0") + ", got " +
                std::to_string(v));
}
void check_epoch(const char* who, int epoch) {
  QNN_CHECK(epoch >= 0, std::string(who) + ": epoch must be >= 0, got " + std::to_string(epoch));
}
// Fraction of the run done at `epoch`: 0 at the first epoch, 1 at the last.
double progress(int epoch, int total) {
  if (total <= 1) return 0.0;
  return std::min(1.0, (double)epoch / (double)(total - 1));
}
std::string fmt(float v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

ConstantLR::ConstantLR(float lr) : lr_(lr) { check_lr("constant schedule", "lr", lr, true); }
float ConstantLR::lr_at(int epoch) const {
  check_epoch("constant schedule", epoch);
  return lr_;
}
std::string ConstantLR::describe() const { return "constant " + fmt(lr_); }

StepLR::StepLR(float lr, int step_size, float gamma) : lr_(lr), step_size_(step_size), gamma_(gamma) {
  check_lr("step schedule", "lr", lr, true);
  QNN_CHECK(step_size > 0, "step schedule: step_size must be > 0, got " + std::to_string(step_size));
  QNN_CHECK(std::isfinite(gamma) && gamma > 0.0f, "step schedule: gamma must be > 0, got " + std::to_string(gamma));
}
float StepLR::lr_at(int epoch) const {
  check_epoch("step schedule", epoch);
  return (float)(lr_ * std::pow((double)gamma_, (double)(epoch / step_size_)));
}
std::string StepLR::describe() const {
  return "step " + fmt(lr_) + " x" + fmt(gamma_) + " every " + std::to_string(step_size_) + " epochs";
}

CosineLR::CosineLR(float lr_max, float lr_min, int total_epochs) : lr_max_(lr_max), lr_min_(lr_min), total_(total_epochs) {
  check_lr("cosine schedule", "lr_max", lr_max, true);
  check_lr("cosine schedule", "lr_min", lr_min, true);
  QNN_CHECK(total_epochs > 0, "cosine schedule: total_epochs must be > 0, got " + std::to_string(total_epochs));
}
float CosineLR::lr_at(int epoch) const {
  check_epoch("cosine schedule", epoch);
  const double c = 0.5 * (1.0 + std::cos(std::numbers::pi * progress(epoch, total_)));
  return (float)(lr_min_ + ((double)lr_max_ - lr_min_) * c);
}
std::string CosineLR::describe() const {
  return "cosine " + fmt(lr_max_) + " -> " + fmt(lr_min_) + " over " + std::to_string(total_) + " epochs";
}

ExponentialLR::ExponentialLR(float lr_start, float lr_end, int total_epochs)
    : lr_start_(lr_start), lr_end_(lr_end), total_(total_epochs) {
  check_lr("exponential schedule", "lr_start", lr_start, false);
  check_lr("exponential schedule", "lr_end", lr_end, false);
  QNN_CHECK(total_epochs > 0, "exponential schedule: total_epochs must be > 0, got " + std::to_string(total_epochs));
}
float ExponentialLR::lr_at(int epoch) const {
  check_epoch("exponential schedule", epoch);
  return (float)(lr_start_ * std::pow((double)lr_end_ / lr_start_, progress(epoch, total_)));
}
std::string ExponentialLR::describe() const {
  return "exponential " + fmt(lr_start_) + " -> " + fmt(lr_end_) + " over " + std::to_string(total_) + " epochs";
}

DecayLR::DecayLR(float lr, float gamma, float lr_floor) : lr_(lr), gamma_(gamma), floor_(lr_floor) {
  check_lr("exponential schedule", "lr", lr, false);
  check_lr("exponential schedule", "lr floor", lr_floor, true);
  QNN_CHECK(std::isfinite(gamma) && gamma > 0.0f && gamma <= 1.0f,
            "exponential schedule: the per-epoch factor must be in (0, 1], got " + std::to_string(gamma));
}
float DecayLR::lr_at(int epoch) const {
  check_epoch("exponential schedule", epoch);
  return (float)std::max((double)lr_ * std::pow((double)gamma_, (double)epoch), (double)floor_);
}
std::string DecayLR::describe() const {
  return "exponential " + fmt(lr_) + " x" + fmt(gamma_) + " per epoch, floor " + fmt(floor_);
}

std::unique_ptr<LrSchedule> make_schedule(const std::string& name, const ScheduleConfig& c) {
  if (name == "constant") return std::make_unique<ConstantLR>(c.lr);
  if (name == "step") return std::make_unique<StepLR>(c.lr, c.step_size, c.gamma);
  if (name == "cosine") return std::make_unique<CosineLR>(c.lr, c.lr_end, c.total_epochs);
  if ((name == "exponential" || name == "exp") && c.decay_per_epoch > 0.0f)
    return std::make_unique<DecayLR>(c.lr, c.decay_per_epoch, c.lr_end);
  if (name == "exponential" || name == "exp") return std::make_unique<ExponentialLR>(c.lr, c.lr_end, c.total_epochs);
  fail("make_schedule: unknown schedule '" + name + "' (expected one of: constant, step, cosine, exponential)");
}

}  // namespace qnn
