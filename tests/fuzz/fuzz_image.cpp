// tests/fuzz/fuzz_image.cpp — data/image_folder.cpp (stb_image underneath) on
// arbitrary bytes.
//
// The reader's decode function is internal, so the harness builds the folder
// layout it reads, ROOT/train/c/img.png, with the input as the image (stb_image
// chooses the decoder by content, not by the extension), and loads it with
// the size taken from the image (height = width = 0, the case where a lying
// header sets the allocation). The last input byte's low bit picks 1 or 3
// channels, so both conversions are reached.
// Property of an accepted image: one sample of C x H x W pixels.
#include <cstdint>
#include <string>

#include "data/image_folder.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = qnn_fuzz::temp_dir();
  dir.write("train/c/img.png", data, size);
  qnn::ImageOptions opt;
  opt.channels = size > 0 && (data[size - 1] & 1) ? 1 : 3;
  try {
    const qnn::Dataset ds = qnn::load_image_folder(dir.root().string(), "train", opt);
    qnn_fuzz::accepted("image");
    FUZZ_CHECK(ds.size() == 1 && ds.sample_shape.size() == 3 && ds.sample_shape[0] == opt.channels,
               "an accepted image gave the wrong sample shape");
    FUZZ_CHECK((int64_t)ds.pixels.size() == ds.sample_numel(), "pixel storage has the wrong size");
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
  }
  return 0;
}
