// core/ops_linear.cpp — matmul and the fused linear layer op (OpenBLAS sgemm).
#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/sgemm.h"

namespace qnn {

using kernels::sgemm;

// C[M, N] = A[M, K] B[K, N]
// backward: dA[M, K] += dC B^T,  dB[K, N] += A^T dC
Tensor matmul(const Tensor& a, const Tensor& b) {
  QNN_CHECK(a.ndim() == 2 && b.ndim() == 2,
            "matmul: needs 2-D tensors, got " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  const int64_t M = a.dim(0), K = a.dim(1), N = b.dim(1);
  QNN_CHECK(b.dim(0) == K, "matmul: " + shape_str(a.shape()) + " x " + shape_str(b.shape()) +
                               " (inner dimensions differ)");
  Tensor c = Tensor::empty({M, N});
  sgemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, c.data(), N);
  if (needs_grad(a, b)) {
    record(c, "matmul", {a, b}, [a, b, M, N, K](const Tensor& g) {
      float beta;
      if (a.requires_grad()) {
        float* ga = grad_for_gemm(a, beta);
        sgemm(false, true, M, K, N, 1.f, g.data(), N, b.data(), N, beta, ga, K);
      }
      if (b.requires_grad()) {
        float* gb = grad_for_gemm(b, beta);
        sgemm(true, false, K, N, M, 1.f, a.data(), K, g.data(), N, beta, gb, N);
      }
    });
  }
  return c;
}

// y[N, out] = x[N, in] W[out, in]^T + b[out]
// backward: dx[N, in]   += dy W
//           dW[out, in] += dy^T x
//           db[out]     += sum over rows of dy
Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b) {
  QNN_CHECK(x.ndim() == 2 && W.ndim() == 2,
            "linear: x must be [N, in] and W [out, in], got " + shape_str(x.shape()) + " and " + shape_str(W.shape()));
  const int64_t N = x.dim(0), in = x.dim(1), out = W.dim(0);
  QNN_CHECK(W.dim(1) == in, "linear: x is " + shape_str(x.shape()) + " but W is " + shape_str(W.shape()) +
                                " (in-features differ)");
  if (b.defined())
    QNN_CHECK(b.ndim() == 1 && b.dim(0) == out,
              "linear: bias is " + shape_str(b.shape()) + ", expected [" + std::to_string(out) + "]");
  Tensor y = Tensor::empty({N, out});
  float* py = y.data();
  if (b.defined()) {
    const float* pb = b.data();
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < out; ++j) py[i * out + j] = pb[j];
  }
  sgemm(false, true, N, out, in, 1.f, x.data(), in, W.data(), in, b.defined() ? 1.f : 0.f, py, out);
  if (needs_grad(x, W, b)) {
    record(y, "linear", {x, W, b}, [x, W, b, N, in, out](const Tensor& g) {
      float beta;
      if (x.requires_grad()) {
        float* gx = grad_for_gemm(x, beta);
        sgemm(false, false, N, in, out, 1.f, g.data(), out, W.data(), in, beta, gx, in);
      }
      if (W.requires_grad()) {
        float* gW = grad_for_gemm(W, beta);
        sgemm(true, false, out, in, N, 1.f, g.data(), out, x.data(), in, beta, gW, in);
      }
      if (b.defined() && b.requires_grad()) {
        float* gb = b.grad_data();
        const float* pg = g.data();
        for (int64_t i = 0; i < N; ++i)
          for (int64_t j = 0; j < out; ++j) gb[j] += pg[i * out + j];
      }
    });
  }
  return y;
}

}  // namespace qnn
