// data/images.cpp — layout detection and helpers shared by the image readers.
#include "data/images.h"

#include <filesystem>

#include "data/cifar.h"
#include "data/image_folder.h"
#include "data/svhn.h"

namespace qnn {
namespace image_detail {

namespace fs = std::filesystem;

void check_split(const std::string& who, const std::string& split, bool allow_extra) {
  QNN_CHECK(split == "train" || split == "test" || (allow_extra && split == "extra"),
            who + ": split must be \"train\"" + (allow_extra ? ", \"test\" or \"extra\"" : " or \"test\"") +
                ", got \"" + split + "\"");
}

std::string default_name(const std::string& dir, const std::string& split, const ImageOptions& opt) {
  if (!opt.name.empty()) return opt.name;
  fs::path p(dir);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  const std::string last = p.filename().string();
  return (last.empty() ? dir : last) + "/" + split;
}

Dataset apply_limit(Dataset&& ds, const ImageOptions& opt) {
  if (opt.limit < 0 || opt.limit >= ds.size()) return std::move(ds);
  return limit_balanced(ds, opt.limit);
}

}  // namespace image_detail

std::string detect_image_layout(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!find_cifar10_bin_dir(dir).empty()) return "cifar10-bin";
  for (const char* f : {"train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"})
    if (fs::is_regular_file(fs::path(dir) / f, ec)) return "svhn-mat";
  if (fs::is_directory(fs::path(dir) / "train", ec) || fs::is_directory(fs::path(dir) / "test", ec))
    return "image-folder";
  return "";
}

Dataset load_image_dataset(const std::string& dir, const std::string& split, const ImageOptions& opt) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    fail(dir + ": data directory not found. Fetch CIFAR-10 with `scripts/fetch_data.sh cifar10 --from FILE` "
               "(datasets/cifar10) or SVHN with `scripts/fetch_data.sh svhn --from DIR` (datasets/svhn).");
  const std::string layout = detect_image_layout(dir);
  if (layout == "cifar10-bin") return load_cifar10_bin(dir, split, opt);
  if (layout == "svhn-mat") return load_svhn(dir, split, opt);
  if (layout == "image-folder") return load_image_folder(dir, split, opt);
  fail(dir + ": holds no image data set: no CIFAR-10 binary batches (data_batch_1.bin, test_batch.bin, "
             "directly or in cifar-10-batches-bin/), no SVHN train_32x32.mat / test_32x32.mat, and no "
             "train/<class>/ or test/<class>/ image folders. Fetch one with `scripts/fetch_data.sh cifar10 "
             "--from FILE` or `scripts/fetch_data.sh svhn --from DIR`.");
}

}  // namespace qnn
