// kernels/packed_model.cpp — the deployed model itself (see packed_model.h):
// names, sizes, and validate(), the one consistency check that export, the
// file reader and the runner all go through. The file format is
// packed_model_io.cpp; the runner packed_runner.cpp, with packed_epilogue.cpp
// (binary layers' fused epilogues) and packed_cnn.cpp (conv / pool layers).
#include "kernels/packed_model.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/bitserial.h"
#include "kernels/level_planes.h"
#include "kernels/packed_model_internal.h"

namespace qnn::kernels {

using namespace pmodel;

// ---- names ----------------------------------------------------------------------

const char* input_scale_name(InputScale s) {
  switch (s) {
    case InputScale::none: return "none";
    case InputScale::odd_over_256: return "(2p-255)/256";
    case InputScale::minus_one_to_one: return "p/127.5-1";
    case InputScale::zero_to_one: return "p/255";
  }
  return "unknown";
}

float scale_input_pixel(InputScale s, uint8_t p) {
  switch (s) {
    case InputScale::odd_over_256: return (float)(2 * (int)p - 255) / 256.0f;
    case InputScale::minus_one_to_one: return (float)((double)p / 127.5 - 1.0);
    case InputScale::zero_to_one: return (float)((double)p / 255.0);
    case InputScale::none: break;
  }
  throw std::invalid_argument("scale_input_pixel: the model has no pixel scaling (float input)");
}

const char* layer_type_name(LayerType t) {
  switch (t) {
    case LayerType::dense_f32: return "dense_f32";
    case LayerType::dense_binary: return "dense_binary";
    case LayerType::dense_levels: return "dense_levels";
    case LayerType::conv_f32: return "conv_f32";
    case LayerType::conv_binary: return "conv_binary";
    case LayerType::max_pool: return "max_pool";
    case LayerType::conv_levels: return "conv_levels";
  }
  return "unknown";
}

const char* layer_input_name(LayerInput i) {
  switch (i) {
    case LayerInput::real: return "real";
    case LayerInput::packed: return "packed";
    case LayerInput::pixels8: return "pixels8";
    case LayerInput::sign: return "sign";
    case LayerInput::levels: return "levels";
    case LayerInput::levels_f32: return "levels_f32";
  }
  return "unknown";
}

// ---- PackedLayer / PackedModel -----------------------------------------------------

std::string meta_problem(const std::string& meta) {
  if (meta.size() > kMaxMetaBytes)
    return "is " + std::to_string(meta.size()) + " bytes (at most " + std::to_string(kMaxMetaBytes) + ")";
  const auto* p = reinterpret_cast<const unsigned char*>(meta.data());
  const size_t n = meta.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c == 0) return "has a NUL byte at offset " + std::to_string(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Lead byte: sequence length and the smallest code point it may encode
    // (anything below is an overlong form).
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else {
      char m[80];
      std::snprintf(m, sizeof m, "is not valid UTF-8 (byte 0x%02x at offset %zu)", c, i);
      return m;
    }
    if (i + len > n) return "is not valid UTF-8 (a sequence cut short at offset " + std::to_string(i) + ")";
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return "is not valid UTF-8 (bad continuation byte at offset " + std::to_string(i + k) + ")";
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return "is not valid UTF-8 (code point " + std::to_string(cp) + " at offset " + std::to_string(i) + ")";
    i += len;
  }
  return "";
}

int64_t PackedLayer::out_h() const {
  const int64_t h = type == LayerType::max_pool ? geom.H : geom.OH();
  return geom.pool_k > 0 ? (h - geom.pool_k) / geom.pool_s + 1 : h;
}
int64_t PackedLayer::out_w() const {
  const int64_t w = type == LayerType::max_pool ? geom.W : geom.OW();
  return geom.pool_k > 0 ? (w - geom.pool_k) / geom.pool_s + 1 : w;
}

