// layers/quant/quantizer.h — quantizers: Sign, StochasticSign, Uniform{bits, a}.
//
// A quantizer maps a real tensor to a few levels in the forward pass and, in
// the backward pass, lets a *surrogate* gradient through (surrogate.h): the
// straight-through estimator of BinaryNet, tanh(Kx), or the periodic variant.
// Calling one, q(x), records ONE autograd node (the fused op `quantize` below:
// a tight loop forward, surrogate_backward backward). Quantizers are handed to
// layers larq-style: QuantLinear{input_quantizer, weight_quantizer}, QuantAct.
//
//   Sign            +1 if x >= 0 else -1   (sign(0) = +1, as in the papers;
//                   NaN gives +1, matching kernels/bitpack.h's "x < 0 -> bit 1")
//   StochasticSign  +1 with probability hard_sigmoid(x) = clip((x+1)/2, 0, 1),
//                   else -1 (BinaryNet's stochastic binarization), drawn from
//                   the quantizer's own Rng (split from the model's). In
//                   evaluation mode (train(false)) it is the deterministic Sign.
//   Uniform{bits,a} n = 2^bits levels evenly spaced on [-a, a]:
//                     q(x) = -a + D * round((clip(x, -a, a) + a) / D),  D = 2a/(n-1).
//                   Ties (x exactly on a decision threshold) round UP, towards
//                   +a: that is sign(0) = +1 for bits = 1 (levels +-a) and,
//                   e.g., q(0) = +a/3 for bits = 2. Computed as
//                     u = clip(x, -a, a) (n-1)/a,  q = a (2 floor(u/2) + 1) / (n-1)
//                   (the same function, thresholds at the even values of u)
//                   with floor(u/2) decided EXACTLY for every float x: in
//                   double, where clip(x) (n-1) is an exact product and the
//                   one rounding of the division provably cannot cross an
//                   integer (kernels/level_planes.h). So the float just below
//                   a threshold gets the lower level, the float on or above it
//                   the upper one (tested for both float neighbours of every
//                   threshold, 1..16 bits, against an exact reference).
//                   bits in 1..16; bits = 32 is the identity (no quantization,
//                   true gradient 1, the surrogate is ignored).
//                   Levels for a = 1: bits 2 -> {-1, -1/3, 1/3, 1}; bits 3 ->
//                   {-1, -5/7, -3/7, -1/7, 1/7, 3/7, 5/7, 1}.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "layers/quant/surrogate.h"

namespace qnn {

// ---- the fused op ----------------------------------------------------------------

enum class QuantForward { sign, stochastic_sign, uniform, identity };

// y = forward(x) elementwise; backward: dx += dy * S'(x) with S the surrogate
// for `geo` (surrogate.h). sign uses levels +-geo.a; stochastic_sign levels
// +-1 with P(+1) = hard_sigmoid(x), element i drawn from a counter-based hash
// of (seed, i) so the result does not depend on the number of threads.
Tensor quantize(const Tensor& x, QuantForward fwd, const QuantGeometry& geo, const Surrogate& s,
                uint64_t seed = 0);

// ---- quantizer objects -------------------------------------------------------------

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  // Quantize x (differentiable via the surrogate). Not const: a stochastic
  // quantizer advances its generator.
  virtual Tensor operator()(const Tensor& x) = 0;

  virtual int bits() const = 0;             // 1 for Sign / StochasticSign, 32 = no quantization
  virtual std::string name() const = 0;     // "sign", "stochastic_sign", "uniform"
  std::string str() const;                  // e.g. "uniform(bits=2, a=1)[tanh:3]"
  virtual float scale() const { return 1.0f; }  // a: the largest level is +a
  std::vector<float> levels() const;        // the 2^bits output values, ascending (empty for 32 bits)
  bool is_binary() const { return bits() == 1; }   // outputs are +-scale()
  bool is_identity() const { return bits() >= 32; }

  const Surrogate& surrogate() const { return surrogate_; }
  QuantGeometry geometry() const { return {bits(), scale()}; }

  // Train / eval mode (only StochasticSign behaves differently).
  virtual void train(bool on = true) { training_ = on; }
  bool is_training() const { return training_; }
  // Its random generator (StochasticSign), null if it draws nothing; the
  // holding layer lists it in Module::own_rngs so a resumed run restores it.
  virtual Rng* rng() { return nullptr; }

 protected:
  explicit Quantizer(Surrogate s) : surrogate_(s) {}
  Surrogate surrogate_;
  bool training_ = true;
};

class Sign : public Quantizer {
 public:
  explicit Sign(Surrogate s = {}) : Quantizer(s) {}
  Tensor operator()(const Tensor& x) override;
  int bits() const override { return 1; }
  std::string name() const override { return "sign"; }
};

class StochasticSign : public Quantizer {
 public:
  // Splits its own generator off `rng` (reproducible from the model's seed).
  explicit StochasticSign(Rng& rng, Surrogate s = {}) : Quantizer(s), rng_(rng.split()) {}
  Tensor operator()(const Tensor& x) override;
  int bits() const override { return 1; }
  std::string name() const override { return "stochastic_sign"; }
  Rng* rng() override { return &rng_; }

 private:
  Rng rng_;
};

class Uniform : public Quantizer {
 public:
  // bits in 1..16 or 32; a > 0 and finite. Throws qnn::Error otherwise.
  Uniform(int bits, float a = 1.0f, Surrogate s = {});
  Tensor operator()(const Tensor& x) override;
  int bits() const override { return bits_; }
  float scale() const override { return a_; }
  std::string name() const override { return "uniform"; }

 private:
  int bits_;
  float a_;
};

// Factory by name. kind: "sign" | "stochastic" (alias "stochastic_sign") |
// "uniform". bits: sign and stochastic need 1; uniform takes 1..16 or 32.
// stochastic needs `rng` (its generator is split from it). a: the range of
// uniform (sign and stochastic are +-1; a != 1 with them is an error).
// Throws qnn::Error with a message naming the problem (bits 0, bits 17..31 or
// > 32, unknown kind, stochastic with bits != 1, missing rng, bad a).
std::shared_ptr<Quantizer> make_quantizer(const std::string& kind, int bits, const Surrogate& s = {},
                                          Rng* rng = nullptr, float a = 1.0f);

// The command-line shorthand: bits = 32 -> nullptr (full precision, what
// QuantLinear expects for "no quantizer"); bits = 1 -> Sign, or
// StochasticSign if `stochastic` (needs rng); 2..16 -> Uniform{bits, 1}
// (stochastic with bits > 1 is an error).
std::shared_ptr<Quantizer> quantizer_for_bits(int bits, const Surrogate& s = {}, bool stochastic = false,
                                              Rng* rng = nullptr);

}  // namespace qnn
