// data/idx.cpp — IDX reader/writer (see idx.h for the format).
#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/fileio.h"

namespace qnn {
namespace {

namespace fs = std::filesystem;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::string hex8(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
  return buf;
}

[[noreturn]] void fail_file(const std::string& path, const std::string& what) {
  fail(path + ": " + what);
}

// Owns a gzFile; reads raw and gzip'd files alike.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) fail_file(path, "file not found");
    if (fs::is_directory(path, ec)) fail_file(path, "is a directory, not an IDX file");
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) fail_file(path, std::string("cannot open: ") + std::strerror(errno));
    gzbuffer(f_, 1 << 18);  // fewer syscalls than the default 8 KiB
  }
  ~GzReader() {
    if (f_) gzclose_r(f_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes; returns how many were read (short only at the end of
  // the file). A corrupt or cut gzip stream is an error naming the file.
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    auto* p = static_cast<unsigned char*>(dst);
    while (got < n) {
      const unsigned chunk = (unsigned)std::min<size_t>(n - got, 1u << 30);
      const int r = gzread(f_, p + got, chunk);
      int errnum = 0;
      const char* msg = gzerror(f_, &errnum);
      // zlib reports a cut-off gzip stream as Z_BUF_ERROR ("unexpected end of
      // file") but still returns the bytes it had; remember it for the caller.
      if (errnum == Z_BUF_ERROR) cut_off_ = true;
      else if (r < 0 || errnum != Z_OK)
        fail_file(path_, std::string("corrupt gzip data: ") + (msg ? msg : "unknown zlib error"));
      if (r < 0) break;
      got += (size_t)r;
      if ((unsigned)r < chunk) break;  // end of file
    }
    return got;
  }
  // True if the file is gzip'd and its stream ended before its trailer.
  bool cut_off() const { return cut_off_; }

 private:
  bool cut_off_ = false;
  std::string path_;
  gzFile f_ = nullptr;
};

uint32_t be32(const unsigned char* b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

const char* payload_word(size_t ndim) {
  return ndim == 3 ? "pixel data" : ndim == 1 ? "label data" : "data";
}

}  // namespace

IdxArray read_idx(const std::string& path, int expected_ndim) {
  GzReader in(path);

  unsigned char head[4];
  const size_t got_head = in.read(head, 4);
  if (got_head < 4)
    fail_file(path, "truncated: " + std::to_string(got_head) +
                        " bytes, too short for an IDX header (4-byte magic number)");
  const uint32_t magic = be32(head);
  if (head[0] != 0 || head[1] != 0)
    fail_file(path, "bad magic number " + hex32(magic) +
                        ": not an IDX file (expected 0x00000803 for images or 0x00000801 for labels)");
  if (head[2] != 0x08)
    fail_file(path, "unsupported element type " + hex8(head[2]) + " in magic number " +
                        hex32(magic) + " (only unsigned byte, 0x08, is supported)");
  const int ndim = head[3];
  if (expected_ndim >= 0 && ndim != expected_ndim) {
    const uint32_t want = 0x00000800u | (uint32_t)expected_ndim;
    fail_file(path, "wrong number of dimensions: magic number " + hex32(magic) + " says " +
                        std::to_string(ndim) + ", expected " + std::to_string(expected_ndim) +
                        " (magic " + hex32(want) + ")");
  }

  IdxArray out;
  out.path = path;
  out.shape.resize((size_t)ndim);
  if (ndim > 0) {
    std::vector<unsigned char> dims((size_t)ndim * 4);
    const size_t got = in.read(dims.data(), dims.size());
    if (got < dims.size())
      fail_file(path, "truncated: header needs " + std::to_string(dims.size()) +
                          " bytes of dimension sizes, got " + std::to_string(got));
    for (int i = 0; i < ndim; ++i) out.shape[(size_t)i] = (int64_t)be32(&dims[(size_t)i * 4]);
  }

  // Element count, guarding against a corrupt header claiming an absurd size.
  const int64_t kMax = int64_t(1) << 40;
  int64_t n = 1;
  for (int64_t d : out.shape) {
    if (d != 0 && n > kMax / d)
      fail_file(path, "dimensions " + shape_str(out.shape) + " are implausibly large (corrupt header?)");
    n *= d;
  }

  // Read in chunks so a lying header over a short file fails without first
  // allocating what the header claims.
  const size_t want = (size_t)n;
  size_t got = 0;
  out.data.reserve(std::min<size_t>(want, size_t(1) << 28));
  while (got < want) {
    const size_t chunk = std::min<size_t>(want - got, size_t(1) << 24);
    out.data.resize(got + chunk);
    const size_t r = in.read(out.data.data() + got, chunk);
    got += r;
    if (r < chunk) break;
  }
  out.data.resize(got);
  if (got < want)
    fail_file(path, std::string("truncated: expected ") + std::to_string(want) + " bytes of " +
                        payload_word((size_t)ndim) + " for shape " + shape_str(out.shape) +
                        ", got " + std::to_string(got) +
                        (in.cut_off() ? " (the gzip stream ends early)" : ""));

  // Nothing may follow the data: extra bytes mean the header is wrong.
  size_t extra = 0;
  unsigned char sink[1 << 16];
  for (;;) {
    const size_t r = in.read(sink, sizeof sink);
    extra += r;
    if (r < sizeof sink) break;
  }
  if (extra > 0)
    fail_file(path, std::to_string(extra) + " trailing bytes after the " + std::to_string(want) +
                        " bytes of data that the header (shape " + shape_str(out.shape) +
                        ") announces");
  if (in.cut_off())
    fail_file(path, "truncated: the gzip stream ends early (the file was cut off)");
  return out;
}

IdxArray read_idx_images(const std::string& path) { return read_idx(path, 3); }

IdxArray read_idx_labels(const std::string& path, int num_classes) {
  QNN_CHECK(num_classes > 0 && num_classes <= 256,
            "read_idx_labels: num_classes must be in 1..256, got " + std::to_string(num_classes));
  IdxArray a = read_idx(path, 1);
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (a.data[i] >= num_classes)
      fail_file(path, "label " + std::to_string(a.data[i]) + " at index " + std::to_string(i) +
                          " is out of range (expected 0.." + std::to_string(num_classes - 1) + " for " +
                          std::to_string(num_classes) + " classes)");
  }
  return a;
}

