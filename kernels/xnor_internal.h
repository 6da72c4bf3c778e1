// kernels/xnor_internal.h — internal machinery shared by xnor_gemm.cpp and
// bitserial.cpp: the per-ISA popcount block kernels and the blocked, OpenMP
// parallel driver. Not part of the public API.
#pragma once
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/isa.h"

namespace qnn::kernels::detail {

// Popcount block: for i < ma, j < nb
//   P[i*ldp + j] (+)= popcount over words [0, W) of (A_i XOR B_j),
// with row i of A at A + i*lda and row j of B at B + j*ldb (in words).
// W is a multiple of 8 (a whole number of 512-bit chunks). accumulate=false
// overwrites P, true adds to it (used for chunks of K).
using PopBlockFn = void (*)(const uint64_t* A, int64_t ma, int64_t lda, const uint64_t* B,
                            int64_t nb, int64_t ldb, int64_t W, int32_t* P, int64_t ldp,
                            bool accumulate);

void pop_block_scalar(const uint64_t*, int64_t, int64_t, const uint64_t*, int64_t, int64_t, int64_t,
                      int32_t*, int64_t, bool);
void pop_block_avx2(const uint64_t*, int64_t, int64_t, const uint64_t*, int64_t, int64_t, int64_t,
                    int32_t*, int64_t, bool);
void pop_block_avx512(const uint64_t*, int64_t, int64_t, const uint64_t*, int64_t, int64_t,
                      int64_t, int32_t*, int64_t, bool);

// Output row helpers (one per ISA):
//   store_i32: c[j] = K - 2*p[j]
//   store_f32: c[j] = scale[j] * float(K - 2*p[j]) + bias[j]   (scale/bias nullable: 1/0)
// for j < n. stream=true uses non-temporal full-cache-line stores where C is
// 64-byte aligned: for outputs far larger than the
// caches it saves the read-for-ownership and keeps the operands in L2.
// (drive() issues the sfence that orders them, once per thread.)
using StoreI32Fn = void (*)(const int32_t* p, int64_t n, int32_t K, int32_t* c, bool stream);
using StoreF32Fn = void (*)(const int32_t* p, int64_t n, int32_t K, const float* scale,
                            const float* bias, float* c, bool stream);
void store_i32_scalar(const int32_t*, int64_t, int32_t, int32_t*, bool);
void store_f32_scalar(const int32_t*, int64_t, int32_t, const float*, const float*, float*, bool);
void store_i32_avx2(const int32_t*, int64_t, int32_t, int32_t*, bool);
void store_f32_avx2(const int32_t*, int64_t, int32_t, const float*, const float*, float*, bool);
void store_i32_avx512(const int32_t*, int64_t, int32_t, int32_t*, bool);
void store_f32_avx512(const int32_t*, int64_t, int32_t, const float*, const float*, float*, bool);

// Sign rows: for j < n (n <= 64 * words), bit j of out[j / 64] is set iff
//   NOT ((p[j] <= pt[j]) XOR flip bit j of flipw[j / 64])
// i.e. bit 1 (= -1) unless "popcount <= threshold" differs from flip.
// Bits >= n of the last word are 0.
using SignRowFn = void (*)(const int32_t* p, const int32_t* pt, const uint64_t* flipw, int64_t n,
                           uint64_t* out);
void sign_row_scalar(const int32_t*, const int32_t*, const uint64_t*, int64_t, uint64_t*);
void sign_row_avx2(const int32_t*, const int32_t*, const uint64_t*, int64_t, uint64_t*);
void sign_row_avx512(const int32_t*, const int32_t*, const uint64_t*, int64_t, uint64_t*);
inline SignRowFn sign_row_fn(Isa isa) {
  switch (isa) {
    case Isa::avx512: return sign_row_avx512;
    case Isa::avx2: return sign_row_avx2;
    case Isa::scalar: break;
  }
  return sign_row_scalar;
}

// Outputs at least this large (bytes) are written with streaming stores.
constexpr double kStreamBytes = 8.0 * 1024 * 1024;

inline StoreI32Fn store_i32_fn(Isa isa) {
  switch (isa) {
    case Isa::avx512: return store_i32_avx512;
    case Isa::avx2: return store_i32_avx2;
    case Isa::scalar: break;
  }
  return store_i32_scalar;
}
inline StoreF32Fn store_f32_fn(Isa isa) {
  switch (isa) {
    case Isa::avx512: return store_f32_avx512;
    case Isa::avx2: return store_f32_avx2;
    case Isa::scalar: break;
  }
  return store_f32_scalar;
}

inline PopBlockFn pop_block_fn(Isa isa) {
  switch (isa) {
    case Isa::avx512: return pop_block_avx512;
    case Isa::avx2: return pop_block_avx2;
    case Isa::scalar: break;
  }
  return pop_block_scalar;
}

// Blocked driver over "plane rows": output row m owns A plane rows
// m*abits .. m*abits+abits-1, output column n owns B plane rows
// n*bbits .. n*bbits+bbits-1 (abits = bbits = 1 for plain XNOR GEMM). Every
// plane row has stride W = packed_words(K) words.
//
// The output is cut into blocks of MB rows x NB columns (NB a multiple of 64,
// so a block owns whole words of a packed output row); blocks are spread over
// OpenMP threads (M = 1 still gives N/NB blocks). Within a block, the raw
// popcounts of all plane-row pairs go to a thread-local buffer, then
//   epi(m0, mc, n0, nc, pop, ldp)
// turns them into outputs: pop[((m-m0)*abits + i) * ldp + j*nc + (n-n0)]
// = popcount(A plane (m,i) XOR B plane (n,j)) — for a fixed plane pair the
// block's columns are contiguous (vectorisable epilogues). epi must only write outputs of
// its rows/columns (it runs concurrently for different blocks).
// K is cut in chunks of KC words (B's block chunk stays in L2), accumulating
// into the buffer; the epilogue runs once per block.
// Upper bound of a block's column count (NB below), for epilogue scratch.
constexpr int64_t kMaxBlockCols = 256;

template <class Epi>
void drive(const uint64_t* A, int abits, const uint64_t* B, int bbits, int64_t M, int64_t N,
           int64_t W, Epi&& epi) {
  if (M <= 0 || N <= 0) return;
  const PopBlockFn pop = pop_block_fn(active_isa());
  // Block: 48 A plane rows x ~256 B plane rows (K=4096: 24 KB + 128 KB, L2-resident).
  const int64_t NB = std::max<int64_t>(64, (kMaxBlockCols / bbits) / 64 * 64);
  const int64_t MB = std::max<int64_t>(1, 48 / abits);
  constexpr int64_t KC = 128;     // words per K chunk (8192 bits; 1 KB per row)
  const int64_t nMB = (M + MB - 1) / MB, nNB = (N + NB - 1) / NB;
  const int64_t tiles = nMB * nNB;
  const int64_t NBp = NB * bbits;
  // Parallel only when there is real work (about >= 128 K word-pairs).
  const double work = double(M) * abits * double(N) * bbits * double(std::max<int64_t>(W, 8));
  const bool par = tiles > 1 && work >= double(1 << 17);
#pragma omp parallel if (par)
  {
    std::vector<int32_t> buf(static_cast<size_t>(std::min(MB, M) * abits * NBp));
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t nb = t / nMB, mb = t % nMB;  // consecutive tiles share B's block
      const int64_t m0 = mb * MB, n0 = nb * NB;
      const int64_t mc = std::min(MB, M - m0), nc = std::min(NB, N - n0);
      const uint64_t* Bb = B + n0 * bbits * W;
      if (W == 0) {
        std::fill(buf.begin(), buf.end(), 0);
      } else {
        for (int64_t k0 = 0; k0 < W; k0 += KC) {
          const int64_t kw = std::min(KC, W - k0);
          for (int j = 0; j < bbits; ++j)  // B plane j of the block's columns: stride bbits*W
            pop(A + m0 * abits * W + k0, mc * abits, W, Bb + j * W + k0, nc, bbits * W, kw,
                buf.data() + j * nc, NBp, k0 > 0);
        }
      }
      epi(m0, mc, n0, nc, static_cast<const int32_t*>(buf.data()), NBp);
    }
#if defined(__x86_64__) || defined(__i386__)
    _mm_sfence();  // order any streaming (non-temporal) output stores before returning
#endif
  }
}

}  // namespace qnn::kernels::detail
