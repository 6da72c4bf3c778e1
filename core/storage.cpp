// core/storage.cpp — aligned float buffers with a small caching allocator.
//
// Why cache: a training step allocates the same activation and gradient
// sizes every iteration (e.g. [100, 2048] floats = 800 KB). glibc serves such
// sizes with fresh mmap()s, and touching fresh pages costs page faults on every
// step. Keeping freed buffers in a per-size free list (like PyTorch's caching
// allocator, much simplified) makes steady-state training allocation-free.
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace qnn {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kMaxCachedBytes = size_t(2) << 30;  // never hoard more than 2 GiB

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<float*>> free_lists;  // bytes -> buffers
  size_t cached_bytes = 0;
  ~Cache() {
    for (auto& [bytes, v] : free_lists)
      for (float* p : v) std::free(p);
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // leaked on purpose: outlives static Tensors
  return *c;
}

size_t rounded_bytes(int64_t n) {
  size_t b = (size_t)n * sizeof(float);
  return (b + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

Storage::Storage(int64_t n) : size(n) {
  if (n <= 0) {
    data = nullptr;
    return;
  }
  const size_t bytes = rounded_bytes(n);
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_lists.find(bytes);
    if (it != c.free_lists.end() && !it->second.empty()) {
      data = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= bytes;
      return;
    }
  }
  data = static_cast<float*>(std::aligned_alloc(kAlign, bytes));
  if (!data) throw std::bad_alloc();
}

Storage::~Storage() {
  if (!data || !owned) return;
  const size_t bytes = rounded_bytes(size);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.cached_bytes + bytes <= kMaxCachedBytes) {
    c.free_lists[bytes].push_back(data);
    c.cached_bytes += bytes;
  } else {
    std::free(data);
  }
}

}  // namespace qnn
