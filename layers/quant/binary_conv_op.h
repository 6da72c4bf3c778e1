// layers/quant/binary_conv_op.h — binary_conv2d: a 1-bit x 1-bit convolution
// that trains on packed bits. ONE autograd node, hand-written backward.
//
//   binary_conv2d(x, W, b, spec)    y = conv(sign(x), sign(W), pad) + b
//     x [N, C, H, W] real (or +-1 when pre-quantized), W [O, C, KH, KW]
//     (latent), b [O] or undefined -> y [N, O, OH, OW]. M = N*OH*OW output
//     pixels, CKK = C*KH*KW taps.
//     forward : sign(x) packed NHWC once (kernels::pack_nhwc), sign(W) packed
//               in the same tap order (kernels::pack_conv_weights), then
//               kernels::packed_conv_forward with the padding mode — the sums
//               are exact integers (zero padding: the exact border
//               correction; one-padding: none) — (+ b, one float add).
//     saved   : sign(x) PACKED NHWC (1 bit per value), the input surrogate's
//               1-bit mask 1{|x| <= C} (hardtanh) PACKED, sign(W) packed as
//               [O, CKK] rows (for dx) and the weight surrogate's mask.
//     backward (g [N, O, OH, OW]; g_rows [M, O] its pixel-major view):
//               dq_x = col2im(g_rows · sign(W2))   [N, C, H, W]   (pm1_gemm, per chunk of images)
//               dx  += S'_x(x) * dq_x
//               dq_W = g_rows^T · sign(rows)       [O, CKK]       (pm1_gemm over packed patches)
//               dW  += S'_W(W) * dq_W
//               db  += sum over pixels of g
//     For zero padding the padded taps of `rows` are 0, which no sign bit
//     says: dq_W is then kernels::pm1_gemm_zeros, the same product with a
//     bitmap of the (pixel, tap) pairs that fall on padding (their S = 0).
//
//   binary_conv2d_reference(xq, wq, b, stride, pad, pad_value)
//     The kernels-off twin, the plain composition over float im2col rows:
//       rows = im2col(xq, pad_value)                 [M, CKK]  (0 or +1 taps)
//       y    = rows_to_nchw(pm1_linear(rows, wq2) (+ add b))   (wq2 = wq viewed [O, CKK])
//     with xq = q_in(x) and wq = q_w(W) as their own quantizer nodes.
//
// IDENTICAL RESULTS (as binary_linear, binary_linear_op.h): the forward sums
// are exact integers in both; both backward products sum in pm1_gemm.h's
// grouped order over the same index in the same order (dq_x over o, dq_W over
// m = n*P + p); a padded tap contributes +-0 to its group in both (0 * g in
// the reference, s * 0 here), and a +-0 term never changes a pm1 sum (its
// accumulator starts at +0 and can never be -0); col2im adds the taps into
// each pixel in the im2col op's order; the surrogates run "grad += S' * dq"
// exactly as the quantizer nodes do. So forward outputs and every gradient
// are bit-identical with the kernels on and off (tests/test_binary_conv.cpp).
//
// WINOGRAD LAYERS. Where the float convolution would run as Winograd
// F(2x2, 3x3) (3x3, stride 1, C >= 16, no bias, zero padding or none, and
// the conv plan takes Winograd: kernels/winograd.h's mode, by default only at
// batches large enough for it; binary_conv_winograd), both backward products instead
// run as the float convolution's Winograd backward on +-1 floats
// (sign(W) from W, sign(x) unpacked from the saved bits): 16 products per
// 2x2 output block instead of 36, and on CPUs whose 16-lane permute is
// slow (Intel's AVX-512) clearly faster than the look-ups. The reference
// then is conv2d(xq, wq) itself, whose node makes the same call on the same
// values in the same thread plan; its forward sums are exact integers, as
// the packed forward's are. So the two stay bit-identical there too.
//
// MEMORY. The reference keeps xq [N, C, H, W] and rows [M, CKK] as floats
// (9x the input for a 3x3 kernel) and wq; binary_conv2d keeps 2 bits per
// input value and per weight (binary_conv2d_{fused,unfused}_bytes).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/im2col.h"  // PatchGeom
#include "layers/quant/binary_linear_op.h"  // SavedBytes
#include "layers/quant/surrogate.h"

namespace qnn {

// Whether a binary convolution of this geometry takes the Winograd backward
// (above); binary_conv2d and its reference both ask this.
bool binary_conv_winograd(int64_t N, const kernels::PatchGeom& g, int64_t O, bool one_padding, bool has_bias);

struct BinaryConvSpec {
  int64_t stride = 1, pad = 0;
  bool one_padding = false;  // padded taps hold +1 (true) or 0 (false)
  // As BinaryLinearSpec: true = the op applies sign and back-propagates
  // through the surrogate; false = the tensor already holds +-1 values.
  bool quantize_input = true;
  Surrogate input_surrogate{};
  bool quantize_weight = true;
  Surrogate weight_surrogate{};
};

// x [N, C, H, W], W [O, C, KH, KW], b [O] or undefined -> y [N, O, OH, OW].
Tensor binary_conv2d(const Tensor& x, const Tensor& W, const Tensor& b, const BinaryConvSpec& spec);

// The kernels-off reference over +-1 tensors xq [N, C, H, W], wq [O, C, KH, KW]
// (the quantizers' outputs), padded taps = pad_value (0 or +1).
Tensor binary_conv2d_reference(const Tensor& xq, const Tensor& wq, const Tensor& b, int64_t stride, int64_t pad,
                               float pad_value);

// What each keeps alive for backward (beyond x and W themselves, which the
// graph references anyway): reference = xq and rows as floats, + wq;
// fused = packed sign(x) and mask, packed sign(W) and mask.
SavedBytes binary_conv2d_unfused_bytes(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K,
                                       int64_t stride, int64_t pad, const BinaryConvSpec& spec);
SavedBytes binary_conv2d_fused_bytes(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K,
                                     int64_t stride, int64_t pad, const BinaryConvSpec& spec);

}  // namespace qnn
