// kernels/im2col.h — the patch matrix of a 2-D convolution, and its adjoint.
//
// No tensors here: raw float pointers and shape integers, NCHW images.
// A convolution of an image x[C, H, W] with weights w[O, C, KH, KW] is a
// matrix product once every receptive field is copied out as a vector of
// C*KH*KW taps ("im2col"): the GEMM then does all the arithmetic, at BLAS
// speed. Its backward needs the adjoint of that copy ("col2im"), which ADDS
// each tap back into the pixel it came from (a pixel appears in up to KH*KW
// patches, so the gradients of those copies sum).
//
// Geometry (one image; the same for every image of a batch):
//   OH = (H + 2*pad - KH) / stride + 1,   OW = (W + 2*pad - KW) / stride + 1
//   output pixel p = oy*OW + ox,  tap t = (c*KH + ky)*KW + kx   (t < CKK = C*KH*KW)
//   the tap reads input pixel  iy = oy*stride - pad + ky,  ix = ox*stride - pad + kx,
//   which is outside the image (a padded tap) unless 0 <= iy < H and 0 <= ix < W.
// The tap order (c, ky, kx) is the memory order of w[o] = w[O, C, KH, KW] row o,
// so w viewed as [O, CKK] multiplies the patches directly.
//
// Two layouts of the same numbers, both used:
//   rows  [P, CKK]  (P = OH*OW) pixel-major: rows[p*CKK + t].  One patch per row,
//         so a whole batch is [N*P, CKK] and "linear(rows, w2d)" is the conv
//         (pixel-major output [N*P, O]). This is the layout of the im2col op and
//         the natural input of a packed binary convolution (a row is one patch).
//   cols  [CKK, P]  tap-major: cols[t*P + p].  w2d [O, CKK] x cols [CKK, P] is
//         the [O, P] output plane stack of one image, already in NCHW order.
//         This is the layout the fused conv2d runs on (see core/ops_conv.cpp).
//
// Padded taps read `pad_value`: 0 for ordinary zero padding, +1 for the
// "one-padding" of binarized inputs (a ±1 network cannot represent 0). The
// adjoint ignores padded taps: they are constants, not pixels.
//
// The one-image functions are serial (conv2d runs them inside its own
// per-image threads); the *_batch forms are parallel, partitioned so that no
// two threads write the same value (im2col: disjoint rows; col2im: disjoint
// input planes).
#pragma once
#include <cstdint>

namespace qnn::kernels {

// Output size of a window sweep along one axis: (in + 2*pad - k) / stride + 1.
// Callers check in + 2*pad >= k, k >= 1, stride >= 1, pad >= 0 first.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in + 2 * pad - k) / stride + 1;
}

struct PatchGeom {
  int64_t C = 0, H = 0, W = 0;            // input image [C, H, W]
  int64_t KH = 1, KW = 1, stride = 1, pad = 0;
  int64_t OH = 0, OW = 0;                 // conv_out_size of H and W
  int64_t taps() const { return C * KH * KW; }    // CKK: length of one patch
  int64_t pixels() const { return OH * OW; }      // P: patches per image
  int64_t image_size() const { return C * H * W; }
};
PatchGeom make_patch_geom(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t stride, int64_t pad);

// ---- one image --------------------------------------------------------------------
// img [C, H, W] -> rows [P, CKK]  (every value written)
void im2col_rows(const float* img, const PatchGeom& g, float pad_value, float* rows);
// img [C, H, W] -> cols [CKK, P]  (every value written)
// With a row stride ld >= P (cols[t*ld + p]) several small images sit side by
// side in one [CKK, G*P] matrix (image j at column j*P), so one GEMM serves G images.
void im2col_cols(const float* img, const PatchGeom& g, float pad_value, float* cols, int64_t ld);
inline void im2col_cols(const float* img, const PatchGeom& g, float pad_value, float* cols) {
  im2col_cols(img, g, pad_value, cols, g.pixels());
}
// img [C, H, W] += adjoint of im2col_rows applied to rows [P, CKK]
void col2im_rows_add(const float* rows, const PatchGeom& g, float* img);
// img [C, H, W] += adjoint of im2col_cols applied to cols [CKK, P] (same ld)
void col2im_cols_add(const float* cols, const PatchGeom& g, float* img, int64_t ld);
inline void col2im_cols_add(const float* cols, const PatchGeom& g, float* img) {
  col2im_cols_add(cols, g, img, g.pixels());
}

// ---- a batch: x [N, C, H, W] <-> rows [N*P, CKK] ------------------------------------
// OpenMP over (image, output row) for im2col and over (image, channel block) for
// col2im, so a batch of 1 still spreads over the threads; the results do not
// depend on the thread count (each value is written / summed by one thread in
// a fixed order).
void im2col_rows_batch(const float* x, int64_t N, const PatchGeom& g, float pad_value, float* rows);
void col2im_rows_add_batch(const float* rows, int64_t N, const PatchGeom& g, float* x);

// ---- pooling over k x k windows, stride s, no padding ----------------------------
// Planes are [H, W] -> [OH, OW], OH = (H - k) / s + 1; `planes` = N*C, each
// independent (parallel over planes).
// max: out = max over the window; arg[i] = the window's first maximum (row-major
// window order) as an index into its input plane, for the backward.
void max_pool_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s, float* out,
                      int32_t* arg);
// dx[plane][arg[i]] += dy[i]   (overlapping windows may pick the same pixel: adds)
void max_pool_backward_add(const float* dy, const int32_t* arg, int64_t planes, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, float* dx);
// avg: out = (1/k^2) * sum over the window; backward spreads dy/k^2 over it.
void avg_pool_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s, float* out);
void avg_pool_backward_add(const float* dy, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s, float* dx);

}  // namespace qnn::kernels
