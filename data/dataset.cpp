// data/dataset.cpp — Dataset helpers and the MNIST / Fashion-MNIST loader.
#include "data/dataset.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>

#include "data/idx.h"

namespace qnn {
namespace {

namespace fs = std::filesystem;

// "fashion-mnist" if the directory looks like Fashion-MNIST, else "mnist":
// the argument to give scripts/fetch_data.sh in a hint.
std::string fetch_name_for(const std::string& dir) {
  std::string d = dir;
  std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return d.find("fashion") != std::string::npos ? "fashion-mnist" : "mnist";
}

std::string fetch_hint(const std::string& dir) {
  const std::string n = fetch_name_for(dir);
  return " Fetch it with `scripts/fetch_data.sh " + n + "` (from the repository root; it fills datasets/" +
         n + "/) and pass that directory.";
}

std::string last_component(const std::string& dir) {
  fs::path p(dir);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  const std::string s = p.filename().string();
  return s.empty() ? dir : s;
}

}  // namespace

void Dataset::validate() const {
  const std::string who = "dataset '" + name + "': ";
  QNN_CHECK(!sample_shape.empty(), who + "empty sample_shape");
  const int64_t d = sample_numel();
  QNN_CHECK(d > 0, who + "sample_shape " + shape_str(sample_shape) + " has no elements");
  QNN_CHECK((int64_t)x.size() == size() * d,
            who + std::to_string(x.size()) + " values for " + std::to_string(size()) + " samples of " +
                shape_str(sample_shape));
  QNN_CHECK(num_classes > 0, who + "num_classes must be positive");
  for (size_t i = 0; i < y.size(); ++i)
    QNN_CHECK(y[i] >= 0 && y[i] < num_classes,
              who + "label " + std::to_string(y[i]) + " at index " + std::to_string(i) + " is out of range 0.." +
                  std::to_string(num_classes - 1));
}

float scale_pixel(uint8_t p, PixelScale scale) {
  switch (scale) {
    case PixelScale::MinusOneToOne: return (float)((double)p / 127.5 - 1.0);
    case PixelScale::ZeroToOne: return (float)((double)p / 255.0);
    case PixelScale::OddOver256: return (float)(2 * (int)p - 255) / 256.0f;
  }
  fail("scale_pixel: unknown PixelScale");
}

Dataset load_mnist(const std::string& dir, const std::string& split, const MnistOptions& opt) {
  QNN_CHECK(split == "train" || split == "test",
            "load_mnist: split must be \"train\" or \"test\", got \"" + split + "\"");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(dir + ": " + fetch_name_for(dir) + " data directory not found." + fetch_hint(dir));

  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string img_name = prefix + "-images-idx3-ubyte";
  const std::string lbl_name = prefix + "-labels-idx1-ubyte";
  const std::string img_path = find_idx(dir, img_name);
  const std::string lbl_path = find_idx(dir, lbl_name);
  for (const auto& [path, base] : {std::pair{img_path, img_name}, std::pair{lbl_path, lbl_name}})
    if (path.empty())
      fail(dir + ": missing " + base + " (or " + base + ".gz) for the " + split + " split." + fetch_hint(dir));

  const IdxArray img = read_idx_images(img_path);
  const IdxArray lbl = read_idx_labels(lbl_path, 10);
  const int64_t n = img.shape[0];
  if (lbl.shape[0] != n)
    fail(img_path + " has " + std::to_string(n) + " images but " + lbl_path + " has " +
         std::to_string(lbl.shape[0]) + " labels");
  const int64_t h = img.shape[1], w = img.shape[2];
  QNN_CHECK(h > 0 && w > 0, img_path + ": empty image size " + shape_str(img.shape));

  const int64_t keep = opt.limit < 0 ? n : std::min(opt.limit, n);
  Dataset ds;
  ds.name = opt.name.empty() ? last_component(dir) + "/" + split : opt.name;
  ds.sample_shape = opt.flatten ? Shape{h * w} : Shape{1, h, w};
  ds.num_classes = 10;

  std::array<float, 256> lut;
  for (int p = 0; p < 256; ++p) lut[(size_t)p] = scale_pixel((uint8_t)p, opt.scale);
  const size_t count = (size_t)(keep * h * w);
  ds.x.resize(count);
  const uint8_t* src = img.data.data();
  float* dst = ds.x.data();
  for (size_t i = 0; i < count; ++i) dst[i] = lut[src[i]];
  ds.y.assign(lbl.data.begin(), lbl.data.begin() + keep);
  return ds;
}

Dataset subset(const Dataset& ds, int64_t begin, int64_t end) {
  QNN_CHECK(0 <= begin && begin <= end && end <= ds.size(),
            "subset: range [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside dataset '" +
                ds.name + "' of " + std::to_string(ds.size()) + " samples");
  const int64_t d = ds.sample_numel();
  Dataset out;
  out.name = ds.name + "[" + std::to_string(begin) + ":" + std::to_string(end) + "]";
  out.sample_shape = ds.sample_shape;
  out.num_classes = ds.num_classes;
  out.x.assign(ds.x.begin() + begin * d, ds.x.begin() + end * d);
  out.y.assign(ds.y.begin() + begin, ds.y.begin() + end);
  return out;
}

std::pair<Dataset, Dataset> split_tail(const Dataset& ds, int64_t n_val) {
  QNN_CHECK(0 <= n_val && n_val <= ds.size(),
            "split_tail: cannot hold out " + std::to_string(n_val) + " samples of dataset '" + ds.name +
                "' with " + std::to_string(ds.size()));
  const int64_t cut = ds.size() - n_val;
  return {subset(ds, 0, cut), subset(ds, cut, ds.size())};
}

}  // namespace qnn
