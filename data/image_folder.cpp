// data/image_folder.cpp — class-folder image datasets (see image_folder.h).
#include "data/image_folder.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace qnn {
namespace {

namespace fs = std::filesystem;

bool is_image_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;  // hidden files (.DS_Store, ...)
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return ext == "png" || ext == "jpg" || ext == "jpeg" || ext == "bmp";
}

std::vector<std::string> sorted_entries(const fs::path& dir, bool dirs) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (dirs ? (e.is_directory(ec) && n[0] != '.') : (e.is_regular_file(ec) && is_image_name(n))) out.push_back(n);
  }
  QNN_CHECK(!ec, dir.string() + ": cannot list: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_bytes(const std::string& path, std::string& err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = path + ": cannot open";
    return {};
  }
  std::string s((std::istreambuf_iterator<char>(f)), {});
  if (f.bad()) err = path + ": read error";
  return s;
}

// "" if a w x h image fits `bytes` (image_detail::max_image_pixels), else why not.
std::string too_many_pixels(const std::string& path, const std::string& bytes, int w, int h) {
  const image_detail::ImageFormat f = image_detail::sniff_image(bytes);
  if ((int64_t)w * h <= image_detail::max_image_pixels(f, (int64_t)bytes.size())) return "";
  return path + ": its header claims " + std::to_string(w) + "x" + std::to_string(h) + " (WxH) pixels, more than " +
         (f == image_detail::ImageFormat::Png ? "a PNG" : f == image_detail::ImageFormat::Jpeg ? "a JPEG" : "a BMP") +
         " of " + std::to_string(bytes.size()) + " bytes can hold (corrupt file?)";
}

// Decodes one file into a CHW slot of c x h x w bytes; "" on success, else the error.
std::string decode_into(const std::string& path, int c, int h, int w, uint8_t* dst) {
  std::string err;
  const std::string bytes = read_bytes(path, err);
  if (!err.empty()) return err;
  if (bytes.empty()) return path + ": empty file, not an image";
  // stb_image sees only bytes that passed our checks, and allocates only for
  // the size we expect: its header is read (stbi_info) and compared first.
  const std::string why = image_detail::check_image_bytes(bytes);
  if (!why.empty()) return path + ": image does not decode (" + why + ")";
  int iw = 0, ih = 0, comp = 0;
  if (!stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), (int)bytes.size(), &iw, &ih, &comp)) {
    const char* reason = stbi_failure_reason();
    return path + ": image does not decode (" + (reason ? reason : "unknown reason") + ")";
  }
  if (ih != h || iw != w)
    return path + ": image is " + std::to_string(iw) + "x" + std::to_string(ih) + " (WxH), expected " +
           std::to_string(w) + "x" + std::to_string(h) + " like the rest of the data set";
  if (std::string e = too_many_pixels(path, bytes, w, h); !e.empty()) return e;
  uint8_t* px = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), (int)bytes.size(), &iw,
                                      &ih, &comp, c);
  if (!px) {
    const char* reason = stbi_failure_reason();
    return path + ": image does not decode (" + (reason ? reason : "unknown reason") + ")";
  }
  if (ih != h || iw != w) {
    stbi_image_free(px);
    return path + ": image is " + std::to_string(iw) + "x" + std::to_string(ih) + " (WxH), expected " +
           std::to_string(w) + "x" + std::to_string(h) + " like the rest of the data set";
  }
  // stb gives HWC (interleaved); store CHW.
  const int64_t plane = (int64_t)h * w;
  for (int64_t i = 0; i < plane; ++i)
    for (int k = 0; k < c; ++k) dst[k * plane + i] = px[i * c + k];
  stbi_image_free(px);
  return "";
}

}  // namespace

std::vector<std::string> image_folder_classes(const std::string& root, const std::string& split) {
  const fs::path dir = fs::path(root) / split;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(dir.string() + ": missing split folder (an image folder data set needs " + root + "/" + split +
         "/<class>/*.png|jpg|jpeg|bmp)");
  std::vector<std::string> classes = sorted_entries(dir, true);
  QNN_CHECK(!classes.empty(), dir.string() + ": no class folders (expected " + split + "/<class>/<images>)");
  return classes;
}

