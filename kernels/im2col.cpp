// kernels/im2col.cpp — im2col / col2im and pooling loops (see im2col.h for the
// geometry and the index formulas).
//
// Speed notes. im2col is a copy, so it is memory-bound; the loops keep the
// writes contiguous and hoist the bounds tests out of the inner loop: for a
// fixed kernel column kx the output columns ox whose tap falls inside the
// image form one interval [lo, hi) (computed once), so the inner loop is a
// branch-free, vectorised copy with pad fills on either side.
//
// Everything is built from one piece: output row oy of the tap-major patch
// matrix (cols_line) and its adjoint (cols_line_add). The pixel-major rows
// layout goes through a small tap-major tile per output row ([CKK, OW], in
// cache) and a transpose: copying taps straight into rows is a 3-float run
// per (pixel, channel, ky), and the adjoint walking rows per input channel
// strides through the whole matrix; both measured 4-10x slower than the tile.
#include "kernels/im2col.h"

#include <algorithm>
#include <vector>

namespace qnn::kernels {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // values moved; below this one thread is faster

// floor / ceil of a / b for b > 0 and any sign of a
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// The output positions o in [0, n_out) whose tap i = o*s - pad + k lies in
// [0, n_in): o in [lo, hi). (Empty, lo >= hi, if the tap never lands inside.)
inline void valid_range(int64_t n_in, int64_t n_out, int64_t k, int64_t s, int64_t pad, int64_t& lo,
                        int64_t& hi) {
  lo = std::max<int64_t>(0, ceil_div(pad - k, s));
  hi = std::min<int64_t>(n_out, floor_div(n_in - 1 + pad - k, s) + 1);
  if (hi < lo) hi = lo;
}

// valid_range for every kernel column kx < KW, computed once per call (two
// divisions per kx, not per tap).
struct ColRanges {
  std::vector<int64_t> lo, hi;
  explicit ColRanges(const PatchGeom& g) : lo((size_t)g.KW), hi((size_t)g.KW) {
    for (int64_t kx = 0; kx < g.KW; ++kx) valid_range(g.W, g.OW, kx, g.stride, g.pad, lo[kx], hi[kx]);
  }
};

inline void fill(float* d, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) d[i] = v;
}

// One run of the tap-major patch matrix: tap (c, ky, kx) for the OW pixels of
// output row oy, which read input row iy = oy*s - pad + ky of plane c.
// dst[ox] = plane[iy*W - pad + kx + ox*s], or pad_value outside the image.
inline void copy_run(const float* plane, const PatchGeom& g, const ColRanges& xr, int64_t iy, int64_t kx,
                     float pad_value, float* dst) {
  const int64_t OW = g.OW, s = g.stride;
  if (iy < 0 || iy >= g.H) {
    fill(dst, OW, pad_value);
    return;
  }
  const int64_t lo = xr.lo[kx], hi = xr.hi[kx];
  const int64_t base = iy * g.W - g.pad + kx;  // may be negative; base + lo*s is not
  fill(dst, lo, pad_value);
  if (s == 1) {  // a contiguous run: a plain loop (vectorised) beats a memcpy call on ~32 floats
    const float* __restrict src = plane + base + lo;
    float* __restrict d = dst + lo;
    for (int64_t i = 0; i < hi - lo; ++i) d[i] = src[i];
  } else {
    for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = plane[base + ox * s];
  }
  fill(dst + hi, OW - hi, pad_value);
}

// Adjoint of copy_run: plane += the run (padded taps dropped: constants, not pixels).
inline void add_run(const float* src, const PatchGeom& g, const ColRanges& xr, int64_t iy, int64_t kx, float* plane) {
  if (iy < 0 || iy >= g.H) return;
  const int64_t lo = xr.lo[kx], hi = xr.hi[kx], s = g.stride;
  const int64_t base = iy * g.W - g.pad + kx;
  if (s == 1) {  // contiguous: vectorised
    float* __restrict d = plane + base + lo;
    const float* __restrict r = src + lo;
    for (int64_t i = 0; i < hi - lo; ++i) d[i] += r[i];
  } else {
    for (int64_t ox = lo; ox < hi; ++ox) plane[base + ox * s] += src[ox];
  }
}

// A per-thread tile for the rows layout: [taps, OW] floats.
float* line_tile(int64_t n) {
  thread_local std::vector<float> tile;
  if ((int64_t)tile.size() < n) tile.resize((size_t)n);
  return tile.data();
}

