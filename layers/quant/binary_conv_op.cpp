// layers/quant/binary_conv_op.cpp — binary_conv2d and its kernels-off
// reference. Design, saved state and the "identical results" argument:
// binary_conv_op.h. Tested in tests/test_binary_conv.cpp.
#include "layers/quant/binary_conv_op.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/bitpack.h"
#include "kernels/conv_f32.h"
#include "kernels/im2col.h"
#include "kernels/packed_conv.h"
#include "kernels/pm1_gemm.h"

namespace qnn {

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elementwise loops: below this one thread is faster

// Packed words kept in a Tensor's storage (the caching allocator hands the
// same sizes back every step). Only ever accessed as uint64_t.
struct Words {
  Tensor t;
  explicit Words(int64_t n) : t(Tensor::empty({2 * std::max<int64_t>(n, 1)})) {}
  uint64_t* data() const { return reinterpret_cast<uint64_t*>(t.impl()->storage->data); }
};

kernels::PatchGeom checked_geom(const char* op, const Tensor& x, const Tensor& W, const Tensor& b, int64_t stride,
                                int64_t pad) {
  QNN_CHECK(x.defined() && W.defined(), std::string(op) + ": undefined input");
  QNN_CHECK(x.ndim() == 4 && W.ndim() == 4 && W.dim(1) == x.dim(1),
            std::string(op) + ": x must be [N, C, H, W] and W [O, C, KH, KW], got " + shape_str(x.shape()) +
                " and " + shape_str(W.shape()));
  QNN_CHECK(stride >= 1 && pad >= 0, std::string(op) + ": need stride >= 1 and pad >= 0, got stride " +
                                         std::to_string(stride) + ", pad " + std::to_string(pad));
  QNN_CHECK(x.dim(1) >= 1 && W.dim(0) >= 1 && W.dim(2) >= 1 && W.dim(3) >= 1,
            std::string(op) + ": empty channels or kernel in " + shape_str(W.shape()));
  QNN_CHECK(x.dim(2) + 2 * pad >= W.dim(2) && x.dim(3) + 2 * pad >= W.dim(3),
            std::string(op) + ": kernel " + shape_str(W.shape()) + " larger than the padded image " +
                shape_str(x.shape()) + " (pad " + std::to_string(pad) + ")");
  if (b.defined())
    QNN_CHECK(b.ndim() == 1 && b.dim(0) == W.dim(0),
              std::string(op) + ": bias is " + shape_str(b.shape()) + ", expected [" + std::to_string(W.dim(0)) + "]");
  return kernels::make_patch_geom(x.dim(1), x.dim(2), x.dim(3), W.dim(2), W.dim(3), stride, pad);
}

// x.grad += S'(x) * dq for a +-1 quantizer: the packed hardtanh mask when kept,
// else the surrogate itself (it reads x); plain "+= dq" when x was pre-quantized.
void surrogate_add(const Tensor& x, bool quantize, const Surrogate& sur, const Words* mask, int64_t rows,
                   int64_t K, const float* dq) {
  float* gx = x.grad_data();
  if (!quantize) {
    for (int64_t i = 0; i < rows * K; ++i) gx[i] += dq[i];
  } else if (mask) {
    detail::masked_add_rows(mask->data(), rows, K, dq, gx);
  } else {
    surrogate_backward(sur, QuantGeometry{1, 1.0f}, x.data(), dq, gx, rows * K);
  }
}

}  // namespace

bool binary_conv_winograd(int64_t N, const kernels::PatchGeom& g, int64_t O, bool one_padding, bool has_bias) {
  // Winograd's padded plane holds 0, so one-padding (+1 taps) stays on the
  // look-up products; a bias keeps the reference's "dot + b" rows.
  if (has_bias || (one_padding && g.pad > 0)) return false;
  return kernels::ConvPlan(N, g, O).winograd;
}

