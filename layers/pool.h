// layers/pool.h — max and average pooling over k x k windows of NCHW tensors
// (no padding; the output size is floored, as in PyTorch and Lasagne).
//
// In BinaryNet's order (conv -> max-pool -> batch norm -> sign) the pool sees
// the convolution's integer sums; in FINN's CNV it follows batch norm. Either
// way the pool is a separate layer and has no parameters.
#pragma once

#include "layers/module.h"

namespace qnn {

class Pool2d : public Module {
 public:
  Shape output_shape(const Shape& in) const override;
  int64_t kernel() const { return k_; }
  int64_t stride() const { return stride_; }

 protected:
  // stride <= 0 means stride = k (non-overlapping windows, the default).
  Pool2d(int64_t k, int64_t stride, const char* what);
  std::string describe() const;  // "MaxPool2d(2, stride 2)"
  void check_input(const Tensor& x) const;
  int64_t k_, stride_;
};

class MaxPool2d : public Pool2d {
 public:
  explicit MaxPool2d(int64_t k, int64_t stride = 0) : Pool2d(k, stride, "MaxPool2d") {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MaxPool2d"; }
};

class AvgPool2d : public Pool2d {
 public:
  explicit AvgPool2d(int64_t k, int64_t stride = 0) : Pool2d(k, stride, "AvgPool2d") {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AvgPool2d"; }
};

}  // namespace qnn