namespace {
// The odd-integer weight levels of a dense_levels [out x in] or conv_levels
// [O x C*K*K] layer.
std::vector<int32_t> weight_levels(const PackedLayer& L, const char* who) {
  if (!L.levels())
    throw std::invalid_argument(std::string(who) + ": a " + layer_type_name(L.type) + " layer has no k-bit weights");
  const int64_t rows = L.type == LayerType::conv_levels ? L.geom.O : L.out;
  const int64_t K = L.type == LayerType::conv_levels ? L.geom.taps() : L.in;
  if (L.wbits < 1 || L.wbits > 16 || (int64_t)L.w_planes.size() != plane_packed_words(rows, K, L.wbits))
    throw std::invalid_argument(std::string(who) + ": inconsistent " + layer_type_name(L.type) +
                                " layer (validate() it first)");
  std::vector<int32_t> v(static_cast<size_t>(rows * K));
  unpack_planes(L.w_planes.data(), rows, K, L.wbits, v.data());
  return v;
}
}  // namespace

std::vector<float> PackedLayer::level_weights() const {
  const std::vector<int32_t> v = weight_levels(*this, "level_weights");
  std::vector<float> w(v.size());
  for (size_t i = 0; i < v.size(); ++i) w[i] = level_value(v[i], wbits, w_alpha);
  return w;
}

std::vector<float> PackedLayer::level_integers() const {
  const std::vector<int32_t> v = weight_levels(*this, "level_integers");
  return std::vector<float>(v.begin(), v.end());  // |v| < 2^16: exact
}

bool PackedModel::is_binary() const {
  for (const auto& L : layers)
    if (L.type == LayerType::dense_binary || L.type == LayerType::conv_binary) return true;
  return false;
}
bool PackedModel::is_spatial() const {
  for (const auto& L : layers)
    if (L.spatial()) return true;
  return false;
}
bool PackedModel::has_levels() const {
  for (const auto& L : layers)
    if (L.levels()) return true;
  return false;
}
bool PackedModel::has_conv_levels() const {
  for (const auto& L : layers)
    if (L.type == LayerType::conv_levels) return true;
  return false;
}
int64_t PackedModel::in_features() const { return layers.empty() ? 0 : layers.front().in; }
int64_t PackedModel::num_classes() const { return layers.empty() ? 0 : layers.back().out; }
int64_t PackedModel::weight_count() const {
  int64_t n = 0;
  for (const auto& L : layers) n += L.weight_count();
  return n;
}
int64_t PackedModel::weight_storage_bits() const {
  int64_t n = 0;
  for (const auto& L : layers) n += L.weight_count() * L.weight_bits();
  return n;
}

namespace {
// Rows of packed_words(K) words must have 0 in their padding bits (bitpack.h
// rule 4), else dot products are wrong. what(r) names row r in the message.
template <class Bad, class What>
void check_pad_bits(const PackedVector& P, int64_t rows, int64_t K, Bad&& lbad, What&& what) {
  const int64_t W = packed_words(K), used = words64(K);
  const uint64_t tail = (K % 64) ? (uint64_t(1) << (K % 64)) - 1 : ~uint64_t(0);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t* row = P.data() + r * W;
    bool ok = (row[used - 1] & ~tail) == 0;
    for (int64_t w = used; w < W; ++w) ok = ok && row[w] == 0;
    if (!ok) lbad(what(r) + " has nonzero padding bits");
  }
}