// rows for output row oy of one image: rows[(oy*OW + ox)*CKK + t], all ox
// (a tap-major tile, transposed).
void im2col_rows_line(const float* img, const PatchGeom& g, const ColRanges& xr, float pad_value, int64_t oy,
                      float* rows) {
  const int64_t CKK = g.taps(), OW = g.OW, HW = g.H * g.W;
  float* tile = line_tile(CKK * OW);
  float* t = tile;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t ky = 0; ky < g.KH; ++ky)
      for (int64_t kx = 0; kx < g.KW; ++kx, t += OW)
        copy_run(img + c * HW, g, xr, oy * g.stride - g.pad + ky, kx, pad_value, t);
  float* out = rows + oy * OW * CKK;
  for (int64_t ox = 0; ox < OW; ++ox)
    for (int64_t i = 0; i < CKK; ++i) out[ox * CKK + i] = tile[i * OW + ox];
}

// Adjoint of im2col_rows for input channels [c0, c1) of one image: planes +=
// the taps (c, ky, kx) of every row. Channel ranges are disjoint, so they can
// run in parallel without two threads adding into the same pixel.
void col2im_rows_channels(const float* rows, const PatchGeom& g, int64_t c0, int64_t c1, float* img) {
  const int64_t CKK = g.taps(), KK = g.KH * g.KW, OW = g.OW, T = (c1 - c0) * KK, HW = g.H * g.W;
  float* tile = line_tile(T * OW);
  const ColRanges xr(g);
  for (int64_t oy = 0; oy < g.OH; ++oy) {
    const float* in = rows + oy * OW * CKK + c0 * KK;
    for (int64_t ox = 0; ox < OW; ++ox)
      for (int64_t i = 0; i < T; ++i) tile[i * OW + ox] = in[ox * CKK + i];
    const float* t = tile;
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t ky = 0; ky < g.KH; ++ky)
        for (int64_t kx = 0; kx < g.KW; ++kx, t += OW) add_run(t, g, xr, oy * g.stride - g.pad + ky, kx, img + c * HW);
  }
}

}  // namespace

PatchGeom make_patch_geom(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t stride, int64_t pad) {
  PatchGeom g;
  g.C = C;
  g.H = H;
  g.W = W;
  g.KH = KH;
  g.KW = KW;
  g.stride = stride;
  g.pad = pad;
  g.OH = conv_out_size(H, KH, stride, pad);
  g.OW = conv_out_size(W, KW, stride, pad);
  return g;
}

// ---- one image ------------------------------------------------------------------------

void im2col_rows(const float* img, const PatchGeom& g, float pad_value, float* rows) {
  const ColRanges xr(g);
  for (int64_t oy = 0; oy < g.OH; ++oy) im2col_rows_line(img, g, xr, pad_value, oy, rows);
}

void col2im_rows_add(const float* rows, const PatchGeom& g, float* img) {
  col2im_rows_channels(rows, g, 0, g.C, img);
}

// cols[t*ld + oy*OW + ox] for t = (c, ky, kx). Tap-major loop order: each
// tap's row of the matrix is written start to end (an output-row-major order
// writes CKK rows ld floats apart at once, and measured 1.5x slower).
void im2col_cols(const float* img, const PatchGeom& g, float pad_value, float* cols, int64_t ld) {
  const ColRanges xr(g);
  const int64_t HW = g.H * g.W;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t ky = 0; ky < g.KH; ++ky)
      for (int64_t kx = 0; kx < g.KW; ++kx) {
        float* dst = cols + ((c * g.KH + ky) * g.KW + kx) * ld;
        for (int64_t oy = 0; oy < g.OH; ++oy)
          copy_run(img + c * HW, g, xr, oy * g.stride - g.pad + ky, kx, pad_value, dst + oy * g.OW);
      }
}

void col2im_cols_add(const float* cols, const PatchGeom& g, float* img, int64_t ld) {
  const ColRanges xr(g);
  const int64_t HW = g.H * g.W;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t ky = 0; ky < g.KH; ++ky)
      for (int64_t kx = 0; kx < g.KW; ++kx) {
        const float* src = cols + ((c * g.KH + ky) * g.KW + kx) * ld;
        for (int64_t oy = 0; oy < g.OH; ++oy)
          add_run(src + oy * g.OW, g, xr, oy * g.stride - g.pad + ky, kx, img + c * HW);
      }
}

// ---- a batch ------------------------------------------------------------------------------

// Work items are (image, output row) so a batch of 1 still spreads over threads.
void im2col_rows_batch(const float* x, int64_t N, const PatchGeom& g, float pad_value, float* rows) {
  const int64_t items = N * g.OH, img = g.image_size(), per_img = g.pixels() * g.taps();
  const ColRanges xr(g);
#pragma omp parallel for schedule(static) if (parallel: N * per_img > kParallelMin)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / g.OH, oy = it % g.OH;
    im2col_rows_line(x + n * img, g, xr, pad_value, oy, rows + n * per_img);
  }
}

