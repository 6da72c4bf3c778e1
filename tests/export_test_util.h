// tests/export_test_util.h — fixtures of the export tests (test_export*.cpp):
// scratch .qnnx paths, random pixels, the runner's and the framework's logits
// compared bit for bit, a BNN MLP with every kind of batch-norm channel, and
// byte edits of .qnnx files (CRC recomputed) with the load error they give.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "kernels/packed_model.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "layers/quant/quant.h"
#include "tests/isa_util.h"

namespace qnn::test {

// qnn_test_export_<pid>_NAME in the system temp dir (the test removes it).
inline std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("qnn_test_export_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

inline std::vector<kernels::Isa> isas() { return supported_isas(); }

inline void leaves(Module& m, std::vector<Module*>& out) {
  if (m.children().empty()) out.push_back(&m);
  for (auto& [n, c] : m.children()) leaves(*c, out);
}

// Batch-norm statistics and affine parameters that make every kind of channel
// appear: negative gamma, gamma == 0 (constant sign, both ways), thresholds
// anywhere in the dot product's range (sd = its typical spread).
inline void randomize_bn(Module& model, Rng& rng) {
  std::vector<Module*> ls;
  leaves(model, ls);
  double sd = 16;  // first layer: y = V / 256, |y| up to ~784
  bool first = true;
  for (Module* m : ls) {
    if (auto* ql = dynamic_cast<QuantLinear*>(m)) {
      sd = first && !ql->input_quantizer() ? 16.0 : std::sqrt((double)ql->in_features());
      first = false;
    } else if (auto* lin = dynamic_cast<Linear*>(m)) {
      sd = first ? 8.0 : std::sqrt((double)lin->in_features());
      first = false;
    }
    auto* bn = dynamic_cast<BatchNorm*>(m);
    if (!bn) continue;
    for (int64_t c = 0; c < bn->channels(); ++c) {
      bn->running_mean.data()[c] = (float)(rng.normal() * sd);
      bn->running_var.data()[c] = (float)(sd * sd * rng.uniform(0.05f, 2.0f));
      float g = rng.normal();
      if (c % 7 == 3) g = 0.0f;
      if (c % 5 == 1) g = -std::fabs(g);
      bn->weight.data()[c] = g;
      bn->bias.data()[c] = rng.normal() * (c % 7 == 3 ? 1.0f : 0.5f);
    }
  }
}

// n rows of `in` random pixels; with n > 1, rows 0 and 1 are all 0 and all 255.
inline std::vector<uint8_t> random_pixels(int64_t n, int64_t in, uint64_t seed) {
  std::mt19937 g((unsigned)seed);
  std::vector<uint8_t> px((size_t)(n * in));
  for (auto& v : px) v = (uint8_t)(g() & 0xFF);
  if (n > 1)
    for (int64_t i = 0; i < in; ++i) px[(size_t)i] = 0, px[(size_t)(in + i)] = 255;  // the extremes
  return px;
}

// The eval logits of an MLP on pixels scaled (2p-255)/256.
inline std::vector<float> framework_logits(Module& m, const std::vector<uint8_t>& px, int64_t n, int64_t in) {
  std::vector<float> x((size_t)(n * in));
  for (size_t i = 0; i < x.size(); ++i) x[i] = scale_pixel(px[i], PixelScale::OddOver256);
  NoGradGuard ng;
  m.eval();
  Tensor y = m.forward(Tensor::from_data({n, in}, x.data()));
  return std::vector<float>(y.data(), y.data() + y.numel());
}

inline std::vector<float> runner_logits(kernels::PackedRunner& r, const std::vector<uint8_t>& px, int64_t n) {
  std::vector<float> out((size_t)(n * r.model().num_classes()));
  r.logits_u8(px.data(), n, out.data());
  return out;
}

// Bit-for-bit equality, with the first difference in the message.
inline void check_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      FAIL_CHECK(what << ": logit " << i << " differs: runner " << std::setprecision(9) << a[i] << " vs framework "
                      << b[i]);
      return;
    }
  }
}

// A quant_mlp BNN (sign weights and activations) with randomize_bn's batch norms.
inline std::shared_ptr<Sequential> bnn(const std::vector<int64_t>& hidden, uint64_t seed, bool act_in_linear,
                                       bool bias = false, bool shift_bn = false, int input_bits = 32, int64_t in = 784,
                                       int64_t classes = 10) {
  QuantMLPOptions o;
  o.input_bits = input_bits;
  o.hidden = hidden;
  o.act_in_linear = act_in_linear;
  o.dropout_in = 0.2f;
  o.dropout_hidden = act_in_linear ? 0.0f : 0.3f;
  o.bias = bias;
  o.shift_bn = shift_bn;
  Rng rng(seed);
  auto m = quant_mlp(in, classes, rng, o);
  if (bias)
    for (auto& [name, t] : m->named_parameters())
      if (name.find("bias") != std::string::npos && t.numel() > 0)
        for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = rng.normal() * 3.0f;
  randomize_bn(*m, rng);
  return m;
}

// The CRC of .qnnx bytes (their last 4) recomputed after an edit.
inline void fix_crc(std::string& b) {
  const uint32_t c = (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(b.data()), (uInt)(b.size() - 4));
  std::memcpy(b.data() + b.size() - 4, &c, 4);
}
template <class T>
void poke(std::string& b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}
template <class T>
T peek(const std::string& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

// The message of the exception from loading `bytes` (written to a file).
inline std::string load_error(const std::string& bytes, const std::string& path) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
  try {
    kernels::PackedModel::load(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace qnn::test
