// core/ops_conv.cpp — convolution and pooling on NCHW tensors.
//
// The arithmetic is in kernels/im2col.h (patch copies, pooling loops) and
// kernels/sgemm.h (the products); this file checks shapes, allocates, and
// records the autograd nodes.
//
// conv2d as matrices, per image n (P = OH*OW output pixels, CKK = C*KH*KW taps):
//   cols_n [CKK, P] = im2col(x_n)            (tap-major patch matrix)
//   y_n    [O, P]   = W2d [O, CKK] . cols_n  (+ b[o] on row o)   -- already NCHW
// backward, with g_n = dL/dy_n [O, P]:
//   dW2d  += g_n . cols_n^T                  [O, CKK]
//   dx_n  += col2im(W2d^T . g_n)             [CKK, P] -> [C, H, W]
//   db[o] += sum over n, p of g_n[o, p]
//
// The forward and the thread / GEMM-width plan (ConvPlan) live in
// kernels/conv_f32.h, shared with the exported-model runner. A 3x3 stride-1
// convolution with 16 or more input channels runs as Winograd F(2x2, 3x3)
// instead, forward and backward (kernels/winograd.h; ConvPlan::winograd);
// what follows describes the im2col path.
// Per-image GEMMs, images spread over the threads, each thread running a
// single-threaded sgemm on its own images (OpenBLAS runs single-threaded
// inside an OpenMP region). Measured once (a standalone timing, forward +
// backward, 2 threads, on a busy 2-core machine) against the alternative, one
// big GEMM over the whole batch (rows [N*P, CKK] x W^T -> [N*P, O], then a
// permute to NCHW), on the BinaryNet CIFAR-10 layers at width 0.5
// (64-64-128-128-256-256 channels on 32x32, 3x3 pad 1, batch 50): per-image
// won in total (1.6-2.5 s vs 2.4-3.6 s over two runs) and on every layer but
// the 256-channel 8x8 one (a tie); per-image GEMMs with OpenBLAS's own
// threading inside each were far slower (13-17 s: a thread hand-off on every
// image). Why: the per-image output lands directly in NCHW (no permute of the
// output, nor of its gradient), each thread's scratch stays in its own cache
// between im2col, GEMM and col2im, nothing synchronises until the end, and
// the scratch is one patch matrix per thread instead of the whole batch's
// (118 MB at batch 50 for the 64-channel 32x32 layer). For that reason too
// the patch matrix is recomputed in the backward rather than saved: the copy
// costs about a tenth of the GEMM time. Per core this runs these layers within
// about 10 % of PyTorch 1.13's oneDNN convolutions (CPU time, same machine).
//
// The im2col op (pixel-major rows [N*P, CKK], any pad value) is the building
// block for convolutions whose patches must be transformed before the product
// (quantized / binarized inputs with one-padding): linear(rows, W2d) then
// rows_to_nchw.
#include <omp.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/conv_f32.h"
#include "kernels/im2col.h"
#include "kernels/sgemm.h"

