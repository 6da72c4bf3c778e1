#include "layers/linear.h"

#include "core/ops.h"
#include "layers/init.h"

namespace qnn {

Linear::Linear(int64_t in, int64_t out, Rng& rng, LinearOptions opt) : in_(in), out_(out) {
  QNN_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got " + std::to_string(in) + " -> " + std::to_string(out));
  weight = Tensor::empty({out, in});
  init::by_name(opt.init, weight, in, out, rng);
  register_parameter("weight", weight);
  if (opt.bias) register_parameter("bias", bias = Tensor::zeros({out}));
}

Tensor Linear::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 2 && x.dim(1) == in_, "Linear(" + std::to_string(in_) + " -> " + std::to_string(out_) +
                                                  "): input is " + shape_str(x.shape()) + ", expected [N, " +
                                                  std::to_string(in_) + "]");
  return linear(x, weight, bias);
}

LayerSummary Linear::summary_row() const {
  LayerSummary r = Module::summary_row();
  r.output = "[-1, " + std::to_string(out_) + "]";
  return r;
}

}  // namespace qnn
