// tests/fuzz/fuzz_qnnx.cpp — kernels/packed_model.cpp PackedModel::from_bytes
// (what PackedModel::load calls on the file's bytes) on arbitrary input.
//
// kernels/ knows no qnn::Error: its loader refuses with std::runtime_error,
// which is the normal outcome here (std::bad_alloc, std::length_error,
// std::logic_error are not runtime_errors and stay findings).
// A .qnnx file carries its size (file_bytes, offset 8) and a CRC-32 at the
// end; each input is also read with both fixed up, to get past them.
// Properties of an accepted model: to_bytes gives back the input, and a small
// model runs one all-zero image through PackedRunner (the deployment path the
// loader's checks exist for).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/packed_model.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void load_one(const std::string& bytes) {
  qnn::kernels::PackedModel m;
  try {
    m = qnn::kernels::PackedModel::from_bytes(bytes, "fuzz.qnnx");
  } catch (const std::runtime_error& e) {
    qnn_fuzz::refused(e);
    return;
  }
  qnn_fuzz::accepted("qnnx");
  FUZZ_CHECK(m.to_bytes() == bytes, "an accepted .qnnx does not serialize back to the same bytes");
  int64_t work = 0;
  for (const auto& L : m.layers) work += L.in * L.out * L.weight_bits();
  if (work > (int64_t(1) << 22)) return;  // keep each input well under the 1 s budget
  const int64_t in = m.in_features(), out = m.num_classes();
  qnn::kernels::PackedRunner r(std::move(m));
  r.set_thread_policy(qnn::kernels::ThreadPolicy::one);
  std::vector<uint8_t> x((size_t)in, 0);
  std::vector<float> logits((size_t)out, 0.f);
  try {
    r.logits_u8(x.data(), 1, logits.data());
  } catch (const std::invalid_argument&) {
    // documented misuse error (e.g. an input kind that takes floats, not pixels)
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  load_one(bytes);
  if (size >= 32) {
    const uint64_t n = size;
    std::memcpy(bytes.data() + 8, &n, 8);
    const uint32_t crc = qnn::kernels::crc32_zlib(bytes.data(), size - 4);
    std::memcpy(bytes.data() + size - 4, &crc, 4);
    load_one(bytes);
  }
  return 0;
}
