// data/dataset.h — an in-memory labelled dataset, its helpers, and the MNIST loader.
//
// A Dataset is plain vectors, not Tensors, in one of two storages:
//   - floats: sample i is the `sample_numel()` floats starting at
//     x[i * sample_numel()] (MNIST by default, anything computed);
//   - pixels: sample i is the `sample_numel()` uint8 values starting at
//     pixels[i * sample_numel()] (CIFAR-10, SVHN, image folders: 150 MB for
//     CIFAR-10's training set instead of 600 MB as floats). They become floats
//     only when read (DataLoader batches, sample_floats, to_float), through
//     `scale` and the optional per-channel normalisation (mean, stdev).
// Its label is y[i]. A DataLoader (data/dataloader.h) gathers rows of either
// into batch Tensors.
//
// Image samples are CHW: sample_shape {C, H, W}; the normalisation channel of
// an element is its index along the first dimension.
//
// MNIST and Fashion-MNIST share a layout and file names, so one loader reads
// both. Get the files with `scripts/fetch_data.sh mnist` (or fashion-mnist),
// which puts them in datasets/mnist/ (datasets/fashion-mnist/). The image
// readers (CIFAR-10, SVHN, image folders) are in data/images.h.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"  // qnn::Shape

namespace qnn {

// How uint8 pixels become floats.
enum class PixelScale {
  MinusOneToOne,  // p / 127.5 - 1: 0 -> -1, 255 -> +1 exactly (the BNN papers' choice)
  ZeroToOne,      // p / 255
  // (2p - 255) / 256: odd multiples of 1/256 in [-255/256, 255/256], i.e.
  // [-1, 1] up to a factor 255/256. Every value is exact in float, so a dot
  // product with +-1 weights is an exact multiple of 1/256 in any summation
  // order: training-time sgemm, and the 8-bit bit-plane XNOR kernel of a
  // deployed model (2p - 255 = sum_i 2^i s_i with s_i = +-1), agree bit for bit.
  OddOver256,
};

// Pixel p (0..255) under a scaling, computed in double then rounded once, so
// the ends are exact.
float scale_pixel(uint8_t p, PixelScale scale);

struct Dataset {
  std::string name;           // e.g. "mnist/train"; for messages and logs
  Shape sample_shape;         // one sample, e.g. {784}, {1, 28, 28} or {3, 32, 32}
  int num_classes = 0;
  // num_classes names, for reports and confusion matrices (e.g. "airplane";
  // "0".."9" for MNIST). Copied by subset / split.
  std::vector<std::string> class_names;
  std::vector<float> x;         // float storage: size() * sample_numel() values, row-major
  std::vector<uint8_t> pixels;  // pixel storage: size() * sample_numel() bytes (x stays empty)
  // Pixel storage only: value = (scale_pixel(p, scale) - mean[c]) / stdev[c],
  // in float arithmetic; without normalisation (mean/stdev empty) just
  // scale_pixel(p, scale). One mean and stdev per channel (sample_shape[0]).
  PixelScale scale = PixelScale::MinusOneToOne;
  std::vector<float> mean, stdev;
  std::vector<int32_t> y;       // size() labels in [0, num_classes)

