// tests/fuzz/fuzz_checkpoint.cpp — core/serialize.cpp load_tensors on arbitrary bytes.
//
// A checkpoint ends in a CRC-32 of everything before it, so random mutations
// almost always stop at the CRC check. Each input is therefore read twice: as
// it is, and with its last 4 bytes replaced by the right CRC, which lets the
// fuzzer reach the field checks behind it (lengths, ranks, shapes).
// Property of an accepted file: saving what was loaded gives the same bytes
// (the format has one encoding per content; version 1 without metadata,
// version 2 with).
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/serialize.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void load_one(const std::string& bytes) {
  const auto& dir = qnn_fuzz::temp_dir();
  const std::string path = dir.write("input.qnn", bytes);
  qnn::NamedTensors t;
  std::string meta;
  try {
    t = qnn::load_tensors(path, &meta);
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
    return;
  }
  qnn_fuzz::accepted("checkpoint");
  std::string meta_only;
  try {
    meta_only = qnn::load_meta(path);
  } catch (const qnn::Error&) {
    FUZZ_CHECK(false, "load_meta refused a file load_tensors accepted");
  }
  FUZZ_CHECK(meta_only == meta, "load_meta and load_tensors disagree on the metadata");
  const std::string out = (dir.root() / "resaved.qnn").string();
  qnn::save_tensors(out, t, meta);  // a qnn::Error here is a finding: it was loaded
  FUZZ_CHECK(qnn_fuzz::read_all(out) == bytes, "an accepted checkpoint does not save back to the same bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  load_one(bytes);
  if (size >= 24) {
    const uint32_t crc = (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), (uInt)(size - 4));
    std::memcpy(bytes.data() + size - 4, &crc, 4);
    load_one(bytes);
  }
  return 0;
}
