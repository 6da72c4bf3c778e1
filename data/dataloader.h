// data/dataloader.h — mini-batches of a Dataset, in a seeded order per epoch.
//
//   DataLoader loader(train, /*batch=*/100, /*shuffle=*/true, seed);
//   for (int64_t e = 0; e < epochs; ++e)
//     for (const Batch& b : loader.epoch(e)) {   // b.x: [B] + sample_shape
//       ...
//     }
//
// The order of epoch e depends only on (seed, e): epoch 7 is the same whether
// a run got there from epoch 0 or resumed from a checkpoint, and two runs with
// one seed see the same batches. Without shuffle the order is 0..N-1. The last
// batch is smaller when the batch size doesn't divide N, unless drop_last.
//
// Pixel datasets (Dataset::pixels) become floats here, per batch, through the
// dataset's scale and normalisation (Dataset::pixel_value): exactly the floats
// a float-storage copy would hold.
//
// Augmentation (off by default; for training loaders only):
//
//   loader.set_augment(Augment{.crop_pad = 4, .hflip = true});
//
// is torchvision's RandomCrop(H, padding=4) then RandomHorizontalFlip() on a
// CHW sample: pad by crop_pad on every side, cut an H x W window at offset
// (dy, dx) in [0, 2 crop_pad]^2, then mirror left-right with probability 1/2.
// Padding is pixel value 0 *before* scaling and normalisation, as torchvision
// pads the PIL image with black: -1 under MinusOneToOne, (0 - mean_c) / std_c
// with normalisation. (Float-storage datasets have no pixels: they pad with
// Augment::float_pad.) The draws depend only on (seed, epoch, sample index in
// the dataset), never on the batch size, the batch a sample lands in or the
// thread count, so runs are reproducible and resumable; augment_draw() tells
// what was drawn.
//
// The loader keeps a pointer to the Dataset: the dataset must outlive it.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"

namespace qnn {

struct Batch {
  Tensor x;                 // [B] + sample_shape, no grad
  std::vector<int32_t> y;   // B labels
  int64_t size() const { return (int64_t)y.size(); }
};

struct Augment {
  int crop_pad = 0;       // RandomCrop padding (0: no crop); samples must be CHW
  bool hflip = false;     // RandomHorizontalFlip, p = 1/2
  float float_pad = 0.f;  // pad value for float-storage datasets
  bool active() const { return crop_pad > 0 || hflip; }
};

// One sample's draw: window offset (dy, dx) in the padded image (so the
// content moves by (crop_pad - dy, crop_pad - dx)), then a mirror if flip.
struct AugmentDraw {
  int dy = 0, dx = 0;
  bool flip = false;
  bool operator==(const AugmentDraw&) const = default;
};

class DataLoader {
 public:
  DataLoader(const Dataset& ds, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last = false);

  int64_t num_batches() const;     // per epoch
  int64_t num_samples() const;     // per epoch (fewer than ds.size() with drop_last)
  int64_t batch_size() const { return batch_; }
  const Dataset& dataset() const { return *ds_; }

  // The sample order of an epoch: a permutation of 0..N-1 (identity without shuffle).
  std::vector<int64_t> order(int64_t epoch) const;

  // Gathers the samples order[begin, end) into a batch, augmented (if set)
  // with the draws of `epoch`.
  Batch gather(const std::vector<int64_t>& order, int64_t begin, int64_t end, int64_t epoch = 0) const;

  // Batch-time augmentation (see the top of this file); throws if the
  // dataset's samples are not CHW or crop_pad is negative.
  void set_augment(const Augment& a);
  const Augment& augment() const { return aug_; }
  // The draw for sample `index` (of the dataset) in `epoch`; with crop_pad 0
  // dy = dx = 0, without hflip flip = false.
  AugmentDraw augment_draw(int64_t epoch, int64_t index) const;

  // The batches of one epoch, for a range-for. Holds the epoch's order.
  class Epoch {
   public:
    class iterator {
     public:
      iterator(const Epoch* ep, int64_t i) : ep_(ep), i_(i) {}
      const Batch& operator*();
      const Batch* operator->() { return &**this; }
      iterator& operator++() {
        ++i_;
        loaded_ = false;
        return *this;
      }
      bool operator==(const iterator& o) const { return i_ == o.i_; }
      bool operator!=(const iterator& o) const { return i_ != o.i_; }
      int64_t index() const { return i_; }

     private:
      const Epoch* ep_;
      int64_t i_;
      bool loaded_ = false;
      Batch cur_;
    };
    iterator begin() const { return iterator(this, 0); }
    iterator end() const { return iterator(this, loader_->num_batches()); }
    Batch batch(int64_t i) const;  // the i-th batch of this epoch
    int64_t size() const { return loader_->num_batches(); }
    const std::vector<int64_t>& order() const { return order_; }

   private:
    friend class DataLoader;
    Epoch(const DataLoader* l, int64_t e, std::vector<int64_t> order)
        : loader_(l), epoch_(e), order_(std::move(order)) {}
    const DataLoader* loader_;
    int64_t epoch_;
    std::vector<int64_t> order_;
  };

  Epoch epoch(int64_t e) const { return Epoch(this, e, order(e)); }

 private:
  const Dataset* ds_;
  int64_t batch_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  Augment aug_;
};

}  // namespace qnn
