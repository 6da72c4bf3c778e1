// layers/batchnorm.h — batch normalisation over the channel dimension (dim 1).
//
// BatchNorm1d takes [N, C]; BatchNorm2d takes [N, C, H, W]. Both hold gamma
// ("weight") and beta ("bias") as parameters and running_mean / running_var
// as buffers (saved in checkpoints, not trained).
// momentum follows PyTorch: running = (1 - momentum) * running + momentum * batch
// (BinaryNet's "alpha = 0.1" is the same number in Lasagne's convention).
#pragma once

#include "layers/module.h"

namespace qnn {

struct BatchNormOptions {
  float momentum = 0.1f;
  float eps = 1e-5f;
  bool affine = true;
};

class BatchNorm : public Module {
 public:
  BatchNorm(int64_t channels, int spatial_dims, BatchNormOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return spatial_dims_ == 0 ? "BatchNorm1d" : "BatchNorm2d"; }
  // Same as the input; checks the rank and the channel count when known.
  Shape output_shape(const Shape& in) const override;
  int64_t channels() const { return channels_; }
  const BatchNormOptions& options() const { return opt_; }
  Tensor weight, bias, running_mean, running_var;

 protected:
  int64_t channels_;
  int spatial_dims_;
  BatchNormOptions opt_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t c, BatchNormOptions opt = {}) : BatchNorm(c, 0, opt) {}
};
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t c, BatchNormOptions opt = {}) : BatchNorm(c, 2, opt) {}
};

}  // namespace qnn
