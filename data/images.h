// data/images.h — image data sets (CIFAR-10, SVHN, image folders) as uint8
// pixel Datasets, and the loader behind an app's `--data DIR`.
//
// Every reader returns a pixel-storage Dataset (data/dataset.h) with CHW
// samples {C, H, W}, labels in [0, num_classes) and class_names filled; the
// DataLoader turns pixels into floats per batch (opt.scale; normalisation is
// set afterwards with Dataset::set_normalization). Readers validate
// everything and refuse with the file and the problem.
//
// Layouts (each reader's header says more):
//   CIFAR-10 binary  data/cifar.h         DIR[/cifar-10-batches-bin]/data_batch_{1..5}.bin, test_batch.bin
//   SVHN             data/svhn.h          DIR/{train,test,extra}_32x32.mat
//   image folders    data/image_folder.h  DIR/{train,test}/<class>/*.{png,jpg,jpeg,bmp}
// Fetch them with `scripts/fetch_data.sh cifar10 --from FILE` or
// `scripts/fetch_data.sh svhn --from DIR` (they land in datasets/cifar10, datasets/svhn).
#pragma once

#include <cstdint>
#include <string>

#include "data/dataset.h"

namespace qnn {

struct ImageOptions {
  PixelScale scale = PixelScale::MinusOneToOne;  // pixels -> floats at batch time
  // Image folders: decode every image to this many channels, 1 (grey) or 3
  // (RGB; grey images are replicated, alpha is dropped, as torchvision's
  // convert("RGB")). CIFAR-10 and SVHN are RGB: they need 3.
  int channels = 3;
  // Image folders: the size every image must have; 0 takes the first image's.
  int height = 0, width = 0;
  // Keep `limit` samples chosen by pick_balanced (every class kept, one fixed
  // shuffle independent of any seed); < 0 keeps all. Image folders decode
  // only the kept files.
  int64_t limit = -1;
  std::string name;  // default: "<dir's last component>/<split>"
};

// Which layout `dir` holds: "cifar10-bin", "svhn-mat", "image-folder", or ""
// if none. CIFAR-10 binary batches win over image folders when both exist.
std::string detect_image_layout(const std::string& dir);

// Loads split "train" or "test" (SVHN also "extra") of whatever layout `dir`
// holds (detect_image_layout); an error says what was looked for and how to
// fetch the data if it holds none.
Dataset load_image_dataset(const std::string& dir, const std::string& split, const ImageOptions& opt = {});

// --- shared by the readers ------------------------------------------------------
namespace image_detail {
// "train" / "test" (and "extra" when allowed), else an error naming `who`.
void check_split(const std::string& who, const std::string& split, bool allow_extra);
std::string default_name(const std::string& dir, const std::string& split, const ImageOptions& opt);
// limit_balanced(ds, opt.limit) without copying when nothing is dropped.
Dataset apply_limit(Dataset&& ds, const ImageOptions& opt);

// What the image-folder reader checks before stb_image sees a file
// (data/image_check.cpp says why). Formats are told by content, not name.
enum class ImageFormat { Unknown, Png, Jpeg, Bmp };
ImageFormat sniff_image(const std::string& bytes);
// "" if the bytes may go to stb_image; else why not (no path): not PNG / JPEG /
// BMP, a PNG chunk longer than the bytes after it or no IEND, or a JPEG whose
// marker walk fails (a segment or table that does not fit its bytes, a Huffman
// table of more than 256 codes, no end-of-image marker).
std::string check_image_bytes(const std::string& bytes);
// The most pixels (width x height) a legitimate image of this format can code
// in `file_bytes` bytes, capped at kMaxImagePixels: a header claiming more is
// refused before anything is allocated for it.
inline constexpr int64_t kMaxImagePixels = int64_t(1) << 28;  // 16384 x 16384
int64_t max_image_pixels(ImageFormat f, int64_t file_bytes);
}  // namespace image_detail

}  // namespace qnn