// The k-bit fields of a dense_levels (rows = out, K = in) or conv_levels
// (rows = O, K = C*K*K) layer: bits, alphas, input kind, the plane array.
template <class Bad>
void validate_levels(const PackedLayer& L, int64_t rows, int64_t K, bool prev_packed, Bad&& lbad) {
  const char* name = layer_type_name(L.type);
  if (L.wbits < 1 || L.wbits > 16) lbad(std::to_string(L.wbits) + "-bit weights (" + name + " has 1..16)");
  if (!std::isfinite(L.w_alpha) || !(L.w_alpha > 0.f))
    lbad("weight alpha " + std::to_string(L.w_alpha) + " (must be finite and > 0)");
  switch (L.input) {
    case LayerInput::real:
      if (L.in_bits != kRealInputBits || L.in_alpha != 0.f)
        lbad("real input but input quantizer fields (bits " + std::to_string(L.in_bits) + ", alpha " +
             std::to_string(L.in_alpha) + "); real input has bits 32, alpha 0");
      break;
    case LayerInput::levels:
    case LayerInput::levels_f32:
      if (L.in_bits < 1 || L.in_bits > 16)
        lbad(std::to_string(L.in_bits) + "-bit input quantizer (" + layer_input_name(L.input) + " input has 1..16)");
      if (!std::isfinite(L.in_alpha) || !(L.in_alpha > 0.f))
        lbad("input alpha " + std::to_string(L.in_alpha) + " (must be finite and > 0)");
      if (L.input == LayerInput::levels && !levels_exact(K, L.in_bits, L.wbits))
        lbad(std::to_string(K) + " inputs at " + std::to_string(L.in_bits) + " x " + std::to_string(L.wbits) +
             " bits can reach 2^24, where the integer sums stop being exact floats (the training framework "
             "computes such a layer as levels_f32)");
      break;
    default: lbad(std::string("a ") + name + " layer cannot take " + layer_input_name(L.input) + " input");
  }
  if (prev_packed) lbad("k-bit layer after a layer with packed sign outputs (not supported)");
  if (!L.w_f32.empty() || !L.w_bits.empty()) lbad("has float or 1-bit packed weights");
  if ((int64_t)L.w_planes.size() != plane_packed_words(rows, K, L.wbits))
    lbad("weight plane array has " + std::to_string(L.w_planes.size()) + " words, expected " +
         std::to_string(plane_packed_words(rows, K, L.wbits)));
  check_pad_bits(L.w_planes, rows * L.wbits, K, lbad, [&](int64_t r) {
    return "weight row " + std::to_string(r / L.wbits) + " plane " + std::to_string(r % L.wbits);
  });
}

