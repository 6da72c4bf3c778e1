// kernels/denormals.cpp — FTZ + DAZ in MXCSR (see denormals.h for why).
#include "kernels/denormals.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/simd_target.h"

#if QNN_X86
#include <xmmintrin.h>
#endif

namespace qnn::kernels {

namespace {
#if QNN_X86
constexpr unsigned kFtz = 1u << 15;  // flush-to-zero: subnormal results become +-0
constexpr unsigned kDaz = 1u << 6;   // denormals-are-zero: subnormal inputs read as +-0

void set_this_thread(bool on) {
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | kFtz | kDaz) : (csr & ~(kFtz | kDaz)));
}
#endif
}  // namespace

bool set_flush_denormals(bool on) {
#if QNN_X86
  set_this_thread(on);
  // Every thread of the pool, including those created earlier (those created
  // later copy the creating thread's MXCSR).
#pragma omp parallel
  set_this_thread(on);
  return true;
#else
  (void)on;
  return false;
#endif
}

bool flush_denormals() {
#if QNN_X86
  return (_mm_getcsr() & (kFtz | kDaz)) == (kFtz | kDaz);
#else
  return false;
#endif
}

bool apply_denormals_env() {
  const char* v = std::getenv("QNN_DENORMALS");
  const std::string s = v ? v : "";
  if (!s.empty() && s != "keep" && s != "flush")
    throw std::invalid_argument("QNN_DENORMALS must be keep or flush, got '" + s + "'");
  set_flush_denormals(s != "keep");
  return flush_denormals();
}

const char* denormals_name() {
#if QNN_X86
  return flush_denormals() ? "flushed" : "kept (IEEE)";
#else
  return "IEEE (no flush mode)";
#endif
}

}  // namespace qnn::kernels
