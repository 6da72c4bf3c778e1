// data/cifar.h — the official CIFAR-10 binary release (cifar-10-binary.tar.gz).
//
// cifar-10-batches-bin/ holds data_batch_1.bin .. data_batch_5.bin (training,
// 50,000 images) and test_batch.bin (10,000), each a sequence of 3073-byte
// records: 1 label byte (0..9), then 3072 pixel bytes, the 32x32 red plane,
// then green, then blue, rows top to bottom — exactly CHW, so samples are
// copied as they are. batches.meta.txt lists the 10 class names, one a line
// (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).
//
// The official batches are interleaved across classes, but subsets still go
// through pick_balanced (data/dataset.h) like every other format.
#pragma once

#include <string>
#include <vector>

#include "data/images.h"

namespace qnn {

// airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck (label order).
std::vector<std::string> cifar10_class_names();

// `dir` is cifar-10-batches-bin/ or a directory containing it. Refuses a
// missing batch, a file that is empty or not a whole number of 3073-byte
// records (with a hint when it looks like CIFAR-100's 3074-byte records), a
// label above 9, and a batches.meta.txt without exactly 10 names (when the
// file is absent, the official names are used). opt.channels must be 3.
Dataset load_cifar10_bin(const std::string& dir, const std::string& split, const ImageOptions& opt = {});

// The directory holding the batches: `dir` or `dir`/cifar-10-batches-bin;
// "" if neither has data_batch_1.bin or test_batch.bin.
std::string find_cifar10_bin_dir(const std::string& dir);

}  // namespace qnn
