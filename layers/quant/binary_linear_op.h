// layers/quant/binary_linear_op.h — fused quantized linear ops that compute
// their forward product with the bit-packed kernels (docs/design.md §2 "fused ops",
// §4 "Training can use the kernels too").
//
// Two ops (and a third for a real input with sign weights, below), each ONE
// autograd node with a hand-written backward:
//
//   binary_linear(x, W, b, spec)     y = sign(x) sign(W)^T + b      (1-bit x 1-bit)
//     forward : pack sign(x) [N, in] and sign(W) [out, in] (the bits of
//               kernels::pack_rows, kernels/bitpack.h, plus the surrogate masks
//               below in the same pass), y = xnor_gemm_f32 — the dot products
//               are exact integers — (+ b, one float add).
//     saved   : sign(x) PACKED (1 bit per element), and what the input's
//               surrogate needs: for hardtanh/ste a PACKED 1-bit mask
//               1{|x| <= C}; for tanh:K / periodic:K / identity the float x
//               (a handle, no copy). sign(W) PACKED (W itself is the parameter),
//               and for a hardtanh weight surrogate its mask 1{|W| <= C} PACKED.
//               (If that mask is all ones — BinaryNet's clipped weights — the
//               backward skips applying it: dW = 0 + dq_W from one sgemm with
//               beta = 1 on a zeroed buffer, the same bits.)
//     backward: dq_x = g · sign(W)       (kernels::pm1_gemm on the packed bits:
//               dx  += S'_x(x) * dq_x     a table look-up per 4 signs, pm1_gemm.h)
//               dq_W = g^T · sign(x)     (pm1_gemm likewise)
//               dW  += S'_W(W) * dq_W
//               db  += column sums of g
//     Either side may instead be PRE-QUANTIZED (spec.quantize_input / _weight
//     = false): the tensor already holds +-1 values (e.g. the output of a
//     StochasticSign quantizer in training, which keeps its own node), the op
//     packs it as is, and that side's gradient is the plain product gradient,
//     as in pm1_linear().
//
//   pm1_linear(xq, wq, b)            y = xq wq^T + b                (operands +-1 floats)
//     The kernels-off twin: linear() (one sgemm, exact on +-1 values), but
//     its backward sums the products in pm1_gemm.h's groups of four, with
//     the plain loops of kernels::pm1_gemm_reference. That is the arithmetic
//     binary_linear's backward has, so the two agree bit for bit. (For
//     operands other than +-1 it is still an ordinary, gradient-checked
//     linear op, only with that summation order.)
//
//   uniform_linear(x, W, b, spec)    y = s * (v_x · v_W^T) + b      (k-bit x m-bit)
//     Both sides are uniform quantizers (docs/design.md §3; Sign is bits 1, a 1):
//     q = a v / L with v an odd integer, |v| <= L = 2^bits - 1, so the product
//     is an exact integer product times one scale s = (a_x/L_x) (a_W/L_W).
//     forward : levels v of x and W; with kernels the integer dot products come
//               from kernels::bitserial_gemm_f32 on plane-packed levels, without
//               them from sgemm on the levels as floats — exact (hence
//               identical) while |dot| <= K L_x L_W < 2^24
//               (uniform_linear_exact); then y = s * float(dot) (+ b).
//     saved   : nothing but handles (x is held by the graph anyway; the levels
//               are recomputed in backward, one elementwise pass). With a
//               hardtanh weight surrogate and all |W| <= C a, the weight
//               gradient skips the surrogate pass (as binary_linear does).
//     backward: dq_x = (g * (a_W/L_W)) · v_W ;  dx += S'_x(x) * dq_x
//               dq_W = (g * (a_x/L_x))^T · v_x ; dW += S'_W(W) * dq_W
//               db  += column sums of g
//
// IDENTICAL RESULTS. binary_linear reproduces, bit for bit, the unfused graph
// QuantLinear builds with the kernels off — Sign(x) node, Sign(W) node,
// pm1_linear(xq, wq) (then add(y, b) if there is a bias) — in the forward
// output (exact integers) AND in every gradient: its backward performs the
// same float operations in the same order (the grouped sums of pm1_gemm.h
// into a fresh buffer, then the surrogate's "grad += S' * g" into the input's
// gradient; "0 + v" where the unfused path adds into a zero-filled buffer).
// So a whole training run is identical with the kernels on or off.
//
// MEMORY. The unfused graph keeps xq [N, in] and wq [out, in] as floats for
// linear's backward; binary_linear keeps bits instead (16x smaller with the
// hardtanh masks, 32x without). The float input x is still referenced as the
// node's input (the autograd engine keeps every op's inputs alive until its
// backward), so the saving is the quantized copies, not x itself.
// uniform_linear with and without kernels differs only in how the exact
// integer dot products are obtained, so it is identical too.
// (tests/test_quant_kernels*.cpp check all of this for every ISA.)
//
// THE SWITCH. Whether QuantLinear uses these ops is decided per layer
// (QuantLinear::set_kernels, set_quant_kernels(module, on)); layers that were
// not set follow the process default: quant_kernels_default(), which is the
// environment variable QNN_QUANT_KERNELS=on|off (read once, default on) unless
// set_quant_kernels_default() was called. The ops themselves take no switch:
// binary_linear always uses the XNOR kernel, uniform_linear takes
// spec.use_kernels. The ISA (scalar/AVX2/AVX-512) is kernels/isa.h's choice.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "layers/quant/surrogate.h"

