// layers/conv.h — 2-d convolution over NCHW tensors.
//
//   y[N, O, OH, OW] = conv2d(x[N, C, H, W], W[O, C, K, K]) + b[O]
//   OH = (H + 2 pad - K) / stride + 1   (likewise OW; zero padding)
//
// The weight is stored [O, C, K, K] (PyTorch's layout, so checkpoints and
// exported weights read the same way), initialised with fan_in = C K K and
// fan_out = O K K — the fans Glorot and He define for a convolution, and the
// ones BinaryNet's Conv2DLayer uses for its LR scale (quant/quant_conv.h).
#pragma once

#include <string>

#include "core/rng.h"
#include "layers/module.h"

namespace qnn {

// Output length of a convolution / pooling window along one axis:
// (in + 2 pad - k) / stride + 1, or -1 when `in` is unknown (-1). Throws
// qnn::Error (naming `who`) when the window does not fit (result < 1).
int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, const std::string& who);

// output_shape of a layer taking [N, C, H, W] with a k x k window: checks the
// rank and (when known) C == channels; out_channels replaces C.
Shape conv_output_shape(const Shape& in, int64_t channels, int64_t out_channels, int64_t k, int64_t stride,
                        int64_t pad, const std::string& who);

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t pad = 0;
  bool bias = true;
  std::string init = "he";  // layers/init.h; "glorot" for binary layers
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Rng& rng, Conv2dOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  Shape output_shape(const Shape& in) const override;
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t kernel() const { return k_; }
  const Conv2dOptions& options() const { return opt_; }
  Tensor weight, bias;  // [O, C, K, K]; [O] or undefined

 private:
  std::string describe() const;  // "Conv2d(3 -> 64, 3x3, stride 1, pad 1)"
  int64_t in_, out_, k_;
  Conv2dOptions opt_;
};

}  // namespace qnn
