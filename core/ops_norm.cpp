// core/ops_norm.cpp — dropout and batch normalisation.
//
// Batch norm, the picture. x is [N, C] or [N, C, H, W]; channel c owns
// m = N*H*W values. In training:
//   mu_c    = mean of channel c                     (batch statistics)
//   var_c   = mean of (x - mu_c)^2                  (biased: divides by m)
//   xhat    = (x - mu_c) / sqrt(var_c + eps)
//   y       = gamma_c * xhat + beta_c
// and the running statistics move towards the batch ones (PyTorch):
//   running_mean = (1 - momentum) * running_mean + momentum * mu
//   running_var  = (1 - momentum) * running_var  + momentum * var * m/(m-1)
// In evaluation mu/var are the running statistics (constants), so y is just
// a per-channel affine map of x.
//
// Memory layout: the [N, C, H, W] index of (n, c, i) with i over H*W is
// (n*C + c)*HW + i. For [N, C] (HW = 1) a channel is a strided column, so the
// kernels walk rows and update a block of per-channel accumulators with a
// contiguous inner loop over channels (vectorizable). For HW > 1 each
// (n, c) plane is contiguous and the kernels loop over channels.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"

namespace qnn {

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // below this, one thread is faster
constexpr int64_t kBlock = 64;             // channels per block in the [N, C] kernels

struct BNDims {
  int64_t N, C, HW, m;  // m = N*HW values per channel
};

// The four kernels below each come in the two layouts. They are plain loops
// on purpose: no std::function per element, contiguous inner loops.

// mean[c] and biased var[c] of x (two passes, double accumulators).
void channel_mean_var(const float* x, const BNDims& d, float* mean, float* var) {
  const int64_t N = d.N, C = d.C, HW = d.HW;
  const double inv_m = 1.0 / (double)d.m;
  if (HW == 1) {
    const int64_t nblk = (C + kBlock - 1) / kBlock;
#pragma omp parallel for if (N * C > kParallelMin)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t c0 = blk * kBlock, w = std::min(kBlock, C - c0);
      double acc[kBlock];
      float mu[kBlock];
      for (int64_t j = 0; j < w; ++j) acc[j] = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* r = x + n * C + c0;
        for (int64_t j = 0; j < w; ++j) acc[j] += r[j];
      }
      for (int64_t j = 0; j < w; ++j) {
        mu[j] = (float)(acc[j] * inv_m);
        acc[j] = 0.0;
      }
      for (int64_t n = 0; n < N; ++n) {
        const float* r = x + n * C + c0;
        for (int64_t j = 0; j < w; ++j) {
          const float dv = r[j] - mu[j];
          acc[j] += dv * dv;
        }
      }
      for (int64_t j = 0; j < w; ++j) {
        mean[c0 + j] = mu[j];
        var[c0 + j] = (float)(acc[j] * inv_m);
      }
    }
  } else {
#pragma omp parallel for if (N * C * HW > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* p = x + (n * C + c) * HW;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < HW; ++i) s += p[i];
      }
      const float mu = (float)(s * inv_m);
      double q = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* p = x + (n * C + c) * HW;
#pragma omp simd reduction(+ : q)
        for (int64_t i = 0; i < HW; ++i) {
          const float dv = p[i] - mu;
          q += dv * dv;
        }
      }
      mean[c] = mu;
      var[c] = (float)(q * inv_m);
    }
  }
}

// y = x * scale[c] + shift[c]  (the whole forward, once the stats are known)
void channel_affine(const float* x, float* y, const BNDims& d, const float* scale, const float* shift) {
  const int64_t N = d.N, C = d.C, HW = d.HW;
  if (HW == 1) {
#pragma omp parallel for if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      const float* r = x + n * C;
      float* o = y + n * C;
      for (int64_t c = 0; c < C; ++c) o[c] = batch_norm_apply(r[c], scale[c], shift[c]);
    }
  } else {
#pragma omp parallel for if (N * C * HW > kParallelMin)
    for (int64_t nc = 0; nc < N * C; ++nc) {
      const int64_t c = nc % C;
      const float s = scale[c], t = shift[c];
      const float* r = x + nc * HW;
      float* o = y + nc * HW;
      for (int64_t i = 0; i < HW; ++i) o[i] = batch_norm_apply(r[i], s, t);
    }
  }
}

