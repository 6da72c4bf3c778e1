// kernels/winograd.h — Winograd's F(2x2, 3x3): a 3x3 convolution in 2.25x fewer multiplications.
//
// Why. A 3x3, stride-1 convolution computes every 2x2 block of outputs from
// a 4x4 block of inputs with 2*2*9 = 36 multiply-adds per channel pair. The
// Winograd identity (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016) gets the same 2x2 block from 16: move the 4x4 input tile d
// and the 3x3 filter w into a 4x4 "transform domain" with fixed matrices,
// multiply element by element there, and move the product back:
//
//   Y [2x2] = A^T [ (G w G^T) (.) (B^T d B) ] A          (.) = element-wise
//
//   B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1  |
//
// Summed over the input channels, the element-wise products of each of the
// 16 transform positions xi form one matrix product per xi:
//   M[xi] [O, T] = U[xi] [O, C] . V[xi] [C, T]   (T tiles, U = G w G^T, V = B^T d B)
// so the arithmetic is still sgemm (16 of them, 16 multiply-adds per tile
// instead of 36), and the transforms are cheap additions.
//
// The backward is the exact adjoint of the same linear maps (no second
// algorithm to trust): with dM = A dY A^T per tile,
//   dU[xi] = dM[xi] . V[xi]^T   ->  dw = G^T dU G
//   dV[xi] = U[xi]^T . dM[xi]   ->  dx += B dV B^T, scattered back onto the
//                                   overlapping 4x4 tiles (padding dropped).
// The sums are rounded differently from im2col + sgemm (float results agree
// to a few ulps, not bit for bit); with +-1 weights and inputs every
// intermediate is a multiple of 1/4 far below 2^24, so a binarized product is
// exact either way.
//
// No tensors here: raw float pointers, NCHW images, PatchGeom geometry.
// Tiles: the output map OH x OW is cut into th x tw tiles of 2x2 (the last
// row / column of tiles may hang over an odd edge: its extra outputs are not
// written, and its extra inputs read zeros). A group of gc images is
// transformed together, image innermost: tile (ty, tx) of image j is column
// t = (ty*tw + tx)*gc + j of V and M (so the loops run over tx*gc + j and stay
// long on small maps: an 8x8 map has only 4 tiles per row).
#pragma once
#include <cstdint>

#include "kernels/im2col.h"

namespace qnn::kernels {

// Below this many input channels the 16 products are too thin for sgemm
// (the first layer of an RGB network has C = 3): im2col + sgemm is faster.
constexpr int64_t kWinogradMinChannels = 16;

// When a convolution takes Winograd: process-wide, from QNN_WINOGRAD in the
// environment at start-up (0 = off, 1 = always, auto or unset = auto).
//   off    : never (im2col + sgemm everywhere);
//   always : wherever it applies (3x3, stride 1, C >= kWinogradMinChannels);
//   auto   : there, and only where the batch gives each thread's 16 products
//            at least kWinogradMinCols tile columns (ConvPlan decides; see
//            kernels/conv_f32.h). A thin product is slower than im2col's one
//            wide GEMM, and a batch smaller than the thread count would hand
//            16 tiny GEMMs each to threaded sgemm: measured on the 2-core
//            Xeon, batch 1, 2 threads, a 64 -> 64 conv on 32x32 took 10.4 ms
//            by Winograd and 1.7 ms by im2col; a 256 -> 256 conv on 8x8,
//            1 thread, 7.5 and 1.3 ms. At the training batch (50) Winograd
//            wins every layer of the BinaryNet CNN by 1.4-2x.
enum class WinogradMode { off, auto_size, always };
void set_winograd_mode(WinogradMode m);
WinogradMode winograd_mode();
const char* winograd_mode_name(WinogradMode m);  // "off", "auto", "always"
// For tests and benchmarks that compare the two algorithms: true = always, false = off.
void set_winograd(bool on);
bool winograd_enabled();  // the mode is not off
// Applies QNN_WINOGRAD again and checks it: throws std::invalid_argument
// naming the variable for a value other than 0, 1, auto (the start-up
// reading treats such a value as auto; the apps call this first).
void apply_winograd_env();
// The mode is not off, the window is 3x3, the stride 1, and C >= kWinogradMinChannels
// (the geometry Winograd is correct for; ConvPlan adds auto's size rule).
bool winograd_applies(const PatchGeom& g);
// auto's threshold: tile columns per thread (one image of a 32x32 map has 256).
constexpr int64_t kWinogradMinCols = 256;

struct WinogradTiles {
  int64_t th = 0, tw = 0;   // tiles down / across: ceil(OH/2), ceil(OW/2)
  int64_t half = 0;         // tw + 1: the padded input plane's row is stored as its even then odd columns
  int64_t rows = 0;         // 2*th + 2 padded input rows
  int64_t per_image() const { return th * tw; }
  // floats of the de-interleaved, padded plane of one channel of gc images
  int64_t plane_size(int64_t gc = 1) const { return rows * 2 * half * gc; }
};
WinogradTiles winograd_tiles(const PatchGeom& g);

// w [O, C, 3, 3] -> U [16, O, C] (every value written)
void winograd_weights(const float* w, int64_t O, int64_t C, float* U);
// dw [O, C, 3, 3] += G^T dU G  (the adjoint of winograd_weights)
void winograd_weights_adjoint_add(const float* dU, int64_t O, int64_t C, float* dw);

// x: gc images [gc, C, H, W] -> V [16, C, ld] columns [0, gc*per_image) (every one written).
// plane: scratch of t.plane_size(gc) floats.
void winograd_input(const float* x, int64_t gc, const PatchGeom& g, const WinogradTiles& t, float* plane, float* V,
                    int64_t ld);
// dx [gc, C, H, W] += the adjoint of winograd_input applied to dV [16, C, ld]
void winograd_input_adjoint_add(const float* dV, int64_t ld, int64_t gc, const PatchGeom& g, const WinogradTiles& t,
                                float* plane, float* dx);
// M [16, O, ld] -> y [gc, O, OH, OW] = A^T m A per tile (+ bias[o] when bias); every output written
void winograd_output(const float* M, int64_t ld, int64_t gc, int64_t O, const PatchGeom& g, const WinogradTiles& t,
                     const float* bias, float* y);
// gy [gc, O, OH, OW] -> dM [16, O, ld] = A dY A^T per tile (the adjoint of winograd_output)
void winograd_output_adjoint(const float* gy, int64_t gc, int64_t O, const PatchGeom& g, const WinogradTiles& t,
                             float* dM, int64_t ld);

}  // namespace qnn::kernels
