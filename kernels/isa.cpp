// kernels/isa.cpp — run-time choice of the SIMD variant (see isa.h).
#include "kernels/isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

namespace qnn::kernels {

namespace {
// -1 = not decided yet; otherwise static_cast<int>(Isa).
std::atomic<int> g_isa{-1};
std::mutex g_init_mutex;
}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
#if defined(__x86_64__) || defined(__i386__)
    case Isa::avx2:
      return __builtin_cpu_supports("avx2");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vpopcntdq");
#else
    case Isa::avx2:
    case Isa::avx512:
      return false;
#endif
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  if (isa_supported(Isa::avx2)) return Isa::avx2;
  return Isa::scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  if (name == "scalar") return Isa::scalar;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  throw std::invalid_argument("unknown kernel variant '" + std::string(name) +
                              "' (expected scalar, avx2 or avx512)");
}

namespace {
// QNN_KERNEL if set (validated), else the best supported variant.
Isa isa_from_env() {
  Isa isa = best_isa();
  if (const char* env = std::getenv("QNN_KERNEL"); env != nullptr && *env != '\0') {
    Isa want;
    try {
      want = parse_isa(env);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(std::string("QNN_KERNEL=") + env +
                                  ": unknown kernel variant (expected scalar, avx2 or avx512)");
    }
    if (!isa_supported(want))
      throw std::invalid_argument(std::string("QNN_KERNEL=") + env +
                                  ": this CPU does not support that variant (best available: " +
                                  isa_name(isa) + ")");
    isa = want;
  }
  return isa;
}
}  // namespace

Isa active_isa() {
  int v = g_isa.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Isa>(v);
  std::lock_guard<std::mutex> lock(g_init_mutex);
  v = g_isa.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Isa>(v);
  const Isa isa = isa_from_env();
  g_isa.store(static_cast<int>(isa), std::memory_order_release);
  return isa;
}

void reload_isa_from_env() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  g_isa.store(static_cast<int>(isa_from_env()), std::memory_order_release);
}

void set_isa(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("set_isa: this CPU does not support the '") +
                                isa_name(isa) + "' kernel variant");
  g_isa.store(static_cast<int>(isa), std::memory_order_release);
}

}  // namespace qnn::kernels
