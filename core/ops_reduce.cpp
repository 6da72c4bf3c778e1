// core/ops_reduce.cpp — reductions (sum, mean) and shape ops (transpose,
// concat, slice).
//
// A reduction along `dim` views x as [outer, D, inner]:
//   outer = product of the dims before `dim`, D = x.shape[dim],
//   inner = product of the dims after it.
// Then out[o, i] = sum_d x[o, d, i]. Looping o -> d -> i keeps the innermost
// loop contiguous in memory (the compiler vectorizes it), whatever `dim` is.
// The backward is the same picture reversed: every x[o, d, i] receives
// g[o, i] (times 1/D for mean).
//
// concat and slice use the same [outer, D, inner] view: a slab of D*inner
// contiguous floats per `o`, so both are a sequence of memcpy-like row copies.
#include <algorithm>
#include <cstring>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"

namespace qnn {

namespace {

// Below this many elements an OpenMP region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

// Negative dims count from the end, as in Python: -1 is the last dim.
int64_t norm_dim(const char* op, int64_t dim, int64_t ndim) {
  const int64_t d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    fail(std::string(op) + ": dim " + std::to_string(dim) + " is out of range for a " +
         std::to_string(ndim) + "-D tensor");
  return d;
}

struct Split3 {
  int64_t outer = 1, D = 1, inner = 1;
};

Split3 split_at(const Shape& s, int64_t d) {
  Split3 r;
  for (int64_t k = 0; k < d; ++k) r.outer *= s[k];
  r.D = s[d];
  for (int64_t k = d + 1; k < (int64_t)s.size(); ++k) r.inner *= s[k];
  return r;
}

void check_defined(const char* op, const Tensor& x) {
  if (!x.defined()) fail(std::string(op) + ": input tensor is undefined");
}

// ---- full reduction --------------------------------------------------------
// x [any] -> {} (a scalar) holding scale * sum(x). Accumulates in double.
Tensor reduce_all(const Tensor& x, float scale, const char* name) {
  check_defined(name, x);
  const int64_t n = x.numel();
  const float* px = x.data();
  double s = 0.0;
#pragma omp parallel for simd reduction(+ : s) if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) s += px[i];
  Tensor out = Tensor::empty({});
  out.data()[0] = (float)(s * scale);

  if (needs_grad(x)) {
    record(out, name, {x}, [x, scale, n](const Tensor& gout) {
      // dL/dx[i] = scale * dL/dout  (every element contributes equally)
      const float g = gout.data()[0] * scale;
      float* gx = x.grad_data();
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) gx[i] += g;
    });
  }
  return out;
}

// ---- reduction along one dim --------------------------------------------------
// x [..., D, ...] -> out [...] (or [..., 1, ...] with keepdim) = scale * sum over D.
Tensor reduce_dim(const Tensor& x, int64_t dim, bool keepdim, bool is_mean, const char* name) {
  check_defined(name, x);
  const Shape& xs = x.shape();
  const int64_t d = norm_dim(name, dim, (int64_t)xs.size());
  const Split3 v = split_at(xs, d);
  const float scale = is_mean ? (v.D > 0 ? 1.0f / (float)v.D : 0.0f) : 1.0f;

  Shape os;
  for (int64_t k = 0; k < (int64_t)xs.size(); ++k) {
    if (k != d) os.push_back(xs[k]);
    else if (keepdim) os.push_back(1);
  }
  Tensor out = Tensor::zeros(os);  // [outer, inner] in memory
  const float* px = x.data();
  float* po = out.data();
  const int64_t outer = v.outer, D = v.D, inner = v.inner;

  if (inner == 1) {
    // Reducing the last (contiguous) dim: one dot-like sum per row.
#pragma omp parallel for if (outer * D > kParallelMin)
    for (int64_t o = 0; o < outer; ++o) {
      const float* row = px + o * D;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < D; ++j) s += row[j];
      po[o] = s * scale;
    }
  } else {
    // out[o, i0:i1] += x[o, j, i0:i1] for every j; inner loop contiguous.
    // Work items are (o, chunk of i), so reducing dim 0 (outer == 1) still
    // splits across threads.
    constexpr int64_t kChunk = 512;
    const int64_t nchunk = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for if (outer * D * inner > kParallelMin)
    for (int64_t w = 0; w < outer * nchunk; ++w) {
      const int64_t o = w / nchunk, i0 = (w % nchunk) * kChunk, i1 = std::min(i0 + kChunk, inner);
      float* dst = po + o * inner;
      for (int64_t j = 0; j < D; ++j) {
        const float* src = px + (o * D + j) * inner;
        for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
      }
      for (int64_t i = i0; i < i1; ++i) dst[i] *= scale;
    }
  }

