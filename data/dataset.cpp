// data/dataset.cpp — Dataset helpers and the MNIST / Fashion-MNIST loader.
#include "data/dataset.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "core/rng.h"

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
  QNN_CHECK(x.empty() || pixels.empty(), who + "holds both float values and pixels");
  const size_t have = has_pixels() ? pixels.size() : x.size();
  QNN_CHECK((int64_t)have == size() * d,
            who + std::to_string(have) + (has_pixels() ? " pixels" : " values") + " for " +
                std::to_string(size()) + " samples of " + shape_str(sample_shape));
  QNN_CHECK(num_classes > 0, who + "num_classes must be positive");
  QNN_CHECK(class_names.empty() || (int64_t)class_names.size() == num_classes,
            who + std::to_string(class_names.size()) + " class names for " + std::to_string(num_classes) +
                " classes");
  if (!mean.empty() || !stdev.empty()) {
    QNN_CHECK((int64_t)mean.size() == channels() && (int64_t)stdev.size() == channels(),
              who + "normalisation needs " + std::to_string(channels()) + " means and stdevs, got " +
                  std::to_string(mean.size()) + " and " + std::to_string(stdev.size()));
    for (float s : stdev) QNN_CHECK(s > 0, who + "normalisation stdev must be positive");
  }
  for (size_t i = 0; i < y.size(); ++i)
    QNN_CHECK(y[i] >= 0 && y[i] < num_classes,
              who + "label " + std::to_string(y[i]) + " at index " + std::to_string(i) + " is out of range 0.." +
                  std::to_string(num_classes - 1));
}

const float* Dataset::sample(int64_t i) const {
  QNN_CHECK(!has_pixels(), "dataset '" + name + "' keeps uint8 pixels: use sample_floats() or to_float()");
  return x.data() + i * sample_numel();
}

float Dataset::pixel_value(int64_t c, uint8_t p) const {
  const float v = scale_pixel(p, scale);
  if (mean.empty()) return v;
  return (v - mean[(size_t)c]) / stdev[(size_t)c];
}

void Dataset::sample_floats(int64_t i, float* dst) const {
  QNN_CHECK(0 <= i && i < size(), "dataset '" + name + "': sample " + std::to_string(i) + " of " +
                                      std::to_string(size()));
  const int64_t d = sample_numel();
  if (!has_pixels()) {
    std::copy(x.begin() + i * d, x.begin() + (i + 1) * d, dst);
    return;
  }
  const int64_t nc = channels(), plane = d / nc;
  const uint8_t* src = pixels.data() + i * d;
  float lut[256];
  for (int64_t c = 0; c < nc; ++c) {
    for (int p = 0; p < 256; ++p) lut[p] = pixel_value(c, (uint8_t)p);
    for (int64_t j = 0; j < plane; ++j) dst[c * plane + j] = lut[src[c * plane + j]];
  }
}

void Dataset::set_normalization(std::vector<float> m, std::vector<float> s) {
  QNN_CHECK(m.size() == s.size(), "dataset '" + name + "': " + std::to_string(m.size()) + " means but " +
                                      std::to_string(s.size()) + " stdevs");
  if (!m.empty()) {
    QNN_CHECK(has_pixels() || size() == 0,
              "dataset '" + name + "': normalisation applies to pixel datasets (floats are final)");
    QNN_CHECK((int64_t)m.size() == channels(), "dataset '" + name + "': normalisation needs " +
                                                   std::to_string(channels()) + " values per channel, got " +
                                                   std::to_string(m.size()));
    for (float v : s)
      QNN_CHECK(v > 0 && std::isfinite(v), "dataset '" + name + "': normalisation stdev must be positive");
    for (float v : m) QNN_CHECK(std::isfinite(v), "dataset '" + name + "': normalisation mean must be finite");
  }
  mean = std::move(m);
  stdev = std::move(s);
}

float scale_pixel(uint8_t p, PixelScale scale) {
  switch (scale) {
    case PixelScale::MinusOneToOne: return (float)((double)p / 127.5 - 1.0);
    case PixelScale::ZeroToOne: return (float)((double)p / 255.0);
    case PixelScale::OddOver256: return (float)(2 * (int)p - 255) / 256.0f;
  }
  fail("scale_pixel: unknown PixelScale");
}

std::vector<std::string> mnist_class_names() {
  std::vector<std::string> n;
  for (int i = 0; i < 10; ++i) n.push_back(std::to_string(i));
  return n;
}

std::vector<std::string> fashion_mnist_class_names() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

std::vector<std::string> mnist_class_names_for(const std::string& dataset) {
  return dataset == "fashion-mnist" ? fashion_mnist_class_names() : mnist_class_names();
}