namespace qnn {

// ---- 1-bit x 1-bit -------------------------------------------------------------------

struct BinaryLinearSpec {
  // true: x is real, the op computes sign(x) (sign(0) = +1, levels +-1) and
  // back-propagates through input_surrogate (geometry bits 1, a 1, as Sign).
  // false: x already holds +-1 values; dL/dx = g sign(W) exactly as linear().
  bool quantize_input = true;
  Surrogate input_surrogate{};
  // Same for the weight (false: W holds +-1 values, e.g. a stochastic copy).
  bool quantize_weight = true;
  Surrogate weight_surrogate{};
};

// x [N, in], W [out, in], b [out] or undefined -> y [N, out]. One node.
Tensor binary_linear(const Tensor& x, const Tensor& W, const Tensor& b, const BinaryLinearSpec& spec = {});

// The kernels-off product of two +-1 operands: xq [N, in], wq [out, in],
// b [out] or undefined -> y [N, out]; backward in groups of four (above).
Tensor pm1_linear(const Tensor& xq, const Tensor& wq, const Tensor& b);

// ---- real x 1-bit ---------------------------------------------------------------------

// y = x sign(W)^T + b for a REAL x (the first layer of a BNN). The product
// has one +-1 operand, so it runs as kernels::pm1_gemm_cols (table look-up,
// pm1_gemm.h's summation order) on the packed bits of sign(W); dx likewise
// (pm1_gemm); dW = g^T x is real x real (sgemm). One node: the backward
// applies the weight surrogate without the unfused path's extra passes over
// weight-sized buffers, and keeps only packed bits. Bit-identical to the
// unfused graph: Sign(W) node + pm1_weight_linear(x, wq, b).
Tensor sign_weight_linear(const Tensor& x, const Tensor& W, const Tensor& b, const Surrogate& weight_surrogate = {});

// sign_weight_linear's kernels-off twin: x real [N, in], wq holds +-1
// [out, in]. y = x ·4 wq^T + b and dx = g ·4 wq with pm1_gemm_reference's
// plain loops (the grouped order), dW = g^T x by sgemm, as linear().
Tensor pm1_weight_linear(const Tensor& x, const Tensor& wq, const Tensor& b);

// ---- k-bit x m-bit -------------------------------------------------------------------

struct UniformLinearSpec {
  QuantGeometry input_geo{2, 1.0f}, weight_geo{2, 1.0f};  // bits 1..16, a > 0
  Surrogate input_surrogate{}, weight_surrogate{};
  bool use_kernels = true;  // bit-serial GEMM (true) or sgemm on the levels (false)
};

// True when K (2^xbits - 1)(2^wbits - 1) < 2^24: every partial sum of the
// level products is an exact float, so sgemm and the bit-serial kernel agree.
bool uniform_linear_exact(int64_t K, int xbits, int wbits);

// x [N, in], W [out, in], b [out] or undefined -> y [N, out]. One node.
// Throws qnn::Error unless uniform_linear_exact(in, ...).
Tensor uniform_linear(const Tensor& x, const Tensor& W, const Tensor& b, const UniformLinearSpec& spec);

// The odd-integer level v of a uniform quantizer with geometry geo for each
// x[i] (as float), exactly as quantize(..., QuantForward::uniform | sign, geo)
// chooses it: that quantizer outputs geo.a * v / (2^bits - 1).
void uniform_levels(const float* x, int64_t n, const QuantGeometry& geo, float* v);

// ---- the switch ---------------------------------------------------------------------

// Process default for layers that were not set explicitly. First use reads
// QNN_QUANT_KERNELS (on|off|1|0|true|false; unset: on); a bad value throws.
bool quant_kernels_default();
void set_quant_kernels_default(bool on);

// RAII: sets the process default for a scope (tests).
class QuantKernelsGuard {
 public:
  explicit QuantKernelsGuard(bool on) : prev_(quant_kernels_default()) { set_quant_kernels_default(on); }
  ~QuantKernelsGuard() { set_quant_kernels_default(prev_); }
  QuantKernelsGuard(const QuantKernelsGuard&) = delete;
  QuantKernelsGuard& operator=(const QuantKernelsGuard&) = delete;