// Work items are (image, channel block): each writes only its own input planes.
// Blocks of several channels keep the transposed tile runs long; there are at
// least 8 items per image so a batch of 1 still spreads over threads.
void col2im_rows_add_batch(const float* rows, int64_t N, const PatchGeom& g, float* x) {
  const int64_t per_img = g.pixels() * g.taps(), img = g.image_size();
  const int64_t cb = std::max<int64_t>(1, std::min<int64_t>(16, g.C / 8));
  const int64_t nblk = (g.C + cb - 1) / cb;
#pragma omp parallel for schedule(static) if (parallel: N * per_img > kParallelMin)
  for (int64_t it = 0; it < N * nblk; ++it) {
    const int64_t n = it / nblk, c0 = (it % nblk) * cb;
    col2im_rows_channels(rows + n * per_img, g, c0, std::min(g.C, c0 + cb), x + n * img);
  }
}

// ---- pooling --------------------------------------------------------------------------------

namespace {

// The 2x2, stride-2 pool of every CNN here (BinaryNet, CNV, the shortcuts),
// without branches: the generic loop's "if (tap > m)" is a coin toss on real
// activations, and its mispredictions made it 5.7-7.5x slower than this (one
// thread, the three pools of BinaryNet at batch 50; docs/results-log.md,
// session 17). The selects keep the generic rule exactly:
// strict ">" in the window order (0,0), (0,1), (1,0), (1,1), so ties and NaNs
// resolve to the same tap, bit for bit (tests/test_ops_conv.cpp).
void max_pool_2x2(const float* x, int64_t planes, int64_t H, int64_t W, float* out, int32_t* arg) {
  const int64_t OH = (H - 2) / 2 + 1, OW = (W - 2) / 2 + 1;
#pragma omp parallel for schedule(static) if (parallel: planes * H * W > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    for (int64_t oy = 0; oy < OH; ++oy) {
      const float* r0 = xp + 2 * oy * W;
      const float* r1 = r0 + W;
      float* op = out + (p * OH + oy) * OW;
      int32_t* ap = arg + (p * OH + oy) * OW;
      const int32_t base = (int32_t)(2 * oy * W);
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int32_t i0 = base + (int32_t)(2 * ox);
        float m = r0[2 * ox];
        int32_t best = i0;
        const float b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
        bool t = b > m;
        m = t ? b : m, best = t ? i0 + 1 : best;
        t = c > m;
        m = t ? c : m, best = t ? i0 + (int32_t)W : best;
        t = d > m;
        m = t ? d : m, best = t ? i0 + (int32_t)W + 1 : best;
        op[ox] = m;
        ap[ox] = best;
      }
    }
  }
}

}  // namespace

void max_pool_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s, float* out,
                      int32_t* arg) {
  if (k == 2 && s == 2) return max_pool_2x2(x, planes, H, W, out, arg);
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
#pragma omp parallel for schedule(static) if (parallel: planes * H * W > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    float* op = out + p * OH * OW;
    int32_t* ap = arg + p * OH * OW;
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        // Strict ">" keeps the first maximum in row-major window order. A NaN
        // never wins a ">" test, so a window of NaNs keeps its first tap.
        int64_t best = (oy * s) * W + ox * s;
        float m = xp[best];
        for (int64_t ky = 0; ky < k; ++ky) {
          const int64_t row = (oy * s + ky) * W + ox * s;
          for (int64_t kx = 0; kx < k; ++kx) {
            if (xp[row + kx] > m) {
              m = xp[row + kx];
              best = row + kx;
            }
          }
        }
        op[oy * OW + ox] = m;
        ap[oy * OW + ox] = (int32_t)best;
      }
    }
  }
}

void max_pool_backward_add(const float* dy, const int32_t* arg, int64_t planes, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, float* dx) {
#pragma omp parallel for schedule(static) if (parallel: planes * H * W > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* g = dy + p * OH * OW;
    const int32_t* a = arg + p * OH * OW;
    float* d = dx + p * H * W;
    for (int64_t i = 0; i < OH * OW; ++i) d[a[i]] += g[i];
  }
}

void avg_pool_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s, float* out) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static) if (parallel: planes * H * W > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    float* op = out + p * OH * OW;
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        float acc = 0.f;
        for (int64_t ky = 0; ky < k; ++ky) {
          const float* r = xp + (oy * s + ky) * W + ox * s;
          for (int64_t kx = 0; kx < k; ++kx) acc += r[kx];
        }
        op[oy * OW + ox] = acc * inv;
      }
    }
  }
}

void avg_pool_backward_add(const float* dy, int64_t planes, int64_t H, int64_t W, int64_t k, int64_t s,
                           float* dx) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static) if (parallel: planes * H * W > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* g = dy + p * OH * OW;
    float* d = dx + p * H * W;
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        const float v = g[oy * OW + ox] * inv;
        for (int64_t ky = 0; ky < k; ++ky) {
          float* r = d + (oy * s + ky) * W + ox * s;
          for (int64_t kx = 0; kx < k; ++kx) r[kx] += v;
        }
      }
    }
  }
}

}  // namespace qnn::kernels