// ---- binary_conv2d -------------------------------------------------------------------------
// y[N, O, OH, OW] = conv(sign(x), sign(W)) + b          (exact integer sums, then one add)
// backward: dq_x = col2im(g_rows · sign(W2)),  dx += S'_x(x) * dq_x
//           dq_W = g_rows^T · sign(rows),      dW += S'_W(W) * dq_W
//           db  += sum over pixels of g
Tensor binary_conv2d(const Tensor& x, const Tensor& W, const Tensor& b, const BinaryConvSpec& spec) {
  const kernels::PatchGeom g = checked_geom("binary_conv2d", x, W, b, spec.stride, spec.pad);
  const int64_t N = x.dim(0), C = g.C, H = g.H, Wd = g.W, O = W.dim(0), P = g.pixels(), CKK = g.taps();
  const int64_t CHW = C * H * Wd;
  QNN_CHECK(CKK < (int64_t(1) << 24), "binary_conv2d: " + std::to_string(CKK) + " taps per output reach 2^24");
  const bool rec = needs_grad(x, W, b);
  const bool want_dx = rec && x.requires_grad();
  const bool want_dW = rec && W.requires_grad();

  // sign(x), packed NHWC: the forward's operand and dq_W's.
  auto xp = std::make_shared<Words>(N * H * Wd * kernels::pixel_words(C));
  kernels::pack_nhwc(x.data(), N, C, H, Wd, xp->data());
  // The input surrogate's mask, one packed row per image (flat NCHW order).
  std::shared_ptr<Words> xm;
  if (want_dx && spec.quantize_input && spec.input_surrogate.kind == SurrogateKind::hardtanh) {
    xm = std::make_shared<Words>(N * kernels::packed_words(CHW));
    detail::pack_sign_mask(x.data(), N, CHW, CHW, spec.input_surrogate.param, nullptr, xm->data());
  }
  // sign(W) as [O, CKK] rows in (c, ky, kx) order (dq_x's operand) and the
  // weight surrogate's mask, in one pass.
  // Winograd layers take sign(W) as floats in the backward: no packed copy.
  const bool winograd = rec && binary_conv_winograd(N, g, O, spec.one_padding, b.defined());
  std::shared_ptr<Words> wsign, wm;
  if (want_dx && !winograd) wsign = std::make_shared<Words>(O * kernels::packed_words(CKK));
  if (want_dW && spec.quantize_weight && spec.weight_surrogate.kind == SurrogateKind::hardtanh)
    wm = std::make_shared<Words>(O * kernels::packed_words(CKK));
  if (wsign || wm)
    detail::pack_sign_mask(W.data(), O, CKK, CKK, spec.weight_surrogate.param, wsign ? wsign->data() : nullptr,
                           wm ? wm->data() : nullptr);

  Tensor y = Tensor::empty({N, O, g.OH, g.OW});
  float* py = y.data();
  {
    const kernels::PackedConvWeights pw = kernels::pack_conv_weights(W.data(), O, C, g.KH, g.KW);
    kernels::packed_conv_forward(xp->data(), N, g, pw, spec.one_padding ? kernels::ConvPad::one : kernels::ConvPad::zero,
                                 py);
  }
  if (b.defined()) {  // "dot + b": the reference's add(y, b), one rounding
    const float* pb = b.data();
#pragma omp parallel for schedule(static) if (N * O * P > kParallelMin)
    for (int64_t i = 0; i < N * O; ++i)
      for (int64_t p = 0; p < P; ++p) py[i * P + p] += pb[i % O];
  }
  if (!rec) return y;
  if (!want_dW) xp.reset();  // only dq_W reads sign(x) again

  std::vector<Tensor> inputs{x, W};
  if (b.defined()) inputs.push_back(b);
  record(y, "binary_conv2d", std::move(inputs),
         [x, W, b, xp, xm, wsign, wm, spec, g, N, O, winograd](const Tensor& gout) {
    const int64_t P = g.pixels(), CKK = g.taps(), M = N * P, C = g.C, CHW = g.image_size();
    const float* pg = gout.data();
    if (winograd) {
      // A 3x3 stride-1 layer: both products as the float convolution's
      // Winograd backward on the +-1 operands (fewer multiplications than
      // the look-up products; the reference's conv2d node runs the same
      // call on the same values, so the bits agree).
      const kernels::ConvPlan plan(N, g, O);
      Tensor scratch = Tensor::empty({plan.scratch_size()});
      Tensor wq = Tensor::empty({O, CKK}), xq, dqx, dqw;
      const float* pw = W.data();
      float* pwq = wq.data();
      for (int64_t i = 0; i < O * CKK; ++i) pwq[i] = pw[i] < 0.0f ? -1.0f : 1.0f;  // kernels/bitpack.h's rule
      float* gx = nullptr;
      if (x.requires_grad()) {
        if (spec.quantize_input) {
          dqx = Tensor::zeros({N, C, g.H, g.W});
          gx = dqx.data();
        } else {
          gx = x.grad_data();
        }
      }
      if (W.requires_grad()) {
        xq = Tensor::empty({N, C, g.H, g.W});
        kernels::unpack_nhwc(xp->data(), N, C, g.H, g.W, xq.data());
        dqw = Tensor::zeros({O, CKK});
      }
      kernels::conv2d_f32_backward_winograd(xq.defined() ? xq.data() : nullptr, pg, N, g, O, pwq, gx,
                                            dqw.defined() ? dqw.data() : nullptr, plan, scratch.data());
      if (x.requires_grad() && spec.quantize_input)
        surrogate_add(x, true, spec.input_surrogate, xm.get(), N, CHW, dqx.data());
      if (W.requires_grad()) surrogate_add(W, spec.quantize_weight, spec.weight_surrogate, wm.get(), O, CKK, dqw.data());
      return;
    }
    // The reference's rows_to_nchw backward hands its product "0 + g" in
    // pixel-major rows; the bias sums those values over pixels, in order.
    if (b.defined() && b.requires_grad()) {
      float* gb = b.grad_data();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
          const float* r = pg + (n * O + o) * P;
          float s = gb[o];
          for (int64_t p = 0; p < P; ++p) s += 0.0f + r[p];
          gb[o] = s;
        }
    }
    if (x.requires_grad()) {
      // g_rows [M, O] (row m = n*P + p), then per chunk of images:
      // d_rows = g_rows · sign(W2) [rows x CKK] by look-up, col2im'd into dq_x.
      Tensor grows = Tensor::empty({M, O});
      float* gr = grows.data();
#pragma omp parallel for schedule(static) if (M * O > kParallelMin)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t p = 0; p < P; ++p) gr[(n * P + p) * O + o] = pg[(n * O + o) * P + p];
      // Straight into x.grad when x was pre-quantized (the reference's im2col
      // adds into it directly), else into a zeroed dq_x for the surrogate.
      Tensor dq;
      float* dst;
      if (spec.quantize_input) {
        dq = Tensor::zeros({N, g.C, g.H, g.W});
        dst = dq.data();
      } else {
        dst = x.grad_data();
      }
      const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t(1) << 21) / std::max<int64_t>(1, P * CKK)));
      Tensor drows = Tensor::empty({chunk * P, CKK});
      for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t nb = std::min(chunk, N - n0);
        kernels::pm1_gemm(nb * P, O, CKK, gr + n0 * P * O, O, 1, wsign->data(), drows.data(), CKK, false);
        kernels::col2im_rows_add_batch(drows.data(), nb, g, dst + n0 * CHW);
      }
      if (spec.quantize_input) surrogate_add(x, true, spec.input_surrogate, xm.get(), N, CHW, dq.data());
    }
    if (W.requires_grad()) {
      // gT [O, M] = g_rows^T: row o is image n's plane o for n = 0, 1, ...
      Tensor gT = Tensor::empty({O, M});
      float* pt = gT.data();
      for (int64_t o = 0; o < O; ++o)
        for (int64_t n = 0; n < N; ++n) std::memcpy(pt + o * M + n * P, pg + (n * O + o) * P, size_t(P) * 4);
      const int64_t CW = kernels::pixel_words(C), RW = kernels::patch_words(C, g.KH, g.KW);
      Words patches(M * RW);
      kernels::packed_im2col(xp->data(), N, g, patches.data());
      Tensor dq = Tensor::empty({O, CKK});
      float* pdq = dq.data();
      const int64_t KK = g.KH * g.KW;
      // One product over the packed patches, K' = KK*CW*64 columns in (ky,
      // kx, c) order. Every tap is a sign bit (+1 pads are 0 bits), except
      // with zero padding: there a padded tap is 0, which pm1_gemm_zeros
      // takes from a bitmap (pixel m, tap t) over column blocks of CW*64 —
      // the same grouped sums over m as the reference's 0 * g terms.
      const int64_t Kp = KK * CW * 64;
      Tensor ct = Tensor::empty({O, Kp});
      if (spec.one_padding || g.pad == 0) {
        kernels::pm1_gemm(O, M, Kp, pt, M, 1, patches.data(), ct.data(), Kp, false);
      } else {
        const int64_t ZW = (KK + 63) / 64;
        std::vector<uint64_t> zeros(size_t(M * ZW), 0);
        for (int64_t oy = 0; oy < g.OH; ++oy)
          for (int64_t ox = 0; ox < g.OW; ++ox)
            for (int64_t ky = 0; ky < g.KH; ++ky)
              for (int64_t kx = 0; kx < g.KW; ++kx) {
                const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx, t = ky * g.KW + kx;
                if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W)
                  zeros[size_t((oy * g.OW + ox) * ZW + t / 64)] |= uint64_t(1) << (t % 64);
              }
        for (int64_t n = 1; n < N; ++n)  // the same taps are padded in every image
          std::memcpy(zeros.data() + n * P * ZW, zeros.data(), size_t(P * ZW) * 8);
        kernels::pm1_gemm_zeros(O, M, Kp, pt, M, 1, patches.data(), CW * 64, zeros.data(), ct.data(), Kp, false);
      }
      const float* pc = ct.data();
      for (int64_t o = 0; o < O; ++o)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t t = 0; t < KK; ++t) pdq[o * CKK + c * KK + t] = pc[o * Kp + t * CW * 64 + c];
      surrogate_add(W, spec.quantize_weight, spec.weight_surrogate, wm.get(), O, CKK, pdq);
    }
  });
  return y;
}

