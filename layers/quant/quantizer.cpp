// layers/quant/quantizer.cpp — the fused `quantize` op and the quantizer objects.
//
// quantize() is hot: it runs on every activation and every weight of a
// quantized network at every step. So the forward is one tight loop per kind
// (no std::function per element), split across OpenMP threads for large
// tensors, and the backward is surrogate_backward (surrogate.cpp).
// Compiled without trapping math so the elementwise loops vectorise
// (see layers/quant/vec_math.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "layers/quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "layers/quant/vec_math.h"

namespace qnn {

namespace {

constexpr int64_t kParallelMin = 1 << 16;

// Counter-based uniform in [0, 1) with 24 random bits: element i of a call
// depends only on (seed, i), so any thread may compute any element and the
// loop vectorises (32-bit arithmetic only). i is taken mod 2^32.
inline float hash_uniform(uint32_t s0, uint32_t s1, int64_t i) {
  const uint32_t h = detail::mix32(detail::mix32((uint32_t)i * 0x9e3779b9U + s0) ^ s1);
  return (float)(h >> 8) * (1.0f / 16777216.0f);
}

const char* op_name(QuantForward f) {
  switch (f) {
    case QuantForward::sign: return "quantize_sign";
    case QuantForward::stochastic_sign: return "quantize_stochastic_sign";
    case QuantForward::uniform: return "quantize_uniform";
    default: return "quantize_identity";
  }
}

void check_bits(const std::string& who, int bits) {
  if (bits == 32) return;
  QNN_CHECK(bits >= 1 && bits <= 16, who + ": bits must be 1..16, or 32 for no quantization; got " +
                                         std::to_string(bits));
}

}  // namespace

Tensor quantize(const Tensor& x, QuantForward fwd, const QuantGeometry& geo, const Surrogate& s, uint64_t seed) {
  QNN_CHECK(x.defined(), "quantize: undefined input");
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const int64_t n = x.numel();
  const float a = geo.a;
  switch (fwd) {
    case QuantForward::sign:
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) py[i] = px[i] < 0.0f ? -a : a;
      break;
    case QuantForward::stochastic_sign:
      // P(+1) = hard_sigmoid(x) = clip((x + 1) / 2, 0, 1); u < p with u in [0, 1).
    {
      const uint32_t s0 = (uint32_t)seed, s1 = (uint32_t)(seed >> 32);
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        float p = 0.5f * (px[i] + 1.0f);
        p = p < 0.0f ? 0.0f : p;
        p = p > 1.0f ? 1.0f : p;
        py[i] = hash_uniform(s0, s1, i) < p ? 1.0f : -1.0f;
      }
      break;
    }
    case QuantForward::uniform: {
      QNN_CHECK(geo.bits >= 1 && geo.bits <= 16, "quantize: uniform needs bits 1..16");
      const float n1 = (float)((1u << geo.bits) - 1u);  // n - 1, odd
      // The level is the odd integer v with (v-1) a <= clip(x) (n-1) < (v+1) a,
      // decided exactly, times a/(n-1). kernels/level_planes.h holds that
      // computation (a float pass; exact double arithmetic for any block with
      // a value next to a threshold), shared with the level packers and the
      // exported-model runner.
      const int64_t blocks = (n + kernels::kLevelBlock - 1) / kernels::kLevelBlock;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t i0 = b * kernels::kLevelBlock, e = std::min(kernels::kLevelBlock, n - i0);
        float lv[kernels::kLevelBlock];
        kernels::uniform_odd_levels(px + i0, e, a, n1, lv);
        float* yb = py + i0;
#pragma omp simd
        for (int64_t i = 0; i < e; ++i) yb[i] = (a * lv[i]) / n1;
      }
      break;
    }
    case QuantForward::identity:
#pragma omp parallel for simd if (parallel: n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) py[i] = px[i];
      break;
  }
  if (needs_grad(x)) {
    // Saves x (a handle, no copy): the surrogate derivative is a function of x.
    const QuantGeometry g_geo = fwd == QuantForward::identity ? QuantGeometry{32, a} : geo;
    record(y, op_name(fwd), {x}, [x, g_geo, s](const Tensor& g) {
      surrogate_backward(s, g_geo, x.data(), g.data(), x.grad_data(), x.numel());
    });
  }
  return y;
}

