// tests/image_test_util.h — fake image data of the image-reader tests
// (test_data_images.cpp, test_data_subsets.cpp): a deterministic pixel per
// (sample, channel, row, column), CIFAR-10 binary batches and PNG files
// holding those pixels, and an in-memory pixel dataset of them.
#pragma once

#include <doctest/doctest.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "tests/data_test_util.h"

namespace qnn::test {

// A deterministic pixel of sample i, channel c, row h, column w.
inline uint8_t px_of(int64_t i, int64_t c, int64_t h, int64_t w) {
  return (uint8_t)((i * 37 + c * 101 + h * 7 + w * 3) % 256);
}

// --- CIFAR-10 binary ---------------------------------------------------------

// n records with labels label_of(i) and pixels px_of(first + i, ...) in CHW order.
inline std::string cifar_records(int64_t first, int64_t n, int label_mod = 10) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) {
    s.push_back((char)((first + i) % label_mod));
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 32; ++h)
        for (int w = 0; w < 32; ++w) s.push_back((char)px_of(first + i, c, h, w));
  }
  return s;
}

inline const char* kMeta = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

// DIR/cifar-10-batches-bin with 5 training batches of `per` records and a test batch.
inline std::filesystem::path write_fake_cifar(const TempDir& d, int64_t per, bool meta = true) {
  const std::filesystem::path bin = d.path / "cifar-10-batches-bin";
  for (int b = 1; b <= 5; ++b)
    write_bytes(bin / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records((b - 1) * per, per));
  write_bytes(bin / "test_batch.bin", cifar_records(1000, per));
  if (meta) write_bytes(bin / "batches.meta.txt", kMeta);
  return bin;
}

// --- image folders --------------------------------------------------------------

// An RGB PNG of w x h whose pixel (x, y) channel k is px_of(seed, k, y, x).
// Static, as the copy of stb_image_write it calls (one per test file).
static inline void write_png(const std::filesystem::path& p, int w, int h, int64_t seed, int comp = 3) {
  std::filesystem::create_directories(p.parent_path());
  std::vector<uint8_t> buf((size_t)(w * h * comp));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < comp; ++k) buf[(size_t)((y * w + x) * comp + k)] = px_of(seed, k, y, x);
  REQUIRE(stbi_write_png(p.string().c_str(), w, h, comp, buf.data(), w * comp) != 0);
}

// --- in memory -------------------------------------------------------------------

// A pixel dataset of n CHW samples (c x h x w) with labels i % classes.
inline Dataset pixel_dataset(int64_t n, int64_t c, int64_t h, int64_t w, int classes = 10) {
  Dataset ds;
  ds.name = "fake";
  ds.sample_shape = {c, h, w};
  ds.num_classes = classes;
  for (int i = 0; i < classes; ++i) ds.class_names.push_back(std::string(1, 'c') + std::to_string(i));
  ds.pixels.resize((size_t)(n * c * h * w));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) ds.pixels[(size_t)(((i * c + k) * h + y) * w + x)] = px_of(i, k, y, x);
  for (int64_t i = 0; i < n; ++i) ds.y.push_back((int32_t)(i % classes));
  return ds;
}

}  // namespace qnn::test