  if (needs_grad(x)) {
    record(out, name, {x}, [x, outer, D, inner, scale](const Tensor& gout) {
      // gout [outer, inner] (memory view); dL/dx[o, j, i] = scale * gout[o, i]
      const float* g = gout.data();
      float* gx = x.grad_data();
      if (inner == 1) {  // reduced the last dim: row o of x gets g[o]
#pragma omp parallel for if (outer * D > kParallelMin)
        for (int64_t o = 0; o < outer; ++o) {
          const float go = scale * g[o];
          float* dst = gx + o * D;
          for (int64_t j = 0; j < D; ++j) dst[j] += go;
        }
        return;
      }
#pragma omp parallel for if (outer * D * inner > kParallelMin)
      for (int64_t oj = 0; oj < outer * D; ++oj) {  // one (o, j) row of x per item
        float* dst = gx + oj * inner;
        const float* src = g + (oj / D) * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] += scale * src[i];
      }
    });
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_all(x, 1.0f, "sum"); }

Tensor mean(const Tensor& x) {
  check_defined("mean", x);
  QNN_CHECK(x.numel() > 0, "mean: tensor " + shape_str(x.shape()) + " is empty");
  return reduce_all(x, 1.0f / (float)x.numel(), "mean");
}

Tensor sum(const Tensor& x, int64_t dim, bool keepdim) { return reduce_dim(x, dim, keepdim, false, "sum"); }

Tensor mean(const Tensor& x, int64_t dim, bool keepdim) { return reduce_dim(x, dim, keepdim, true, "mean"); }

// ---- transpose ------------------------------------------------------------------
// x [M, N] -> out [N, M], out[j, i] = x[i, j]. Copied in 32x32 tiles so both
// the reads and the writes stay within a few cache lines.
namespace {
void transpose_copy(const float* src, float* dst, int64_t M, int64_t N, bool accumulate) {
  constexpr int64_t T = 32;
#pragma omp parallel for if (M * N > kParallelMin)
  for (int64_t i0 = 0; i0 < M; i0 += T) {
    const int64_t i1 = std::min(i0 + T, M);
    for (int64_t j0 = 0; j0 < N; j0 += T) {
      const int64_t j1 = std::min(j0 + T, N);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) {
          if (accumulate) dst[j * M + i] += src[i * N + j];
          else dst[j * M + i] = src[i * N + j];
        }
    }
  }
}
}  // namespace

Tensor transpose(const Tensor& x) {
  check_defined("transpose", x);
  QNN_CHECK(x.ndim() == 2, "transpose: needs a 2-D tensor, got " + shape_str(x.shape()));
  const int64_t M = x.dim(0), N = x.dim(1);
  Tensor out = Tensor::empty({N, M});
  transpose_copy(x.data(), out.data(), M, N, false);
  if (needs_grad(x)) {
    record(out, "transpose", {x}, [x, M, N](const Tensor& gout) {
      // gout [N, M] -> dL/dx [M, N] is its transpose
      transpose_copy(gout.data(), x.grad_data(), N, M, true);
    });
  }
  return out;
}