// ---- binary_conv2d_reference ---------------------------------------------------------------
// y = rows_to_nchw(pm1_linear(im2col(xq, pad_value), wq2) (+ b))   [N, O, OH, OW]
// backward: by the graph (pm1_linear's grouped sums, col2im, rows_to_nchw's transpose)
Tensor binary_conv2d_reference(const Tensor& xq, const Tensor& wq, const Tensor& b, int64_t stride, int64_t pad,
                               float pad_value) {
  const kernels::PatchGeom g = checked_geom("binary_conv2d_reference", xq, wq, b, stride, pad);
  // The float convolution: exact integer sums on +-1 operands (im2col or
  // Winograd alike), and the backward binary_conv2d runs for these layers.
  if (binary_conv_winograd(xq.dim(0), g, wq.dim(0), pad_value != 0.0f, b.defined()))
    return conv2d(xq, wq, Tensor(), stride, pad);
  const Tensor rows = im2col(xq, g.KH, g.KW, stride, pad, pad_value);  // [M, CKK]
  const Tensor w2 = wq.reshape({wq.dim(0), g.taps()});                  // columns (c, ky, kx)
  Tensor y = pm1_linear(rows, w2, Tensor());                            // exact integer sums
  if (b.defined()) y = add(y, b);
  return rows_to_nchw(y, xq.dim(0), g.OH, g.OW);
}