// Backward sums per channel:
//   sdy[c]  = sum dy
//   sdyx[c] = sum dy * xhat,   xhat = (x - mu[c]) * istd[c]
void channel_grad_sums(const float* x, const float* dy, const BNDims& d, const float* mu, const float* istd,
                       float* sdy, float* sdyx) {
  const int64_t N = d.N, C = d.C, HW = d.HW;
  if (HW == 1) {
    const int64_t nblk = (C + kBlock - 1) / kBlock;
#pragma omp parallel for if (N * C > kParallelMin)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t c0 = blk * kBlock, w = std::min(kBlock, C - c0);
      double a1[kBlock], a2[kBlock];
      for (int64_t j = 0; j < w; ++j) a1[j] = a2[j] = 0.0;
      const float* m0 = mu + c0;
      for (int64_t n = 0; n < N; ++n) {
        const float* r = x + n * C + c0;
        const float* g = dy + n * C + c0;
        for (int64_t j = 0; j < w; ++j) {
          a1[j] += g[j];
          a2[j] += g[j] * (r[j] - m0[j]);
        }
      }
      for (int64_t j = 0; j < w; ++j) {
        sdy[c0 + j] = (float)a1[j];
        sdyx[c0 + j] = (float)a2[j] * istd[c0 + j];
      }
    }
  } else {
#pragma omp parallel for if (N * C * HW > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
      const float m0 = mu[c];
      double s1 = 0.0, s2 = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* r = x + (n * C + c) * HW;
        const float* g = dy + (n * C + c) * HW;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < HW; ++i) {
          s1 += g[i];
          s2 += g[i] * (r[i] - m0);
        }
      }
      sdy[c] = (float)s1;
      sdyx[c] = (float)s2 * istd[c];
    }
  }
}

// dx += a[c] * dy + b[c] * (x - mu[c]) + k[c]   (per channel affine in dy and x;
// subtracting mu first avoids cancellation when |mu| >> std)
void channel_dx(const float* x, const float* dy, float* dx, const BNDims& d, const float* a, const float* b,
                const float* mu, const float* k) {
  const int64_t N = d.N, C = d.C, HW = d.HW;
  if (HW == 1) {
#pragma omp parallel for if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      const float* r = x + n * C;
      const float* g = dy + n * C;
      float* o = dx + n * C;
      for (int64_t c = 0; c < C; ++c) o[c] += a[c] * g[c] + b[c] * (r[c] - mu[c]) + k[c];
    }
  } else {
#pragma omp parallel for if (N * C * HW > kParallelMin)
    for (int64_t nc = 0; nc < N * C; ++nc) {
      const int64_t c = nc % C;
      const float ac = a[c], bc = b[c], kc = k[c], mc = mu[c];
      const float* r = x + nc * HW;
      const float* g = dy + nc * HW;
      float* o = dx + nc * HW;
      for (int64_t i = 0; i < HW; ++i) o[i] += ac * g[i] + bc * (r[i] - mc) + kc;
    }
  }
}

void check_channel_param(const Tensor& t, const char* what, int64_t C, const Shape& xs) {
  if (!t.defined()) return;
  QNN_CHECK(t.numel() == C && t.ndim() == 1, std::string("batch_norm: ") + what + " is " + shape_str(t.shape()) +
                                                 " but x is " + shape_str(xs) + " (expected [" +
                                                 std::to_string(C) + "], one per channel)");
}

}  // namespace

// ---- dropout -----------------------------------------------------------------------
// x [any] -> y [any], y = x * mask, mask[i] = 0 with probability p, else 1/(1-p)
// (inverted dropout: E[y] = x, so evaluation needs no rescaling).
Tensor dropout(const Tensor& x, float p, bool training, Rng& rng) {
  if (!x.defined()) fail("dropout: input tensor is undefined");
  QNN_CHECK(p >= 0.0f && p < 1.0f, "dropout: p must be in [0, 1), got " + std::to_string(p));
  if (!training || p == 0.0f) return x;  // identity: no copy, no node

  const int64_t n = x.numel();
  const float scale = 1.0f / (1.0f - p);
  // Element i is kept when its uniform draw u_i = stream_u24(key, i) / 2^24
  // is >= p, i.e. when stream_u24 >= ceil(p * 2^24): an integer compare.
  // Counter-based draws make the mask independent of the thread count.
  const uint64_t key = rng.next_u64();
  const uint32_t threshold = (uint32_t)std::ceil((double)p * 16777216.0);
  Tensor mask = Tensor::empty(x.shape());
  Tensor out = Tensor::empty(x.shape());
  float* pm = mask.data();
  const float* px = x.data();
  float* py = out.data();
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    pm[i] = Rng::stream_u24(key, (uint64_t)i) >= threshold ? scale : 0.0f;
    py[i] = px[i] * pm[i];
  }

  if (needs_grad(x)) {
    record(out, "dropout", {x}, [x, mask, n](const Tensor& gout) {
      // dL/dx = dL/dy * mask
      const float* g = gout.data();
      const float* pm = mask.data();
      float* gx = x.grad_data();
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) gx[i] += g[i] * pm[i];
    });
  }
  return out;
}

