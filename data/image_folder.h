// data/image_folder.h — labelled images in class folders, read with stb_image.
//
//   ROOT/train/<class>/*.png|jpg|jpeg|bmp
//   ROOT/test/<class>/*.png|jpg|jpeg|bmp
//
// Classes are the split's subfolders sorted by name (byte order), so labels
// are 0..K-1 in that order (CIFAR-10's folder names sorted give its official
// label order); for a split other than train the class folders must be the
// same as train's when ROOT/train exists. Within a class, files are taken in
// sorted name order, so every load is the same. Hidden files and files with
// other extensions are ignored (as torchvision's ImageFolder does).
//
// Images are decoded to opt.channels channels (grey -> RGB by replication,
// alpha dropped, as torchvision's convert("RGB")), in parallel (OpenMP), and
// stored CHW. Refused: a missing split folder, no class folders, an empty
// class folder, an image that does not decode, an image of another size
// (every image must be opt.height x opt.width, or the first image's size).
// Before stb_image sees a file (image_detail::check_image_bytes, images.h):
// its bytes must be PNG, JPEG or BMP whatever its name (stb would decode GIF,
// PSD, HDR, ... too), a PNG's chunks must fit in the file, a JPEG must pass
// a marker walk (segment and table lengths, Huffman tables of at most 256
// codes, an end-of-image marker), and no header may claim more pixels than its file can code; every file's size
// and the memory of the whole are checked before the pixels are allocated.
#pragma once

#include <string>
#include <vector>

#include "data/images.h"

namespace qnn {

Dataset load_image_folder(const std::string& root, const std::string& split, const ImageOptions& opt = {});

// The sorted class folder names of ROOT/split (an error if there are none).
std::vector<std::string> image_folder_classes(const std::string& root, const std::string& split);

}  // namespace qnn