// ---- memory accounting ---------------------------------------------------------------------

SavedBytes binary_conv2d_unfused_bytes(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K,
                                       int64_t stride, int64_t pad, const BinaryConvSpec& spec) {
  const int64_t OH = kernels::conv_out_size(H, K, stride, pad), OW = kernels::conv_out_size(W, K, stride, pad);
  SavedBytes s;
  s.activation = N * OH * OW * C * K * K * 4;             // rows, kept by pm1_linear
  if (spec.quantize_input) s.activation += N * C * H * W * 4;  // xq, kept by im2col
  if (spec.quantize_weight) s.weight = O * C * K * K * 4;  // wq
  return s;
}

SavedBytes binary_conv2d_fused_bytes(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K,
                                     int64_t stride, int64_t pad, const BinaryConvSpec& spec) {
  (void)stride, (void)pad;
  SavedBytes s;
  s.activation = N * H * W * kernels::pixel_words(C) * 8;  // sign(x), NHWC
  if (spec.quantize_input && spec.input_surrogate.kind == SurrogateKind::hardtanh)
    s.activation += N * kernels::packed_words(C * H * W) * 8;  // mask
  const int64_t row = kernels::packed_words(C * K * K) * 8;
  s.weight = O * row;  // sign(W)
  if (spec.quantize_weight && spec.weight_surrogate.kind == SurrogateKind::hardtanh) s.weight += O * row;
  return s;
}

}  // namespace qnn