Dataset load_mnist(const std::string& dir, const std::string& split, const MnistOptions& opt) {
  QNN_CHECK(opt.class_names.empty() || opt.class_names.size() == 10,
            "load_mnist: MnistOptions::class_names must have 10 names, got " +
                std::to_string(opt.class_names.size()));
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
  ds.class_names = opt.class_names.empty() ? mnist_class_names() : opt.class_names;

  ds.scale = opt.scale;

  const size_t count = (size_t)(keep * h * w);
  if (opt.keep_pixels) {
    ds.pixels.assign(img.data.begin(), img.data.begin() + (std::ptrdiff_t)count);
  } else {
    // The same table Dataset::pixel_value gives, so both storages yield the same floats.
    std::array<float, 256> lut;
    for (int p = 0; p < 256; ++p) lut[(size_t)p] = scale_pixel((uint8_t)p, opt.scale);
    ds.x.resize(count);
    const uint8_t* src = img.data.data();
    float* dst = ds.x.data();
    for (size_t i = 0; i < count; ++i) dst[i] = lut[src[i]];
  }
  ds.y.assign(lbl.data.begin(), lbl.data.begin() + keep);
  return ds;
}

namespace {

// Everything but the samples.
Dataset empty_like(const Dataset& ds, const std::string& suffix) {
  Dataset out;
  out.name = ds.name + suffix;
  out.sample_shape = ds.sample_shape;
  out.num_classes = ds.num_classes;
  out.class_names = ds.class_names;
  out.scale = ds.scale;
  out.mean = ds.mean;
  out.stdev = ds.stdev;
  return out;
}

}  // namespace

Dataset subset(const Dataset& ds, int64_t begin, int64_t end) {
  QNN_CHECK(0 <= begin && begin <= end && end <= ds.size(),
            "subset: range [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside dataset '" +
                ds.name + "' of " + std::to_string(ds.size()) + " samples");
  const int64_t d = ds.sample_numel();
  std::string suffix = "[";  // (built stepwise: GCC 12 warns falsely about "[" + to_string)
  suffix += std::to_string(begin) + ":" + std::to_string(end) + "]";
  Dataset out = empty_like(ds, suffix);
  if (ds.has_pixels())
    out.pixels.assign(ds.pixels.begin() + begin * d, ds.pixels.begin() + end * d);
  else
    out.x.assign(ds.x.begin() + begin * d, ds.x.begin() + end * d);
  out.y.assign(ds.y.begin() + begin, ds.y.begin() + end);
  return out;
}

Dataset take(const Dataset& ds, const std::vector<int64_t>& idx, const std::string& suffix) {
  const int64_t d = ds.sample_numel();
  Dataset out = empty_like(ds, suffix);
  if (ds.has_pixels()) out.pixels.resize(idx.size() * (size_t)d);
  else out.x.resize(idx.size() * (size_t)d);
  out.y.resize(idx.size());
  for (size_t k = 0; k < idx.size(); ++k) {
    const int64_t i = idx[k];
    QNN_CHECK(0 <= i && i < ds.size(), "take: index " + std::to_string(i) + " outside dataset '" + ds.name +
                                           "' of " + std::to_string(ds.size()) + " samples");
    if (ds.has_pixels())
      std::copy_n(ds.pixels.begin() + i * d, d, out.pixels.begin() + (int64_t)k * d);
    else
      std::copy_n(ds.x.begin() + i * d, d, out.x.begin() + (int64_t)k * d);
    out.y[k] = ds.y[(size_t)i];
  }
  return out;
}

std::pair<Dataset, Dataset> split_tail(const Dataset& ds, int64_t n_val) {
  QNN_CHECK(0 <= n_val && n_val <= ds.size(),
            "split_tail: cannot hold out " + std::to_string(n_val) + " samples of dataset '" + ds.name +
                "' with " + std::to_string(ds.size()));
  const int64_t cut = ds.size() - n_val;
  return {subset(ds, 0, cut), subset(ds, cut, ds.size())};
}

std::vector<int64_t> fixed_permutation(int64_t n) {
  QNN_CHECK(n >= 0, "fixed_permutation: negative size " + std::to_string(n));
  std::vector<int64_t> idx((size_t)n);
  std::iota(idx.begin(), idx.end(), int64_t(0));
  // A constant, not a run's seed: the same subset for every run and format.
  Rng rng(0x51A7C1A55E5ULL);
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[(size_t)rng.below(i)]);
  return idx;
}