  int64_t size() const { return (int64_t)y.size(); }
  int64_t sample_numel() const { return shape_numel(sample_shape); }
  bool has_pixels() const { return !pixels.empty(); }  // (a dataset of 0 samples counts as floats)
  // Channels for normalisation: sample_shape[0] for CHW samples (rank 3), else 1.
  int64_t channels() const { return sample_shape.size() == 3 ? sample_shape[0] : 1; }
  // Float storage only (throws for pixel storage: use sample_floats).
  const float* sample(int64_t i) const;
  // Sample i as sample_numel() floats, for either storage.
  void sample_floats(int64_t i, float* dst) const;
  // Per-channel normalisation of a pixel dataset (one value per channel,
  // every stdev > 0); empty vectors turn it off.
  void set_normalization(std::vector<float> mean, std::vector<float> stdev);
  // The float value of pixel value p in channel c under scale + normalisation
  // (what sample_floats produces; a crop's zero padding is pixel 0).
  float pixel_value(int64_t c, uint8_t p) const;
  // Throws qnn::Error if x / pixels / y / sample_shape / labels / names /
  // normalisation disagree.
  void validate() const;
};

struct MnistOptions {
  PixelScale scale = PixelScale::MinusOneToOne;
  bool flatten = true;        // sample_shape {784}; false gives {1, 28, 28} (CHW)
  int64_t limit = -1;         // keep only the first `limit` samples (< 0: all)
  std::string name;           // default: "<dir's last component>/<split>"
  // Keep uint8 pixels (Dataset::pixels) instead of floats. Batches are the
  // same floats bit for bit either way (one table, scale_pixel).
  bool keep_pixels = false;
  // The files cannot tell MNIST from Fashion-MNIST, so the caller says which
  // names to use: empty gives "0".."9"; fashion_mnist_class_names() gives
  // Fashion-MNIST's. Must have 10 entries when set.
  std::vector<std::string> class_names;
};

// "0".."9".
std::vector<std::string> mnist_class_names();
// T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
std::vector<std::string> fashion_mnist_class_names();
// The class names for an app's --dataset value: "fashion-mnist" gives
// Fashion-MNIST's, anything else "0".."9".
std::vector<std::string> mnist_class_names_for(const std::string& dataset);

// Loads split "train" (60k) or "test" (10k) from `dir`, which holds
// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte, each raw or with .gz. Works for MNIST and
// Fashion-MNIST. A missing directory or file is an error that says how to
// fetch the data.
Dataset load_mnist(const std::string& dir, const std::string& split, const MnistOptions& opt = {});

// Samples [begin, end) as a new dataset (copied; name gets "[begin:end]").
Dataset subset(const Dataset& ds, int64_t begin, int64_t end);

// The samples idx[0], idx[1], ... (in that order) as a new dataset; the name
// gets `suffix`. Either storage; names, scale and normalisation are copied.
Dataset take(const Dataset& ds, const std::vector<int64_t>& idx, const std::string& suffix);

// {train, val}: the LAST n_val samples validate, the rest train, in order.
// Deterministic, as in the BNN papers (MNIST: last 10,000 of 60,000).
std::pair<Dataset, Dataset> split_tail(const Dataset& ds, int64_t n_val);

// --- Subsets that keep every class -------------------------------------------
// Image folders and .mat files come sorted by class: their tail is one class.
// So validation sets and --limit-train subsets of the image datasets are drawn
// *stratified* through one fixed shuffle, the same for every format and
// independent of any --seed (a run's seed must not change which images it is
// validated on):
//   1. order the samples by fixed_permutation(n) (Fisher-Yates, constant seed);
//   2. class c, with n_c of the n samples, gets a quota of k * n_c / n, rounded
//      by largest remainder (ties: lower class first), and at least 1 while k
//      covers every present class;
//   3. class c's picks are its first quota_c samples in that shuffled order.
// The result is returned in ascending sample order (the loader shuffles).

// The permutation of 0..n-1 under a constant seed (not a run's --seed).
std::vector<int64_t> fixed_permutation(int64_t n);

// k sample indices (ascending) per the rule above; labels in [0, num_classes).
std::vector<int64_t> pick_balanced(const std::vector<int32_t>& y, int num_classes, int64_t k);

// {train, val}: n_val samples picked by pick_balanced validate, the rest
// (in their original order) train.
std::pair<Dataset, Dataset> split_val_balanced(const Dataset& ds, int64_t n_val);

// The n samples pick_balanced chooses (every class kept); all if n < 0 or n >= size().
Dataset limit_balanced(const Dataset& ds, int64_t n);

// --- Floats -------------------------------------------------------------------

// A float-storage copy (scale and normalisation applied); float datasets are copied as is.
Dataset to_float(const Dataset& ds);

// Per-channel mean and standard deviation (population) of the scaled pixel
// values of a pixel dataset, before normalisation: the usual "compute on the
// training set" statistics for set_normalization. Accumulated in double.
std::pair<std::vector<float>, std::vector<float>> channel_mean_std(const Dataset& ds);

}  // namespace qnn
