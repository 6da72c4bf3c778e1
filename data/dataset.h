// data/dataset.h — an in-memory labelled dataset, and the MNIST loader.
//
// A Dataset is plain vectors, not Tensors: sample i is the `sample_numel()`
// floats starting at x[i * sample_numel()], its label is y[i]. A DataLoader
// (data/dataloader.h) gathers rows of it into batch Tensors.
//
// MNIST and Fashion-MNIST share a layout and file names, so one loader reads
// both. Get the files with `scripts/fetch_data.sh mnist` (or fashion-mnist),
// which puts them in datasets/mnist/ (datasets/fashion-mnist/).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"  // qnn::Shape

namespace qnn {

struct Dataset {
  std::string name;           // e.g. "mnist/train"; for messages and logs
  Shape sample_shape;         // one sample, e.g. {784} or {1, 28, 28}
  int num_classes = 0;
  std::vector<float> x;       // size() * sample_numel() values, row-major
  std::vector<int32_t> y;     // size() labels in [0, num_classes)

  int64_t size() const { return (int64_t)y.size(); }
  int64_t sample_numel() const { return shape_numel(sample_shape); }
  const float* sample(int64_t i) const { return x.data() + i * sample_numel(); }
  // Throws qnn::Error if x / y / sample_shape / labels disagree.
  void validate() const;
};

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

struct MnistOptions {
  PixelScale scale = PixelScale::MinusOneToOne;
  bool flatten = true;        // sample_shape {784}; false gives {1, 28, 28} (CHW)
  int64_t limit = -1;         // keep only the first `limit` samples (< 0: all)
  std::string name;           // default: "<dir's last component>/<split>"
};

// Loads split "train" (60k) or "test" (10k) from `dir`, which holds
// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte, each raw or with .gz. Works for MNIST and
// Fashion-MNIST. A missing directory or file is an error that says how to
// fetch the data.
Dataset load_mnist(const std::string& dir, const std::string& split, const MnistOptions& opt = {});

// Samples [begin, end) as a new dataset (copied; name gets "[begin:end]").
Dataset subset(const Dataset& ds, int64_t begin, int64_t end);

// {train, val}: the LAST n_val samples validate, the rest train, in order.
// Deterministic, as in the BNN papers (MNIST: last 10,000 of 60,000).
std::pair<Dataset, Dataset> split_tail(const Dataset& ds, int64_t n_val);

}  // namespace qnn
