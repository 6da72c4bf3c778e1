#include "layers/residual.h"

#include "core/ops.h"

namespace qnn {

Residual::Residual(std::shared_ptr<Module> body, int64_t shortcut_pool) : body_(std::move(body)), pool_(shortcut_pool) {
  QNN_CHECK(body_ != nullptr, "Residual: the body is null");
  QNN_CHECK(pool_ >= 0, "Residual: shortcut pool must be >= 0, got " + std::to_string(pool_));
  register_module("body", body_);
  if (pool_ > 1) shortcut_.emplace(pool_);
}

Tensor Residual::forward(const Tensor& x) {
  Tensor y = body_->forward(x);
  Tensor s = shortcut_ ? shortcut_->forward(x) : x;
  QNN_CHECK(y.shape() == s.shape(), "Residual: the body's output " + shape_str(y.shape()) +
                                        " differs from the shortcut's " + shape_str(s.shape()) +
                                        " (the body must keep the channels and pool like the shortcut)");
  return add(y, s);
}

Shape Residual::output_shape(const Shape& in) const {
  Shape out = body_->output_shape(in);
  if (in.empty() || out.empty()) return out;
  const Shape s = shortcut_ ? shortcut_->output_shape(in) : in;
  QNN_CHECK(s == out, "Residual: the body maps " + shape_str(in) + " to " + shape_str(out) + ", the shortcut to " +
                          shape_str(s));
  return out;
}

LayerSummary Residual::summary_row() const {
  LayerSummary r;
  r.type = pool_ > 1 ? "+ MaxPool" + std::to_string(pool_) + "(x)" : "+ x";
  return r;
}

}  // namespace qnn
