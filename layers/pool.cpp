#include "layers/pool.h"

#include "core/ops.h"
#include "layers/conv.h"

namespace qnn {

Pool2d::Pool2d(int64_t k, int64_t stride, const char* what) : k_(k), stride_(stride <= 0 ? k : stride) {
  QNN_CHECK(k > 0, std::string(what) + ": window must be positive, got " + std::to_string(k));
}

std::string Pool2d::describe() const {
  return type_name() + "(" + std::to_string(k_) + ", stride " + std::to_string(stride_) + ")";
}

void Pool2d::check_input(const Tensor& x) const {
  QNN_CHECK(x.ndim() == 4, describe() + ": input is " + shape_str(x.shape()) + ", expected [N, C, H, W]");
  QNN_CHECK(x.dim(2) >= k_ && x.dim(3) >= k_,
            describe() + ": input " + shape_str(x.shape()) + " is smaller than the window");
}

Shape Pool2d::output_shape(const Shape& in) const {
  if (in.empty()) return {};
  QNN_CHECK(in.size() == 4, describe() + ": input " + shape_str(in) + ", expected [N, C, H, W]");
  return {in[0], in[1], conv_out_size(in[2], k_, stride_, 0, describe()), conv_out_size(in[3], k_, stride_, 0, describe())};
}

Tensor MaxPool2d::forward(const Tensor& x) {
  check_input(x);
  return max_pool2d(x, k_, stride_);
}

Tensor AvgPool2d::forward(const Tensor& x) {
  check_input(x);
  return avg_pool2d(x, k_, stride_);
}

}  // namespace qnn
