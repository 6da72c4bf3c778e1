// tests/fuzz/fuzz_svhn_mat.cpp — data/svhn.cpp load_svhn_mat (libmatio
// underneath) on arbitrary bytes.
//
// matio reads from a path: the input is written to a per-process temporary
// file (deleted at exit) named like the official files. libmatio is the
// Debian build, not instrumented: a memory error inside it shows as a crash
// (SEGV) rather than an ASan report, and the fuzzer's coverage feedback comes
// from qnn's checks only.
// Property of an accepted file: N samples of 3 x 32 x 32 with labels 0..9.
#include <cstdint>
#include <string>

#include "data/svhn.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qnn_fuzz::temp_dir().write("test_32x32.mat", data, size);
  try {
    const qnn::Dataset ds = qnn::load_svhn_mat(path);
    qnn_fuzz::accepted("svhn mat");
    FUZZ_CHECK(ds.pixels.size() == (size_t)ds.size() * 3072, "pixel storage has the wrong size");
    for (int32_t y : ds.y) FUZZ_CHECK(y >= 0 && y < 10, "label out of 0..9");
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
  }
  return 0;
}
