// kernels/isa.h — which SIMD code path the bit kernels use.
//
// The bit-packing and XNOR/bit-serial kernels exist in three variants:
//   scalar : portable C++ (__builtin_popcountll), runs on any CPU;
//   avx2   : AVX2, popcount by a nibble look-up table (vpshufb);
//   avx512 : AVX-512F/BW + VPOPCNTDQ (vpopcntq).
// Every variant is compiled into the same binary with per-function
// __attribute__((target(...))) — no global -m flags — and the best one the
// CPU supports is chosen at run time (CPUID via __builtin_cpu_supports).
//
// The environment variable QNN_KERNEL=scalar|avx2|avx512 forces a variant; it
// is read once, on the first call of active_isa(). An unknown name, or a
// variant this CPU cannot run, throws std::invalid_argument from that call
// (i.e. from the first kernel call) with a message naming the problem.
// All variants give bit-identical results.
#pragma once
#include <string_view>

namespace qnn::kernels {

enum class Isa { scalar, avx2, avx512 };

// Variant used by the kernels now (QNN_KERNEL, else the best supported).
Isa active_isa();
// Can this CPU (and OS) run the variant?
bool isa_supported(Isa isa);
// Force a variant (tests, benchmarks). Throws std::invalid_argument if unsupported.
void set_isa(Isa isa);
// Best variant this CPU supports (ignores QNN_KERNEL and set_isa).
Isa best_isa();
// "scalar", "avx2", "avx512".
const char* isa_name(Isa isa);
// Re-read QNN_KERNEL now (normally read once, on first use) — for tests.
// Throws like active_isa() on a bad value (the current choice is kept).
void reload_isa_from_env();
// Inverse of isa_name; throws std::invalid_argument on an unknown name.
Isa parse_isa(std::string_view name);

}  // namespace qnn::kernels
