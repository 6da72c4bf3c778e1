// layers/quant/shift_batchnorm.cpp — forward and hand-written backward of the
// shift-based batch norm. Formulas and which quantities are AP2-rounded: see
// shift_batchnorm.h.
//
// Layout: x is [N, C] or [N, C, H, W] row-major: element (n, c, p) at
// (n C + c) S + p with S = H W (S = 1 for [N, C]). A channel's m = N S values
// are N strided runs of S. Every pass walks n, then c, then p, keeping
// per-channel accumulators (double) — for [N, C] exactly the old order (a
// contiguous inner loop over channels), so 1-d results are unchanged.
#include "layers/quant/shift_batchnorm.h"

#include <cmath>
#include <vector>

#include "core/ap2.h"
#include "core/autograd.h"

namespace qnn {

namespace {
constexpr int64_t kParallelMin = 1 << 16;

void check_param(const Tensor& t, const char* what, int64_t C, const Shape& xs) {
  if (!t.defined()) return;
  QNN_CHECK(t.ndim() == 1 && t.numel() == C, std::string("shift_batch_norm: ") + what + " is " +
                                                  shape_str(t.shape()) + " but x is " + shape_str(xs) +
                                                  " (expected [" + std::to_string(C) + "])");
}
}  // namespace

Tensor shift_batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                        Tensor& running_var, bool training, float momentum, float eps, bool ap2) {
  QNN_CHECK(x.defined(), "shift_batch_norm: undefined input");
  const Shape& xs = x.shape();
  QNN_CHECK(x.ndim() == 2 || x.ndim() == 4, "shift_batch_norm: x must be [N, C] or [N, C, H, W], got " + shape_str(xs));
  const int64_t N = xs[0], C = xs[1];
  const int64_t S = x.ndim() == 4 ? xs[2] * xs[3] : 1;  // values per (n, c)
  const int64_t M = N * S;                              // values per channel
  QNN_CHECK(N > 0 && C > 0 && S > 0, "shift_batch_norm: empty input " + shape_str(xs));
  check_param(gamma, "gamma", C, xs);
  check_param(beta, "beta", C, xs);
  check_param(running_mean, "running_mean", C, xs);
  check_param(running_var, "running_var", C, xs);
  QNN_CHECK(eps > 0.0f, "shift_batch_norm: eps must be > 0, got " + std::to_string(eps));
  const auto R = [ap2](float v) { return ap2 ? qnn::ap2(v) : v; };

  const float* px = x.data();
  // Per channel: mu, inv = 1/sqrt(var+eps), s = AP2(inv), gp = AP2(gamma).
  std::vector<float> mu(C), inv(C), s(C), gp(C);
  std::vector<double> sum_c(C, 0.0), sum_r(C, 0.0);  // sum C and sum AP2(C) (training backward)
  Tensor cen = Tensor::empty(xs);                      // C = x - mu
  Tensor rnd;                                          // AP2(C), training with ap2 only
  float* pc = cen.data();

  if (training) {
    QNN_CHECK(M > 1, "shift_batch_norm: training needs more than one value per channel, but x is " +
                         shape_str(xs) + "; use a larger batch or evaluation mode");
    QNN_CHECK(momentum >= 0.0f && momentum <= 1.0f,
              "shift_batch_norm: momentum must be in [0, 1], got " + std::to_string(momentum));
    std::vector<double> acc(C, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = 0; p < S; ++p) acc[c] += px[(n * C + c) * S + p];
    for (int64_t c = 0; c < C; ++c) mu[c] = (float)(acc[c] / (double)M);
    if (ap2) rnd = Tensor::empty(xs);
    float* pr = ap2 ? rnd.data() : nullptr;
    const float* pmu = mu.data();
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t p = 0; p < S; ++p) {
          const int64_t i = (n * C + c) * S + p;
          const float v = px[i] - pmu[c];
          pc[i] = v;
          if (pr) pr[i] = qnn::ap2(v);
        }
      }
    }
    // var = mean(C * AP2(C))
    std::vector<double> var(C, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = 0; p < S; ++p) {
          const int64_t i = (n * C + c) * S + p;
          const float cv = pc[i], rv = pr ? pr[i] : cv;
          var[c] += (double)cv * rv;
          sum_c[c] += cv;
          sum_r[c] += rv;
        }
    const float unbias = (float)M / (float)(M - 1);
    float* rm = running_mean.defined() ? running_mean.data() : nullptr;
    float* rv = running_var.defined() ? running_var.data() : nullptr;
    for (int64_t c = 0; c < C; ++c) {
      const float v = (float)(var[c] / (double)M);
      inv[c] = 1.0f / std::sqrt(v + eps);
      if (rm) rm[c] = (1.0f - momentum) * rm[c] + momentum * mu[c];
      if (rv) rv[c] = (1.0f - momentum) * rv[c] + momentum * v * unbias;
    }
  } else {
    QNN_CHECK(running_mean.defined() && running_var.defined(),
              "shift_batch_norm: evaluation mode needs running_mean and running_var");
    const float* rm = running_mean.data();
    const float* rv = running_var.data();
    for (int64_t c = 0; c < C; ++c) {
      mu[c] = rm[c];
      inv[c] = 1.0f / std::sqrt(rv[c] + eps);
    }
    const float* pmu = mu.data();
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = 0; p < S; ++p) pc[(n * C + c) * S + p] = px[(n * C + c) * S + p] - pmu[c];
  }

  const float* pgam = gamma.defined() ? gamma.data() : nullptr;
  const float* pbet = beta.defined() ? beta.data() : nullptr;
  std::vector<float> scale(C), shift(C);
  for (int64_t c = 0; c < C; ++c) {
    s[c] = R(inv[c]);
    gp[c] = pgam ? R(pgam[c]) : 1.0f;
    scale[c] = gp[c] * s[c];  // a product of powers of two when ap2: exact
    shift[c] = pbet ? pbet[c] : 0.0f;
  }
  Tensor out = Tensor::empty(xs);
  float* py = out.data();
  {
    const float* psc = scale.data();
    const float* psh = shift.data();
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = 0; p < S; ++p) py[(n * C + c) * S + p] = psc[c] * pc[(n * C + c) * S + p] + psh[c];
  }

  if (needs_grad(x, gamma, beta)) {
    std::vector<Tensor> inputs{x};
    if (gamma.defined()) inputs.push_back(gamma);
    if (beta.defined()) inputs.push_back(beta);
    record(out, "shift_batch_norm", std::move(inputs),
           [x, gamma, beta, cen, rnd, training, N, C, S, M, inv = std::move(inv), s = std::move(s), gp = std::move(gp),
            sum_c = std::move(sum_c), sum_r = std::move(sum_r)](const Tensor& gout) {
             const float* g = gout.data();
             const float* pc = cen.data();
             const float* pr = rnd.defined() ? rnd.data() : pc;
             // Per channel: sum g and sum g*C.
             std::vector<double> sg(C, 0.0), sgc(C, 0.0);
             for (int64_t n = 0; n < N; ++n)
               for (int64_t c = 0; c < C; ++c)
                 for (int64_t p = 0; p < S; ++p) {
                   const int64_t i = (n * C + c) * S + p;
                   const double gi = g[i];
                   sg[c] += gi;
                   sgc[c] += gi * pc[i];
                 }
             if (beta.defined() && beta.requires_grad()) {  // dbeta = sum g
               float* gb = beta.grad_data();
               for (int64_t c = 0; c < C; ++c) gb[c] += (float)sg[c];
             }
             if (gamma.defined() && gamma.requires_grad()) {  // dgamma = sum g * yhat = s * sum g*C (STE)
               float* gg = gamma.grad_data();
               for (int64_t c = 0; c < C; ++c) gg[c] += (float)(s[c] * sgc[c]);
             }
             if (!x.requires_grad()) return;
             // dx_i = a g_i + b (r_i + C_i) + k   per channel, where
             //   a = gp s, b = dV / m, k = -mean(dC) (training); b = k = 0 (evaluation).
             std::vector<float> a(C), b(C, 0.0f), k(C, 0.0f);
             const double m = (double)M;
             for (int64_t c = 0; c < C; ++c) {
               a[c] = gp[c] * s[c];
               if (training) {
                 const double ic = inv[c];
                 const double dV = -0.5 * ic * ic * ic * gp[c] * sgc[c];
                 b[c] = (float)(dV / m);
                 k[c] = (float)(-(a[c] * sg[c] + dV * (sum_r[c] + sum_c[c]) / m) / m);
               }
             }
             float* gx = x.grad_data();
             const float* pa = a.data();
             const float* pb = b.data();
             const float* pk = k.data();
#pragma omp parallel for if (N * C * S > kParallelMin)
             for (int64_t n = 0; n < N; ++n)
               for (int64_t c = 0; c < C; ++c)
                 for (int64_t p = 0; p < S; ++p) {
                   const int64_t i = (n * C + c) * S + p;
                   gx[i] += pa[c] * g[i] + pb[c] * (pr[i] + pc[i]) + pk[c];
                 }
           });
  }
  return out;
}

Tensor ShiftBatchNorm::forward(const Tensor& x) {
  QNN_CHECK(x.ndim() == 2 + spatial_dims_ && x.dim(1) == channels_,
            type_name() + "(" + std::to_string(channels_) + "): input is " + shape_str(x.shape()) + ", expected [N, " +
                std::to_string(channels_) + (spatial_dims_ ? ", H, W]" : "]"));
  // Batch statistics: this call's rows (one slice under --micro-batches / --dist mpi).
  return shift_batch_norm(x, weight, bias, running_mean, running_var, training_, opt_.momentum, opt_.eps, ap2_);
}

}  // namespace qnn
