// tests/fuzz/fuzz_cifar_bin.cpp — data/cifar.cpp load_cifar10_bin on arbitrary bytes.
//
// The reader takes a directory, so the input is written as DIR/test_batch.bin
// and the "test" split is loaded. The same input is then tried as the class
// names file, batches.meta.txt, next to a valid one-record batch.
// Property of an accepted batch: one sample per 3073-byte record, labels 0..9,
// and the pixels are the record's bytes.
#include <cstdint>
#include <string>

#include "data/cifar.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = qnn_fuzz::temp_dir();
  const std::string root = dir.root().string();
  dir.remove("batches.meta.txt");
  dir.write("test_batch.bin", data, size);
  try {
    const qnn::Dataset ds = qnn::load_cifar10_bin(root, "test");
    qnn_fuzz::accepted("cifar batch / meta");
    FUZZ_CHECK(size % 3073 == 0 && ds.size() == (int64_t)(size / 3073), "sample count is not size / 3073");
    FUZZ_CHECK(ds.pixels.size() == (size_t)ds.size() * 3072, "pixel storage has the wrong size");
    for (int64_t i = 0; i < ds.size(); ++i) {
      FUZZ_CHECK(ds.y[(size_t)i] == data[i * 3073] && ds.y[(size_t)i] < 10, "label differs from the record's");
      FUZZ_CHECK(ds.pixels[(size_t)i * 3072] == data[i * 3073 + 1] &&
                     ds.pixels[(size_t)i * 3072 + 3071] == data[i * 3073 + 3073 - 1],
                 "pixels differ from the record's");
    }
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
  }

  std::string record(3073, '\x01');
  record[0] = 3;
  dir.write("test_batch.bin", record);
  dir.write("batches.meta.txt", data, size);
  try {
    const qnn::Dataset ds = qnn::load_cifar10_bin(root, "test");
    FUZZ_CHECK(ds.class_names.size() == 10, "accepted a meta file without 10 names");
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
  }
  return 0;
}
