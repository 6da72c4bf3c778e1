// data/svhn.cpp — SVHN .mat files through libmatio (see svhn.h).
#include "data/svhn.h"

#include <matio.h>
#include <zlib.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>

#include <fcntl.h>   // open: fsync of the temporary file
#include <unistd.h>  // getpid, fsync, close

namespace qnn {
namespace {

namespace fs = std::filesystem;

const char* kFetchHint =
    " Get the official train_32x32.mat / test_32x32.mat and install them with "
    "`scripts/fetch_data.sh svhn --from DIR` (they land in datasets/svhn/).";

// matio reports problems through a log function (by default to stderr) and
// sometimes still returns the variable (a corrupt zlib stream gives "inflate
// returned data error" and garbage pixels). Keep the last error or critical
// message (matio's levels 1 and 2) of this thread: any after a read refuses
// the file, and the message goes into the error we throw.
thread_local std::string g_mat_log;

void mat_log(int level, char* message) {
  if ((level == 1 || level == 2) && message) g_mat_log = message;
}

void install_mat_log() {
  static std::once_flag once;
  std::call_once(once, [] { Mat_LogInitFunc("qnn", mat_log); });
}

std::string with_log(const std::string& what) {
  return g_mat_log.empty() ? what : what + " (matio: " + g_mat_log + ")";
}

struct MatCloser {
  void operator()(mat_t* m) const { Mat_Close(m); }
};
struct VarFreer {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};
using MatPtr = std::unique_ptr<mat_t, MatCloser>;
using VarPtr = std::unique_ptr<matvar_t, VarFreer>;

std::string dims_str(const matvar_t* v) {
  std::string s;
  for (int i = 0; i < v->rank; ++i) {
    if (i) s += 'x';
    s += std::to_string(v->dims[i]);
  }
  return s;
}

// Element i of a real numeric variable as a double; false for other classes.
bool numeric_at(const matvar_t* v, size_t i, double& out) {
  switch (v->class_type) {
    case MAT_C_DOUBLE: out = static_cast<const double*>(v->data)[i]; return true;
    case MAT_C_SINGLE: out = static_cast<const float*>(v->data)[i]; return true;
    case MAT_C_INT8: out = static_cast<const int8_t*>(v->data)[i]; return true;
    case MAT_C_UINT8: out = static_cast<const uint8_t*>(v->data)[i]; return true;
    case MAT_C_INT16: out = static_cast<const int16_t*>(v->data)[i]; return true;
    case MAT_C_UINT16: out = static_cast<const uint16_t*>(v->data)[i]; return true;
    case MAT_C_INT32: out = static_cast<const int32_t*>(v->data)[i]; return true;
    case MAT_C_UINT32: out = static_cast<const uint32_t*>(v->data)[i]; return true;
    case MAT_C_INT64: out = (double)static_cast<const int64_t*>(v->data)[i]; return true;
    case MAT_C_UINT64: out = (double)static_cast<const uint64_t*>(v->data)[i]; return true;
    default: return false;
  }
}

// The first sub-elements of a miMATRIX's `len` bytes (`avail` of them in `m`):
// array flags, dimensions, name. Their byte counts must fit in the matrix, and
// stay small: SVHN's X and y have 4 and 2 dimensions; MATLAB names are <= 63
// characters. (A 248-byte file whose dimension list claims 1 GB made matio ask
// for 2 GB before reading a byte: fuzz_svhn_mat.)
template <class U32>
void check_matrix_head(const std::string& path, int64_t pos, const unsigned char* m, size_t avail, int64_t len,
                       U32 u32) {
  size_t at = 0;
  // Returns the offset of the element's data in m (or avail when cut off).
  // The format fixes each element's data type (array flags miUINT32 = 6,
  // dimensions miINT32 = 5, name miINT8 = 1); matio reads another type's
  // bytes as dimensions all the same (fuzz_svhn_mat: a dimension list of
  // type 104 became a 3.2 GB allocation), so anything else is refused here.
  auto element = [&](const char* what, uint32_t max_bytes, uint32_t type) -> size_t {
    if (avail - at < 8) return avail;  // short: matio reports the cut-off matrix itself
    const uint32_t word = u32(m + at);
    uint32_t n;
    size_t size, data;
    if (word >> 16) {  // small data element: byte count in the upper 16 bits, data in the tag
      n = word >> 16;
      size = 8;
      data = at + 4;
    } else {
      n = u32(m + at + 4);
      size = 8 + ((size_t)n + 7) / 8 * 8;
      data = at + 8;
    }
    if ((word & 0xFFFF) != type)
      fail(path + ": the variable at byte " + std::to_string(pos) + " stores its " + what + " as data type " +
           std::to_string(word & 0xFFFF) + " (the format says " + std::to_string(type) + "): corrupt file?");
    if (n > max_bytes || (int64_t)(at + 8) + (int64_t)n > len)
      fail(path + ": the variable at byte " + std::to_string(pos) + " declares " + std::to_string(n) +
           " bytes of " + what + " (at most " + std::to_string(max_bytes) + " in a matrix of " + std::to_string(len) +
           " bytes): corrupt file?");
    at = std::min(avail, at + size);
    return std::min(avail, data);
  };
  const size_t flags = element("array flags", 16, 6);
  // SVHN's X and y are numeric arrays (classes 6..15: double, single,
  // int8..uint64). A cell, struct, object, char or sparse array is not
  // SVHN, and matio sizes a cell's or struct's element table from its
  // dimensions while reading the header (a 506-byte file asked for 3.2 GB:
  // fuzz_svhn_mat), so refuse it before matio looks.
  if (flags + 4 <= avail) {
    const uint32_t cls = u32(m + flags) & 0xFF;
    if (cls < 6 || cls > 15)
      fail(path + ": the variable at byte " + std::to_string(pos) + " is of MATLAB class " + std::to_string(cls) +
           " (SVHN's X and y are numeric arrays, classes 6 to 15): not an SVHN file, or corrupt");
  }
  element("dimensions", 4 * 32, 5);
  element("name", 64, 1);
}

// matio does not notice every cut-off file (an uncompressed variable that
// ends early can come back with unread bytes), so for MATLAB v5 files walk the
// top-level elements first: after the 128-byte header each is an 8-byte tag
// (type, byte count) and its data (miMATRIX padded to 8 bytes), and they
// must end exactly at the end of the file. v7.3 files are HDF5: matio's HDF5
// reader checks those.
// Returns the file size in bytes.
int64_t check_v5_layout(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path + ": cannot open");
  f.seekg(0, std::ios::end);
  const int64_t size = (int64_t)f.tellg();
  f.seekg(0);
  unsigned char head[128];
  if (size < 128 || !f.read(reinterpret_cast<char*>(head), 128))
    fail(path + ": " + std::to_string(size) + " bytes, too short for a MATLAB .mat file (128-byte header): truncated?");
  bool swap;
  if (head[126] == 'I' && head[127] == 'M') swap = false;       // written little-endian
  else if (head[126] == 'M' && head[127] == 'I') swap = true;   // big-endian
  else fail(path + ": not a MATLAB .mat file (no endian indicator in its 128-byte header)");
  const unsigned version = swap ? (head[124] << 8 | head[125]) : (head[125] << 8 | head[124]);
  // Only the two versions MATLAB writes with this header. Anything else sends
  // matio down its fallback readers, one of which zeroes a buffer sized by
  // the file's first bytes (fuzz_svhn_mat: 2 s on a 128-byte file).
  if (version != 0x0100 && version != 0x0200) {
    char v[8];
    std::snprintf(v, sizeof v, "0x%04x", version);
    fail(path + ": MATLAB .mat header version " + v + " is neither 5 (0x0100) nor 7.3 (0x0200): corrupt file?");
  }
  if (version != 0x0100) return size;  // 0x0200: v7.3 (HDF5), matio's own reader
  auto u32 = [&](const unsigned char* b) {
    return swap ? ((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3])
                : ((uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0]);
  };
  int64_t pos = 128;
  while (pos < size) {
    unsigned char tag[8];
    f.seekg(pos);
    if (size - pos < 8 || !f.read(reinterpret_cast<char*>(tag), 8))
      fail(path + ": truncated: " + std::to_string(size - pos) + " stray bytes at the end (byte " + std::to_string(pos) + ")");
    const uint32_t type = u32(tag), nbytes = u32(tag + 4);
    int64_t len = nbytes;
    if (type == 14) len = (len + 7) / 8 * 8;  // miMATRIX: padded to 8 bytes
    else if (type != 15)                       // miCOMPRESSED: not padded
      fail(path + ": unexpected top-level element type " + std::to_string(type) + " at byte " + std::to_string(pos) +
           " (expected a matrix, 14, or compressed data, 15): corrupt file?");
    if (pos + 8 + (int64_t)nbytes > size)
      fail(path + ": truncated: the variable at byte " + std::to_string(pos) + " needs " + std::to_string(nbytes) +
           " bytes, the file ends " + std::to_string(size - pos - 8) + " bytes after its tag");
    // The start of the matrix (inflated if compressed): matio allocates its
    // dimension list and name from their byte counts before reading them.
    std::string head(std::min<int64_t>(nbytes, 256), '\0');
    f.seekg(pos + 8);
    if (type == 14) {
      f.read(head.data(), (std::streamsize)head.size());
      check_matrix_head(path, pos, reinterpret_cast<const unsigned char*>(head.data()), head.size(), nbytes, u32);
    } else {
      std::string z((size_t)std::min<int64_t>(nbytes, 1 << 16), '\0');
      f.read(z.data(), (std::streamsize)z.size());
      unsigned char out[8 + 256];
      z_stream zs{};
      if (inflateInit(&zs) != Z_OK) fail(path + ": zlib inflateInit failed");
      zs.next_in = reinterpret_cast<Bytef*>(z.data());
      zs.avail_in = (uInt)z.size();
      zs.next_out = out;
      zs.avail_out = sizeof out;
      inflate(&zs, Z_SYNC_FLUSH);  // errors show as too few bytes out
      const size_t got = sizeof out - zs.avail_out;
      inflateEnd(&zs);
      if (got >= 8 && u32(out) == 14)
        check_matrix_head(path, pos, out + 8, got - 8, u32(out + 4), u32);
      // else: matio says what is wrong (not a matrix, corrupt zlib stream)
    }
    pos += 8 + std::min<int64_t>(len, size - pos - 8);
  }
  return size;
}

// Deflate expands at most 1032:1 (its longest match, 258 bytes, costs at least
// 2 bits), so a compressed variable cannot hold more bytes than this in a file
// of `file_size` bytes; uncompressed v5 data is stored as is. v7.3 (HDF5)
// chunks may be deflated without matio saying so, so they get the same bound.
int64_t max_var_bytes(int64_t file_size, mat_t* mat, const matvar_t* info) {
  const bool plain = Mat_GetVersion(mat) == MAT_FT_MAT5 && info->compression == MAT_COMPRESSION_NONE;
  return plain ? file_size : file_size * 1032 + 4096;
}

// Checks a variable's header (Mat_VarReadInfo: class, rank, dims, no data) so
// that Mat_VarRead, which allocates the product of the dimensions before it
// reads a byte, never sees dimensions the file cannot hold: a 3 KB file that
// claims 704643073 x 1 doubles must be refused, not cost 5.6 GB.
VarPtr read_info(mat_t* mat, const std::string& path, const char* name, const char* expected) {
  g_mat_log.clear();
  VarPtr info(Mat_VarReadInfo(mat, name));
  if (!info)
    fail(with_log(path + ": no readable variable '" + name + "' (expected " + expected + "; truncated file?)"));
  if (!g_mat_log.empty()) fail(with_log(path + ": variable '" + name + "' does not read cleanly (corrupt file)"));
  return info;
}

void check_fits(const std::string& path, mat_t* mat, const matvar_t* info, const char* name, int64_t file_size) {
  const size_t elem = Mat_SizeOfClass(info->class_type);
  // The element count with overflow checks: each dimension is at most the byte
  // bound (an element is at least one byte), so the running product stays < 2^63.
  const int64_t limit = max_var_bytes(file_size, mat, info);
  int64_t count = 1;
  bool over = elem == 0 || info->rank < 0 || (info->rank > 0 && !info->dims);
  for (int i = 0; i < info->rank && !over; ++i)
    if (info->dims[i] == 0) count = 0;  // empty: holds nothing, whatever the other dimensions say
  for (int i = 0; i < info->rank && !over && count != 0; ++i) {
    if (info->dims[i] > (size_t)limit) over = true;
    else count *= (int64_t)info->dims[i];
    if (count > limit) over = true;
  }
  if (!over && count > 0 && (int64_t)elem > limit / count) over = true;
  if (over)
    fail(path + ": variable '" + name + "' claims " + dims_str(info) + " elements of " + std::to_string(elem) +
         " bytes, more than a " + std::to_string(file_size) + "-byte file can hold (corrupt file?)");
}

// SVHN stores each 32x32 plane column-major (X(h, w, c, n) at h + 32 w +
// 1024 c + 3072 n), qnn row-major (CHW): the one is the other transposed,
// plane by plane, both ways. `planes` 32x32 planes from src to dst.
void transpose_planes(const uint8_t* src, uint8_t* dst, int64_t planes) {
  for (int64_t p = 0; p < planes; ++p) {
    const uint8_t* s = src + p * 1024;
    uint8_t* d = dst + p * 1024;
    for (int64_t h = 0; h < 32; ++h)
      for (int64_t w = 0; w < 32; ++w) d[h * 32 + w] = s[h + 32 * w];
  }
}

}  // namespace

