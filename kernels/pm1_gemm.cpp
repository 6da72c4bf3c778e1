// kernels/pm1_gemm.cpp — real x (+-1) products: the reference loops, the
// tables and nibbles of the look-up kernels, the scalar variant and the
// dispatch. The SIMD tiles are in pm1_gemm_x86.cpp. Contract: pm1_gemm.h.
#include "kernels/pm1_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/isa.h"

namespace qnn::kernels {

namespace {

void check_args(const char* fn, int64_t I, int64_t J, int64_t K, const void* A, int64_t a_i, int64_t a_j,
                const void* S, const float* C, int64_t ldc) {
  const std::string f(fn);
  if (I < 0 || J < 0 || K < 0)
    throw std::invalid_argument(f + ": negative size (I " + std::to_string(I) + ", J " + std::to_string(J) +
                                ", K " + std::to_string(K) + ")");
  if (ldc < K) throw std::invalid_argument(f + ": ldc " + std::to_string(ldc) + " < K " + std::to_string(K));
  if (a_i < 0 || a_j < 0) throw std::invalid_argument(f + ": negative stride of A");
  if (I > 0 && K > 0 && C == nullptr) throw std::invalid_argument(f + ": C is null");
  if (I > 0 && J > 0 && A == nullptr) throw std::invalid_argument(f + ": A is null");
  if (J > 0 && K > 0 && S == nullptr) throw std::invalid_argument(f + ": S is null");
}

// Growable 64-byte aligned scratch, one per thread that calls pm1_gemm (the
// OpenMP workers only read it). Reused between calls: a training step calls
// pm1_gemm a few times with the same sizes, and fresh multi-MB buffers would
// cost page faults every time.
template <class T>
T* scratch(std::vector<T, AlignedAllocator<T>>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize((size_t)n);
  return v.data();
}

// 16 look-up sums of one row and group: tab[p] = (u0 + u1) + (u2 + u3),
// u_r = (bit r of p ? -1 : +1) * a_r. Written as multiplies by +-1 (exact)
// so the compiler vectorises it over p.
struct SignPatterns {
  float s[4][16];
  SignPatterns() {
    for (int r = 0; r < 4; ++r)
      for (int p = 0; p < 16; ++p) s[r][p] = (p >> r) & 1 ? -1.0f : 1.0f;
  }
};
const SignPatterns kSigns;

// byte b -> 8 bytes, byte q = bit q of b (0 or 1).
struct SpreadBits {
  uint64_t v[256];
  SpreadBits() {
    for (int b = 0; b < 256; ++b) {
      uint64_t x = 0;
      for (int q = 0; q < 8; ++q) x |= uint64_t((b >> q) & 1) << (8 * q);
      v[b] = x;
    }
  }
};
const SpreadBits kSpread;

// nib[g * ldn + k] = bits of S[4g..4g+3][k] from J packed rows; 0 past K.
// signed_code: the AVX2 panel's code of each pattern (pm1_signed_code8).
void build_nibbles(int64_t J, int64_t K, const uint64_t* S, int64_t ldn, uint8_t* nib, bool signed_code) {
  const int64_t G = (J + 3) / 4, W = packed_words(K), used = (K + 63) / 64;
#pragma omp parallel for schedule(static) if (G * K > (int64_t(1) << 16))
  for (int64_t g = 0; g < G; ++g) {
    uint8_t* out = nib + g * ldn;
    for (int64_t w = 0; w < used; ++w) {
      uint64_t bytes[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 64 output bytes, 8 per word
      for (int r = 0; r < 4 && 4 * g + r < J; ++r) {
        const uint64_t bits = S[(4 * g + r) * W + w];
        for (int q = 0; q < 8; ++q) bytes[q] |= kSpread.v[(bits >> (8 * q)) & 0xFF] << r;
      }
      if (signed_code)
        for (int q = 0; q < 8; ++q) bytes[q] = detail::pm1_signed_code8(bytes[q]);
      std::memcpy(out + 64 * w, bytes, 64);
    }
    std::memset(out + 64 * used, 0, size_t(ldn - 64 * used));
  }
}

// One row of the reference: pa[k] += (s0 a0 + s1 a1) + (s2 a2 + s3 a3).
// Plain C++; the clones only let the compiler use wider vectors, which
// changes no result (no reassociation, no contraction: -ffp-contract=off).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void add_group_row(float* __restrict pa, const float* const s[4], const float a[4], int64_t K) {
  const float *s0 = s[0], *s1 = s[1], *s2 = s[2], *s3 = s[3];
  const float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
  for (int64_t k = 0; k < K; ++k) pa[k] = pa[k] + ((s0[k] * a0 + s1[k] * a1) + (s2[k] * a2 + s3[k] * a3));
}

// The same nibbles from S's columns: K packed rows of J elements; the
// pattern of group g at column k is bits 4g..4g+3 of packed row k (a group
// never straddles a word: 64 is a multiple of 4; bits >= J are 0).
void build_nibbles_cols(int64_t J, int64_t K, const uint64_t* Sc, int64_t ldn, uint8_t* nib, bool signed_code) {
  const int64_t G = (J + 3) / 4, W = packed_words(J);
#pragma omp parallel for schedule(static) if (G * K > (int64_t(1) << 16))
  for (int64_t g = 0; g < G; ++g) {
    uint8_t* out = nib + g * ldn;
    const int64_t w = g / 16, shift = 4 * (g % 16);
    for (int64_t k = 0; k < K; ++k) {
      const uint64_t p = (Sc[k * W + w] >> shift) & 15u;
      out[k] = uint8_t(signed_code ? detail::pm1_signed_code8(p) : p);
    }
    std::memset(out + K, 0, size_t(ldn - K));
  }
}

struct Panel {
  detail::Pm1PanelFn fn;
  bool signed_code;  // nibbles in pm1_signed_code8's code
};
Panel panel_fn() {
  switch (active_isa()) {
    case Isa::avx512: return {detail::pm1_panel_avx512, false};
    case Isa::avx2: return {detail::pm1_panel_avx2, true};
    case Isa::scalar: break;
  }
  return {detail::pm1_panel_scalar, false};
}

}  // namespace

namespace detail {

// The scalar variant: the same tables and nibbles, one element at a time.
void pm1_panel_scalar(const float* T, const int64_t* goff, int64_t ir, int64_t G, const uint8_t* nib, int64_t ldn,
                      int64_t kw, const float* acc_in, float* out, int64_t ldc, bool add_out) {
  for (int64_t r = 0; r < ir; ++r)
    for (int64_t k = 0; k < kw; ++k) {
      float acc = acc_in ? acc_in[r * ldc + k] : 0.0f;
      for (int64_t g = 0; g < G; ++g) acc += T[goff[g] + 16 * r + nib[g * ldn + k]];
      float* o = out + r * ldc + k;
      *o = add_out ? *o + acc : acc;
    }
}

}  // namespace detail

namespace {

constexpr int64_t kRows = 4;            // rows of C per panel (every ISA): one group's 4 tables = 256 B
constexpr int64_t kChunk = 64;          // groups per chunk: a panel's tables (<= 16 KB without zeros) stay in L1
constexpr int64_t kParallelWork = int64_t(1) << 18;  // look-ups below which one thread is faster

// The 16 sums of every (slot, row) of one row panel: slot s is group slot_g[s]
// with the a_r of mask bit r set to +0 (a zero S entry: u = s * 0 = +-0, as
// 0 * a in the reference). T[s * 64 + 16 r + p].
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void build_panel_tables(const float* A, int64_t lda, int64_t J, int64_t ir, int64_t nslots, const int64_t* slot_g,
                        const uint8_t* slot_m, float* T) {
  for (int64_t s = 0; s < nslots; ++s)
    for (int64_t r = 0; r < ir; ++r) {
      const float* row = A + r * lda;
      float a[4];
      for (int q = 0; q < 4; ++q) {
        const int64_t j = 4 * slot_g[s] + q;
        a[q] = j < J && !((slot_m[s] >> q) & 1) ? row[j] : 0.0f;
      }
      float* tab = T + s * 64 + 16 * r;
      for (int p = 0; p < 16; ++p)
        tab[p] = (kSigns.s[0][p] * a[0] + kSigns.s[1][p] * a[1]) + (kSigns.s[2][p] * a[2] + kSigns.s[3][p] * a[3]);
    }
}

// C (=|+=) A · S from the nibbles of S (built by `nibbles`), with the zero
// entries of `zeros` (column blocks of Kq; nullptr: none, Kq = K).
//
// Blocking: threads own disjoint blocks of C (row panels split first, then
// columns), so no two write the same value and the result does not depend on
// the thread count. The reduction over G runs in chunks of kChunk groups with
// the sum carried in C (or a scratch copy when accumulating), which is the
// same sequential sum as one pass. Per chunk and row panel the tables are
// built just in time (16 KB, L1) and every column of the thread's block is
// swept against them; the chunk's nibbles (kChunk x ldn bytes) stay in L2.
// A group whose taps differ in their zero pattern from block to block gets
// one table per distinct pattern (a "slot"); goff[q][g] picks it per block.
template <class BuildNibbles>
void pm1_drive(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j, float* C, int64_t ldc,
               bool accumulate, const BuildNibbles& nibbles, int64_t Kq = 0, const uint64_t* zeros = nullptr) {
  if (I == 0 || K == 0) return;
  const int64_t G = (J + 3) / 4;
  if (G == 0) {  // acc = +0
    for (int64_t i = 0; i < I; ++i)
      for (int64_t k = 0; k < K; ++k) C[i * ldc + k] = accumulate ? C[i * ldc + k] + 0.0f : 0.0f;
    return;
  }
  thread_local std::vector<float, AlignedAllocator<float>> at_buf, acc_buf;
  thread_local std::vector<uint8_t, AlignedAllocator<uint8_t>> nib_buf;
  // A not row-major (a_j != 1, e.g. g^T): copy it row-major first, so that
  // the table build reads contiguous rows.
  const float* Ar = A;
  int64_t lda = a_i;
  if (a_j != 1 && J > 1) {
    float* At = scratch(at_buf, I * J);
    constexpr int64_t B = 64;  // blocked transpose-copy
#pragma omp parallel for schedule(static) collapse(2) if (I * J > (int64_t(1) << 16))
    for (int64_t i0 = 0; i0 < I; i0 += B)
      for (int64_t j0 = 0; j0 < J; j0 += B)
        for (int64_t j = j0; j < std::min(J, j0 + B); ++j)
          for (int64_t i = i0; i < std::min(I, i0 + B); ++i) At[i * J + j] = A[i * a_i + j * a_j];
    Ar = At;
    lda = J;
  }
  const Panel panel = panel_fn();
  const int64_t ldn = (K + 16 + 63) / 64 * 64;
  uint8_t* nib = scratch(nib_buf, G * ldn);
  nibbles(ldn, nib, panel.signed_code);

  if (!zeros) Kq = K;
  const int64_t Q = (K + Kq - 1) / Kq, ZW = (Q + 63) / 64;
  const int64_t chunks = (G + kChunk - 1) / kChunk;
  // Where the running sum lives between chunks: C itself, unless C's old
  // value must be added at the end (then a scratch [I x ldc]).
  float* buf = C;
  if (accumulate && chunks > 1) buf = scratch(acc_buf, I * ldc);

  const int64_t panels = (I + kRows - 1) / kRows;
  const int nt = I * K * G > kParallelWork ? omp_get_max_threads() : 1;
  const int64_t R = std::min<int64_t>(nt, panels), KP = std::max<int64_t>(1, nt / R);
#pragma omp parallel num_threads(int(R * KP)) if (R * KP > 1)
  {
    const int64_t tid = omp_get_thread_num(), rp = tid / KP, cp = tid % KP;
    const int64_t a0 = panels * rp / R, a1 = panels * (rp + 1) / R;
    std::vector<int64_t> goff(size_t(Q * kChunk)), slot_g;
    std::vector<uint8_t> slot_m;
    std::vector<float, AlignedAllocator<float>> T;
    int64_t seen[16];
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t g0 = c * kChunk, Gc = std::min(kChunk, G - g0);
      // Slots of this chunk: one per (group, distinct zero pattern).
      slot_g.clear();
      slot_m.clear();
      for (int64_t gg = 0; gg < Gc; ++gg) {
        const int64_t g = g0 + gg;
        std::fill(seen, seen + 16, int64_t(-1));
        for (int64_t q = 0; q < Q; ++q) {
          int m = 0;
          if (zeros)
            for (int r = 0; r < 4; ++r) {
              const int64_t j = 4 * g + r;
              if (j < J && ((zeros[j * ZW + q / 64] >> (q % 64)) & 1)) m |= 1 << r;
            }
          if (seen[m] < 0) {
            seen[m] = int64_t(slot_g.size());
            slot_g.push_back(g);
            slot_m.push_back(uint8_t(m));
          }
          goff[size_t(q * kChunk + gg)] = seen[m] * 64;
        }
      }
      if ((int64_t)T.size() < (int64_t)slot_g.size() * 64) T.resize(slot_g.size() * 64);
      const bool last = c + 1 == chunks;
      const float* acc_in = c == 0 ? nullptr : buf;
      float* out = last ? C : buf;
      const bool add_out = last && accumulate;
      for (int64_t a = a0; a < a1; ++a) {
        const int64_t i0 = a * kRows, ir = std::min(kRows, I - i0);
        build_panel_tables(Ar + i0 * lda, lda, J, ir, (int64_t)slot_g.size(), slot_g.data(), slot_m.data(), T.data());
        for (int64_t q = 0; q < Q; ++q) {
          // This thread's share of block q's columns (multiples of 16).
          const int64_t bw = std::min(Kq, K - q * Kq), step = ((bw + KP - 1) / KP + 15) & ~int64_t(15);
          const int64_t lo = std::min(bw, cp * step), hi = std::min(bw, (cp + 1) * step);
          if (hi <= lo) continue;
          const int64_t k0 = q * Kq + lo;
          panel.fn(T.data(), goff.data() + q * kChunk, ir, Gc, nib + g0 * ldn + k0, ldn, hi - lo,
                   acc_in ? acc_in + i0 * ldc + k0 : nullptr, out + i0 * ldc + k0, ldc, add_out);
        }
      }
    }
  }
}

}  // namespace

