#include "layers/quant/quant_linear.h"

#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/bitpack.h"
#include "layers/init.h"

namespace qnn {

float glorot_lr_scale(int64_t fan_in, int64_t fan_out) {
  return (float)(1.0 / std::sqrt(1.5 / (double)(fan_in + fan_out)));
}

QuantLinear::QuantLinear(int64_t in, int64_t out, Rng& rng, QuantLinearOptions opt)
    : in_(in), out_(out), opt_(std::move(opt)) {
  QNN_CHECK(in > 0 && out > 0,
            "QuantLinear: sizes must be positive, got " + std::to_string(in) + " -> " + std::to_string(out));
  QNN_CHECK(std::isfinite(opt_.lr_scale) && opt_.lr_scale > 0.0f,
            "QuantLinear: lr_scale must be finite and > 0, got " + std::to_string(opt_.lr_scale));
  weight = Tensor::empty({out, in});
  init::by_name(opt_.init, weight, in, out, rng);
  register_parameter("weight", weight);
  ParamAttrs& pa = weight.param_attrs();
  pa.lr_scale = opt_.glorot_lr_scale ? glorot_lr_scale(in, out) : opt_.lr_scale;
  if (opt_.weight_constraint) opt_.weight_constraint.attach(weight);
  if (opt_.bias) register_parameter("bias", bias = Tensor::zeros({out}));
}

void QuantLinear::train(bool on) {
  Module::train(on);
  if (opt_.input_quantizer) opt_.input_quantizer->train(on);
  if (opt_.weight_quantizer) opt_.weight_quantizer->train(on);
}

bool QuantLinear::binary_operands() const {
  return opt_.input_quantizer && opt_.weight_quantizer && opt_.input_quantizer->is_binary() &&
         opt_.weight_quantizer->is_binary();
}

Tensor QuantLinear::quantized_weight() const {
  NoGradGuard ng;
  return opt_.weight_quantizer ? (*opt_.weight_quantizer)(weight) : weight.clone();
}

void QuantLinear::warn_if_unconstrained() {
  if (warned_ || !quantizes_weights()) return;
  warned_ = true;
  const ParamAttrs* pa = weight.param_attrs_if();
  if (pa && pa->constraint) return;
  std::fprintf(stderr,
               "qnn warning: QuantLinear(%lld -> %lld) quantizes its weights with %s but they have no constraint; "
               "BinaryNet clips latent weights to [-1, 1] after every step (set weight_constraint = Clip{-1, 1})\n",
               (long long)in_, (long long)out_, opt_.weight_quantizer->str().c_str());
}

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

QuantLinear::KernelPath QuantLinear::kernel_path() const {
  const auto& qi = opt_.input_quantizer;
  const auto& qw = opt_.weight_quantizer;
  if (!qi && qw && qw->is_binary() && qw->scale() == 1.0f && deterministic(*qw)) return KernelPath::sign_weight;
  if (!qi || !qw || qi->is_identity() || qw->is_identity()) return KernelPath::none;
  if (binary_operands() && qi->scale() == 1.0f && qw->scale() == 1.0f) return KernelPath::binary;
  if (level_quantizer(qi) && level_quantizer(qw) && uniform_linear_exact(in_, qi->bits(), qw->bits()))
    return KernelPath::levels;
  return KernelPath::none;
}

const char* QuantLinear::path_name(KernelPath p) {
  switch (p) {
    case KernelPath::binary: return "xnor";
    case KernelPath::levels: return "bitserial";
    case KernelPath::sign_weight: return "pm1";
    case KernelPath::none: break;
  }
  return "none";
}

BinaryLinearSpec QuantLinear::binary_spec() const {
  BinaryLinearSpec spec;
  spec.quantize_input = deterministic(*opt_.input_quantizer);
  spec.input_surrogate = opt_.input_quantizer->surrogate();
  spec.quantize_weight = deterministic(*opt_.weight_quantizer);
  spec.weight_surrogate = opt_.weight_quantizer->surrogate();
  return spec;
}

SavedBytes QuantLinear::saved_bytes(int64_t N, bool fused) const {
  if (kernel_path() == KernelPath::sign_weight) {  // (assumes x needs no gradient: a first layer)
    SavedBytes s;
    const bool mask = opt_.weight_quantizer->surrogate().kind == SurrogateKind::hardtanh;
    s.weight = fused ? (mask ? out_ * kernels::packed_words(in_) * 8 : 0) : out_ * in_ * 4;
    return s;
  }
  if (kernel_path() != KernelPath::binary) return {};
  const BinaryLinearSpec spec = binary_spec();
  return fused ? binary_linear_fused_bytes(N, in_, out_, spec) : binary_linear_unfused_bytes(N, in_, out_, spec);
}

Tensor QuantLinear::compute_binary(const Tensor& x) {
  Quantizer& qi = *opt_.input_quantizer;
  Quantizer& qw = *opt_.weight_quantizer;
  if (!kernels_enabled()) {
    // The unfused graph. With a bias the product stays exact and the bias is
    // one rounding after it (add), the same arithmetic as the fused op.
    // (pm1_linear: linear() whose backward sums as binary_linear's does.)
    const Tensor xq = qi(x);
    const Tensor wq = qw(weight);
    if (!bias.defined()) return pm1_linear(xq, wq, bias);
    return add(pm1_linear(xq, wq, Tensor()), bias);
  }
  const BinaryLinearSpec spec = binary_spec();
  // Stochastic quantizers draw here, in the same order as the unfused graph.
  const Tensor xin = spec.quantize_input ? x : qi(x);
  const Tensor win = spec.quantize_weight ? weight : qw(weight);
  return binary_linear(xin, win, bias, spec);
}

Tensor QuantLinear::compute_levels(const Tensor& x) {
  UniformLinearSpec spec;
  spec.input_geo = opt_.input_quantizer->geometry();
  spec.weight_geo = opt_.weight_quantizer->geometry();
  spec.input_surrogate = opt_.input_quantizer->surrogate();
  spec.weight_surrogate = opt_.weight_quantizer->surrogate();
  spec.use_kernels = kernels_enabled();
  return uniform_linear(x, weight, bias, spec);
}

Tensor QuantLinear::compute(const Tensor& x) {
  switch (kernel_path()) {
    case KernelPath::binary: return compute_binary(x);
    case KernelPath::levels: return compute_levels(x);
    case KernelPath::sign_weight:
      if (kernels_enabled()) return sign_weight_linear(x, weight, bias, opt_.weight_quantizer->surrogate());
      // The unfused graph: Sign(W), then the product summed as the kernel does.
      return pm1_weight_linear(x, (*opt_.weight_quantizer)(weight), bias);
    case KernelPath::none: break;
  }
  const Tensor xq = opt_.input_quantizer ? (*opt_.input_quantizer)(x) : x;
  const Tensor wq = opt_.weight_quantizer ? (*opt_.weight_quantizer)(weight) : weight;
  return linear(xq, wq, bias);
}

int set_quant_kernels(Module& m, bool on) {
  int n = 0;
  if (auto* q = dynamic_cast<QuantLinear*>(&m)) {
    q->set_kernels(on);
    if (q->kernel_path() != QuantLinear::KernelPath::none) ++n;
  }
  for (auto& [name, child] : m.children()) n += set_quant_kernels(*child, on);
  return n;
}

Tensor QuantLinear::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 2 && x.dim(1) == in_, type_name() + "(" + std::to_string(in_) + " -> " +
                                                  std::to_string(out_) + "): input is " + shape_str(x.shape()) +
                                                  ", expected [N, " + std::to_string(in_) + "]");
  warn_if_unconstrained();
  return compute(x);
}

LayerSummary QuantLinear::summary_row() const {
  LayerSummary r = Module::summary_row();
  r.output = "[-1, " + std::to_string(out_) + "]";
  if (quantizes_weights()) {
    r.quant_params = weight.numel();
    r.weight_bits = opt_.weight_quantizer->bits();
  }
  r.input_bits = opt_.input_quantizer ? opt_.input_quantizer->bits() : 32;
  return r;
}

static QuantLinearOptions binary_options(const BinaryLinearOptions& b) {
  QuantLinearOptions o;
  if (b.binarize_input) o.input_quantizer = std::make_shared<Sign>(b.surrogate);
  o.weight_quantizer = std::make_shared<Sign>(b.surrogate);
  o.weight_constraint = Clip{-1.0f, 1.0f};
  o.bias = b.bias;
  o.glorot_lr_scale = b.glorot_lr_scale;
  o.init = "glorot";
  return o;
}

BinaryLinear::BinaryLinear(int64_t in, int64_t out, Rng& rng, BinaryLinearOptions opt)
    : QuantLinear(in, out, rng, binary_options(opt)) {}

}  // namespace qnn
