// layers/quant/surrogate.cpp — parsing and the backward kernels of the
// surrogate gradients. Formulas: see surrogate.h.
// Compiled without trapping math so the elementwise loops vectorise
// (see layers/quant/vec_math.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "layers/quant/surrogate.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/tensor.h"
#include "layers/quant/vec_math.h"

namespace qnn {

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // below this one thread is faster

const char* kValidForms =
    "valid surrogates: hardtanh, ste, hardtanh:C, ste:C (C > 0, clip in units of the quantizer's range), "
    "tanh:K, periodic:K (K > 0), identity";

std::string fmt_float(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", (double)v);
  return buf;
}

// Constants of one (surrogate, geometry) pair, computed once per call.
struct Params {
  float clip;     // hardtanh: |x| <= clip passes
  float k;        // tanh / periodic slope
  float inv_a;    // tanh: K x / a
  float u_scale;  // periodic: u = x * (n-1) / a
  float a;        // periodic: 0 beyond +-a
};

Params params_of(const Surrogate& s, const QuantGeometry& geo) {
  Params p{};
  const float n1 = geo.bits >= 32 ? 1.0f : (float)((1u << geo.bits) - 1u);  // n - 1
  p.clip = s.param * geo.a;
  p.k = s.param;
  p.inv_a = 1.0f / geo.a;
  p.u_scale = n1 / geo.a;
  p.a = geo.a;
  return p;
}

// t = u - 2 round(u/2), u = x (n-1)/a: the distance to the nearest threshold
// in half-steps. (Ties |t| = 1 may go either way: the slope is the same.)
inline float periodic_t(float x, float u_scale) {
  const float u = x * u_scale;
  return u - 2.0f * detail::floor_small(0.5f * u + 0.5f);
}

}  // namespace

std::string Surrogate::str() const {
  switch (kind) {
    case SurrogateKind::hardtanh: return param == 1.0f ? "hardtanh" : "hardtanh:" + fmt_float(param);
    case SurrogateKind::tanh: return "tanh:" + fmt_float(param);
    case SurrogateKind::periodic: return "periodic:" + fmt_float(param);
    case SurrogateKind::identity: return "identity";
  }
  return "?";
}

Surrogate parse_surrogate(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const bool has_param = colon != std::string::npos;
  const std::string arg = has_param ? spec.substr(colon + 1) : "";
  const std::string where = "surrogate '" + spec + "': ";

  float v = 0.0f;
  if (has_param) {
    const char* b = arg.data();
    const char* e = b + arg.size();
    auto [ptr, ec] = std::from_chars(b, e, v);
    if (arg.empty() || ec != std::errc() || ptr != e)
      fail(where + "parameter '" + arg + "' is not a number (" + kValidForms + ")");
    if (!std::isfinite(v) || v <= 0.0f)
      fail(where + "parameter must be a finite number > 0, got " + arg + " (" + kValidForms + ")");
  }
  if (name == "hardtanh" || name == "ste") return Surrogate::hardtanh(has_param ? v : 1.0f);
  if (name == "tanh" || name == "periodic") {
    if (!has_param) fail(where + name + " needs its slope K, e.g. '" + name + ":3' (" + kValidForms + ")");
    return name == "tanh" ? Surrogate::tanh(v) : Surrogate::periodic(v);
  }
  if (name == "identity") {
    if (has_param) fail(where + "identity takes no parameter (" + kValidForms + ")");
    return Surrogate::identity();
  }
  fail(where + "unknown surrogate '" + name + "' (" + kValidForms + ")");
}

float surrogate_grad(const Surrogate& s, const QuantGeometry& geo, float x) {
  if (geo.bits >= 32) return 1.0f;
  const Params p = params_of(s, geo);
  switch (s.kind) {
    case SurrogateKind::hardtanh: return std::fabs(x) <= p.clip ? 1.0f : 0.0f;
    case SurrogateKind::tanh: return p.k * detail::sech2(p.k * x * p.inv_a);
    case SurrogateKind::periodic:
      if (!(std::fabs(x) <= p.a)) return 0.0f;
      return p.k * detail::sech2(p.k * periodic_t(x, p.u_scale));
    case SurrogateKind::identity: return 1.0f;
  }
  return 0.0f;
}

float surrogate_value(const Surrogate& s, const QuantGeometry& geo, float x) {
  if (geo.bits >= 32) return x;
  const Params p = params_of(s, geo);
  switch (s.kind) {
    case SurrogateKind::hardtanh: return std::fmin(std::fmax(x, -p.clip), p.clip);
    case SurrogateKind::tanh: return geo.a * std::tanh(p.k * x * p.inv_a);
    case SurrogateKind::periodic: {
      // (D/2) f3(u), f3(u) = tanh(K (u - 2r)) + 2r, r = round(u/2); flat beyond +-a.
      const float xc = std::fmin(std::fmax(x, -p.a), p.a);
      const float u = xc * p.u_scale;
      const float r = std::round(0.5f * u);
      return (std::tanh(p.k * (u - 2.0f * r)) + 2.0f * r) / p.u_scale;
    }
    case SurrogateKind::identity: return x;
  }
  return x;
}

// One tight loop per kind: the kind is decided once, outside the loop. The
// bodies are branch-free (selects, vec_math.h) so they vectorise; 1 - tanh^2
// is computed as sech^2.
void surrogate_backward(const Surrogate& s, const QuantGeometry& geo, const float* x, const float* g, float* gx,
                        int64_t n) {
  const Params p = params_of(s, geo);
  const SurrogateKind kind = geo.bits >= 32 ? SurrogateKind::identity : s.kind;
  switch (kind) {
    case SurrogateKind::hardtanh: {
      const float c = p.clip;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) gx[i] += (std::fabs(x[i]) <= c ? 1.0f : 0.0f) * g[i];
      break;
    }
    case SurrogateKind::tanh: {
      const float k = p.k, ka = p.k * p.inv_a;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) gx[i] += g[i] * (k * detail::sech2(ka * x[i]));
      break;
    }
    case SurrogateKind::periodic: {
      const float k = p.k, us = p.u_scale, a = p.a;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const float xi = x[i];
        const float d = k * detail::sech2(k * periodic_t(xi, us));
        gx[i] += g[i] * (std::fabs(xi) <= a ? d : 0.0f);
      }
      break;
    }
    case SurrogateKind::identity: {
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) gx[i] += g[i];
      break;
    }
  }
}

}  // namespace qnn