std::string find_idx(const std::string& dir, const std::string& basename) {
  std::error_code ec;
  const fs::path raw = fs::path(dir) / basename;
  if (fs::is_regular_file(raw, ec)) return raw.string();
  const fs::path gz = fs::path(dir) / (basename + ".gz");
  if (fs::is_regular_file(gz, ec)) return gz.string();
  return "";
}

std::string encode_idx(const Shape& shape, const std::vector<uint8_t>& data) {
  QNN_CHECK(shape.size() <= 255, "encode_idx: at most 255 dimensions, got " + std::to_string(shape.size()));
  for (int64_t d : shape)
    QNN_CHECK(d >= 0 && d <= (int64_t)std::numeric_limits<uint32_t>::max(),
              "encode_idx: dimension out of uint32 range in " + shape_str(shape));
  QNN_CHECK((int64_t)data.size() == shape_numel(shape),
            "encode_idx: " + std::to_string(data.size()) + " bytes for shape " + shape_str(shape));
  std::string out;
  out.reserve(4 + 4 * shape.size() + data.size());
  auto put32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back((char)((v >> s) & 0xFF));
  };
  put32(0x00000800u | (uint32_t)shape.size());
  for (int64_t d : shape) put32((uint32_t)d);
  out.append(reinterpret_cast<const char*>(data.data()), data.size());
  return out;
}

void write_idx(const std::string& path, const Shape& shape, const std::vector<uint8_t>& data) {
  const std::string bytes = encode_idx(shape, data);
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (!gz) {
    write_file_atomic(path, bytes);
    return;
  }
  gzFile f = gzopen(path.c_str(), "wb");
  if (!f) fail_file(path, std::string("cannot write: ") + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const unsigned chunk = (unsigned)std::min<size_t>(bytes.size() - done, 1u << 30);
    if (gzwrite(f, bytes.data() + done, chunk) != (int)chunk) {
      int errnum = 0;
      std::string msg = gzerror(f, &errnum);
      gzclose_w(f);
      fail_file(path, "gzip write failed: " + msg);
    }
    done += chunk;
  }
  if (gzclose_w(f) != Z_OK) fail_file(path, "gzip write failed on close");
}

}  // namespace qnn