namespace qnn {

using kernels::ConvPlan;
using kernels::PatchGeom;
using kernels::sgemm;

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // values touched; below this one thread is faster

std::string i2s(int64_t v) { return std::to_string(v); }

// Validates a window sweep over x [N, C, H, W] and returns its geometry.
PatchGeom checked_geom(const char* op, const Tensor& x, int64_t kh, int64_t kw, int64_t stride, int64_t pad) {
  QNN_CHECK(x.defined(), std::string(op) + ": input tensor is undefined");
  QNN_CHECK(x.ndim() == 4, std::string(op) + ": x must be [N, C, H, W], got " + shape_str(x.shape()));
  QNN_CHECK(kh >= 1 && kw >= 1,
            std::string(op) + ": kernel must be at least 1x1, got " + i2s(kh) + "x" + i2s(kw));
  QNN_CHECK(stride >= 1, std::string(op) + ": stride must be >= 1, got " + i2s(stride));
  QNN_CHECK(pad >= 0, std::string(op) + ": pad must be >= 0, got " + i2s(pad));
  const int64_t H = x.dim(2), W = x.dim(3);
  QNN_CHECK(H + 2 * pad >= kh && W + 2 * pad >= kw,
            std::string(op) + ": kernel " + i2s(kh) + "x" + i2s(kw) + " is larger than the padded image " +
                i2s(H + 2 * pad) + "x" + i2s(W + 2 * pad) + " (x " + shape_str(x.shape()) + ", pad " + i2s(pad) +
                ")");
  return kernels::make_patch_geom(x.dim(1), H, W, kh, kw, stride, pad);
}

// dst[c*R + r] (= or +=) src[r*Cn + c] for `count` independent [R, Cn]
// matrices: a blocked transpose (tiles keep both sides in cache).
// Parallel over (matrix, row tile).
template <bool Add>
void transpose_batch(const float* src, int64_t count, int64_t R, int64_t Cn, float* dst) {
  constexpr int64_t T = 32;
  const int64_t rtiles = (R + T - 1) / T;
#pragma omp parallel for schedule(static) if (parallel: count * R * Cn > kParallelMin)
  for (int64_t it = 0; it < count * rtiles; ++it) {
    const int64_t m = it / rtiles, r0 = (it % rtiles) * T, r1 = std::min(R, r0 + T);
    const float* s = src + m * R * Cn;
    float* d = dst + m * R * Cn;
    for (int64_t c0 = 0; c0 < Cn; c0 += T) {
      const int64_t c1 = std::min(Cn, c0 + T);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) {
          if constexpr (Add)
            d[c * R + r] += s[r * Cn + c];
          else
            d[c * R + r] = s[r * Cn + c];
        }
    }
  }
}

}  // namespace

// ---- conv2d -------------------------------------------------------------------------
// x [N, C, H, W], w [O, C, KH, KW], b [O] or undefined -> y [N, O, OH, OW]
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t pad) {
  QNN_CHECK(w.defined() && w.ndim() == 4,
            "conv2d: w must be [O, C, KH, KW], got " + (w.defined() ? shape_str(w.shape()) : std::string("undefined")));
  const PatchGeom g = checked_geom("conv2d", x, w.dim(2), w.dim(3), stride, pad);
  QNN_CHECK(w.dim(1) == g.C, "conv2d: x is " + shape_str(x.shape()) + " but w is " + shape_str(w.shape()) +
                                 " (input channels differ: " + i2s(g.C) + " vs " + i2s(w.dim(1)) + ")");
  const int64_t N = x.dim(0), O = w.dim(0);
  if (b.defined())
    QNN_CHECK(b.ndim() == 1 && b.dim(0) == O,
              "conv2d: bias is " + shape_str(b.shape()) + ", expected [" + i2s(O) + "] for w " + shape_str(w.shape()));

  Tensor y = Tensor::empty({N, O, g.OH, g.OW});
  {
    const ConvPlan plan(N, g, O);
    Tensor scratch = Tensor::empty({plan.scratch_size()});  // from the caching allocator
    kernels::conv2d_f32_forward(x.data(), N, g, O, w.data(), b.defined() ? b.data() : nullptr, y.data(), plan,
                                scratch.data());
  }

  if (needs_grad(x, w, b)) {
    record(y, "conv2d", {x, w, b}, [x, w, b, g, N, O](const Tensor& gy) {
      const int64_t P = g.pixels(), K = g.taps(), img = g.image_size();
      const bool want_x = x.requires_grad(), want_w = w.requires_grad();
      const float* pg = gy.data();
      if (want_x || want_w) {
        const ConvPlan plan(N, g, O);
        Tensor scratch = Tensor::empty({plan.scratch_size()});
        if (plan.winograd) {
          kernels::conv2d_f32_backward_winograd(x.data(), pg, N, g, O, w.data(), want_x ? x.grad_data() : nullptr,
                                                want_w ? w.grad_data() : nullptr, plan, scratch.data());
        } else {
          const int T = plan.threads;
          // dW partial sums, one [O, CKK] block per thread, reduced in a fixed
          // order below (so a run at a fixed thread count is reproducible).
          Tensor dw_part;
          if (want_w && T > 1) dw_part = Tensor::zeros({T, O * K});
          float* gw = want_w ? w.grad_data() : nullptr;
          float* gx = want_x ? x.grad_data() : nullptr;
          const float* px = x.data();
          const float* pw = w.data();
#pragma omp parallel num_threads(T) if (parallel: plan.parallel)
          {
            const int tid = omp_get_thread_num();
            float* cols = plan.cols_of(scratch.data(), tid);
            float* dw = dw_part.defined() ? dw_part.data() + (int64_t)tid * O * K : gw;
            // One block: images [n0, n0 + gc), L = gc*P columns; gg [O, L] is its output gradient.
            auto block = [&](int64_t n0, int64_t gc, const float* gg) {
              const int64_t L = gc * P;
              if (want_w) {
                // dW2d [O, CKK] += gg [O, L] . cols^T [L, CKK]  (cols recomputed, not saved)
                for (int64_t j = 0; j < gc; ++j) kernels::im2col_cols(px + (n0 + j) * img, g, 0.f, cols + j * P, L);
                sgemm(false, true, O, K, L, 1.f, gg, L, cols, L, 1.f, dw, K);
              }
              if (want_x) {
                // dcols [CKK, L] = W2d^T [CKK, O] . gg [O, L];  dx_n += col2im(dcols of image n)
                sgemm(true, false, K, L, O, 1.f, pw, K, gg, L, 0.f, cols, L);
                for (int64_t j = 0; j < gc; ++j) kernels::col2im_cols_add(cols + j * P, g, gx + (n0 + j) * img, L);
              }
            };
            for (int64_t n0 = N * tid / T, n_end = N * (tid + 1) / T; n0 < n_end; n0 += plan.G) {
              const int64_t gc = std::min(plan.G, n_end - n0);
              if (gc == 1) {
                block(n0, 1, pg + n0 * O * P);
              } else {
                // the group's output gradients side by side: stage [O, gc*P]
                const int64_t L = gc * P;
                float* stage = cols + K * L;
                for (int64_t j = 0; j < gc; ++j)
                  for (int64_t o = 0; o < O; ++o)
                    std::copy(pg + ((n0 + j) * O + o) * P, pg + ((n0 + j) * O + o + 1) * P, stage + o * L + j * P);
                block(n0, gc, stage);
              }
            }
          }
          if (dw_part.defined()) {
            const float* part = dw_part.data();
#pragma omp parallel for schedule(static) if (parallel: O * K * T > kParallelMin)
            for (int64_t i = 0; i < O * K; ++i) {
              float s = gw[i];
              for (int t = 0; t < T; ++t) s += part[(int64_t)t * O * K + i];
              gw[i] = s;
            }
          }
        }
      }
      if (b.defined() && b.requires_grad()) {
        // db[o] += sum over n, p of g[n, o, p]
        float* gb = b.grad_data();
#pragma omp parallel for schedule(static) if (parallel: N * O * P > kParallelMin)
        for (int64_t o = 0; o < O; ++o) {
          double s = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const float* r = pg + (n * O + o) * P;
            float acc = 0.f;
#pragma omp simd reduction(+ : acc)
            for (int64_t p = 0; p < P; ++p) acc += r[p];
            s += acc;
          }
          gb[o] += (float)s;
        }
      }
    });
  }
  return y;
}