Dataset load_svhn_mat(const std::string& path, const ImageOptions& opt) {
  QNN_CHECK(opt.channels == 3, "load_svhn: SVHN images are RGB: channels must be 3, got " +
                                   std::to_string(opt.channels));
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path + ": file not found." + kFetchHint);
  const int64_t file_size = check_v5_layout(path);
  install_mat_log();
  g_mat_log.clear();
  MatPtr mat(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (!mat) fail(with_log(path + ": not a readable MATLAB .mat file (truncated, corrupt or another format)"));

  // Headers first (class and dimensions, no data): nothing is allocated from
  // the file's numbers until they are checked against each other and the size.
  {
    const VarPtr xi = read_info(mat.get(), path, "X", "32x32x3xN uint8 images");
    if (xi->class_type != MAT_C_UINT8 || xi->isComplex)
      fail(path + ": variable 'X' must be real uint8 (MATLAB class uint8), got class id " +
           std::to_string((int)xi->class_type) + (xi->isComplex ? " (complex)" : ""));
    if (xi->rank != 4 || xi->dims[0] != 32 || xi->dims[1] != 32 || xi->dims[2] != 3)
      fail(path + ": variable 'X' is " + dims_str(xi.get()) + ", expected 32x32x3xN");
    check_fits(path, mat.get(), xi.get(), "X", file_size);
    const int64_t nx = (int64_t)xi->dims[3];
    const VarPtr yi = read_info(mat.get(), path, "y", "Nx1 labels 1..10");
    const bool col = yi->rank == 2 && (int64_t)yi->dims[0] == nx && yi->dims[1] == 1;
    const bool row = yi->rank == 2 && yi->dims[0] == 1 && (int64_t)yi->dims[1] == nx;
    if (!col && !row) fail(path + ": 'y' is " + dims_str(yi.get()) + " but 'X' has " + std::to_string(nx) +
                           " images: expected y to be " + std::to_string(nx) + "x1");
    if (yi->isComplex || yi->class_type < MAT_C_DOUBLE || yi->class_type > MAT_C_UINT64)
      fail(path + ": variable 'y' must be real numeric (double in the official files), got class id " +
           std::to_string((int)yi->class_type));
    check_fits(path, mat.get(), yi.get(), "y", file_size);
  }

  g_mat_log.clear();
  VarPtr X(Mat_VarRead(mat.get(), "X"));
  if (!X) fail(with_log(path + ": no readable variable 'X' (expected 32x32x3xN uint8 images; truncated file?)"));
  if (!g_mat_log.empty()) fail(with_log(path + ": variable 'X' does not read cleanly (corrupt file)"));
  if (X->class_type != MAT_C_UINT8 || X->isComplex)
    fail(path + ": variable 'X' must be real uint8 (MATLAB class uint8), got class id " +
         std::to_string((int)X->class_type) + (X->isComplex ? " (complex)" : ""));
  if (X->rank != 4 || X->dims[0] != 32 || X->dims[1] != 32 || X->dims[2] != 3)
    fail(path + ": variable 'X' is " + dims_str(X.get()) + ", expected 32x32x3xN");
  const int64_t n = (int64_t)X->dims[3];
  if (!X->data || (int64_t)X->nbytes != n * 3072)
    fail(with_log(path + ": variable 'X' holds " + std::to_string(X->data ? X->nbytes : 0) + " bytes, expected " +
                  std::to_string(n * 3072) + " for " + dims_str(X.get()) + " (truncated file?)"));

  g_mat_log.clear();
  VarPtr Y(Mat_VarRead(mat.get(), "y"));
  if (!Y) fail(with_log(path + ": no readable variable 'y' (expected Nx1 labels 1..10; truncated file?)"));
  if (!g_mat_log.empty()) fail(with_log(path + ": variable 'y' does not read cleanly (corrupt file)"));
  const bool vector = Y->rank == 2 && ((int64_t)Y->dims[0] == n && Y->dims[1] == 1);
  const bool row = Y->rank == 2 && (Y->dims[0] == 1 && (int64_t)Y->dims[1] == n);
  if (!vector && !row) fail(path + ": 'y' is " + dims_str(Y.get()) + " but 'X' has " + std::to_string(n) +
                            " images: expected y to be " + std::to_string(n) + "x1");
  double probe = 0;
  if (Y->isComplex || (n > 0 && !numeric_at(Y.get(), 0, probe)))
    fail(path + ": variable 'y' must be real numeric (double in the official files), got class id " +
         std::to_string((int)Y->class_type));
  if (n > 0 && (!Y->data || Y->nbytes < (size_t)n * Y->data_size))
    fail(with_log(path + ": variable 'y' holds too few bytes (truncated file?)"));

  Dataset ds;
  ds.name = opt.name.empty() ? fs::path(path).stem().string() : opt.name;
  ds.sample_shape = {3, 32, 32};
  ds.num_classes = 10;
  ds.class_names = mnist_class_names();  // the digits "0".."9"
  ds.scale = opt.scale;
  ds.y.resize((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    double v = 0;
    numeric_at(Y.get(), (size_t)i, v);
    if (!(v >= 1 && v <= 10 && v == std::floor(v)))
      fail(path + ": label y(" + std::to_string(i + 1) + ") = " + std::to_string(v) +
           " is out of range (SVHN labels are the integers 1..10, 10 meaning the digit 0)");
    ds.y[(size_t)i] = (int32_t)v % 10;
  }
  ds.pixels.resize((size_t)(n * 3072));
  transpose_planes(static_cast<const uint8_t*>(X->data), ds.pixels.data(), n * 3);  // -> CHW
  return image_detail::apply_limit(std::move(ds), opt);
}

void save_svhn_mat(const std::string& path, const Dataset& ds, bool compress) {
  QNN_CHECK(ds.has_pixels() && ds.sample_shape == Shape({3, 32, 32}) && ds.num_classes == 10,
            "save_svhn_mat: " + path + ": needs 3x32x32 pixel images of 10 classes (" + ds.name + " is not)");
  ds.validate();
  const int64_t n = ds.size();
  std::vector<uint8_t> x((size_t)(n * 3072));
  transpose_planes(ds.pixels.data(), x.data(), n * 3);  // CHW -> MATLAB's column-major X
  std::vector<double> y((size_t)n);
  for (int64_t i = 0; i < n; ++i) y[(size_t)i] = ds.y[(size_t)i] == 0 ? 10.0 : (double)ds.y[(size_t)i];
  install_mat_log();
  g_mat_log.clear();
  const std::string tmp = path + ".tmp-" + std::to_string((long long)::getpid());
  bool ok = false;
  {
    // A fixed header text (matio's default has the date in it): the same
    // data gives the same bytes.
    MatPtr mat(Mat_CreateVer(tmp.c_str(), "MATLAB 5.0 MAT-file, written by qnn (SVHN layout)", MAT_FT_MAT5));
    if (mat) {
      size_t xd[4] = {32, 32, 3, (size_t)n}, yd[2] = {(size_t)n, 1};
      VarPtr vx(Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 4, xd, x.data(), MAT_F_DONT_COPY_DATA));
      VarPtr vy(Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, yd, y.data(), MAT_F_DONT_COPY_DATA));
      const auto comp = compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
      ok = vx && vy && Mat_VarWrite(mat.get(), vx.get(), comp) == 0 && Mat_VarWrite(mat.get(), vy.get(), comp) == 0;
    }
  }  // Mat_Close flushes the file
  // On disk before the rename (as write_file_atomic, core/fileio.h, does for
  // the files qnn writes itself): a crash leaves the old file or the new one.
  if (ok) {
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    ok = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
  }
  std::error_code ec;
  if (ok && g_mat_log.empty()) fs::rename(tmp, path, ec);
  if (!ok || !g_mat_log.empty() || ec) {
    fs::remove(tmp, ec);
    fail(with_log(path + ": could not write the .mat file (directory missing, not writable, or disk full?)"));
  }
}

Dataset load_svhn(const std::string& dir, const std::string& split, const ImageOptions& opt) {
  image_detail::check_split("load_svhn", split, true);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir + ": SVHN data directory not found." + kFetchHint);
  ImageOptions o = opt;
  if (o.name.empty()) o.name = image_detail::default_name(dir, split, opt);
  return load_svhn_mat((fs::path(dir) / (split + "_32x32.mat")).string(), o);
}

}  // namespace qnn
