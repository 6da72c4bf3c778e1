// kernels/packed_model_io.cpp — the .qnnx file format (packed_model.h, "File
// format"): PackedModel::to_bytes / from_bytes / load and the CRC. Reading
// checks, in order, everything a damaged or lying file could get wrong, then
// hands the model to validate() (packed_model.cpp).
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "kernels/bitserial.h"
#include "kernels/packed_model.h"
#include "kernels/packed_model_internal.h"

namespace qnn::kernels {

using namespace pmodel;

namespace {

constexpr char kMagic[4] = {'Q', 'N', 'N', 'X'};
// Version 1: fp and bnn models; version 2 adds dense_levels (k-bit) layers and
// is written only when a model has one, so fp / bnn files stay version 1.
// Version 3 adds a metadata block and is written only when a model has
// metadata, so files without it still load in builds that predate it.
// Version 4 adds the spatial layers (conv / pool) and is written exactly for
// models that have one; version 5 adds conv_levels (k-bit convolutions) and is
// written exactly for models that have one.
constexpr uint32_t kVersionBase = 1, kVersionLevels = 2, kVersionMeta = 3, kVersionSpatial = 4, kVersionConvLevels = 5;
constexpr int64_t kSpatialHeaderBytes = 10 * 4;  // conv / pool payload: the geometry
constexpr int64_t kLayerHeaderBytes = 4 * 4 + 3 * 8;
constexpr int64_t kLevelsHeaderBytes = 3 * 4;  // dense_levels / conv_levels payload: weight_alpha, input_bits, input_alpha
enum Flags : uint32_t { kSignOut = 1, kBias = 2, kAffine = 4, kRelu = 8, kAllFlags = 15 };

// Payload bytes of a layer record: from type, in, out and wbits (dense
// layers) or the geometry (spatial layers), and the flags.
int64_t payload_bytes(const PackedLayer& L, uint32_t flags) {
  const int64_t in = L.in, out = L.out;
  int64_t b, ch = out;
  switch (L.type) {
    case LayerType::dense_f32: b = 4 * in * out; break;
    case LayerType::dense_binary: b = 8 * words64(in) * out; break;
    case LayerType::dense_levels: b = kLevelsHeaderBytes + 8 * words64(in) * out * L.wbits; break;
    case LayerType::conv_f32: b = kSpatialHeaderBytes + 4 * L.geom.O * L.geom.taps(), ch = L.geom.O; break;
    case LayerType::conv_binary: b = kSpatialHeaderBytes + 8 * words64(L.geom.taps()) * L.geom.O, ch = L.geom.O; break;
    case LayerType::conv_levels:
      b = kSpatialHeaderBytes + kLevelsHeaderBytes + 8 * words64(L.geom.taps()) * L.geom.O * L.wbits, ch = L.geom.O;
      break;
    default: b = kSpatialHeaderBytes, ch = 0; break;  // max_pool
  }
  if (flags & kBias) b += 4 * ch;
  if (flags & kAffine) b += 12 * ch;
  if (flags & kSignOut) b += 5 * ch;
  return b;
}

uint32_t flags_of(const PackedLayer& L) {
  return (L.sign_out ? kSignOut : 0u) | (!L.bias.empty() ? kBias : 0u) | (L.affine ? kAffine : 0u) |
         (L.relu ? kRelu : 0u);
}

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
void put_array(std::string& s, const T* p, size_t n) {
  s.append(reinterpret_cast<const char*>(p), n * sizeof(T));
}

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
}  // namespace

uint32_t crc32_zlib(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

int64_t PackedLayer::file_bytes() const { return kLayerHeaderBytes + payload_bytes(*this, flags_of(*this)); }

std::string PackedModel::to_bytes() const {
  validate("export");
  std::string s;
  int64_t total = 4 + 4 + 8 + 4 + 4 + 4 + 4 + 8 * (int64_t)input_dims.size() + 4;
  const bool v4 = is_spatial();
  if (!meta.empty() || v4) total += 4 + (int64_t)meta.size();
  for (const auto& L : layers) total += L.file_bytes();
  s.reserve(static_cast<size_t>(total));
  s.append(kMagic, 4);
  put<uint32_t>(s, has_conv_levels() ? kVersionConvLevels
                  : v4              ? kVersionSpatial
                  : !meta.empty()   ? kVersionMeta
                  : has_levels()    ? kVersionLevels
                                    : kVersionBase);
  put<uint64_t>(s, static_cast<uint64_t>(total));
  put<uint32_t>(s, has_levels() ? 2u : is_binary() ? 1u : 0u);
  put<uint32_t>(s, static_cast<uint32_t>(layers.size()));
  put<uint32_t>(s, static_cast<uint32_t>(input_scale));
  put<uint32_t>(s, static_cast<uint32_t>(input_dims.size()));
  for (int64_t d : input_dims) put<uint64_t>(s, static_cast<uint64_t>(d));
  if (!meta.empty() || v4) {  // versions 4 and 5: always, possibly 0 bytes
    put<uint32_t>(s, static_cast<uint32_t>(meta.size()));
    s += meta;
  }
  for (const auto& L : layers) {
    const uint32_t flags = flags_of(L);
    put<uint32_t>(s, static_cast<uint32_t>(L.type));
    put<uint32_t>(s, static_cast<uint32_t>(L.input));
    put<uint32_t>(s, static_cast<uint32_t>(L.weight_bits()));
    put<uint32_t>(s, flags);
    put<uint64_t>(s, static_cast<uint64_t>(L.in));
    put<uint64_t>(s, static_cast<uint64_t>(L.out));
    put<uint64_t>(s, static_cast<uint64_t>(payload_bytes(L, flags)));
    if (L.spatial()) {
      const SpatialGeom& g = L.geom;
      for (int64_t v : {g.C, g.H, g.W, g.O, g.K, g.stride, g.pad, int64_t(g.pad_one), g.pool_k, g.pool_s})
        put<uint32_t>(s, static_cast<uint32_t>(v));
      if (L.type == LayerType::conv_f32) {
        put_array(s, L.w_f32.data(), L.w_f32.size());
      } else if (L.type == LayerType::conv_binary) {
        const int64_t W = packed_words(g.taps()), used = words64(g.taps());
        for (int64_t r = 0; r < g.O; ++r) put_array(s, L.w_bits.data() + r * W, static_cast<size_t>(used));
      } else if (L.type == LayerType::conv_levels) {
        put<float>(s, L.w_alpha);
        put<uint32_t>(s, static_cast<uint32_t>(L.in_bits));
        put<float>(s, L.in_alpha);
        const int64_t W = packed_words(g.taps()), used = words64(g.taps());
        for (int64_t r = 0; r < g.O * L.wbits; ++r) put_array(s, L.w_planes.data() + r * W, static_cast<size_t>(used));
      }
    } else if (L.type == LayerType::dense_f32) {
      put_array(s, L.w_f32.data(), L.w_f32.size());
    } else if (L.type == LayerType::dense_levels) {
      put<float>(s, L.w_alpha);
      put<uint32_t>(s, static_cast<uint32_t>(L.in_bits));
      put<float>(s, L.in_alpha);
      const int64_t W = packed_words(L.in), used = words64(L.in);
      for (int64_t r = 0; r < L.out * L.wbits; ++r) put_array(s, L.w_planes.data() + r * W, static_cast<size_t>(used));
    } else {
      const int64_t W = packed_words(L.in), used = words64(L.in);
      for (int64_t r = 0; r < L.out; ++r) put_array(s, L.w_bits.data() + r * W, static_cast<size_t>(used));
    }
    if (!L.bias.empty()) put_array(s, L.bias.data(), L.bias.size());
    if (L.affine) {
      put_array(s, L.center.data(), L.center.size());
      put_array(s, L.scale.data(), L.scale.size());
      put_array(s, L.shift.data(), L.shift.size());
    }
    if (L.sign_out) {
      put_array(s, L.thresh.data(), L.thresh.size());
      put_array(s, L.flip.data(), L.flip.size());
    }
  }
  put<uint32_t>(s, crc32_zlib(s.data(), s.size()));
  if ((int64_t)s.size() != total) throw std::logic_error("PackedModel::to_bytes: size bookkeeping is wrong");
  return s;
}

PackedModel PackedModel::from_bytes(const std::string& buf, const std::string& name) {
  const std::string who = "'" + name + "'";
  auto fail = [&](const std::string& msg) -> void { throw std::runtime_error(who + ": " + msg); };
  const size_t size = buf.size();
  if (size >= 4 && std::memcmp(buf.data(), kMagic, 4) != 0)
    fail("not a qnn exported model (bad magic: expected \"QNNX\")");
  if (size < 16) fail("truncated: " + std::to_string(size) + " bytes, too short for a model header");
  uint32_t version;
  std::memcpy(&version, buf.data() + 4, 4);
  if (version < kVersionBase || version > kVersionConvLevels)
    fail("format version " + std::to_string(version) + ", this build reads versions " + std::to_string(kVersionBase) +
         " to " + std::to_string(kVersionConvLevels));
  uint64_t declared;
  std::memcpy(&declared, buf.data() + 8, 8);
  if (declared > size)
    fail("truncated: the header declares " + std::to_string(declared) + " bytes but the file has " +
         std::to_string(size));
  if (declared < size)
    fail(std::to_string(size - declared) + " trailing bytes after the model (the header declares " +
         std::to_string(declared) + " bytes, the file has " + std::to_string(size) + ")");
  const size_t kMinBytes = 4 + 4 + 8 + 4 * 4 + 4;
  if (size < kMinBytes) fail("truncated: " + std::to_string(size) + " bytes, too short for a model header");
  uint32_t stored;
  std::memcpy(&stored, buf.data() + size - 4, 4);
  const uint32_t crc = crc32_zlib(buf.data(), size - 4);
  if (crc != stored) {
    char m[160];
    std::snprintf(m, sizeof m, "CRC mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt", stored, crc);
    fail(m);
  }

  // The bytes are what was written; now check that the header tells the truth.
  const size_t end = size - 4;
  size_t pos = 16;
  auto get = [&](auto& v, const char* what) {
    if (pos + sizeof v > end)
      fail(std::string("header inconsistent: ") + what + " at offset " + std::to_string(pos) +
           " runs past the end of the data");
    std::memcpy(&v, buf.data() + pos, sizeof v);
    pos += sizeof v;
  };
  PackedModel m;
  uint32_t kind, count, scale, ndim;
  get(kind, "model kind");
  get(count, "layer count");
  get(scale, "input scaling");
  get(ndim, "input rank");
  if (kind > 2) fail("header inconsistent: unknown model kind " + std::to_string(kind));
  if (count < 1 || count > kMaxLayers) fail("header inconsistent: layer count " + std::to_string(count));
  if (scale > 3) fail("header inconsistent: unknown input scaling " + std::to_string(scale));
  if (ndim < 1 || ndim > 8) fail("header inconsistent: input rank " + std::to_string(ndim));
  m.input_scale = static_cast<InputScale>(scale);
  for (uint32_t i = 0; i < ndim; ++i) {
    uint64_t d;
    get(d, "input dims");
    if (d < 1 || d > uint64_t(kMaxDim)) fail("header inconsistent: input dim " + std::to_string(d));
    m.input_dims.push_back(static_cast<int64_t>(d));
  }
  if (version >= kVersionMeta) {
    uint32_t len;
    get(len, "metadata size");
    const uint32_t min_len = version >= kVersionSpatial ? 0 : 1;  // versions 4, 5: 0 = no metadata
    if (len < min_len || len > kMaxMetaBytes || pos + len > end)
      fail("bad metadata block: " + std::to_string(len) + " bytes declared at offset " + std::to_string(pos) + ", " +
           std::to_string(end - pos) + " bytes of data left (" + std::to_string(min_len) + ".." +
           std::to_string(kMaxMetaBytes) + " allowed)");
    m.meta = buf.substr(pos, len);
    pos += len;
    const std::string mp = meta_problem(m.meta);
    if (!mp.empty()) fail("bad metadata block: the metadata " + mp);
  }
  for (uint32_t i = 0; i < count; ++i) {
    const std::string at = "layer " + std::to_string(i);
    uint32_t type, input, wbits, flags;
    uint64_t in, out, declared_payload;
    get(type, "layer type");
    get(input, "layer input kind");
    get(wbits, "weight bits");
    get(flags, "layer flags");
    get(in, "layer inputs");
    get(out, "layer outputs");
    get(declared_payload, "layer payload size");
    const bool v2 = version >= kVersionLevels;  // k-bit layers: versions 2 to 5
    const bool v4 = version >= kVersionSpatial;  // conv / pool layers: versions 4, 5
    const bool v5 = version >= kVersionConvLevels;  // k-bit conv layers: version 5
    if (type < 1 || type > (v5 ? 7u : v4 ? 6u : v2 ? 3u : 2u))
      fail("header inconsistent: " + at + " has unknown type " + std::to_string(type) +
           (type == 3                ? " (dense_levels needs format version 2)"
            : type >= 4 && type <= 6 ? " (conv / pool layers need format version 4)"
            : type == 7              ? " (conv_levels needs format version 5)"
                                     : ""));
    if (input > (v2 ? 5u : 3u))
      fail("header inconsistent: " + at + " has unknown input kind " + std::to_string(input) +
           (input == 4 || input == 5 ? " (k-bit inputs need format version 2)" : ""));
    if (type == 3 || type == 7) {
      if (wbits < 1 || wbits > 16)
        fail(at + ": " + std::to_string(wbits) + "-bit weights; " + (type == 3 ? "dense_levels" : "conv_levels") +
             " layers have 1..16-bit weights");
    } else {
      const int expect_bits = type == 1 || type == 4 ? 32 : type == 6 ? 0 : 1;
      const char* names[] = {"", "32-bit dense_f32", "1-bit dense_binary", "", "32-bit conv_f32", "1-bit conv_binary",
                             "0-bit (weightless) max_pool"};
      if (wbits != (uint32_t)expect_bits)
        fail(at + ": " + std::to_string(wbits) + "-bit weights; this build reads " + names[type] + " layers only");
    }
    if (flags & ~uint32_t(kAllFlags)) fail("header inconsistent: " + at + " has unknown flags " + std::to_string(flags));
    if (in < 1 || in > uint64_t(kMaxDim) || out < 1 || out > uint64_t(kMaxDim))
      fail("header inconsistent: " + at + " has sizes " + std::to_string(in) + " -> " + std::to_string(out));
    PackedLayer L;
    L.type = static_cast<LayerType>(type);
    L.input = static_cast<LayerInput>(input);
    L.in = static_cast<int64_t>(in);
    L.out = static_cast<int64_t>(out);
    if (L.levels()) L.wbits = static_cast<int>(wbits);
    if (L.spatial()) {
      // The geometry comes first; the rest of the payload's size depends on it.
      if (declared_payload < uint64_t(kSpatialHeaderBytes) || pos + kSpatialHeaderBytes > end)
        fail("header inconsistent: " + at + " (" + dims_str(L) + ") is a conv / pool layer but has no room for its " +
             "geometry (" + std::to_string(declared_payload) + " payload bytes declared)");
      uint32_t gv[10];
      std::memcpy(gv, buf.data() + pos, sizeof gv);
      for (int q = 0; q < 10; ++q)
        if (gv[q] > uint32_t(kMaxDim))
          fail(at + " (" + dims_str(L) + "): conv / pool geometry value " + std::to_string(gv[q]) + " out of range");
      if (gv[7] > 1) fail(at + " (" + dims_str(L) + "): pad_one is " + std::to_string(gv[7]) + " (0 or 1)");
      SpatialGeom& g = L.geom;
      g.C = gv[0], g.H = gv[1], g.W = gv[2], g.O = gv[3], g.K = gv[4], g.stride = gv[5], g.pad = gv[6];
      g.pad_one = gv[7] != 0, g.pool_k = gv[8], g.pool_s = gv[9];
      // Weight bytes in double first: a lying geometry must not overflow the count.
      const double taps = double(g.C) * double(g.K) * double(g.K);
      if (L.type != LayerType::max_pool && (g.C < 1 || g.O < 1 || g.K < 1))
        fail(at + " (" + dims_str(L) + "): a convolution with " + std::to_string(g.C) + " input channels, " +
             std::to_string(g.O) + " output channels and " + std::to_string(g.K) + "x" + std::to_string(g.K) +
             " windows (each must be at least 1)");
      if (L.type != LayerType::max_pool && taps >= double(int64_t(1) << 24))
        fail(at + " (" + dims_str(L) + "): " + std::to_string(g.C) + " channels x " + std::to_string(g.K) + "x" +
             std::to_string(g.K) + " windows: too many taps per output (at most 2^24)");
      const double wb = L.type == LayerType::conv_f32      ? 4.0 * double(g.O) * taps
                        : L.type == LayerType::conv_levels ? 8.0 * double(g.O) * (taps / 64.0) * double(L.wbits)
                                                           : 8.0 * double(g.O) * (taps / 64.0);
      if (wb > double(end - pos))
        fail("header inconsistent: " + at + " (" + dims_str(L) + ")'s geometry needs more weight bytes than the file has");
    }
    const int64_t need = payload_bytes(L, flags);
    if ((uint64_t)need != declared_payload)
      fail("header inconsistent: " + at + " (" + dims_str(L) + ") needs " + std::to_string(need) +
           " payload bytes for its sizes and flags but declares " + std::to_string(declared_payload));
    if (pos + (size_t)need > end)
      fail("header inconsistent: " + at + " (" + dims_str(L) + ") needs " + std::to_string(need) +
           " payload bytes at offset " + std::to_string(pos) + " but only " + std::to_string(end - pos) +
           " bytes of data are left");
    const char* p = buf.data() + pos;
    auto take = [&](auto* dst, size_t n) {
      if (n == 0) return;  // dst may be null (an empty array): memcpy must not see it
      std::memcpy(dst, p, n * sizeof(*dst));
      p += n * sizeof(*dst);
    };
    // dense_levels / conv_levels: alphas and input bits, then rows x wbits plane rows of K taps.
    auto take_levels = [&](int64_t rows, int64_t K) {
      uint32_t in_bits;
      take(&L.w_alpha, 1);
      take(&in_bits, 1);
      take(&L.in_alpha, 1);
      if (!(in_bits >= 1 && in_bits <= 16) && in_bits != uint32_t(kRealInputBits))
        fail(at + ": " + std::to_string(in_bits) + "-bit input quantizer; " + layer_type_name(L.type) +
             " inputs have 1..16 bits, or 32 for real input");
      L.in_bits = static_cast<int>(in_bits);
      const int64_t W = packed_words(K), used = words64(K);
      L.w_planes = PackedVector(static_cast<size_t>(plane_packed_words(rows, K, L.wbits)));
      for (int64_t r = 0; r < rows * L.wbits; ++r) take(L.w_planes.data() + r * W, static_cast<size_t>(used));
    };
    const size_t N = static_cast<size_t>(L.channels());
    if (L.spatial()) {
      p += kSpatialHeaderBytes;  // read above
      const SpatialGeom& g = L.geom;
      if (L.type == LayerType::conv_f32) {
        L.w_f32.resize(static_cast<size_t>(g.O * g.taps()));
        take(L.w_f32.data(), L.w_f32.size());
      } else if (L.type == LayerType::conv_binary) {
        const int64_t W = packed_words(g.taps()), used = words64(g.taps());
        L.w_bits = make_packed(g.O, g.taps());
        for (int64_t r = 0; r < g.O; ++r) take(L.w_bits.data() + r * W, static_cast<size_t>(used));
      } else if (L.type == LayerType::conv_levels) {
        take_levels(g.O, g.taps());
      }
    } else if (L.type == LayerType::dense_f32) {
      L.w_f32.resize(static_cast<size_t>(L.in * L.out));
      take(L.w_f32.data(), L.w_f32.size());
    } else if (L.type == LayerType::dense_levels) {
      take_levels(L.out, L.in);
    } else {
      const int64_t W = packed_words(L.in), used = words64(L.in);
      L.w_bits = make_packed(L.out, L.in);
      for (int64_t r = 0; r < L.out; ++r) take(L.w_bits.data() + r * W, static_cast<size_t>(used));
    }
    L.sign_out = flags & kSignOut;
    L.affine = flags & kAffine;
    L.relu = flags & kRelu;
    if (flags & kBias) {
      L.bias.resize(N);
      take(L.bias.data(), N);
    }
    if (L.affine) {
      L.center.resize(N), L.scale.resize(N), L.shift.resize(N);
      take(L.center.data(), N);
      take(L.scale.data(), N);
      take(L.shift.data(), N);
    }
    if (L.sign_out) {
      L.thresh.resize(N), L.flip.resize(N);
      take(L.thresh.data(), N);
      take(L.flip.data(), N);
    }
    pos += static_cast<size_t>(need);
    m.layers.push_back(std::move(L));
  }
  if (pos != end)
    fail("header inconsistent: " + std::to_string(end - pos) + " bytes after the last layer are not described by it");
  const char* kind_names[] = {"fp", "bnn", "qnn"};
  if (kind_names[kind] != m.kind())
    fail(std::string("header inconsistent: the header says ") + kind_names[kind] + " but the layers are " + m.kind());
  if (version < kVersionMeta && (version == kVersionLevels) != m.has_levels())
    fail("header inconsistent: format version " + std::to_string(version) + " for " + m.kind() +
         " layers (version 2 is written exactly for models with dense_levels layers)");
  const uint32_t want = m.has_conv_levels() ? kVersionConvLevels : kVersionSpatial;
  if ((version >= kVersionSpatial) != m.is_spatial() || (m.is_spatial() && version != want))
    fail("header inconsistent: format version " + std::to_string(version) +
         (!m.is_spatial()        ? " without conv / pool layers (versions 4 and 5 are written exactly for models with them)"
          : m.has_conv_levels() ? " with conv_levels layers (they need version 5)"
          : version < kVersionSpatial ? " with conv / pool layers (they need version 4)"
                                      : " for conv / pool layers without conv_levels (version 5 is written exactly "
                                        "for models with k-bit convolutions; theirs is 4)"));
  try {
    m.validate("model");
  } catch (const std::invalid_argument& e) {
    fail(std::string("inconsistent model: ") + e.what());
  }
  return m;
}

PackedModel PackedModel::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("'" + path + "': cannot open (" + std::strerror(errno) + ")");
  std::string buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw std::runtime_error("'" + path + "': read error");
  return from_bytes(buf, path);
}

}  // namespace qnn::kernels