 private:
  bool prev_;
};

// ---- memory accounting ----------------------------------------------------------------

// What a quantized linear layer keeps alive for its backward pass, in bytes,
// split into the part that grows with the batch (activations) and the part
// that grows with the weight matrix. Tensors both paths reference anyway (the
// layer input x, held by the graph as the op's input; the latent weight, a
// parameter) are not counted.
struct SavedBytes {
  int64_t activation = 0;  // per batch of N rows
  int64_t weight = 0;
  int64_t total() const { return activation + weight; }
};
// Unfused 1-bit graph: xq [N, in] and wq [out, in] as float (linear's inputs).
SavedBytes binary_linear_unfused_bytes(int64_t N, int64_t in, int64_t out, const BinaryLinearSpec& spec);
// binary_linear: packed sign(x) and sign(W), each + a packed mask for a
// hardtanh surrogate (pre-quantized sides: the bits only).
SavedBytes binary_linear_fused_bytes(int64_t N, int64_t in, int64_t out, const BinaryLinearSpec& spec);

// Running totals over every binary_linear forward that recorded a node
// (i.e. training steps), for apps to print. Reset with reset_...().
struct BinaryLinearStats {
  int64_t calls = 0;
  int64_t unfused_bytes = 0;  // sum of binary_linear_unfused_bytes(...).total()
  int64_t fused_bytes = 0;    // sum of binary_linear_fused_bytes(...).total()
};
BinaryLinearStats binary_linear_stats();
void reset_binary_linear_stats();

// ---- internals exposed for tests -------------------------------------------------------

namespace detail {
// One pass over x [rows, K] (row stride ldx): sign bits as kernels::pack_rows
// (bit 1 = x < 0) into `sign`, and, if mask != nullptr, the surrogate mask
// bit 1 = (|x| <= clip) (NaN: 0) into `mask`, same layout, pads 0. Either
// output may be nullptr. Uses the variant of kernels::active_isa().
void pack_sign_mask(const float* x, int64_t rows, int64_t K, int64_t ldx, float clip, uint64_t* sign,
                    uint64_t* mask);
// gx[r*K + k] += (bit k of mask row r ? 1 : 0) * d[r*K + k] for `rows` rows of
// K values, mask rows packed_words(K) long: the hardtanh surrogate's backward
// with the mask pack_sign_mask kept (the same float operations as
// surrogate_backward, so the same bits, also for -0, inf and NaN in d).
// Uses the variant of kernels::active_isa().
void masked_add_rows(const uint64_t* mask, int64_t rows, int64_t K, const float* d, float* gx);
}  // namespace detail

}  // namespace qnn