// ---- concat -----------------------------------------------------------------------
// xs[k] [..., D_k, ...] -> out [..., sum_k D_k, ...]; all other dims equal.
// In the [outer, D, inner] view, out's row o is the concatenation of the
// xs[k] rows o, each D_k*inner floats long.
Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  QNN_CHECK(!xs.empty(), "concat: needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k)
    QNN_CHECK(xs[k].defined(), "concat: tensor " + std::to_string(k) + " is undefined");
  const Shape& s0 = xs[0].shape();
  const int64_t nd = (int64_t)s0.size();
  QNN_CHECK(nd > 0, "concat: cannot concatenate scalars (shape [])");
  const int64_t d = norm_dim("concat", dim, nd);
  Shape os = s0;
  os[d] = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    const Shape& sk = xs[k].shape();
    bool ok = (int64_t)sk.size() == nd;
    for (int64_t j = 0; ok && j < nd; ++j)
      if (j != d && sk[j] != s0[j]) ok = false;
    if (!ok)
      fail("concat: tensor " + std::to_string(k) + " is " + shape_str(sk) + " but tensor 0 is " +
           shape_str(s0) + " (only dim " + std::to_string(d) + " may differ)");
    os[d] += sk[d];
  }
  const Split3 v = split_at(os, d);
  const int64_t outer = v.outer, inner = v.inner, Dout = v.D;
  // offsets[k] = first position of xs[k] along dim d in the output
  std::vector<int64_t> offsets(xs.size());
  for (size_t k = 0, off = 0; k < xs.size(); ++k) {
    offsets[k] = (int64_t)off;
    off += xs[k].shape()[d];
  }

  Tensor out = Tensor::empty(os);
  float* po = out.data();
  for (size_t k = 0; k < xs.size(); ++k) {
    const int64_t row = xs[k].shape()[d] * inner;  // floats per outer index
    const float* src = xs[k].data();
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(po + o * Dout * inner + offsets[k] * inner, src + o * row, sizeof(float) * row);
  }

  bool any = false;
  if (grad_enabled())
    for (const Tensor& t : xs) any = any || t.requires_grad();
  if (any) {
    record(out, "concat", xs, [xs, offsets, outer, inner, Dout, d](const Tensor& gout) {
      // dL/dxs[k] = the slab of gout that xs[k] was copied into
      const float* g = gout.data();
      for (size_t k = 0; k < xs.size(); ++k) {
        if (!xs[k].requires_grad()) continue;
        const int64_t row = xs[k].shape()[d] * inner;
        float* gx = xs[k].grad_data();
        for (int64_t o = 0; o < outer; ++o) {
          const float* src = g + o * Dout * inner + offsets[k] * inner;
          float* dst = gx + o * row;
          for (int64_t i = 0; i < row; ++i) dst[i] += src[i];
        }
      }
    });
  }
  return out;
}

// ---- slice -------------------------------------------------------------------------
// x [..., D, ...] -> out [..., end-start, ...] holding positions [start, end)
// along dim. Negative start/end count from the end (Python style).
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  check_defined("slice", x);
  const Shape& xs = x.shape();
  QNN_CHECK(!xs.empty(), "slice: cannot slice a scalar (shape [])");
  const int64_t d = norm_dim("slice", dim, (int64_t)xs.size());
  const int64_t D = xs[d];
  const int64_t b = start < 0 ? start + D : start;
  const int64_t e = end < 0 ? end + D : end;
  if (b < 0 || e > D || b > e)
    fail("slice: range [" + std::to_string(start) + ", " + std::to_string(end) + ") is invalid for dim " +
         std::to_string(d) + " of size " + std::to_string(D) + " in " + shape_str(xs));
  Shape os = xs;
  os[d] = e - b;
  const Split3 v = split_at(xs, d);
  const int64_t outer = v.outer, inner = v.inner;
  const int64_t row_out = (e - b) * inner;  // floats per outer index in out

  Tensor out = Tensor::empty(os);
  const float* px = x.data();
  float* po = out.data();
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(po + o * row_out, px + (o * D + b) * inner, sizeof(float) * row_out);

  if (needs_grad(x)) {
    record(out, "slice", {x}, [x, outer, inner, D, b, row_out](const Tensor& gout) {
      // dL/dx is gout scattered back into positions [b, e); zero elsewhere
      const float* g = gout.data();
      float* gx = x.grad_data();
      for (int64_t o = 0; o < outer; ++o) {
        float* dst = gx + (o * D + b) * inner;
        const float* src = g + o * row_out;
        for (int64_t i = 0; i < row_out; ++i) dst[i] += src[i];
      }
    });
  }
  return out;
}

}  // namespace qnn
