// kernels/xnor_gemm.cpp — XNOR GEMM front ends and epilogues (see xnor_gemm.h).
#include "kernels/xnor_gemm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/xnor_internal.h"

namespace qnn::kernels {

namespace {

void check_shape(const char* fn, int64_t M, int64_t N, int64_t K) {
  if (M < 0 || N < 0 || K < 0)
    throw std::invalid_argument(std::string(fn) + ": negative size (M=" + std::to_string(M) +
                                ", N=" + std::to_string(N) + ", K=" + std::to_string(K) + ")");
  if (K >= (int64_t(1) << 31))
    throw std::invalid_argument(std::string(fn) + ": K=" + std::to_string(K) +
                                " too large for 32-bit dot products");
}

void check_inputs(const char* fn, const uint64_t* A, const uint64_t* B, int64_t M, int64_t N,
                  int64_t K) {
  if (M > 0 && N > 0 && K > 0 && (A == nullptr || B == nullptr))
    throw std::invalid_argument(std::string(fn) + ": null A or B");
}

}  // namespace

void xnor_gemm_i32(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                   int32_t* C, int64_t ldc) {
  check_shape("xnor_gemm_i32", M, N, K);
  if (ldc < N)
    throw std::invalid_argument("xnor_gemm_i32: ldc=" + std::to_string(ldc) + " < N=" +
                                std::to_string(N));
  if (M == 0 || N == 0) return;
  check_inputs("xnor_gemm_i32", A, B, M, N, K);
  if (C == nullptr) throw std::invalid_argument("xnor_gemm_i32: null C");
  const int32_t k32 = int32_t(K);
  const Isa isa = active_isa();
  const detail::StoreI32Fn store = detail::store_i32_fn(isa);
  const bool stream = double(M) * double(N) * sizeof(int32_t) >= detail::kStreamBytes;
  detail::drive(A, 1, B, 1, M, N, packed_words(K),
                [&](int64_t m0, int64_t mc, int64_t n0, int64_t nc, const int32_t* pop, int64_t ldp) {
                  for (int64_t i = 0; i < mc; ++i)
                    store(pop + i * ldp, nc, k32, C + (m0 + i) * ldc + n0, stream);
                });
}

void xnor_gemm_f32(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                   float* C, int64_t ldc, const float* col_scale, const float* col_bias) {
  check_shape("xnor_gemm_f32", M, N, K);
  if (ldc < N)
    throw std::invalid_argument("xnor_gemm_f32: ldc=" + std::to_string(ldc) + " < N=" +
                                std::to_string(N));
  if (M == 0 || N == 0) return;
  check_inputs("xnor_gemm_f32", A, B, M, N, K);
  if (C == nullptr) throw std::invalid_argument("xnor_gemm_f32: null C");
  const int32_t k32 = int32_t(K);
  const Isa isa = active_isa();
  const detail::StoreF32Fn store = detail::store_f32_fn(isa);
  const bool stream = double(M) * double(N) * sizeof(float) >= detail::kStreamBytes;
  detail::drive(A, 1, B, 1, M, N, packed_words(K),
                [&](int64_t m0, int64_t mc, int64_t n0, int64_t nc, const int32_t* pop, int64_t ldp) {
                  for (int64_t i = 0; i < mc; ++i)
                    store(pop + i * ldp, nc, k32, col_scale ? col_scale + n0 : nullptr,
                          col_bias ? col_bias + n0 : nullptr, C + (m0 + i) * ldc + n0, stream);
                });
}

void xnor_gemm_sign(const uint64_t* A, const uint64_t* B, int64_t M, int64_t N, int64_t K,
                    const float* thresh, const uint8_t* flip, uint64_t* out) {
  check_shape("xnor_gemm_sign", M, N, K);
  if (M == 0 || N == 0) return;
  check_inputs("xnor_gemm_sign", A, B, M, N, K);
  if (thresh == nullptr) throw std::invalid_argument("xnor_gemm_sign: null thresh");
  if (out == nullptr) throw std::invalid_argument("xnor_gemm_sign: null out");
  const int64_t WO = packed_words(N);  // output row stride (words)
  const int64_t used = (N + 63) / 64;  // words holding real outputs
  // Per column, turn "dot >= thresh" into "popcount <= pt" (dot = K - 2*pop):
  // dot is an integer, so dot >= t <=> dot >= ceil(t) <=> pop <= floor((K - ceil(t)) / 2),
  // all exact in double; pt is clamped to [-1 (never), K (always)].
  std::vector<int32_t> pt(static_cast<size_t>(N));
  std::vector<uint64_t> flipw(static_cast<size_t>(used), 0);
  for (int64_t n = 0; n < N; ++n) {
    const double t = thresh[n];
    double q;
    if (std::isnan(t)) q = -1.0;  // comparisons with NaN are false
    else q = std::floor((double(K) - std::ceil(std::clamp(t, -4.0 * double(K) - 4.0, 4.0 * double(K) + 4.0))) / 2.0);
    pt[n] = int32_t(std::clamp(q, -1.0, double(K)));
    if (flip != nullptr && flip[n] != 0) flipw[n / 64] |= uint64_t(1) << (n % 64);
  }
  const detail::SignRowFn sign_row = detail::sign_row_fn(active_isa());
  // Blocks start at multiples of 64 columns, so each output word belongs to
  // exactly one block: the epilogue assigns whole words, no races.
  detail::drive(A, 1, B, 1, M, N, packed_words(K),
                [&](int64_t m0, int64_t mc, int64_t n0, int64_t nc, const int32_t* pop, int64_t ldp) {
                  for (int64_t i = 0; i < mc; ++i) {
                    uint64_t* o = out + (m0 + i) * WO;
                    sign_row(pop + i * ldp, pt.data() + n0, flipw.data() + n0 / 64, nc, o + n0 / 64);
                    if (n0 + nc == N)  // last block of the row also clears the pad words
                      for (int64_t w = used; w < WO; ++w) o[w] = 0;
                  }
                });
}

void fold_affine_sign(int64_t N, const float* a, const float* b, float* thresh, uint8_t* flip) {
  if (N < 0) throw std::invalid_argument("fold_affine_sign: negative N");
  if (N > 0 && (a == nullptr || b == nullptr || thresh == nullptr || flip == nullptr))
    throw std::invalid_argument("fold_affine_sign: null pointer");
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t n = 0; n < N; ++n) {
    const double an = a[n], bn = b[n];
    if (std::isnan(an) || std::isnan(bn)) {
      thresh[n] = ninf;
      flip[n] = 0;
    } else if (an == 0.0) {
      thresh[n] = ninf;
      flip[n] = bn < 0.0 ? 1 : 0;
    } else {
      const double t = -bn / an;
      thresh[n] = an > 0.0 ? float(std::ceil(t)) : float(std::floor(t) + 1.0);
      flip[n] = an > 0.0 ? 0 : 1;
    }
  }
}

}  // namespace qnn::kernels