void pm1_gemm(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j, const uint64_t* S_packed,
              float* C, int64_t ldc, bool accumulate) {
  check_args("pm1_gemm", I, J, K, A, a_i, a_j, S_packed, C, ldc);
  pm1_drive(I, J, K, A, a_i, a_j, C, ldc, accumulate,
            [&](int64_t ldn, uint8_t* nib, bool sc) { build_nibbles(J, K, S_packed, ldn, nib, sc); });
}

void pm1_gemm_zeros(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j,
                    const uint64_t* S_packed, int64_t Kq, const uint64_t* zeros, float* C, int64_t ldc,
                    bool accumulate) {
  check_args("pm1_gemm_zeros", I, J, K, A, a_i, a_j, S_packed, C, ldc);
  if (Kq < 1) throw std::invalid_argument("pm1_gemm_zeros: block width Kq " + std::to_string(Kq) + " < 1");
  if (J > 0 && K > 0 && zeros == nullptr) throw std::invalid_argument("pm1_gemm_zeros: zeros is null");
  pm1_drive(I, J, K, A, a_i, a_j, C, ldc, accumulate,
            [&](int64_t ldn, uint8_t* nib, bool sc) { build_nibbles(J, K, S_packed, ldn, nib, sc); }, Kq, zeros);
}