std::vector<int64_t> pick_balanced(const std::vector<int32_t>& y, int num_classes, int64_t k) {
  const int64_t n = (int64_t)y.size();
  QNN_CHECK(num_classes > 0, "pick_balanced: num_classes must be positive");
  QNN_CHECK(0 <= k && k <= n,
            "pick_balanced: cannot pick " + std::to_string(k) + " of " + std::to_string(n) + " samples");
  std::vector<int64_t> count((size_t)num_classes, 0);
  for (int32_t c : y) {
    QNN_CHECK(c >= 0 && c < num_classes, "pick_balanced: label " + std::to_string(c) + " out of range");
    ++count[(size_t)c];
  }
  // Largest-remainder quotas of k * n_c / n (exact in integers).
  std::vector<int64_t> quota((size_t)num_classes, 0);
  int64_t given = 0, present = 0;
  for (int c = 0; c < num_classes; ++c) {
    quota[(size_t)c] = n ? (int64_t)((__int128)k * count[(size_t)c] / n) : 0;
    given += quota[(size_t)c];
    present += count[(size_t)c] > 0;
  }
  std::vector<int> by_rem((size_t)num_classes);
  std::iota(by_rem.begin(), by_rem.end(), 0);
  auto rem = [&](int c) { return n ? (int64_t)((__int128)k * count[(size_t)c] % n) : 0; };
  std::stable_sort(by_rem.begin(), by_rem.end(), [&](int a, int b) { return rem(a) > rem(b); });
  for (size_t j = 0; given < k; j = (j + 1) % by_rem.size()) {
    const int c = by_rem[j];
    if (quota[(size_t)c] < count[(size_t)c]) ++quota[(size_t)c], ++given;
  }
  // At least one per present class while k allows: take it from the largest quota.
  if (k >= present) {
    for (int c = 0; c < num_classes; ++c) {
      if (count[(size_t)c] == 0 || quota[(size_t)c] > 0) continue;
      const auto big = std::max_element(quota.begin(), quota.end()) - quota.begin();
      --quota[(size_t)big];
      ++quota[(size_t)c];
    }
  }
  std::vector<int64_t> out;
  out.reserve((size_t)k);
  for (int64_t i : fixed_permutation(n)) {
    int64_t& q = quota[(size_t)y[(size_t)i]];
    if (q > 0) {
      --q;
      out.push_back(i);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::pair<Dataset, Dataset> split_val_balanced(const Dataset& ds, int64_t n_val) {
  QNN_CHECK(0 <= n_val && n_val <= ds.size(),
            "split_val_balanced: cannot hold out " + std::to_string(n_val) + " samples of dataset '" + ds.name +
                "' with " + std::to_string(ds.size()));
  const std::vector<int64_t> val = pick_balanced(ds.y, ds.num_classes, n_val);
  std::vector<int64_t> train;
  train.reserve((size_t)(ds.size() - n_val));
  size_t v = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    if (v < val.size() && val[v] == i) ++v;
    else train.push_back(i);
  }
  return {take(ds, train, "[train " + std::to_string(train.size()) + "]"),
          take(ds, val, "[val " + std::to_string(val.size()) + "]")};
}

Dataset limit_balanced(const Dataset& ds, int64_t n) {
  if (n < 0 || n >= ds.size()) return ds;
  std::string suffix = "[";
  suffix += std::to_string(n) + " balanced]";
  return take(ds, pick_balanced(ds.y, ds.num_classes, n), suffix);
}

Dataset to_float(const Dataset& ds) {
  if (!ds.has_pixels()) return ds;
  Dataset out = empty_like(ds, "");
  out.mean.clear();
  out.stdev.clear();
  out.y = ds.y;
  const int64_t d = ds.sample_numel();
  out.x.resize(ds.pixels.size());
  for (int64_t i = 0; i < ds.size(); ++i) ds.sample_floats(i, out.x.data() + i * d);
  return out;
}

std::pair<std::vector<float>, std::vector<float>> channel_mean_std(const Dataset& ds) {
  QNN_CHECK(ds.has_pixels() && ds.size() > 0, "channel_mean_std: dataset '" + ds.name + "' has no pixels");
  const int64_t nc = ds.channels(), plane = ds.sample_numel() / nc;
  // Histograms per channel: exact counts, then moments in double.
  std::vector<std::array<int64_t, 256>> hist((size_t)nc);
  for (auto& h : hist) h.fill(0);
  for (int64_t i = 0; i < ds.size(); ++i)
    for (int64_t c = 0; c < nc; ++c) {
      const uint8_t* p = ds.pixels.data() + (i * nc + c) * plane;
      for (int64_t j = 0; j < plane; ++j) ++hist[(size_t)c][p[j]];
    }
  std::vector<float> mean((size_t)nc), sd((size_t)nc);
  for (int64_t c = 0; c < nc; ++c) {
    double n = 0, s = 0, s2 = 0;
    for (int p = 0; p < 256; ++p) {
      const double v = scale_pixel((uint8_t)p, ds.scale), k = (double)hist[(size_t)c][(size_t)p];
      n += k;
      s += k * v;
      s2 += k * v * v;
    }
    const double m = s / n;
    mean[(size_t)c] = (float)m;
    sd[(size_t)c] = (float)std::sqrt(std::max(0.0, s2 / n - m * m));
  }
  return {mean, sd};
}

}  // namespace qnn
