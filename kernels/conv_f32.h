// kernels/conv_f32.h — the float 2-D convolution's forward, and the plan that
// spreads it over the threads.
//
// One home for this arithmetic: core/ops_conv.cpp conv2d (training) and the
// exported-model runner's conv_f32 layer (kernels/packed_cnn.cpp) both call
// conv2d_f32_forward, so an exported float CNN reproduces the training-time
// logits bit for bit (same GEMM shapes, strides and thread split, so OpenBLAS
// rounds every sum alike). conv2d's backward reuses ConvPlan.
//
// No tensors: raw float pointers, NCHW images, geometry from kernels/im2col.h.
// Per image n (P = OH*OW output pixels, CKK = C*KH*KW taps):
//   cols_n [CKK, P] = im2col_cols(x_n)        (zero padding)
//   y_n    [O, P]   = w2d [O, CKK] . cols_n   (+ bias[o] on row o) -- already NCHW
// except a 3x3 stride-1 convolution with C >= kWinogradMinChannels, which runs
// as Winograd F(2x2, 3x3) (kernels/winograd.h; plan.winograd says which) when
// the batch is large enough for it (WinogradMode::auto, the default: every
// thread's products at least kWinogradMinCols tiles wide; so batch-1
// inference on a 2-thread machine stays on im2col).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/im2col.h"
#include "kernels/winograd.h"

namespace qnn::kernels {

// How a convolution spreads a batch over the threads, and how wide its GEMMs are.
//
// Threads: with at least as many images as threads (num_threads(), or 1 inside
// an enclosing parallel region), thread t takes the contiguous images
// [N*t/T, N*(t+1)/T) and runs single-threaded GEMMs on them; otherwise one
// thread walks the batch and each sgemm uses every thread (batch-1 inference).
//
// Blocks: a small output map makes a thin product ([O, CKK] x [CKK, P] with
// P = 9 or 1 in the last convolutions of a CNV: a matrix-vector product that
// streams all of W per image), so G whole images' patch matrices sit side by
// side ([CKK, G*P]) until the product is at least kMinGemmCols wide; its
// [O, G*P] result is then copied to the G images (a staging block). Larger
// maps go one image per GEMM, written in place. (At P = 64 grouping measured
// a wash; cutting a 32x32 map into row bands whose patch matrix fits in L2
// was measured too: no gain, OpenBLAS re-packs its operands anyway.)
struct ConvPlan {
  static constexpr int64_t kMinGemmCols = 256;
  int threads = 1;
  bool parallel = false;  // run `threads` OpenMP threads (else one thread, threaded sgemm)
  int64_t G = 1;          // images per GEMM
  // Winograd F(2x2, 3x3) (kernels/winograd.h) for 3x3 stride-1 convolutions
  // with C >= kWinogradMinChannels, unless switched off: the GEMM columns are
  // then tiles (G images' worth, at least kMinGemmCols), and the scratch
  // holds the transformed weights U [16, O, C] once, then per thread the
  // padded plane, V [16, C, G*tiles], M [16, O, G*tiles] and a dU [16, O, C]
  // partial sum for the backward.
  bool winograd = false;
  WinogradTiles tiles;
  int64_t shared = 0;     // scratch floats before the per-thread slots (U)
  int64_t slot = 0;       // scratch floats per thread: cols [CKK, G*P] (+ staging [O, G*P] if G > 1)
  ConvPlan(int64_t N, const PatchGeom& g, int64_t O);
  // Floats of scratch the forward (or a backward using the same plan) needs.
  int64_t scratch_size() const { return shared + threads * std::max<int64_t>(1, slot); }
  float* cols_of(float* scratch, int tid) const { return scratch + shared + (int64_t)tid * slot; }
  // Winograd slots: the pieces of thread tid's slot.
  int64_t wino_cols() const { return G * tiles.per_image(); }
};

// x [N, C, H, W], w2d [O, CKK] (= w [O, C, KH, KW]), bias [O] or nullptr
//   -> y [N, O, OH, OW] (every value written).
// scratch: at least plan.scratch_size() floats; plan = ConvPlan(N, g, O).
void conv2d_f32_forward(const float* x, int64_t N, const PatchGeom& g, int64_t O, const float* w2d,
                        const float* bias, float* y, const ConvPlan& plan, float* scratch);

// The backward of a plan.winograd convolution (no bias: the caller sums it):
//   gx [N, C, H, W] += dL/dx,  gw [O, C, 3, 3] += dL/dw   (either may be nullptr)
// from gy = dL/dy [N, O, OH, OW]. The dw partial sums of the threads are
// added in a fixed order, so a fixed thread count gives fixed results.
void conv2d_f32_backward_winograd(const float* x, const float* gy, int64_t N, const PatchGeom& g, int64_t O,
                                  const float* w, float* gx, float* gw, const ConvPlan& plan, float* scratch);

}  // namespace qnn::kernels
