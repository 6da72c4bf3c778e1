// core/ops_loss.cpp — softmax family, losses, and classification metrics.
//
// All of these work row by row on [N, C] (N samples, C classes): a row is C
// contiguous floats, so each inner loop is a contiguous, vectorizable sweep.
//
// Numerical stability: softmax(x) = exp(x - m) / sum(exp(x - m)) with
// m = max(x) is the same function but never overflows exp. Likewise
// log_softmax(x) = (x - m) - log(sum(exp(x - m))).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"

namespace qnn {

namespace {

constexpr int64_t kParallelMin = 1 << 16;

// [.., C] viewed as rows x C (C = last dim). Requires at least 1-D.
void rows_cols(const char* op, const Tensor& x, int64_t& rows, int64_t& C) {
  if (!x.defined()) fail(std::string(op) + ": input tensor is undefined");
  QNN_CHECK(x.ndim() >= 1, std::string(op) + ": needs at least a 1-D tensor, got " + shape_str(x.shape()));
  C = x.dim(-1);
  QNN_CHECK(C > 0, std::string(op) + ": last dim is empty in " + shape_str(x.shape()));
  rows = x.numel() / C;
}

// logits must be [N, C] and labels N values in [0, C).
void check_labels(const char* op, const Tensor& logits, const std::vector<int32_t>& labels) {
  if (!logits.defined()) fail(std::string(op) + ": logits tensor is undefined");
  QNN_CHECK(logits.ndim() == 2, std::string(op) + ": logits must be [N, C], got " + shape_str(logits.shape()));
  const int64_t N = logits.dim(0), C = logits.dim(1);
  QNN_CHECK((int64_t)labels.size() == N, std::string(op) + ": logits are " + shape_str(logits.shape()) + " but there are " +
                                             std::to_string(labels.size()) + " labels (expected " +
                                             std::to_string(N) + ")");
  for (int64_t i = 0; i < N; ++i)
    if (labels[i] < 0 || labels[i] >= C)
      fail(std::string(op) + ": label " + std::to_string(labels[i]) + " at row " + std::to_string(i) +
           " is out of range [0, " + std::to_string(C) + ")");
}

// Row max that is NaN-tolerant: comparisons with NaN are false, so a NaN is
// skipped here and then propagates through exp/log into the result (NaN in,
// NaN out; never a crash or an out-of-bounds index).
inline float row_max(const float* r, int64_t C) {
  float m = r[0];
  for (int64_t j = 1; j < C; ++j) m = r[j] > m ? r[j] : m;
  return m;
}

}  // namespace

// ---- log_softmax -----------------------------------------------------------------
// x [N, C] -> y [N, C], y[i, j] = x[i, j] - m_i - log(sum_k exp(x[i, k] - m_i)).
Tensor log_softmax(const Tensor& x) {
  int64_t N, C;
  rows_cols("log_softmax", x, N, C);
  Tensor out = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = out.data();
#pragma omp parallel for if (N * C > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float* r = px + i * C;
    float* y = py + i * C;
    const float m = row_max(r, C);
    float s = 0.0f;
    for (int64_t j = 0; j < C; ++j) s += std::exp(r[j] - m);
    const float lse = m + std::log(s);
    for (int64_t j = 0; j < C; ++j) y[j] = r[j] - lse;
  }
  if (needs_grad(x)) {
    record(out, "log_softmax", {x}, [x, y = out.detach(), N, C](const Tensor& gout) {
      // dL/dx[i, j] = g[i, j] - softmax[i, j] * sum_k g[i, k],  softmax = exp(y)
      const float* g = gout.data();
      const float* py = y.data();
      float* gx = x.grad_data();
#pragma omp parallel for if (N * C > kParallelMin)
      for (int64_t i = 0; i < N; ++i) {
        const float* gi = g + i * C;
        const float* yi = py + i * C;
        float* gxi = gx + i * C;
        float gs = 0.0f;
        for (int64_t j = 0; j < C; ++j) gs += gi[j];
        for (int64_t j = 0; j < C; ++j) gxi[j] += gi[j] - std::exp(yi[j]) * gs;
      }
    });
  }
  return out;
}

