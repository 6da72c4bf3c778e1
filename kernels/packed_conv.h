// kernels/packed_conv.h — binary (±1) 2-D convolution on bit-packed data.
//
// No tensors: raw pointers and shape integers (geometry: kernels/im2col.h's
// PatchGeom; OH, OW, pixel p = oy*OW + ox exactly as there). The bit
// convention is kernels/bitpack.h's (bit 1 = -1, bit 0 = +1, x < 0 packs to 1,
// so sign(0) = +1; pad bits 0).
//
// Layout: activations are packed NHWC, channels along the packed dimension.
//   pixel (n, y, x) owns CW = pixel_words(C) = ceil(C/64) consecutive words at
//   xp[((n*H + y)*W + x) * CW]; channel c is bit c%64 of word c/64 of it;
//   the bits of channels >= C in the last word are 0 (bitpack.h rule 4).
// The pixel stride is ceil(C/64) words — not bitpack.h's 512-bit row stride —
// so that a KH x KW receptive field is KH*KW runs of CW words: the packed
// im2col copies words, never bits.
//
// A packed patch (one output pixel) is the KH*KW pixels' words in tap order
// (ky, kx), then zero words up to patch_words = round_up(KH*KW*CW, 8): the
// patch rows follow bitpack.h rule 3 (whole 512-bit chunks) so the XNOR GEMM's
// popcount blocks (kernels/xnor_internal.h) run on them unchanged. Weights are
// packed in the same order, one row per output channel. The tap order (ky,
// kx, c) differs from the float im2col's (c, ky, kx); a dot product does not
// care. Every pad bit (channel tail, pad words) is 0 in both operands, so it
// never counts in popcount(a XOR b) and
//   dot = K - 2 * popcount(patch XOR weights),   K = C*KH*KW   (exact).
//
// Padding (taps outside the image):
//   ConvPad::one  — padded taps are +1: their words are 0 bits. The result is
//                   the float conv with pad value +1, with no correction.
//   ConvPad::zero — padded taps must contribute 0, which a ±1 bit cannot say.
//                   They are written as +1 (0 bits) too, and each output pixel
//                   on the border then subtracts what they added: for output
//                   channel o, sum over its taps (ky, kx) outside the image of
//                   tap_sum[o][ky][kx] = sum_c sign(w[o, c, ky, kx]) (the +1
//                   pad value times the weights). The set of outside taps
//                   depends only on (row case, column case) of the output
//                   pixel, so the corrections are computed once per distinct
//                   border case and output channel (the zero-padding
//                   correction of Larq Compute Engine). The result equals the
//                   float conv of the ±1 input with zero padding, exactly.
// Both equal rows_to_nchw(linear(im2col(sign(x), pad value), sign(w))) of the
// float path (pad value 0 or +1).
//
// Speed: the forward is the packed im2col (a copy of words, parallel over
// images) and one XNOR GEMM of the weights (A, O rows) against all patches
// (B, N*OH*OW rows) with the blocked driver of kernels/xnor_internal.h, whose
// epilogue writes the NCHW sums directly (a block's columns are consecutive
// pixels of one or two images, so each output row is a contiguous store).
// The SIMD variant is kernels/isa.h's active one; all variants are bit-exact.
//
// Errors (negative or inconsistent sizes, null pointers, K >= 2^24 where a
// float would no longer hold the sums exactly) throw std::invalid_argument
// with a one-line message naming the function and the problem.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/im2col.h"

namespace qnn::kernels {

enum class ConvPad { zero, one };

// Words per packed pixel: ceil(C / 64). Throws if C < 0.
int64_t pixel_words(int64_t C);
// Words per packed patch / weight row: round_up(KH*KW*pixel_words(C), 8).
int64_t patch_words(int64_t C, int64_t KH, int64_t KW);

// ---- activations: NCHW floats <-> NHWC bits --------------------------------------
// x [N, C, H, W] (any real values; ±1 data is the usual case) -> xp, N*H*W*CW
// words: bit = (x < 0), channel-tail bits 0. Parallel over images.
void pack_nhwc(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, uint64_t* xp);
// xp (NHWC bits) -> x [N, C, H, W] of exact ±1.0f (tail bits ignored).
void unpack_nhwc(const uint64_t* xp, int64_t N, int64_t C, int64_t H, int64_t W, float* x);

// ---- weights ------------------------------------------------------------------------
struct PackedConvWeights {
  int64_t O = 0, C = 0, KH = 0, KW = 0;
  int64_t CW = 0;          // pixel_words(C)
  int64_t row_words = 0;   // patch_words(C, KH, KW)
  PackedVector bits;       // O rows of row_words: word (ky*KW + kx)*CW + c/64, bit c%64
  std::vector<int32_t> tap_sum;  // [O, KH, KW]: sum_c sign(w[o, c, ky, kx])
};
// w [O, C, KH, KW] (real values, packed by sign; sign(0) = +1).
PackedConvWeights pack_conv_weights(const float* w, int64_t O, int64_t C, int64_t KH, int64_t KW);

// ---- forward ------------------------------------------------------------------------
// xp: N packed NHWC images of g.C x g.H x g.W. patches: N*g.pixels() rows of
// patch_words(g.C, g.KH, g.KW) words, every word written (padded taps and pad
// words 0). Parallel over images.
void packed_im2col(const uint64_t* xp, int64_t N, const PatchGeom& g, uint64_t* patches);

// out [N, O, OH, OW] = the conv sums as floats (exact integers; see the top).
// w must have been packed for g.C, g.KH, g.KW. Scratch (the patches) comes from
// a per-thread buffer kept between calls.
void packed_conv_forward(const uint64_t* xp, int64_t N, const PatchGeom& g, const PackedConvWeights& w,
                         ConvPad pad, float* out);

// The zero-padding corrections alone: corr[o * P + p] = what ConvPad::one's sum
// at output pixel p of channel o has in excess of ConvPad::zero's (0 inside).
// packed_conv_forward applies them itself; exposed for tests and layers.
void zero_pad_corrections(const PatchGeom& g, const PackedConvWeights& w, int32_t* corr);

// ---- pooling of the sums (BinaryNet's block: conv -> max-pool -> BN -> sign) -------
// Windows k x k, stride s, no padding; OH = (H - k)/s + 1, OW = (W - k)/s + 1.
// max_pool_sums: planes [H, W] -> [OH, OW] (planes = N*O), plain max, parallel
// over planes. Exact on integer sums (no arithmetic, only comparisons).
void max_pool_sums(const float* x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s, float* out);

// Fused max-pool -> (batch norm + sign as a threshold) -> packed NHWC bits, the
// input of the next binary conv: x [N, O, H, W] sums,
//   value(n, o, py, px) = +1 iff (max over the window of x >= thresh[o]) XOR flip[o]
// (thresh/flip as from fold_affine_sign in kernels/xnor_gemm.h; flip == nullptr
// means no flips), written to out: N*OH*OW pixels of pixel_words(O) words.
// Why max first: "max >= t" is the OR of the window's "x >= t" bits, so the
// threshold-then-OR-pool form gives the same bits (a negative BN scale is the
// flip, applied after the OR: the max of ±1 values is the OR of their +1 bits,
// the min is the AND); max first needs one threshold comparison per pooled
// output instead of k*k, with the same k*k comparisons for the window, and
// reads the sums once. k = s = 1 is the conv -> BN -> sign block without pool.
void sign_max_pool_nhwc(const float* x, int64_t N, int64_t O, int64_t H, int64_t W, int64_t k, int64_t s,
                        const float* thresh, const uint8_t* flip, uint64_t* out);

}  // namespace qnn::kernels
