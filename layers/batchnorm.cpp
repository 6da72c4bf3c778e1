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
  // Batch statistics are this call's rows: with --micro-batches or --dist mpi
  // those of one slice (per-rank statistics, as PyTorch DDP without
  // SyncBatchNorm; apps/common/dist.h).
  return batch_norm(x, weight, bias, running_mean, running_var, training_, opt_.momentum, opt_.eps);
}

Shape BatchNorm::output_shape(const Shape& in) const {
  const size_t rank = 2 + (size_t)spatial_dims_;
  if (in.empty()) {
    Shape s(rank, -1);
    s[1] = channels_;
    return s;
  }
  QNN_CHECK(in.size() == rank && (in[1] == -1 || in[1] == channels_),
            type_name() + "(" + std::to_string(channels_) + "): input " + shape_str(in) + ", expected " +
                (spatial_dims_ == 0 ? "[N, " + std::to_string(channels_) + "]"
                                    : "[N, " + std::to_string(channels_) + ", H, W]"));
  return in;
}

}  // namespace qnn