// ---- softmax -----------------------------------------------------------------------
// x [N, C] -> y [N, C], y[i, j] = exp(x[i, j] - m_i) / sum_k exp(x[i, k] - m_i).
Tensor softmax(const Tensor& x) {
  int64_t N, C;
  rows_cols("softmax", x, N, C);
  Tensor out = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = out.data();
#pragma omp parallel for if (N * C > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float* r = px + i * C;
    float* y = py + i * C;
    const float m = row_max(r, C);
    float s = 0.0f;
    for (int64_t j = 0; j < C; ++j) {
      y[j] = std::exp(r[j] - m);
      s += y[j];
    }
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < C; ++j) y[j] *= inv;
  }
  if (needs_grad(x)) {
    record(out, "softmax", {x}, [x, y = out.detach(), N, C](const Tensor& gout) {
      // dL/dx[i, j] = y[i, j] * (g[i, j] - sum_k g[i, k] * y[i, k])
      const float* g = gout.data();
      const float* py = y.data();
      float* gx = x.grad_data();
#pragma omp parallel for if (N * C > kParallelMin)
      for (int64_t i = 0; i < N; ++i) {
        const float* gi = g + i * C;
        const float* yi = py + i * C;
        float* gxi = gx + i * C;
        float dot = 0.0f;
        for (int64_t j = 0; j < C; ++j) dot += gi[j] * yi[j];
        for (int64_t j = 0; j < C; ++j) gxi[j] += yi[j] * (gi[j] - dot);
      }
    });
  }
  return out;
}

// ---- cross_entropy (fused log_softmax + NLL + mean) -------------------------------
// logits [N, C], labels N ints -> {}:
//   L = (1/N) sum_i [ log sum_j exp(x[i, j]) - x[i, label_i] ]
// One node. Forward saves p = softmax(logits) [N, C]; backward is
//   dL/dx[i, j] = g * (p[i, j] - [j == label_i]) / N.
Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels) {
  check_labels("cross_entropy", logits, labels);
  const int64_t N = logits.dim(0), C = logits.dim(1);
  QNN_CHECK(N > 0, "cross_entropy: empty batch " + shape_str(logits.shape()));
  const bool grad = needs_grad(logits);
  Tensor probs = grad ? Tensor::empty({N, C}) : Tensor();  // only kept for backward
  const float* px = logits.data();
  float* pp = grad ? probs.data() : nullptr;
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) if (N * C > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float* r = px + i * C;
    const float m = row_max(r, C);
    float s = 0.0f;
    if (pp) {
      float* p = pp + i * C;
      for (int64_t j = 0; j < C; ++j) {
        p[j] = std::exp(r[j] - m);
        s += p[j];
      }
      const float inv = 1.0f / s;
      for (int64_t j = 0; j < C; ++j) p[j] *= inv;
    } else {
      for (int64_t j = 0; j < C; ++j) s += std::exp(r[j] - m);
    }
    // -log softmax[label] = log(s) + m - x[label]
    total += (double)(std::log(s) + m - r[labels[i]]);
  }
  Tensor out = Tensor::empty({});
  out.data()[0] = (float)(total / (double)N);

  if (grad) {
    record(out, "cross_entropy", {logits}, [logits, probs, labels, N, C](const Tensor& gout) {
      const float gN = gout.data()[0] / (float)N;
      const float* p = probs.data();
      float* gx = logits.grad_data();
#pragma omp parallel for if (N * C > kParallelMin)
      for (int64_t i = 0; i < N; ++i) {
        const float* pi = p + i * C;
        float* gi = gx + i * C;
        for (int64_t j = 0; j < C; ++j) gi[j] += gN * pi[j];
        gi[labels[i]] -= gN;
      }
    });
  }
  return out;
}

