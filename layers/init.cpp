#include "layers/init.h"

#include <cmath>

namespace qnn::init {

static void fill_uniform(Tensor& w, float s, Rng& rng) {
  float* p = w.data();
  for (int64_t i = 0, n = w.numel(); i < n; ++i) p[i] = rng.uniform(-s, s);
}

void glorot_uniform(Tensor& w, int64_t fan_in, int64_t fan_out, Rng& rng) {
  fill_uniform(w, std::sqrt(6.f / (float)(fan_in + fan_out)), rng);
}

void he_normal(Tensor& w, int64_t fan_in, Rng& rng) {
  const float sd = std::sqrt(2.f / (float)fan_in);
  float* p = w.data();
  for (int64_t i = 0, n = w.numel(); i < n; ++i) p[i] = sd * rng.normal();
}

void he_uniform(Tensor& w, int64_t fan_in, Rng& rng) { fill_uniform(w, std::sqrt(6.f / (float)fan_in), rng); }

void by_name(const std::string& name, Tensor& w, int64_t fan_in, int64_t fan_out, Rng& rng) {
  if (name == "glorot") glorot_uniform(w, fan_in, fan_out, rng);
  else if (name == "he") he_normal(w, fan_in, rng);
  else if (name == "he_uniform") he_uniform(w, fan_in, rng);
  else fail("unknown initialisation '" + name + "' (expected glorot, he or he_uniform)");
}

}  // namespace qnn::init