Dataset load_image_folder(const std::string& root, const std::string& split, const ImageOptions& opt) {
  image_detail::check_split("load_image_folder", split, false);
  QNN_CHECK(opt.channels == 1 || opt.channels == 3,
            "load_image_folder: channels must be 1 or 3, got " + std::to_string(opt.channels));
  QNN_CHECK(opt.height >= 0 && opt.width >= 0 && (opt.height > 0) == (opt.width > 0),
            "load_image_folder: height and width must both be set (> 0) or both 0");
  const std::vector<std::string> classes = image_folder_classes(root, split);
  std::error_code ec;
  if (split != "train" && fs::is_directory(fs::path(root) / "train", ec)) {
    const std::vector<std::string> train = image_folder_classes(root, "train");
    if (train != classes) {
      std::string diff;
      for (const auto& c : classes)
        if (!std::binary_search(train.begin(), train.end(), c)) diff += " '" + c + "' is not in train/;";
      for (const auto& c : train)
        if (!std::binary_search(classes.begin(), classes.end(), c)) diff += " '" + c + "' is missing;";
      fail((fs::path(root) / split).string() + ": class folders differ from train/'s, so labels would not match:" +
           diff);
    }
  }

  std::vector<std::string> files;
  std::vector<int32_t> labels;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path cdir = fs::path(root) / split / classes[k];
    const std::vector<std::string> names = sorted_entries(cdir, false);
    if (names.empty()) fail(cdir.string() + ": empty class folder (no .png, .jpg, .jpeg or .bmp files)");
    for (const auto& n : names) {
      files.push_back((cdir / n).string());
      labels.push_back((int32_t)k);
    }
  }

  // Choose the kept files before decoding: a --limit-train run decodes only those.
  std::vector<int64_t> keep;
  if (opt.limit >= 0 && opt.limit < (int64_t)files.size()) {
    keep = pick_balanced(labels, (int)classes.size(), opt.limit);
  } else {
    keep.resize(files.size());
    for (size_t i = 0; i < keep.size(); ++i) keep[i] = (int64_t)i;
  }

  Dataset ds;
  ds.name = image_detail::default_name(root, split, opt);
  if (opt.limit >= 0 && opt.limit < (int64_t)files.size()) {
    ds.name += '[';
    ds.name += std::to_string(opt.limit) + " balanced]";
  }
  ds.num_classes = (int)classes.size();
  ds.class_names = classes;
  ds.scale = opt.scale;
  ds.y.resize(keep.size());
  for (size_t i = 0; i < keep.size(); ++i) ds.y[i] = labels[(size_t)keep[i]];
  const int c = opt.channels;
  int h = opt.height, w = opt.width;
  if (keep.empty()) {
    ds.sample_shape = {c, std::max(h, 1), std::max(w, 1)};
    return ds;
  }

  // The first image fixes the size (unless given); the rest decode in parallel.
  // Nothing is allocated from a header before it is checked: the first file
  // passes check_image_bytes and its size bound, every file's byte count must
  // be able to hold h x w pixels, and the whole must fit in this machine's memory.
  const std::string& first = files[(size_t)keep[0]];
  if (h == 0) {
    std::string err;
    const std::string bytes = read_bytes(first, err);
    if (!err.empty()) fail(err);
    if (bytes.empty()) fail(first + ": empty file, not an image");
    const std::string why = image_detail::check_image_bytes(bytes);
    if (!why.empty()) fail(first + ": image does not decode (" + why + ")");
    int iw = 0, ih = 0, comp = 0;
    if (!stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), (int)bytes.size(), &iw, &ih, &comp))
      fail(first + ": image does not decode (" +
           (stbi_failure_reason() ? stbi_failure_reason() : "unknown reason") + ")");
    QNN_CHECK(ih > 0 && iw > 0, first + ": image has no pixels");
    if (std::string e = too_many_pixels(first, bytes, iw, ih); !e.empty()) fail(e);
    h = ih;
    w = iw;
  }
  QNN_CHECK((int64_t)h * w <= image_detail::kMaxImagePixels,
            "load_image_folder: " + std::to_string(w) + "x" + std::to_string(h) + " (WxH) images have more than " +
                std::to_string(image_detail::kMaxImagePixels) + " pixels");
  for (int64_t k : keep) {
    const std::string& f = files[(size_t)k];
    std::error_code fec;
    const auto bytes = fs::file_size(f, fec);
    if (fec) fail(f + ": cannot read its size: " + fec.message());
    // The loosest bound (PNG's): the format is known only once the file is read.
    if ((int64_t)h * w > image_detail::max_image_pixels(image_detail::ImageFormat::Png, (int64_t)bytes))
      fail(f + ": " + std::to_string(bytes) + " bytes cannot hold a " + std::to_string(w) + "x" + std::to_string(h) +
           " (WxH) image, the size of this data set's images (corrupt or cut off?)");
  }
  const int64_t d = (int64_t)c * h * w;
  const int64_t total = d * (int64_t)keep.size();  // < 2^28 * 3 * 2^31: no overflow
  const int64_t mem = (int64_t)sysconf(_SC_PHYS_PAGES) * (int64_t)sysconf(_SC_PAGESIZE);
  if (mem > 0 && total > mem)
    fail((fs::path(root) / split).string() + ": " + std::to_string(keep.size()) + " images of " + std::to_string(c) +
         "x" + std::to_string(h) + "x" + std::to_string(w) + " need " + std::to_string(total >> 20) +
         " MiB of pixels, more than this machine's " + std::to_string(mem >> 20) + " MiB of memory");
  ds.sample_shape = {c, h, w};
  ds.pixels.resize((size_t)total);

  const int64_t n = (int64_t)keep.size();
  std::vector<std::string> errors((size_t)n);
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < n; ++i) {
    errors[(size_t)i] = decode_into(files[(size_t)keep[(size_t)i]], c, h, w, ds.pixels.data() + i * d);
  }
  // The first failure in file order, whatever the thread count.
  for (const std::string& e : errors)
    if (!e.empty()) fail(e);
  return ds;
}

}  // namespace qnn