// ---- squared_hinge (BinaryNet) -----------------------------------------------------
// logits y [N, C], t[i, j] = +1 if j == label_i else -1:
//   L = (1/(N*C)) sum_{i,j} max(0, 1 - t*y)^2
//   dL/dy = g * (-2 t max(0, 1 - t*y)) / (N*C)
Tensor squared_hinge(const Tensor& logits, const std::vector<int32_t>& labels) {
  check_labels("squared_hinge", logits, labels);
  const int64_t N = logits.dim(0), C = logits.dim(1);
  QNN_CHECK(N > 0, "squared_hinge: empty batch " + shape_str(logits.shape()));
  const float* py = logits.data();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) if (N * C > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float* r = py + i * C;
    float s = 0.0f;
    for (int64_t j = 0; j < C; ++j) {  // all classes as negatives (t = -1) ...
      const float h = std::max(0.0f, 1.0f + r[j]);
      s += h * h;
    }
    // ... then swap the label's term for its positive (t = +1) version.
    const float hn = std::max(0.0f, 1.0f + r[labels[i]]);
    const float hp = std::max(0.0f, 1.0f - r[labels[i]]);
    total += (double)s - (double)(hn * hn) + (double)(hp * hp);
  }
  Tensor out = Tensor::empty({});
  out.data()[0] = (float)(total / (double)(N * C));

  if (needs_grad(logits)) {
    record(out, "squared_hinge", {logits}, [logits, labels, N, C](const Tensor& gout) {
      const float k = 2.0f * gout.data()[0] / (float)(N * C);
      const float* py = logits.data();
      float* gx = logits.grad_data();
#pragma omp parallel for if (N * C > kParallelMin)
      for (int64_t i = 0; i < N; ++i) {
        const float* r = py + i * C;
        float* gi = gx + i * C;
        for (int64_t j = 0; j < C; ++j) gi[j] += k * std::max(0.0f, 1.0f + r[j]);  // t = -1
        const int32_t l = labels[i];
        gi[l] -= k * std::max(0.0f, 1.0f + r[l]);  // undo the t = -1 term
        gi[l] -= k * std::max(0.0f, 1.0f - r[l]);  // t = +1
      }
    });
  }
  return out;
}

// ---- mse ----------------------------------------------------------------------------
// a, b same shape -> {}: L = mean((a - b)^2); dL/da = 2 (a - b) g / n = -dL/db.
Tensor mse(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) fail("mse: input tensor is undefined");
  QNN_CHECK(a.shape() == b.shape(),
            "mse: a is " + shape_str(a.shape()) + " but b is " + shape_str(b.shape()) + " (shapes must match)");
  const int64_t n = a.numel();
  QNN_CHECK(n > 0, "mse: empty tensors " + shape_str(a.shape()));
  const float* pa = a.data();
  const float* pb = b.data();
  double s = 0.0;
#pragma omp parallel for simd reduction(+ : s) if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float d = pa[i] - pb[i];
    s += (double)(d * d);
  }
  Tensor out = Tensor::empty({});
  out.data()[0] = (float)(s / (double)n);

  if (needs_grad(a, b)) {
    record(out, "mse", {a, b}, [a, b, n](const Tensor& gout) {
      const float k = 2.0f * gout.data()[0] / (float)n;
      const float* pa = a.data();
      const float* pb = b.data();
      if (a.requires_grad()) {
        float* ga = a.grad_data();
#pragma omp parallel for simd if (parallel: n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) ga[i] += k * (pa[i] - pb[i]);
      }
      if (b.requires_grad()) {
        float* gb = b.grad_data();
#pragma omp parallel for simd if (parallel: n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) gb[i] -= k * (pa[i] - pb[i]);
      }
    });
  }
  return out;
}

// ---- metrics (no gradient) -------------------------------------------------------------
// [N, C] -> N indices of the row maxima (first one on ties; NaNs are skipped).
std::vector<int32_t> argmax_rows(const Tensor& x) {
  if (!x.defined()) fail("argmax_rows: input tensor is undefined");
  QNN_CHECK(x.ndim() == 2, "argmax_rows: needs [N, C], got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1);
  QNN_CHECK(C > 0, "argmax_rows: no columns in " + shape_str(x.shape()));
  std::vector<int32_t> out(N);
  const float* px = x.data();
  for (int64_t i = 0; i < N; ++i) {
    const float* r = px + i * C;
    int32_t best = 0;
    for (int64_t j = 1; j < C; ++j)
      if (r[j] > r[best] || (std::isnan(r[best]) && !std::isnan(r[j]))) best = (int32_t)j;
    out[i] = best;
  }
  return out;
}

// Number of rows whose argmax equals the label.
int64_t count_correct(const Tensor& logits, const std::vector<int32_t>& labels) {
  check_labels("count_correct", logits, labels);
  const std::vector<int32_t> pred = argmax_rows(logits);
  int64_t n = 0;
  for (size_t i = 0; i < pred.size(); ++i) n += pred[i] == labels[i];
  return n;
}

}  // namespace qnn
