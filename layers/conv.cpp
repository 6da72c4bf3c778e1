#include "layers/conv.h"

#include "core/ops.h"
#include "layers/init.h"

namespace qnn {

int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, const std::string& who) {
  if (in < 0) return -1;
  const int64_t span = in + 2 * pad - k;
  QNN_CHECK(span >= 0, who + ": a " + std::to_string(k) + "-wide window does not fit an input of " +
                           std::to_string(in) + " (padding " + std::to_string(pad) + ")");
  return span / stride + 1;
}

Shape conv_output_shape(const Shape& in, int64_t channels, int64_t out_channels, int64_t k, int64_t stride,
                        int64_t pad, const std::string& who) {
  if (in.empty()) return {-1, out_channels, -1, -1};
  QNN_CHECK(in.size() == 4 && (in[1] == -1 || in[1] == channels),
            who + ": input " + shape_str(in) + ", expected [N, " + std::to_string(channels) + ", H, W]");
  return {in[0], out_channels, conv_out_size(in[2], k, stride, pad, who), conv_out_size(in[3], k, stride, pad, who)};
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Rng& rng, Conv2dOptions opt)
    : in_(in_channels), out_(out_channels), k_(kernel), opt_(std::move(opt)) {
  QNN_CHECK(in_ > 0 && out_ > 0 && k_ > 0, "Conv2d: channels and kernel must be positive, got " +
                                               std::to_string(in_) + " -> " + std::to_string(out_) + ", kernel " +
                                               std::to_string(k_));
  QNN_CHECK(opt_.stride > 0 && opt_.pad >= 0, "Conv2d: need stride > 0 and pad >= 0, got stride " +
                                                  std::to_string(opt_.stride) + ", pad " + std::to_string(opt_.pad));
  weight = Tensor::empty({out_, in_, k_, k_});
  init::by_name(opt_.init, weight, in_ * k_ * k_, out_ * k_ * k_, rng);
  register_parameter("weight", weight);
  if (opt_.bias) register_parameter("bias", bias = Tensor::zeros({out_}));
}

std::string Conv2d::describe() const {
  return type_name() + "(" + std::to_string(in_) + " -> " + std::to_string(out_) + ", " + std::to_string(k_) + "x" +
         std::to_string(k_) + ", stride " + std::to_string(opt_.stride) + ", pad " + std::to_string(opt_.pad) + ")";
}

Tensor Conv2d::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 4 && x.dim(1) == in_,
            describe() + ": input is " + shape_str(x.shape()) + ", expected [N, " + std::to_string(in_) + ", H, W]");
  return conv2d(x, weight, bias, opt_.stride, opt_.pad);
}

Shape Conv2d::output_shape(const Shape& in) const {
  return conv_output_shape(in, in_, out_, k_, opt_.stride, opt_.pad, describe());
}

}  // namespace qnn
