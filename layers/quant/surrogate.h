// layers/quant/surrogate.h — pseudo-gradients ("surrogates") for quantizers.
//
// A quantizer q is a staircase: its true derivative is 0 almost everywhere,
// so training uses a surrogate S, a smooth (or piecewise-linear) function that
// looks like the staircase, and back-propagates g * S'(x) instead of
// g * q'(x) = 0. That is the straight-through estimator (STE) of BinaryNet and
// the variants studied by the student report "Investigation and Analysis on Quantized Neural Networks" (after Hubara et al., JMLR 2018). Every quantizer takes one.
//
// Geometry. A quantizer with n = 2^bits levels evenly spaced on [-a, a] has
// step D = 2a/(n-1), levels at odd multiples of D/2 and decision thresholds at
// even multiples of D/2 (n is even). Sign is bits = 1, a = 1: levels +-1,
// one threshold at 0. In the formulas below x is the quantizer's input.
//
//   kind       spec string        S'(x) (what backward multiplies g by)
//   ---------  -----------------  ---------------------------------------------
//   hardtanh   "hardtanh", "ste", 1{|x| <= C*a}   (C default 1: BinaryNet's
//              "hardtanh:C"       "gradient cancelling", boundary included;
//                                 S = clip(x, -C*a, C*a))
//   tanh       "tanh:K"           K * (1 - tanh^2(K x / a))
//                                 (S = a * tanh(K x / a): one sigmoid spanning
//                                 the whole range; for Sign, d/dx tanh(K x))
//   periodic   "periodic:K"       for |x| <= a:  K * (1 - tanh^2(K t)),
//                                   u = x / (D/2) = x (n-1) / a,
//                                   t = u - 2 round(u/2)   (t in [-1, 1]);
//                                 0 for |x| > a.
//   identity   "identity"         1 (the gradient passes unchanged)
//
// The periodic surrogate, exactly. The QNN report's eq. 18 is
//   f3(u) = f2(u - 2 round(u/2)) + 2 round(u/2),   f2(u) = tanh(K u).
// f3 is a smooth staircase with risers centred on the even integers and
// plateaus near the odd integers (f3(1) ~ 1, f3(3) ~ 3, ...). In the unit
// u = x / (D/2) a k-bit quantizer has exactly that shape: levels at the odd
// integers -(n-1) .. n-1 and thresholds at the even integers -(n-2) .. n-2.
// So S(x) = (D/2) * f3(x / (D/2)) and S'(x) = f3'(u) = K (1 - tanh^2(K t))
// with t = u - 2 round(u/2) the signed distance from x to the nearest
// decision threshold in half-steps: the slope is K on every threshold and
// decays towards the levels, once per quantization step. Beyond +-a the
// quantizer is flat (clipped), so S' = 0 there (|x| = a itself is kept, like
// hardtanh's boundary); without that cut f3 would put phantom thresholds at
// +-(a + D/2), +-(a + 3D/2), ... For bits = 1, u = x/a, and the periodic
// surrogate equals tanh:K on [-a, a] and 0 outside.
// (round is half away from zero; at |t| = 1 both neighbours give the same
// slope, so the tie does not matter.)
//
// Quantizers at 32 bits are the identity map; their gradient is the true one
// (1) whatever the surrogate says.
#pragma once

#include <cstdint>
#include <string>

namespace qnn {

enum class SurrogateKind { hardtanh, tanh, periodic, identity };

struct Surrogate {
  SurrogateKind kind = SurrogateKind::hardtanh;
  // hardtanh: C, the clip in units of the quantizer's range a (default 1);
  // tanh / periodic: K > 0 (slope at a threshold); identity: unused.
  float param = 1.0f;

  static Surrogate hardtanh(float clip = 1.0f) { return {SurrogateKind::hardtanh, clip}; }
  static Surrogate tanh(float k) { return {SurrogateKind::tanh, k}; }
  static Surrogate periodic(float k) { return {SurrogateKind::periodic, k}; }
  static Surrogate identity() { return {SurrogateKind::identity, 0.0f}; }

  // "hardtanh", "hardtanh:2", "tanh:3", "periodic:4", "identity";
  // parse_surrogate(s.str()) == s.
  std::string str() const;
  bool operator==(const Surrogate&) const = default;
};

// Parses "hardtanh" | "ste" | "hardtanh:C" | "ste:C" | "tanh:K" | "periodic:K"
// | "identity" (case-sensitive, no spaces). Throws qnn::Error naming the bad
// part and listing the valid forms, e.g. for "tanh:-1", "tanh", "tanh:abc",
// "identity:2", "sigmoid".
Surrogate parse_surrogate(const std::string& spec);

// Where the levels are: n = 2^bits levels on [-a, a]. bits = 32: identity.
struct QuantGeometry {
  int bits = 1;
  float a = 1.0f;
};

// S'(x) for one value (reference implementation; the kernels below inline
// the same formulas).
float surrogate_grad(const Surrogate& s, const QuantGeometry& geo, float x);
// S(x), the function whose derivative surrogate_grad is (teaching and tests).
// For periodic it is (D/2) f3(u) on [-a, a], clipped to the ends beyond.
float surrogate_value(const Surrogate& s, const QuantGeometry& geo, float x);

// The backward kernel of every quantizer: gx[i] += g[i] * S'(x[i]), i < n.
// A tight loop per surrogate kind, OpenMP-parallel for large n. Exposed so a
// fused op (e.g. an XNOR-popcount binary_linear) can reuse it.
void surrogate_backward(const Surrogate& s, const QuantGeometry& geo, const float* x, const float* g, float* gx,
                        int64_t n);

}  // namespace qnn