// The checks of a spatial layer (PackedModel::validate; throws
// std::invalid_argument("<at>: ...")).
void validate_spatial(const PackedModel& m, const PackedLayer& L, const PackedLayer* prev, size_t i,
                      const std::string& at) {
  const std::vector<int64_t>& input_dims = m.input_dims;
  const InputScale input_scale = m.input_scale;
  auto lbad = [&](const std::string& msg) { throw std::invalid_argument(at + ": " + msg); };
  const SpatialGeom& g = L.geom;
  auto in_range = [](int64_t v, int64_t lo) { return v >= lo && v <= kMaxDim; };
  if (!in_range(g.C, 1) || !in_range(g.H, 1) || !in_range(g.W, 1)) lbad("input map sizes out of range");
  if (g.C * g.H * g.W != L.in)
    lbad("input map " + std::to_string(g.C) + "x" + std::to_string(g.H) + "x" + std::to_string(g.W) + " is not " +
         std::to_string(L.in) + " values");
  if (L.type == LayerType::max_pool) {
    if (g.O != 0 || g.K != 0 || g.pad != 0 || g.pad_one || g.stride != 1) lbad("a max_pool layer has conv fields");
    if (g.pool_k < 1) lbad("a max_pool layer needs a window (pool_k >= 1)");
    if (L.input != LayerInput::real && L.input != LayerInput::packed)
      lbad(std::string("a max_pool layer takes real or packed input, not ") + layer_input_name(L.input));
    if (!L.w_f32.empty() || !L.w_bits.empty()) lbad("a max_pool layer has weights");
  } else {
    if (!in_range(g.O, 1) || g.K < 1 || g.K > 64 || g.stride < 1 || g.stride > 64 || g.pad < 0 || g.pad >= g.K)
      lbad("conv geometry out of range (O " + std::to_string(g.O) + ", K " + std::to_string(g.K) + ", stride " +
           std::to_string(g.stride) + ", pad " + std::to_string(g.pad) + ")");
    if (g.H + 2 * g.pad < g.K || g.W + 2 * g.pad < g.K) lbad("the window is larger than the padded image");
    if (g.taps() >= (int64_t(1) << 24)) lbad("too many taps per output");
  }
  if (g.pool_k < 0 || g.pool_k > 64 || (g.pool_k > 0 && (g.pool_s < 1 || g.pool_s > 64)) ||
      (g.pool_k == 0 && g.pool_s != 0))
    lbad("pool geometry out of range (pool_k " + std::to_string(g.pool_k) + ", pool_s " + std::to_string(g.pool_s) + ")");
  const int64_t h = L.type == LayerType::max_pool ? g.H : g.OH(), w = L.type == LayerType::max_pool ? g.W : g.OW();
  if (g.pool_k > 0 && (h < g.pool_k || w < g.pool_k)) lbad("the pool window is larger than the map");
  if (L.out != L.out_channels() * L.out_h() * L.out_w())
    lbad("gives " + std::to_string(L.out) + " outputs, its geometry " +
         std::to_string(L.out_channels() * L.out_h() * L.out_w()));
  // Where the input map comes from.
  if (prev == nullptr) {
    if (input_dims != std::vector<int64_t>{g.C, g.H, g.W})
      lbad("the model's input dims are not the first conv's input map [" + std::to_string(g.C) + ", " +
           std::to_string(g.H) + ", " + std::to_string(g.W) + "]");
  } else {
    if (!prev->spatial()) lbad("a conv / pool layer after a dense layer (not supported)");
    if (prev->out_channels() != g.C || prev->out_h() != g.H || prev->out_w() != g.W)
      lbad("its input map does not match layer " + std::to_string(i - 1) + "'s output map");
  }
  const bool prev_packed = prev && prev->packed_out();
  if (L.input == LayerInput::packed && !prev_packed) lbad("takes packed signs but the previous layer does not output them");
  if (L.input == LayerInput::real && prev_packed) lbad("takes real input but the previous layer outputs packed signs");
  if (L.type == LayerType::conv_f32) {
    if (L.input != LayerInput::real) lbad(std::string("a conv_f32 layer takes real input, not ") + layer_input_name(L.input));
    if (g.pad_one) lbad("a conv_f32 layer pads with 0 (pad_one is for packed input)");
    if ((int64_t)L.w_f32.size() != g.O * g.taps()) lbad("weight array has " + std::to_string(L.w_f32.size()) + " floats");
    if (!L.w_bits.empty()) lbad("has packed weights");
  } else if (L.type == LayerType::conv_levels) {
    validate_levels(L, g.O, g.taps(), prev_packed, lbad);
    if (g.pad_one && L.input != LayerInput::levels)
      lbad(std::string("a conv_levels layer on ") + layer_input_name(L.input) +
           " input pads with 0 (pad_one is for levels input)");
    if (L.input == LayerInput::real && L.wbits == 1 && L.w_alpha == 1.0f)
      lbad("+-1 weights on real input are QuantConv2d's sign-weight product: a conv_binary layer on pixels8");
  } else if (L.type == LayerType::conv_binary) {
    if (L.input == LayerInput::pixels8) {
      if (i != 0) lbad("pixels8 input is only for the first layer");
      if (input_scale != InputScale::odd_over_256)
        lbad(std::string("pixels8 input needs input scaling (2p-255)/256, the model has ") + input_scale_name(input_scale));
      if (g.pad_one) lbad("a conv on pixels pads with 0 (pad_one is for packed input)");
      if (255 * g.taps() >= (int64_t(1) << 24)) lbad("too many taps for exact 8-bit products");
    } else if (L.input != LayerInput::packed) {
      lbad(std::string("a conv_binary layer takes pixels8 or packed input, not ") + layer_input_name(L.input));
    }
    if (!L.w_f32.empty()) lbad("has float weights");
    const int64_t K = g.taps(), W = packed_words(K), used = words64(K);
    if ((int64_t)L.w_bits.size() != g.O * W) lbad("packed weight array has " + std::to_string(L.w_bits.size()) + " words");
    const uint64_t tail = (K % 64) ? (uint64_t(1) << (K % 64)) - 1 : ~uint64_t(0);
    for (int64_t r = 0; r < g.O; ++r) {
      const uint64_t* row = L.w_bits.data() + r * W;
      bool ok = (row[used - 1] & ~tail) == 0;
      for (int64_t q = used; q < W; ++q) ok = ok && row[q] == 0;
      if (!ok) lbad("packed weight row " + std::to_string(r) + " has nonzero padding bits");
    }
  }
}
}  // namespace