// ---- batch_norm ----------------------------------------------------------------------
// x [N, C] or [N, C, H, W]; gamma, beta, running_mean, running_var [C].
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                  Tensor& running_var, bool training, float momentum, float eps) {
  if (!x.defined()) fail("batch_norm: input tensor is undefined");
  const Shape& xs = x.shape();
  QNN_CHECK(x.ndim() == 2 || x.ndim() == 4,
            "batch_norm: x must be [N, C] or [N, C, H, W], got " + shape_str(xs));
  BNDims d;
  d.N = xs[0];
  d.C = xs[1];
  d.HW = x.ndim() == 4 ? xs[2] * xs[3] : 1;
  d.m = d.N * d.HW;
  const int64_t C = d.C;
  QNN_CHECK(C > 0 && d.m > 0, "batch_norm: empty input " + shape_str(xs));
  check_channel_param(gamma, "gamma", C, xs);
  check_channel_param(beta, "beta", C, xs);
  check_channel_param(running_mean, "running_mean", C, xs);
  check_channel_param(running_var, "running_var", C, xs);
  QNN_CHECK(eps >= 0.0f, "batch_norm: eps must be >= 0, got " + std::to_string(eps));

  std::vector<float> mu(C), istd(C);  // the statistics used to normalise
  if (training) {
    QNN_CHECK(d.m > 1, "batch_norm: training needs more than one value per channel, but x is " + shape_str(xs) +
                           " (batch of 1 with no spatial dims); use a larger batch or evaluation mode");
    QNN_CHECK(momentum >= 0.0f && momentum <= 1.0f,
              "batch_norm: momentum must be in [0, 1], got " + std::to_string(momentum));
    std::vector<float> var(C);
    channel_mean_var(x.data(), d, mu.data(), var.data());
    for (int64_t c = 0; c < C; ++c) istd[c] = 1.0f / std::sqrt(var[c] + eps);
    // Running statistics: not part of the graph, updated in place.
    const float unbias = (float)d.m / (float)(d.m - 1);
    if (running_mean.defined()) {
      float* rm = running_mean.data();
      for (int64_t c = 0; c < C; ++c) rm[c] = (1.0f - momentum) * rm[c] + momentum * mu[c];
    }
    if (running_var.defined()) {
      float* rv = running_var.data();
      for (int64_t c = 0; c < C; ++c) rv[c] = (1.0f - momentum) * rv[c] + momentum * var[c] * unbias;
    }
  } else {
    QNN_CHECK(running_mean.defined() && running_var.defined(),
              "batch_norm: evaluation mode needs running_mean and running_var");
    const float* rm = running_mean.data();
    const float* rv = running_var.data();
    for (int64_t c = 0; c < C; ++c) {
      mu[c] = rm[c];
      istd[c] = batch_norm_istd(rv[c], eps);
    }
  }

  // y = gamma * (x - mu) * istd + beta = x * scale + shift
  std::vector<float> scale(C), shift(C);
  const float* pg = gamma.defined() ? gamma.data() : nullptr;
  const float* pb = beta.defined() ? beta.data() : nullptr;
  for (int64_t c = 0; c < C; ++c) batch_norm_fold(pg ? pg[c] : 1.0f, pb ? pb[c] : 0.0f, mu[c], istd[c], scale[c], shift[c]);
  Tensor out = Tensor::empty(xs);
  channel_affine(x.data(), out.data(), d, scale.data(), shift.data());

  if (needs_grad(x, gamma, beta)) {
    std::vector<Tensor> inputs{x};
    if (gamma.defined()) inputs.push_back(gamma);
    if (beta.defined()) inputs.push_back(beta);
    record(out, "batch_norm", std::move(inputs),
           [x, gamma, beta, d, training, mu = std::move(mu), istd = std::move(istd)](const Tensor& gout) {
             const int64_t C = d.C;
             const float* dy = gout.data();
             const float* px = x.data();
             // sdy[c] = sum dy, sdyx[c] = sum dy * xhat
             // (not needed when only x wants a gradient in evaluation)
             std::vector<float> sdy(C), sdyx(C);
             const bool wants_gamma = gamma.defined() && gamma.requires_grad();
             const bool wants_beta = beta.defined() && beta.requires_grad();
             if (wants_gamma || wants_beta || training)
               channel_grad_sums(px, dy, d, mu.data(), istd.data(), sdy.data(), sdyx.data());
             if (wants_gamma) {  // dgamma = sum dy * xhat
               float* gg = gamma.grad_data();
               for (int64_t c = 0; c < C; ++c) gg[c] += sdyx[c];
             }
             if (wants_beta) {  // dbeta = sum dy
               float* gb = beta.grad_data();
               for (int64_t c = 0; c < C; ++c) gb[c] += sdy[c];
             }
             if (!x.requires_grad()) return;
             // training: dx = (1/m) * istd * g * (m*dy - sdy - xhat*sdyx)
             //   written as a*dy + b*(x - mu) + k per channel, with xhat = (x - mu) * istd:
             //   a = g*istd, b = -(a/m)*sdyx*istd, k = -(a/m)*sdy
             // evaluation (mu, istd constants): dx = g*istd*dy, i.e. b = k = 0
             const float* pg = gamma.defined() ? gamma.data() : nullptr;
             const float inv_m = 1.0f / (float)d.m;
             std::vector<float> a(C), b(C), k(C);
             for (int64_t c = 0; c < C; ++c) {
               a[c] = (pg ? pg[c] : 1.0f) * istd[c];
               if (training) {
                 const float am = a[c] * inv_m;
                 b[c] = -am * sdyx[c] * istd[c];
                 k[c] = -am * sdy[c];
               } else {
                 b[c] = 0.0f;
                 k[c] = 0.0f;
               }
             }
             channel_dx(px, dy, x.grad_data(), d, a.data(), b.data(), mu.data(), k.data());
           });
  }
  return out;
}

}  // namespace qnn