// ---- im2col --------------------------------------------------------------------------
// x [N, C, H, W] -> rows [N*OH*OW, C*KH*KW], padded taps = pad_value
// backward: dx += col2im(drows)  (overlapping taps sum; padded taps dropped)
Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, int64_t stride, int64_t pad, float pad_value) {
  const PatchGeom g = checked_geom("im2col", x, kh, kw, stride, pad);
  const int64_t N = x.dim(0);
  Tensor rows = Tensor::empty({N * g.pixels(), g.taps()});
  kernels::im2col_rows_batch(x.data(), N, g, pad_value, rows.data());
  if (needs_grad(x)) {
    record(rows, "im2col", {x}, [x, g, N](const Tensor& gr) {
      kernels::col2im_rows_add_batch(gr.data(), N, g, x.grad_data());
    });
  }
  return rows;
}

// ---- rows_to_nchw ----------------------------------------------------------------------
// rows [N*OH*OW, O] (row n*P + p) -> y [N, O, OH, OW]: per image a [P, O] -> [O, P] transpose.
// backward: drows += the transpose back.
Tensor rows_to_nchw(const Tensor& rows, int64_t n, int64_t oh, int64_t ow) {
  QNN_CHECK(rows.defined(), "rows_to_nchw: input tensor is undefined");
  QNN_CHECK(n >= 0 && oh >= 0 && ow >= 0, "rows_to_nchw: negative size n=" + i2s(n) + " oh=" + i2s(oh) +
                                              " ow=" + i2s(ow));
  QNN_CHECK(rows.ndim() == 2 && rows.dim(0) == n * oh * ow,
            "rows_to_nchw: rows is " + shape_str(rows.shape()) + ", expected [" + i2s(n * oh * ow) +
                ", O] for n=" + i2s(n) + " oh=" + i2s(oh) + " ow=" + i2s(ow));
  const int64_t O = rows.dim(1), P = oh * ow;
  Tensor y = Tensor::empty({n, O, oh, ow});
  transpose_batch<false>(rows.data(), n, P, O, y.data());
  if (needs_grad(rows)) {
    record(y, "rows_to_nchw", {rows}, [rows, n, P, O](const Tensor& g) {
      transpose_batch<true>(g.data(), n, O, P, rows.grad_data());
    });
  }
  return y;
}

