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
  const size_t have = ds.has_pixels() ? ds.pixels.size() : ds.x.size();
  QNN_CHECK((int64_t)have == ds.size() * ds.sample_numel(),
            "DataLoader: dataset '" + ds.name + "' has " + std::to_string(have) + " values for " +
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

void DataLoader::set_augment(const Augment& a) {
  QNN_CHECK(a.crop_pad >= 0, "DataLoader: crop padding must be >= 0, got " + std::to_string(a.crop_pad));
  if (a.active())
    QNN_CHECK(ds_->sample_shape.size() == 3,
              "DataLoader: augmentation (crop/flip) needs CHW samples; dataset '" + ds_->name + "' has " +
                  shape_str(ds_->sample_shape));
  aug_ = a;
}

AugmentDraw DataLoader::augment_draw(int64_t epoch, int64_t index) const {
  AugmentDraw d;
  if (!aug_.active()) return d;
  // Own stream per (seed, epoch, index); the constant keeps it apart from the
  // epoch-order stream of the same seed.
  Rng rng(mix64(mix64(seed_ ^ 0x6a09e667f3bcc909ULL) ^ mix64((uint64_t)epoch + 0x3c6ef372fe94f82bULL) ^
                mix64((uint64_t)index)));
  const uint64_t span = 2 * (uint64_t)aug_.crop_pad + 1;
  d.dy = (int)rng.below(span);
  d.dx = (int)rng.below(span);
  d.flip = aug_.hflip && rng.below(2) == 1;
  return d;
}

Batch DataLoader::gather(const std::vector<int64_t>& order, int64_t begin, int64_t end, int64_t epoch) const {
  QNN_CHECK(0 <= begin && begin <= end && end <= (int64_t)order.size(),
            "DataLoader::gather: range [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside " +
                std::to_string(order.size()) + " samples");
  const Dataset& ds = *ds_;
  const int64_t b = end - begin;
  const int64_t d = ds.sample_numel();
  const bool px = ds.has_pixels();
  Shape shape{b};
  shape.insert(shape.end(), ds.sample_shape.begin(), ds.sample_shape.end());
  Batch out;
  out.x = Tensor::empty(shape);
  out.y.resize((size_t)b);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t s = order[(size_t)(begin + i)];
    QNN_CHECK(0 <= s && s < ds.size(), "DataLoader::gather: sample " + std::to_string(s) + " outside dataset '" +
                                           ds.name + "' of " + std::to_string(ds.size()));
    out.y[(size_t)i] = ds.y[(size_t)s];
  }
  if (px) QNN_CHECK((int64_t)ds.pixels.size() == ds.size() * d, "DataLoader: dataset '" + ds.name + "' changed size");
  else QNN_CHECK((int64_t)ds.x.size() == ds.size() * d, "DataLoader: dataset '" + ds.name + "' changed size");

  // Pixel -> float tables, one per channel (pixel_value: scale, then normalisation).
  const int64_t nc = ds.channels(), plane = d / nc;
  std::vector<float> lut;
  if (px) {
    QNN_CHECK(ds.mean.empty() || ((int64_t)ds.mean.size() == nc && (int64_t)ds.stdev.size() == nc),
              "DataLoader: dataset '" + ds.name + "' has normalisation for " + std::to_string(ds.mean.size()) +
                  " channels, its samples have " + std::to_string(nc));
    lut.resize((size_t)(nc * 256));
    for (int64_t c = 0; c < nc; ++c)
      for (int p = 0; p < 256; ++p) lut[(size_t)(c * 256 + p)] = ds.pixel_value(c, (uint8_t)p);
  }
  const bool aug = aug_.active();
  const int64_t H = aug ? ds.sample_shape[1] : 0, W = aug ? ds.sample_shape[2] : 0;
  const int pad = aug_.crop_pad;
  float* dst0 = out.x.data();

  // Samples are independent (draws depend on the sample index only), so any
  // thread split gives the same batch.
#pragma omp parallel for schedule(static) if (b * d >= (1 << 18))
  for (int64_t i = 0; i < b; ++i) {
    const int64_t s = order[(size_t)(begin + i)];
    float* dst = dst0 + i * d;
    if (!aug) {
      if (px) {
        const uint8_t* src = ds.pixels.data() + s * d;
        for (int64_t c = 0; c < nc; ++c) {
          const float* t = lut.data() + c * 256;
          for (int64_t j = 0; j < plane; ++j) dst[c * plane + j] = t[src[c * plane + j]];
        }
      } else {
        std::memcpy(dst, ds.x.data() + s * d, (size_t)d * sizeof(float));
      }
      continue;
    }
    // out(c, h, w) = in(c, h + dy - pad, w' + dx - pad), w' = W-1-w if flipped
    // else w; outside the image: the pad value.
    const AugmentDraw r = augment_draw(epoch, s);
    for (int64_t c = 0; c < nc; ++c) {
      const float* t = px ? lut.data() + c * 256 : nullptr;
      const float padv = px ? t[0] : aug_.float_pad;
      for (int64_t h = 0; h < H; ++h) {
        float* row = dst + (c * H + h) * W;
        const int64_t sh = h + r.dy - pad;
        if (sh < 0 || sh >= H) {
          std::fill(row, row + W, padv);
          continue;
        }
        const int64_t off = (c * H + sh) * W;
        for (int64_t w = 0; w < W; ++w) {
          const int64_t sw = (r.flip ? W - 1 - w : w) + r.dx - pad;
          if (sw < 0 || sw >= W) row[w] = padv;
          else row[w] = px ? t[ds.pixels[(size_t)(s * d + off + sw)]] : ds.x[(size_t)(s * d + off + sw)];
        }
      }
    }
  }
  return out;
}

Batch DataLoader::Epoch::batch(int64_t i) const {
  QNN_CHECK(0 <= i && i < loader_->num_batches(),
            "DataLoader: batch " + std::to_string(i) + " of " + std::to_string(loader_->num_batches()));
  const int64_t begin = i * loader_->batch_;
  const int64_t end = std::min<int64_t>(begin + loader_->batch_, (int64_t)order_.size());
  return loader_->gather(order_, begin, end, epoch_);
}

const Batch& DataLoader::Epoch::iterator::operator*() {
  if (!loaded_) {
    cur_ = ep_->batch(i_);
    loaded_ = true;
  }
  return cur_;
}

}  // namespace qnn
