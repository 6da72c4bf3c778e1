// data/cifar.cpp — CIFAR-10 binary batches (see cifar.h for the format).
#include "data/cifar.h"

#include <filesystem>
#include <fstream>

#include "core/fileio.h"

namespace qnn {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kPixels = 3 * 32 * 32;
constexpr int64_t kRecord = 1 + kPixels;

const char* kFetchHint =
    " Get the official release with `scripts/fetch_data.sh cifar10 --from cifar-10-binary.tar.gz` "
    "(it unpacks into datasets/cifar10/).";

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The class names of batches.meta.txt: its non-empty lines, trimmed.
std::vector<std::string> read_meta(const std::string& path) {
  std::ifstream f(path);
  QNN_CHECK(f.good(), path + ": cannot open");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(f, line)) {
    const auto b = line.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) continue;
    const auto e = line.find_last_not_of(" \t\r\n");
    names.push_back(line.substr(b, e - b + 1));
  }
  QNN_CHECK(names.size() == 10, path + ": expected 10 class names (one a line), found " +
                                    std::to_string(names.size()));
  return names;
}

}  // namespace

std::vector<std::string> cifar10_class_names() {
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

std::string find_cifar10_bin_dir(const std::string& dir) {
  for (const fs::path& d : {fs::path(dir), fs::path(dir) / "cifar-10-batches-bin"})
    if (is_file(d / "data_batch_1.bin") || is_file(d / "test_batch.bin")) return d.string();
  return "";
}

Dataset load_cifar10_bin(const std::string& dir, const std::string& split, const ImageOptions& opt) {
  image_detail::check_split("load_cifar10_bin", split, false);
  QNN_CHECK(opt.channels == 3, "load_cifar10_bin: CIFAR-10 images are RGB: channels must be 3, got " +
                                   std::to_string(opt.channels));
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir + ": CIFAR-10 data directory not found." + kFetchHint);
  std::string bin = find_cifar10_bin_dir(dir);
  if (bin.empty()) bin = (fs::path(dir) / "cifar-10-batches-bin").string();
  std::vector<std::string> files;
  if (split == "train")
    for (int i = 1; i <= 5; ++i) files.push_back((fs::path(bin) / ("data_batch_" + std::to_string(i) + ".bin")).string());
  else
    files.push_back((fs::path(bin) / "test_batch.bin").string());

  Dataset ds;
  ds.name = image_detail::default_name(dir, split, opt);
  ds.sample_shape = {3, 32, 32};
  ds.num_classes = 10;
  const std::string meta = (fs::path(bin) / "batches.meta.txt").string();
  ds.class_names = is_file(meta) ? read_meta(meta) : cifar10_class_names();
  ds.scale = opt.scale;

  for (const std::string& path : files) {
    if (!is_file(path)) fail(path + ": missing CIFAR-10 batch file for the " + split + " split." + kFetchHint);
    const std::string bytes = read_file(path);
    const int64_t size = (int64_t)bytes.size();
    if (size == 0) fail(path + ": empty file (expected 3073-byte records: 1 label byte + 3072 pixels)");
    if (size % kRecord != 0) {
      std::string why = path + ": " + std::to_string(size) + " bytes is not a whole number of 3073-byte records (1 label byte + 3072 pixels)";
      if (size % (kRecord + 1) == 0) why += "; it looks like CIFAR-100 (3074-byte records), which is not supported";
      else why += ": truncated, or not a CIFAR-10 binary batch";
      fail(why);
    }
    const int64_t n = size / kRecord;
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    const size_t at = ds.pixels.size();
    ds.pixels.resize(at + (size_t)(n * kPixels));
    for (int64_t r = 0; r < n; ++r) {
      const uint8_t label = p[r * kRecord];
      if (label >= 10)
        fail(path + ": record " + std::to_string(r) + " has label " + std::to_string(label) +
             ", out of range 0..9 (not a CIFAR-10 binary batch?)");
      ds.y.push_back(label);
      std::copy_n(p + r * kRecord + 1, kPixels, ds.pixels.begin() + (int64_t)at + r * kPixels);
    }
  }
  return image_detail::apply_limit(std::move(ds), opt);
}

}  // namespace qnn