// ---- Quantizer ----------------------------------------------------------------------

std::string Quantizer::str() const {
  std::string s = name();
  if (name() == "uniform") {
    char buf[64];
    std::snprintf(buf, sizeof buf, "(bits=%d, a=%g)", bits(), (double)scale());
    s += buf;
  }
  if (!is_identity()) {
    s += '[';
    s += surrogate_.str();
    s += ']';
  }
  return s;
}

std::vector<float> Quantizer::levels() const {
  std::vector<float> v;
  if (is_identity()) return v;
  const int n = 1 << bits();
  const float n1 = (float)(n - 1), a = scale();
  for (int j = 0; j < n; ++j) v.push_back((a * (float)(2 * j - (n - 1))) / n1);
  return v;
}

Tensor Sign::operator()(const Tensor& x) { return quantize(x, QuantForward::sign, {1, 1.0f}, surrogate_); }

Tensor StochasticSign::operator()(const Tensor& x) {
  if (!training_) return quantize(x, QuantForward::sign, {1, 1.0f}, surrogate_);
  return quantize(x, QuantForward::stochastic_sign, {1, 1.0f}, surrogate_, rng_.next_u64());
}

Uniform::Uniform(int bits, float a, Surrogate s) : Quantizer(s), bits_(bits), a_(a) {
  check_bits("Uniform", bits);
  QNN_CHECK(std::isfinite(a) && a > 0.0f, "Uniform: range a must be finite and > 0, got " + std::to_string(a));
}

Tensor Uniform::operator()(const Tensor& x) {
  if (bits_ >= 32) return quantize(x, QuantForward::identity, {32, a_}, surrogate_);
  // bits = 1 is sign with levels +-a (x < 0 -> -a), exactly, even for x so
  // small that x + a rounds to a.
  if (bits_ == 1) return quantize(x, QuantForward::sign, {1, a_}, surrogate_);
  return quantize(x, QuantForward::uniform, {bits_, a_}, surrogate_);
}

// ---- factories ----------------------------------------------------------------------

std::shared_ptr<Quantizer> make_quantizer(const std::string& kind, int bits, const Surrogate& s, Rng* rng, float a) {
  const std::string who = "make_quantizer('" + kind + "', bits=" + std::to_string(bits) + ")";
  if (kind == "sign" || kind == "stochastic" || kind == "stochastic_sign") {
    QNN_CHECK(bits == 1, who + ": " + kind + " is a 1-bit quantizer; use 'uniform' for " + std::to_string(bits) +
                             " bits");
    QNN_CHECK(a == 1.0f, who + ": sign quantizers have levels +-1; use uniform(bits=1, a) for +-a");
    if (kind == "sign") return std::make_shared<Sign>(s);
    QNN_CHECK(rng != nullptr, who + ": a stochastic quantizer needs an Rng (split from the model's)");
    return std::make_shared<StochasticSign>(*rng, s);
  }
  if (kind == "uniform") {
    check_bits(who, bits);
    return std::make_shared<Uniform>(bits, a, s);
  }
  fail(who + ": unknown quantizer kind '" + kind + "' (expected sign, stochastic or uniform)");
}

std::shared_ptr<Quantizer> quantizer_for_bits(int bits, const Surrogate& s, bool stochastic, Rng* rng) {
  const std::string who = "quantizer_for_bits(" + std::to_string(bits) + ")";
  check_bits(who, bits);
  if (stochastic)
    QNN_CHECK(bits == 1, who + ": stochastic quantization is defined for 1 bit only (BinaryNet's stochastic sign)");
  if (bits == 32) return nullptr;
  if (bits == 1) return make_quantizer(stochastic ? "stochastic" : "sign", 1, s, rng);
  return std::make_shared<Uniform>(bits, 1.0f, s);
}

}  // namespace qnn
