// data/dataloader.cpp — seeded per-epoch order and batch gathering.
#include "data/dataloader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/rng.h"

namespace qnn {
namespace {

// A 64-bit finalizer (the splitmix64 output function): nearby inputs give
// unrelated outputs, so (seed, epoch) and (seed, epoch + 1) seed unrelated
// generators.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

DataLoader::DataLoader(const Dataset& ds, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last)
    : ds_(&ds), batch_(batch_size), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
  QNN_CHECK(batch_size > 0, "DataLoader: batch size must be positive, got " + std::to_string(batch_size));
  QNN_CHECK(ds.sample_numel() > 0, "DataLoader: dataset '" + ds.name + "' has an empty sample shape");
  QNN_CHECK((int64_t)ds.x.size() == ds.size() * ds.sample_numel(),
            "DataLoader: dataset '" + ds.name + "' has " + std::to_string(ds.x.size()) + " values for " +
                std::to_string(ds.size()) + " samples of " + shape_str(ds.sample_shape));
}

int64_t DataLoader::num_batches() const {
  const int64_t n = ds_->size();
  return drop_last_ ? n / batch_ : (n + batch_ - 1) / batch_;
}

int64_t DataLoader::num_samples() const { return drop_last_ ? num_batches() * batch_ : ds_->size(); }

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  std::vector<int64_t> idx((size_t)ds_->size());
  std::iota(idx.begin(), idx.end(), int64_t(0));
  if (!shuffle_) return idx;
  Rng rng(mix64(seed_ ^ mix64((uint64_t)epoch + 0x9e3779b97f4a7c15ULL)));
  for (size_t i = idx.size(); i > 1; --i) {  // Fisher-Yates
    const size_t j = (size_t)rng.below(i);
    std::swap(idx[i - 1], idx[j]);
  }
  return idx;
}

Batch DataLoader::gather(const std::vector<int64_t>& order, int64_t begin, int64_t end) const {
  QNN_CHECK(0 <= begin && begin <= end && end <= (int64_t)order.size(),
            "DataLoader::gather: range [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside " +
                std::to_string(order.size()) + " samples");
  const int64_t b = end - begin;
  const int64_t d = ds_->sample_numel();
  Shape shape{b};
  shape.insert(shape.end(), ds_->sample_shape.begin(), ds_->sample_shape.end());
  Batch out;
  out.x = Tensor::empty(shape);
  out.y.resize((size_t)b);
  float* dst = out.x.data();
  const float* src = ds_->x.data();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t s = order[(size_t)(begin + i)];
    std::memcpy(dst + i * d, src + s * d, (size_t)d * sizeof(float));
    out.y[(size_t)i] = ds_->y[(size_t)s];
  }
  return out;
}

Batch DataLoader::Epoch::batch(int64_t i) const {
  QNN_CHECK(0 <= i && i < loader_->num_batches(),
            "DataLoader: batch " + std::to_string(i) + " of " + std::to_string(loader_->num_batches()));
  const int64_t begin = i * loader_->batch_;
  const int64_t end = std::min<int64_t>(begin + loader_->batch_, (int64_t)order_.size());
  return loader_->gather(order_, begin, end);
}

const Batch& DataLoader::Epoch::iterator::operator*() {
  if (!loaded_) {
    cur_ = ep_->batch(i_);
    loaded_ = true;
  }
  return cur_;
}

}  // namespace qnn