void PackedModel::validate(const std::string& what) const {
  auto bad = [&](const std::string& msg) { throw std::invalid_argument(what + ": " + msg); };
  if (layers.empty()) bad("no layers");
  if ((int64_t)layers.size() > kMaxLayers) bad(std::to_string(layers.size()) + " layers (at most 4096)");
  const uint32_t sc = static_cast<uint32_t>(input_scale);
  if (sc > 3) bad("unknown input scaling " + std::to_string(sc));
  if (input_dims.empty() || input_dims.size() > 8) bad("input has " + std::to_string(input_dims.size()) + " dims (1..8)");
  int64_t numel = 1;
  for (int64_t d : input_dims) {
    if (d < 1 || d > kMaxDim) bad("input dim " + std::to_string(d) + " out of range");
    numel *= d;
    if (numel > kMaxDim) bad("input too large");
  }
  if (numel != layers[0].in)
    bad("input dims give " + std::to_string(numel) + " values but layer 0 takes " + std::to_string(layers[0].in));
  for (size_t i = 0; i < layers.size(); ++i) {
    const PackedLayer& L = layers[i];
    const std::string at = "layer " + std::to_string(i) + " (" + dims_str(L) + ")";
    auto lbad = [&](const std::string& msg) { bad(at + ": " + msg); };
    if (static_cast<uint32_t>(L.type) < 1 || static_cast<uint32_t>(L.type) > 7)
      bad("layer " + std::to_string(i) + ": unknown type " + std::to_string(static_cast<uint32_t>(L.type)));
    if (L.in < 1 || L.in > kMaxDim || L.out < 1 || L.out > kMaxDim) lbad("sizes out of range [1, 2^26]");
    const PackedLayer* prev = i > 0 ? &layers[i - 1] : nullptr;
    if (prev && prev->out != L.in)
      lbad("takes " + std::to_string(L.in) + " inputs but layer " + std::to_string(i - 1) + " gives " +
           std::to_string(prev->out));
    const bool prev_packed = prev && prev->packed_out();
    if (!L.spatial() && L.geom.C + L.geom.H + L.geom.W + L.geom.O + L.geom.K + L.geom.pool_k != 0)
      lbad("has a conv / pool geometry (only spatial layers do)");
    if (L.spatial()) {
      try {
        validate_spatial(*this, L, prev, i, at);
      } catch (const std::invalid_argument& e) {
        bad(e.what());
      }
    }
    if (!L.levels() && (!L.w_planes.empty() || L.wbits != 0))
      lbad("has k-bit weight fields (only dense_levels / conv_levels layers do)");
    if (L.type == LayerType::dense_f32) {
      if (L.input != LayerInput::real) lbad(std::string("a dense_f32 layer takes real input, not ") + layer_input_name(L.input));
      if (prev_packed) lbad("full-precision layer after a layer with packed sign outputs (not supported)");
      if ((int64_t)L.w_f32.size() != L.in * L.out) lbad("weight array has " + std::to_string(L.w_f32.size()) + " floats");
      if (!L.w_bits.empty()) lbad("has packed weights");
      if (L.sign_out) lbad("a dense_f32 layer cannot have a sign epilogue");
    } else if (L.type == LayerType::dense_levels) {
      validate_levels(L, L.out, L.in, prev_packed, lbad);
    } else if (L.type == LayerType::dense_binary) {
      switch (L.input) {
        case LayerInput::packed:
          if (!prev_packed) lbad("takes packed signs but the previous layer does not output them");
          break;
        case LayerInput::pixels8:
          if (i != 0) lbad("pixels8 input is only for the first layer");
          if (input_scale != InputScale::odd_over_256)
            lbad(std::string("pixels8 input needs input scaling (2p-255)/256, the model has ") + input_scale_name(input_scale));
          if (L.in > kMaxPixelsIn) lbad("too many inputs for exact 8-bit products (at most 65793)");
          break;
        case LayerInput::sign:
          if (prev_packed) lbad("sign input after packed signs (use packed)");
          break;
        default: lbad(std::string("a dense_binary layer cannot take ") + layer_input_name(L.input) + " input");
      }
      if (L.in >= (int64_t(1) << 31)) lbad("too many inputs");
      const int64_t W = packed_words(L.in);
      if ((int64_t)L.w_bits.size() != L.out * W) lbad("packed weight array has " + std::to_string(L.w_bits.size()) + " words");
      if (!L.w_f32.empty()) lbad("has float weights");
      check_pad_bits(L.w_bits, L.out, L.in, lbad, [&](int64_t r) { return "packed weight row " + std::to_string(r); });
    }
    // A NaN or infinity in a stored float is a damaged file, never a model:
    // it would flow into the level quantizers' float-to-int steps (UB).
    for (auto [arr, name] : {std::pair{&L.w_f32, "weight"}, std::pair{&L.bias, "bias"},
                             std::pair{&L.center, "center"}, std::pair{&L.scale, "scale"},
                             std::pair{&L.shift, "shift"}})
      for (size_t j = 0; j < arr->size(); ++j)
        if (!std::isfinite((*arr)[j])) lbad(std::string(name) + " entry " + std::to_string(j) + " is not finite");
    const size_t n = static_cast<size_t>(L.channels());
    if (L.type == LayerType::max_pool && (L.sign_out || !L.bias.empty() || L.affine || L.relu))
      lbad("a max_pool layer has no epilogue (no sign, bias, affine or relu)");
    if (L.sign_out) {
      if (L.type != LayerType::dense_binary && L.type != LayerType::conv_binary) lbad("sign epilogue needs a binary layer");
      if (L.thresh.size() != n || L.flip.size() != n) lbad("threshold / flip arrays do not have one entry per output");
      if (!L.bias.empty() || L.affine || L.relu) lbad("a sign epilogue has no bias, affine or relu (they are folded)");
      const int64_t vm = vmax_of(L) + 1;
      for (size_t j = 0; j < n; ++j) {
        if (L.flip[j] > 1) lbad("flip of channel " + std::to_string(j) + " is " + std::to_string(L.flip[j]));
        if (L.thresh[j] < -vm || L.thresh[j] > vm)
          lbad("threshold of channel " + std::to_string(j) + " (" + std::to_string(L.thresh[j]) +
               ") is outside the dot product's range +-" + std::to_string(vm));
      }
    } else {
      if (!L.thresh.empty() || !L.flip.empty()) lbad("thresholds without a sign epilogue");
      if (!L.bias.empty() && L.bias.size() != n) lbad("bias array has " + std::to_string(L.bias.size()) + " entries");
      if (L.affine && (L.center.size() != n || L.scale.size() != n || L.shift.size() != n))
        lbad("affine arrays do not have one entry per output");
      if (!L.affine && (!L.center.empty() || !L.scale.empty() || !L.shift.empty())) lbad("affine arrays without the flag");
    }
  }
  if (layers.back().sign_out) bad("the last layer outputs signs; it must output logits (float)");
  if (layers.back().spatial()) bad("the last layer is a conv / pool layer; it must be a dense layer giving logits");
  const std::string mp = meta_problem(meta);
  if (!mp.empty()) bad("metadata " + mp);
}

}  // namespace qnn::kernels
