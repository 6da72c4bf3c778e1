// tests/fuzz/fuzz_idx.cpp — data/idx.cpp on arbitrary bytes, raw or gzip'd.
//
// The reader opens every file through zlib's gzopen, which itself chooses by
// the first bytes: 1f 8b is a gzip stream, anything else is read as it is. So
// the input goes to a file unchanged and both paths are reached (the seed
// corpus has raw and .gz files). Properties of an accepted raw file: it is
// exactly encode_idx of what was read (nothing skipped, nothing invented), and
// read_idx_labels agrees with read_idx on 1-dimensional files.
#include <cstdint>
#include <string>

#include "data/idx.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const std::string path = qnn_fuzz::temp_dir().write(gz ? "input.idx.gz" : "input.idx", data, size);
  qnn::IdxArray a;
  try {
    a = qnn::read_idx(path);
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
    return 0;
  }
  qnn_fuzz::accepted("idx");
  FUZZ_CHECK((int64_t)a.data.size() == qnn::shape_numel(a.shape), "element count differs from the shape");
  if (!gz) {
    const std::string again = qnn::encode_idx(a.shape, a.data);
    FUZZ_CHECK(again.size() == size && again.compare(0, size, reinterpret_cast<const char*>(data), size) == 0,
               "an accepted raw IDX file is not encode_idx of what was read");
  }
  if (a.shape.size() == 1) {
    bool in_range = true;
    for (uint8_t v : a.data) in_range = in_range && v < 10;
    try {
      const qnn::IdxArray l = qnn::read_idx_labels(path, 10);
      FUZZ_CHECK(in_range && l.data == a.data, "read_idx_labels accepted what read_idx says is out of range");
    } catch (const qnn::Error&) {
      FUZZ_CHECK(!in_range, "read_idx_labels refused labels that are all < 10");
    }
  }
  return 0;
}
