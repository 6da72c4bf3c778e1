// layers/residual.h — y = body(x) + shortcut(x): a real-valued shortcut
// around a block (Bi-Real Net's idea for binarized networks).
//
// In a binarized network every product sees only the signs of its input:
// sign(BN(.)) throws away each activation's magnitude, layer after layer. A
// shortcut adds the block's real-valued input to its output, so the
// magnitudes reach the next layer while every product stays 1-bit (the add
// costs one pass over the activations, like a batch norm).
//
//   x    [N, C, H, W]             real (a batch norm's output)
//   body [N, C, H/p, W/p]         e.g. QuantConv2d (sign input) -> MaxPool2d(p) -> BatchNorm2d
//   y    = body(x) + max_pool2d(x, p)   (p = shortcut_pool; 0 or 1: x itself)
//
// The body must keep the channel count; the shortcut pools like the body so
// the shapes agree (checked at construction of the forward's output).
#pragma once

#include <memory>
#include <optional>

#include "layers/module.h"
#include "layers/pool.h"

namespace qnn {

class Residual : public Module {
 public:
  // shortcut_pool: window (= stride) of a max-pool on the shortcut, 0 = none.
  explicit Residual(std::shared_ptr<Module> body, int64_t shortcut_pool = 0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Residual"; }
  Shape output_shape(const Shape& in) const override;
  // The summary lists the body's layers, then this row for the add.
  LayerSummary summary_row() const override;
  bool summary_row_after_children() const override { return true; }
  int64_t shortcut_pool() const { return pool_; }
  Module& body() const { return *body_; }

 private:
  std::shared_ptr<Module> body_;
  int64_t pool_;
  std::optional<MaxPool2d> shortcut_;  // the shortcut's pool when pool_ > 1 (not a child: no summary row)
};

}  // namespace qnn
