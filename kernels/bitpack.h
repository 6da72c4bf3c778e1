// kernels/bitpack.h — THE bit convention of qnn's packed ±1 data.
//
// Every packed buffer in qnn (XNOR GEMM operands and outputs, bit-serial bit
// planes, packed activations saved for backward, packed weights) follows the
// rules below. They are stated here once; other headers refer to this one.
//
// 1. Value <-> bit.  bit = 1 means -1, bit = 0 means +1.
//    A float x packs to 1 iff x < 0. So +0, -0 and every x >= 0 pack to 0
//    (= +1), matching sign(0) = +1 of the BNN papers (docs/design.md §3).
//    NaN packs to 0 (= +1): "x < 0" is false for NaN.
//    Unpacking writes exactly +1.0f or -1.0f.
//
// 2. Element order.  Element k of a row is bit (k % 64) of 64-bit word (k / 64)
//    of that row, little-endian within the word (bit 0 = least significant).
//
// 3. Row stride and padding.  A row of K elements occupies packed_words(K)
//    words = ceil(K / 512) * 8, i.e. rows are padded to a multiple of 512 bits
//    (one AVX-512 register, one 64-byte cache line). Row r starts at word
//    r * packed_words(K). Rows of a 64-byte aligned buffer are therefore
//    64-byte aligned too (the kernels do not require alignment; it only helps).
//    K = 0 gives 0 words.
//
// 4. Padding bits are 0.  Every bit of a row at element index >= K (the tail
//    of the last used word and the whole padding words) is 0 in every packed
//    buffer any qnn function writes, and every kernel may assume it of its
//    inputs. With both operands' pads 0, a XOR b is 0 there, so
//        dot(a, b) = sum_k a_k b_k = K - 2 * popcount(a XOR b)
//    holds with the real K and no masking. Code that builds packed buffers by
//    hand must keep the pads 0 (see PackedVector below for zeroed storage).
//
// Packing and unpacking pick the SIMD variant of kernels/isa.h (AVX-512 /
// AVX2 compare + movemask, scalar fallback) and use OpenMP over rows when the
// input is large. Arguments are validated with std::invalid_argument.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace qnn::kernels {

// Words per packed row of K elements: ceil(K / 512) * 8. Throws if K < 0.
int64_t packed_words(int64_t K);

// Pack rows: X is [rows x K] row-major with row stride ldx (floats, ldx >= K).
// out receives rows * packed_words(K) words (pads written as 0).
void pack_rows(const float* X, int64_t rows, int64_t K, int64_t ldx, uint64_t* out);

// Unpack rows: P is rows * packed_words(K) words; writes ±1.0f into
// out[r * ldo + k] for k < K (ldo >= K). Pad bits are ignored.
void unpack_rows(const uint64_t* P, int64_t rows, int64_t K, float* out, int64_t ldo);

// Pack columns (transposed packer): X is [K x N] row-major with row stride ldx
// (ldx >= N). Writes N packed rows of K elements: packed row n holds column n
// of X, i.e. element k of packed row n is X[k * ldx + n]. out receives
// N * packed_words(K) words. Use it for a weight stored [in x out] or for
// packing the transpose of an activation matrix.
void pack_cols(const float* X, int64_t K, int64_t N, int64_t ldx, uint64_t* out);

// 64-byte aligned, zero-initialised storage for packed data.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::size_t kAlign = 64;
  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlign)));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kAlign)); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
};
// std::vector value-initialises, so a PackedVector(n) is all zero bits (+1s).
using PackedVector = std::vector<uint64_t, AlignedAllocator<uint64_t>>;

// Convenience: a zeroed buffer for `rows` packed rows of K elements.
inline PackedVector make_packed(int64_t rows, int64_t K) {
  return PackedVector(static_cast<std::size_t>(rows * packed_words(K)));
}

}  // namespace qnn::kernels
