// layers/linear.h — fully connected layer: y[N, out] = x[N, in] W[out, in]^T + b[out].
#pragma once

#include "core/rng.h"
#include "layers/module.h"

namespace qnn {

struct LinearOptions {
  bool bias = true;
  std::string init = "he";  // see layers/init.h; "glorot" for binary layers
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, Rng& rng, LinearOptions opt = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  LayerSummary summary_row() const override;
  Shape output_shape(const Shape& in) const override { return features_output_shape(in, in_, out_, "Linear"); }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Tensor weight, bias;  // bias undefined when opt.bias == false

 private:
  int64_t in_, out_;
};

}  // namespace qnn