void pm1_gemm_cols(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j,
                   const uint64_t* S_cols_packed, float* C, int64_t ldc, bool accumulate) {
  check_args("pm1_gemm_cols", I, J, K, A, a_i, a_j, S_cols_packed, C, ldc);
  pm1_drive(I, J, K, A, a_i, a_j, C, ldc, accumulate,
            [&](int64_t ldn, uint8_t* nib, bool sc) { build_nibbles_cols(J, K, S_cols_packed, ldn, nib, sc); });
}

void pm1_gemm_reference(int64_t I, int64_t J, int64_t K, const float* A, int64_t a_i, int64_t a_j, const float* S,
                        int64_t lds, float* C, int64_t ldc, bool accumulate) {
  check_args("pm1_gemm_reference", I, J, K, A, a_i, a_j, S, C, ldc);
  if (lds < K) throw std::invalid_argument("pm1_gemm_reference: lds " + std::to_string(lds) + " < K");
  if (I == 0 || K == 0) return;
  const int64_t G = (J + 3) / 4;
  const std::vector<float> ones((size_t)K, 1.0f);  // the S row of a padding j (u = 1 * +0 = +0)
  // Rows of C in blocks of RB, so each group's four S rows are read once per
  // block rather than once per row (S can be a 16 MB weight matrix).
  constexpr int64_t RB = 4;
  const int64_t blocks = (I + RB - 1) / RB;
#pragma omp parallel if (I * K * (J + 1) > (int64_t(1) << 18))
  {
    std::vector<float> acc((size_t)(RB * K));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t i0 = blk * RB, rows = std::min(RB, I - i0);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t g = 0; g < G; ++g) {
        const float* s[4];
        for (int r = 0; r < 4; ++r) s[r] = 4 * g + r < J ? S + (4 * g + r) * lds : ones.data();
        for (int64_t i = i0; i < i0 + rows; ++i) {
          float a[4];
          for (int r = 0; r < 4; ++r) a[r] = 4 * g + r < J ? A[i * a_i + (4 * g + r) * a_j] : 0.0f;
          add_group_row(acc.data() + (i - i0) * K, s, a, K);
        }
      }
      for (int64_t i = i0; i < i0 + rows; ++i) {
        const float* pa = acc.data() + (i - i0) * K;
        float* c = C + i * ldc;
        for (int64_t k = 0; k < K; ++k) c[k] = accumulate ? c[k] + pa[k] : pa[k];
      }
    }
  }
}

}  // namespace qnn::kernels
