#include "core/serialize.h"

#include <zlib.h>

#include <cstring>
#include <map>

#include "core/fileio.h"

namespace qnn {
namespace {

constexpr char kMagic[8] = {'Q', 'N', 'N', 'C', 'K', 'P', 'T', '\0'};
constexpr uint32_t kVersion = 1;

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

void save_tensors(const std::string& path, const NamedTensors& tensors) {
  std::string s;
  s.append(kMagic, 8);
  put<uint32_t>(s, kVersion);
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

NamedTensors load_tensors(const std::string& path) {
  const std::string buf = read_file(path);
  if (buf.size() < 20 || std::memcmp(buf.data(), kMagic, 8) != 0)
    fail("'" + path + "' is not a qnn checkpoint (bad magic)");
  Reader r{buf, path, 8};
  const uint32_t version = r.get<uint32_t>("version");
  if (version != kVersion)
    fail("checkpoint '" + path + "' has format version " + std::to_string(version) + ", this build reads version " +
         std::to_string(kVersion));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, buf.data() + buf.size() - 4, 4);
  const uint32_t crc = (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(buf.data()), (uInt)(buf.size() - 4));
  if (crc != stored_crc) fail("checkpoint '" + path + "' is corrupt or truncated (CRC mismatch)");
  const uint32_t count = r.get<uint32_t>("tensor count");
  NamedTensors out;
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t len = r.get<uint32_t>("name length");
    if (len > 4096 || r.pos + len > buf.size() - 4) fail("checkpoint '" + path + "': bad name length");
    std::string name = buf.substr(r.pos, len);
    r.pos += len;
    const uint32_t nd = r.get<uint32_t>("ndim");
    if (nd > 8) fail("checkpoint '" + path + "': tensor '" + name + "' has " + std::to_string(nd) + " dims");
    Shape shape(nd);
    int64_t n = 1;
    for (auto& d : shape) {
      d = r.get<int64_t>("dims");
      if (d < 0 || d > (int64_t(1) << 34)) fail("checkpoint '" + path + "': tensor '" + name + "' has a bad shape");
      n *= d;
    }
    if (r.pos + (size_t)n * 4 > buf.size() - 4) fail("checkpoint '" + path + "' is truncated (tensor '" + name + "')");
    Tensor t = Tensor::from_data(shape, reinterpret_cast<const float*>(buf.data() + r.pos));
    r.pos += (size_t)n * 4;
    out.emplace_back(std::move(name), std::move(t));
  }
  if (r.pos != buf.size() - 4) fail("checkpoint '" + path + "' has trailing bytes");
  return out;
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
