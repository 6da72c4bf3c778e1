// core/rng.h — one seeded random generator for everything random.
//
// Reproducibility rule: an app makes one Rng from --seed and hands it (or
// generators split from it) to initialisers, dropout, shuffling and stochastic
// quantizers. Nothing in qnn reads a global or time-based seed.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace qnn {

// xoshiro256** (Blackman & Vigna): fast, small state, good statistics.
class Rng {
 public:
  explicit Rng(uint64_t seed = 1) { reseed(seed); }
  void reseed(uint64_t seed) {
    uint64_t z = seed;
    for (auto& s : s_) s = splitmix64(z);
  }
  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 24 random bits (exactly representable floats).
  float uniform() { return (float)(next_u64() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : (uint64_t)(((__uint128_t)next_u64() * n) >> 64); }
  // Standard normal (Box-Muller; one value per call, simple over fast).
  float normal() {
    double u1 = ((next_u64() >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0, 1]
    double u2 = (next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  // Counter-based draws, for parallel loops: element i of the stream named
  // `key` is a pure function of (key, i), so any thread can compute any
  // element and the result never depends on the thread count. Draw the key
  // from the sequential generator once per call (dropout: once per batch).
  // This is splitmix64's output at position i + 1 of a sequence seeded by key.
  static uint64_t stream_u64(uint64_t key, uint64_t i) {
    uint64_t z = key + i * 0x9e3779b97f4a7c15ULL;
    return splitmix64(z);  // adds the constant once more, then mixes
  }
  // The 24-bit integer behind a uniform draw: u24 / 2^24 is uniform in [0, 1).
  static uint32_t stream_u24(uint64_t key, uint64_t i) { return (uint32_t)(stream_u64(key, i) >> 40); }

  // An independent generator derived from this one (for a sub-component).
  Rng split() { return Rng(next_u64()); }

  // The full generator state, so a resumed run (apps/common/run_state.h)
  // draws exactly what the uninterrupted run would have drawn. All-zero is
  // not a valid xoshiro state (it stays zero forever): reseed() never makes
  // it, and callers restoring a stored state must refuse it.
  using State = std::array<uint64_t, 4>;
  State state() const { return {s_[0], s_[1], s_[2], s_[3]}; }
  void set_state(const State& s) {
    for (int i = 0; i < 4; ++i) s_[i] = s[i];
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& z) {
    uint64_t r = (z += 0x9e3779b97f4a7c15ULL);
    r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ULL;
    r = (r ^ (r >> 27)) * 0x94d049bb133111ebULL;
    return r ^ (r >> 31);
  }
  uint64_t s_[4];
};

}  // namespace qnn
