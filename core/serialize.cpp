#include "core/serialize.h"

#include <zlib.h>

#include <cstring>
#include <map>

#include "core/fileio.h"
#include "kernels/packed_model.h"  // meta_problem: one rule for checkpoint and .qnnx metadata

namespace qnn {
namespace {

constexpr char kMagic[8] = {'Q', 'N', 'N', 'C', 'K', 'P', 'T', '\0'};
// Version 1: tensors only; version 2: a metadata block before them. A save
// without metadata still writes version 1, so older builds read it.
constexpr uint32_t kVersionPlain = 1, kVersionMeta = 2;

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

struct Reader {
  const std::string& buf;
  const std::string& path;
  size_t pos = 0;
  template <class T>
  T get(const char* what) {
    if (pos + sizeof(T) > buf.size()) fail("checkpoint '" + path + "' is truncated (while reading " + what + ")");
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
};

}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors, const std::string& meta) {
  const std::string bad = kernels::meta_problem(meta);
  if (!bad.empty()) fail("cannot save checkpoint '" + path + "': its metadata " + bad);
  std::string s;
  s.append(kMagic, 8);
  put<uint32_t>(s, meta.empty() ? kVersionPlain : kVersionMeta);
  if (!meta.empty()) {
    put<uint32_t>(s, (uint32_t)meta.size());
    s += meta;
  }
  put<uint32_t>(s, (uint32_t)tensors.size());
  for (const auto& [name, t] : tensors) {
    put<uint32_t>(s, (uint32_t)name.size());
    s += name;
    put<uint32_t>(s, (uint32_t)t.ndim());
    for (int64_t d : t.shape()) put<int64_t>(s, d);
    s.append(reinterpret_cast<const char*>(t.data()), sizeof(float) * t.numel());
  }
  put<uint32_t>(s, (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(s.data()), (uInt)s.size()));
  write_file_atomic(path, s);
}

namespace {

// Parse a checkpoint image: the metadata into *meta (if given), the tensors
// into *out (if given; else they are skipped after the CRC check).
void parse_checkpoint(const std::string& buf, const std::string& path, std::string* meta, NamedTensors* out) {
  if (buf.size() < 20 || std::memcmp(buf.data(), kMagic, 8) != 0)
    fail("'" + path + "' is not a qnn checkpoint (bad magic)");
  Reader r{buf, path, 8};
  const uint32_t version = r.get<uint32_t>("version");
  if (version != kVersionPlain && version != kVersionMeta)
    fail("checkpoint '" + path + "' has format version " + std::to_string(version) + ", this build reads versions " +
         std::to_string(kVersionPlain) + " and " + std::to_string(kVersionMeta));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, buf.data() + buf.size() - 4, 4);
  const uint32_t crc = (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(buf.data()), (uInt)(buf.size() - 4));
  if (crc != stored_crc) fail("checkpoint '" + path + "' is corrupt or truncated (CRC mismatch)");
  // The CRC matched, so what follows was written like this; a bad field here
  // means a writer that broke the format (or a forged file): say which field.
  std::string text;
  if (version == kVersionMeta) {
    const uint32_t len = r.get<uint32_t>("metadata length");
    if (len == 0 || len > kernels::kMaxMetaBytes || r.pos + len > buf.size() - 4)
      fail("checkpoint '" + path + "': bad metadata block (length " + std::to_string(len) + ", " +
           std::to_string(buf.size() - 4 - r.pos) + " bytes left in the file)");
    text = buf.substr(r.pos, len);
    r.pos += len;
    const std::string bad = kernels::meta_problem(text);
    if (!bad.empty()) fail("checkpoint '" + path + "': bad metadata block: the metadata " + bad);
  }
  if (meta) *meta = text;
  const uint32_t count = r.get<uint32_t>("tensor count");
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t len = r.get<uint32_t>("name length");
    if (len > 4096 || r.pos + len > buf.size() - 4) fail("checkpoint '" + path + "': bad name length");
    std::string name = buf.substr(r.pos, len);
    r.pos += len;
    const uint32_t nd = r.get<uint32_t>("ndim");
    if (nd > 8) fail("checkpoint '" + path + "': tensor '" + name + "' has " + std::to_string(nd) + " dims");
    Shape shape(nd);
    bool empty = false;
    for (auto& d : shape) {
      d = r.get<int64_t>("dims");
      if (d < 0 || d > (int64_t(1) << 34)) fail("checkpoint '" + path + "': tensor '" + name + "' has a bad shape");
      empty = empty || d == 0;
    }
    // The element count, compared with the floats left in the file dimension
    // by dimension: the plain product of up to 8 dims of 2^34 overflows.
    const int64_t room = r.pos + 4 <= buf.size() ? (int64_t)(buf.size() - 4 - r.pos) / 4 : 0;
    int64_t n = empty ? 0 : 1;
    for (int64_t d : shape) {
      if (empty) break;
      if (n > room / d) fail("checkpoint '" + path + "' is truncated (tensor '" + name + "')");
      n *= d;
    }
    if (out) out->emplace_back(std::move(name), Tensor::from_data(shape, reinterpret_cast<const float*>(buf.data() + r.pos)));
    r.pos += (size_t)n * 4;
  }
  if (r.pos != buf.size() - 4) fail("checkpoint '" + path + "' has trailing bytes");
}

}  // namespace

NamedTensors load_tensors(const std::string& path, std::string* meta) {
  NamedTensors out;
  parse_checkpoint(read_file(path), path, meta, &out);
  return out;
}

std::string load_meta(const std::string& path) {
  std::string meta;
  parse_checkpoint(read_file(path), path, &meta, nullptr);
  return meta;
}

void assign_tensors(NamedTensors& dest, const NamedTensors& loaded, const std::string& path) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [n, t] : loaded) by_name[n] = &t;
  for (auto& [name, t] : dest) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail("checkpoint '" + path + "' has no tensor '" + name + "' (a different model?)");
    if (it->second->shape() != t.shape())
      fail("checkpoint '" + path + "': tensor '" + name + "' is " + shape_str(it->second->shape()) +
           " but the model expects " + shape_str(t.shape()));
    by_name.erase(it);
  }
  if (!by_name.empty())
    fail("checkpoint '" + path + "' has tensor '" + by_name.begin()->first + "' that the model does not (a different model?)");
  for (auto& [name, t] : dest)
    for (const auto& [n, src] : loaded)
      if (n == name) t.copy_from(src);
}

}  // namespace qnn
