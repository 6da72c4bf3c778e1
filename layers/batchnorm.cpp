#include "layers/batchnorm.h"

#include "core/ops.h"

namespace qnn {

BatchNorm::BatchNorm(int64_t channels, int spatial_dims, BatchNormOptions opt)
    : channels_(channels), spatial_dims_(spatial_dims), opt_(opt) {
  QNN_CHECK(channels > 0, "BatchNorm: channels must be positive");
  QNN_CHECK(opt.eps > 0 && opt.momentum >= 0 && opt.momentum <= 1, "BatchNorm: need eps > 0 and momentum in [0, 1]");
  if (opt.affine) {
    register_parameter("weight", weight = Tensor::ones({channels}));
    register_parameter("bias", bias = Tensor::zeros({channels}));
  }
  register_buffer("running_mean", running_mean = Tensor::zeros({channels}));
  register_buffer("running_var", running_var = Tensor::ones({channels}));
}

Tensor BatchNorm::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 2 + spatial_dims_ && x.dim(1) == channels_,
            type_name() + "(" + std::to_string(channels_) + "): input is " + shape_str(x.shape()) +
                (spatial_dims_ ? ", expected [N, C, H, W]" : ", expected [N, C]"));
  return batch_norm(x, weight, bias, running_mean, running_var, training_, opt_.momentum, opt_.eps);
}

}  // namespace qnn
