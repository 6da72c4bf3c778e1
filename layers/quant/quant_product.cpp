// layers/quant/quant_product.cpp — the one implementation of the quantized
// product and its kernel-path choice (quant_product.h).
#include "layers/quant/quant_product.h"

#include <cstdio>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/bitpack.h"

namespace qnn {

namespace {

// A quantizer whose output is a deterministic function of its input (no
// random draw now): Sign, Uniform, or StochasticSign in evaluation mode.
bool deterministic(const Quantizer& q) { return q.name() != "stochastic_sign" || !q.is_training(); }

// Deterministic uniform-type quantizer below 32 bits: its levels are a * v / L
// with v odd (Sign is bits 1, a 1).
bool level_quantizer(const std::shared_ptr<Quantizer>& q) {
  return q && !q->is_identity() && q->bits() <= 16 && deterministic(*q);
}

}  // namespace

const char* quant_path_name(QuantKernelPath p) {
  switch (p) {
    case QuantKernelPath::binary: return "xnor";
    case QuantKernelPath::levels: return "bitserial";
    case QuantKernelPath::sign_weight: return "pm1";
    case QuantKernelPath::none: break;
  }
  return "none";
}

QuantProduct::QuantProduct(std::shared_ptr<Quantizer> input_quantizer, std::shared_ptr<Quantizer> weight_quantizer,
                           int64_t K)
    : iq_(std::move(input_quantizer)), wq_(std::move(weight_quantizer)), K_(K) {}

void QuantProduct::train(bool on) {
  if (iq_) iq_->train(on);
  if (wq_) wq_->train(on);
}

bool QuantProduct::binary_operands() const { return iq_ && wq_ && iq_->is_binary() && wq_->is_binary(); }

QuantKernelPath QuantProduct::path(QuantInput in) const {
  if (!iq_ && wq_ && wq_->is_binary() && wq_->scale() == 1.0f && deterministic(*wq_)) return QuantKernelPath::sign_weight;
  if (!iq_ || !wq_ || iq_->is_identity() || wq_->is_identity()) return QuantKernelPath::none;
  // Binary operands stay binary with zero taps too: a convolution runs them
  // as binary_conv2d (binary_conv_op.h: exact zero-padding correction), and
  // the product itself falls back to pm1_linear on such rows (binary()).
  if (binary_operands() && iq_->scale() == 1.0f && wq_->scale() == 1.0f) return QuantKernelPath::binary;
  if (in == QuantInput::padded) return QuantKernelPath::none;  // zero taps are no level
  // Rows already quantized hold levels whatever drew them (a StochasticSign
  // in training outputs +-1, the levels of bits 1, a 1).
  const bool in_levels = in == QuantInput::quantized ? iq_->bits() <= 16 : level_quantizer(iq_);
  if (in_levels && level_quantizer(wq_) && uniform_linear_exact(K_, iq_->bits(), wq_->bits()))
    return QuantKernelPath::levels;
  return QuantKernelPath::none;
}

BinaryLinearSpec QuantProduct::binary_spec(QuantInput in) const {
  BinaryLinearSpec spec;
  spec.quantize_input = in == QuantInput::raw && deterministic(*iq_);
  spec.input_surrogate = iq_->surrogate();
  spec.quantize_weight = deterministic(*wq_);
  spec.weight_surrogate = wq_->surrogate();
  return spec;
}

SavedBytes QuantProduct::saved_bytes(int64_t M, int64_t O, bool fused, QuantInput in) const {
  const QuantKernelPath p = path(in);
  if (p == QuantKernelPath::sign_weight) {  // (assumes the rows need no gradient: a first layer)
    SavedBytes s;
    const bool mask = wq_->surrogate().kind == SurrogateKind::hardtanh;
    s.weight = fused ? (mask ? O * kernels::packed_words(K_) * 8 : 0) : O * K_ * 4;
    return s;
  }
  if (p != QuantKernelPath::binary) return {};
  const BinaryLinearSpec spec = binary_spec(in);
  return fused ? binary_linear_fused_bytes(M, K_, O, spec) : binary_linear_unfused_bytes(M, K_, O, spec);
}

bool QuantProduct::constrained(const Tensor& weight) {
  const ParamAttrs* pa = weight.param_attrs_if();
  return pa && pa->constraint;
}

void QuantProduct::print_unconstrained_warning(const std::string& layer) const {
  std::fprintf(stderr,
               "qnn warning: %s quantizes its weights with %s but they have no constraint; "
               "BinaryNet clips latent weights to [-1, 1] after every step (set weight_constraint = Clip{-1, 1})\n",
               layer.c_str(), wq_->str().c_str());
}

Tensor QuantProduct::quantize_input(const Tensor& x) { return iq_ ? (*iq_)(x) : x; }

Tensor QuantProduct::quantize_weight(const Tensor& W) { return wq_ ? (*wq_)(W) : W; }

Tensor QuantProduct::binary(const Tensor& rows, const Tensor& W, const Tensor& b, QuantInput in) {
  Quantizer& qi = *iq_;
  Quantizer& qw = *wq_;
  const bool raw = in == QuantInput::raw;
  // Zero taps are no sign bit: padded rows always take the unfused graph
  // (pm1_linear is exact on them). QuantConv2d does not come here with them.
  if (!kernels_enabled() || in == QuantInput::padded) {
    // The unfused graph. With a bias the product stays exact and the bias is
    // one rounding after it (add), the same arithmetic as the fused op.
    // (pm1_linear: linear() whose backward sums as binary_linear's does.)
    const Tensor xq = raw ? qi(rows) : rows;
    const Tensor wq = qw(W);
    if (!b.defined()) return pm1_linear(xq, wq, b);
    return add(pm1_linear(xq, wq, Tensor()), b);
  }
  const BinaryLinearSpec spec = binary_spec(in);
  // Stochastic quantizers draw here, in the same order as the unfused graph.
  const Tensor xin = spec.quantize_input || !raw ? rows : qi(rows);
  const Tensor win = spec.quantize_weight ? W : qw(W);
  return binary_linear(xin, win, b, spec);
}

Tensor QuantProduct::levels(const Tensor& rows, const Tensor& W, const Tensor& b, QuantInput in) {
  UniformLinearSpec spec;
  spec.input_geo = iq_->geometry();
  spec.weight_geo = wq_->geometry();
  // Pre-quantized rows: q_in's surrogate already ran in its own node, and the
  // levels of a level are itself, so the input side is the plain product.
  spec.input_surrogate = in == QuantInput::raw ? iq_->surrogate() : Surrogate::identity();
  spec.weight_surrogate = wq_->surrogate();
  spec.use_kernels = kernels_enabled();
  return uniform_linear(rows, W, b, spec);
}

Tensor QuantProduct::operator()(const Tensor& rows, const Tensor& W, const Tensor& b, QuantInput in) {
  QNN_CHECK(rows.defined() && W.defined() && rows.ndim() == 2 && W.ndim() == 2 && rows.dim(1) == K_ &&
                W.dim(1) == K_,
            "QuantProduct(K = " + std::to_string(K_) + "): rows " +
                (rows.defined() ? shape_str(rows.shape()) : std::string("undefined")) + " and W " +
                (W.defined() ? shape_str(W.shape()) : std::string("undefined")) + ", expected [M, K] and [O, K]");
  switch (path(in)) {
    case QuantKernelPath::binary: return binary(rows, W, b, in);
    case QuantKernelPath::levels: return levels(rows, W, b, in);
    case QuantKernelPath::sign_weight:
      if (kernels_enabled()) return sign_weight_linear(rows, W, b, wq_->surrogate());
      // The unfused graph: Sign(W), then the product summed as the kernel does.
      return pm1_weight_linear(rows, (*wq_)(W), b);
    case QuantKernelPath::none: break;
  }
  const Tensor xq = in == QuantInput::raw ? quantize_input(rows) : rows;
  return linear(xq, quantize_weight(W), b);
}

int set_quant_kernels(Module& m, bool on) {
  int n = 0;
  if (auto* q = dynamic_cast<QuantProductLayer*>(&m)) {
    q->product().set_kernels(on);
    if (q->layer_path() != QuantKernelPath::none) ++n;
  }
  for (auto& [name, child] : m.children()) n += set_quant_kernels(*child, on);
  return n;
}

}  // namespace qnn
