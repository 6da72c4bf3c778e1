// layers/init.h — weight initialisations, all drawn from a seeded Rng.
//
//   glorot_uniform: U(-s, s), s = sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio 2010;
//                   BinaryNet's choice for binary layers, whose latent weights
//                   then start well inside the [-1, 1] clip)
//   he_normal:      N(0, sqrt(2 / fan_in))                       (He et al. 2015; ReLU nets)
//   he_uniform:     U(-s, s), s = sqrt(6 / fan_in)
#pragma once

#include <string>

#include "core/rng.h"
#include "core/tensor.h"

namespace qnn::init {

void glorot_uniform(Tensor& w, int64_t fan_in, int64_t fan_out, Rng& rng);
void he_normal(Tensor& w, int64_t fan_in, Rng& rng);
void he_uniform(Tensor& w, int64_t fan_in, Rng& rng);
// By name ("glorot", "he", "he_uniform"); throws on unknown names.
void by_name(const std::string& name, Tensor& w, int64_t fan_in, int64_t fan_out, Rng& rng);

}  // namespace qnn::init