// ---- pooling ------------------------------------------------------------------------------
namespace {
PatchGeom checked_pool(const char* op, const Tensor& x, int64_t k, int64_t stride) {
  QNN_CHECK(x.defined(), std::string(op) + ": input tensor is undefined");
  QNN_CHECK(x.ndim() == 4, std::string(op) + ": x must be [N, C, H, W], got " + shape_str(x.shape()));
  QNN_CHECK(k >= 1, std::string(op) + ": window must be >= 1, got " + i2s(k));
  QNN_CHECK(stride >= 1, std::string(op) + ": stride must be >= 1, got " + i2s(stride));
  QNN_CHECK(x.dim(2) >= k && x.dim(3) >= k, std::string(op) + ": window " + i2s(k) + "x" + i2s(k) +
                                                " is larger than the image " + shape_str(x.shape()));
  QNN_CHECK(x.dim(2) * x.dim(3) <= INT32_MAX, std::string(op) + ": image plane too large " + shape_str(x.shape()));
  return kernels::make_patch_geom(x.dim(1), x.dim(2), x.dim(3), k, k, stride, 0);
}
}  // namespace

// x [N, C, H, W] -> [N, C, OH, OW], OH = (H - k) / stride + 1
// backward: dx[argmax of window] += dy
Tensor max_pool2d(const Tensor& x, int64_t k, int64_t stride) {
  const PatchGeom g = checked_pool("max_pool2d", x, k, stride);
  const int64_t planes = x.dim(0) * g.C;
  Tensor y = Tensor::empty({x.dim(0), g.C, g.OH, g.OW});
  auto arg = std::make_shared<std::vector<int32_t>>((size_t)(planes * g.pixels()));
  kernels::max_pool_forward(x.data(), planes, g.H, g.W, k, stride, y.data(), arg->data());
  if (needs_grad(x)) {
    record(y, "max_pool2d", {x}, [x, arg, g, planes](const Tensor& gy) {
      kernels::max_pool_backward_add(gy.data(), arg->data(), planes, g.H, g.W, g.OH, g.OW, x.grad_data());
    });
  }
  return y;
}

// x [N, C, H, W] -> [N, C, OH, OW], mean over each window
// backward: dx[window] += dy / k^2
Tensor avg_pool2d(const Tensor& x, int64_t k, int64_t stride) {
  const PatchGeom g = checked_pool("avg_pool2d", x, k, stride);
  const int64_t planes = x.dim(0) * g.C;
  Tensor y = Tensor::empty({x.dim(0), g.C, g.OH, g.OW});
  kernels::avg_pool_forward(x.data(), planes, g.H, g.W, k, stride, y.data());
  if (needs_grad(x)) {
    record(y, "avg_pool2d", {x}, [x, g, planes, k, stride](const Tensor& gy) {
      kernels::avg_pool_backward_add(gy.data(), planes, g.H, g.W, k, stride, x.grad_data());
    });
  }
  return y;
}

// ---- flatten ------------------------------------------------------------------------------
// [N, d1, d2, ...] -> [N, d1*d2*...], same storage; the reshape records the node.
Tensor flatten(const Tensor& x) {
  QNN_CHECK(x.defined(), "flatten: input tensor is undefined");
  QNN_CHECK(x.ndim() >= 2, "flatten: x must be [N, ...] with at least 2 dims, got " + shape_str(x.shape()));
  int64_t rest = 1;
  for (int64_t i = 1; i < x.ndim(); ++i) rest *= x.dim(i);
  return x.reshape({x.dim(0), rest});
}

}  // namespace qnn
