// tests/test_data_subsets.cpp — class-keeping subsets of image data sets
// (pick_balanced, split_val_balanced, limit_balanced and the readers'
// ImageOptions::limit) and batch-time augmentation (random crop with padding,
// horizontal flip), drawn per (seed, epoch, sample) whatever the batch size
// and thread count.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/cifar.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/images.h"
#include "tests/data_test_util.h"
#include "tests/image_test_util.h"

using namespace qnn;

namespace {

// This file's scratch directories.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("qnn_test_subsets") {}
};
using test::contains;
using test::error_of;
using test::pixel_dataset;
using test::px_of;
using test::write_fake_cifar;
using test::write_png;

// Labels sorted by class, as image folders and .mat files come.
std::vector<int32_t> sorted_labels(const std::vector<int64_t>& per_class) {
  std::vector<int32_t> y;
  for (size_t c = 0; c < per_class.size(); ++c) y.insert(y.end(), (size_t)per_class[c], (int32_t)c);
  return y;
}

std::set<int32_t> classes_in(const Dataset& ds) { return std::set<int32_t>(ds.y.begin(), ds.y.end()); }

// The float values of sample s as the loader puts them in a batch.
std::vector<float> batch_row(const Batch& b, int64_t row) {
  const int64_t d = b.x.numel() / b.size();
  return std::vector<float>(b.x.data() + row * d, b.x.data() + (row + 1) * d);
}

}  // namespace

TEST_CASE("subsets: pick_balanced keeps every class of class-sorted labels, independent of any seed") {
  const std::vector<int32_t> y = sorted_labels({500, 300, 200, 1, 0, 99});
  for (int64_t k : {5, 6, 10, 50, 100, 999, 1100}) {
    CAPTURE(k);
    const std::vector<int64_t> a = pick_balanced(y, 6, k);
    CHECK((int64_t)a.size() == k);
    CHECK(std::is_sorted(a.begin(), a.end()));
    CHECK(std::adjacent_find(a.begin(), a.end()) == a.end());
    std::map<int32_t, int64_t> per;
    for (int64_t i : a) ++per[y[(size_t)i]];
    CHECK(per.count(4) == 0);  // class 4 has no samples
    for (int c : {0, 1, 2, 3, 5}) CHECK(per[c] >= 1);
    if (k >= 100) {
      // proportional, up to the minimum-one adjustment and rounding
      CHECK(std::abs(per[0] - k * 500 / 1100) <= 2);
      CHECK(std::abs(per[1] - k * 300 / 1100) <= 2);
    }
    CHECK(pick_balanced(y, 6, k) == a);  // fixed shuffle: no seed anywhere
  }
  CHECK(pick_balanced(y, 6, 0).empty());
  CHECK((int64_t)pick_balanced(y, 6, 1100).size() == 1100);
  CHECK(!error_of([&] { pick_balanced(y, 6, 1101); }).empty());
  CHECK(fixed_permutation(50) == fixed_permutation(50));
  std::vector<int64_t> p = fixed_permutation(50);
  std::sort(p.begin(), p.end());
  for (int64_t i = 0; i < 50; ++i) CHECK(p[(size_t)i] == i);
}

TEST_CASE("subsets: split_val_balanced and limit_balanced on a class-sorted pixel dataset") {
  Dataset ds = pixel_dataset(1000, 1, 2, 2);
  ds.y = sorted_labels({100, 100, 100, 100, 100, 100, 100, 100, 100, 100});  // like an image folder
  // The old rule (the tail) would validate on one class only.
  CHECK(classes_in(split_tail(ds, 100).second).size() == 1);
  auto [tr, va] = split_val_balanced(ds, 100);
  tr.validate();
  va.validate();
  CHECK(tr.size() == 900);
  CHECK(va.size() == 100);
  CHECK(classes_in(va).size() == 10);
  CHECK(classes_in(tr).size() == 10);
  for (int c = 0; c < 10; ++c) CHECK(std::count(va.y.begin(), va.y.end(), c) == 10);
  CHECK(va.class_names == ds.class_names);
  // Disjoint, and together every sample (pixels identify samples here: px_of(i, 0, 0, 0) .. + 3).
  std::multiset<std::vector<uint8_t>> all, parts;
  auto rows = [](const Dataset& s, std::multiset<std::vector<uint8_t>>& out) {
    for (int64_t i = 0; i < s.size(); ++i)
      out.insert(std::vector<uint8_t>(s.pixels.begin() + i * 4, s.pixels.begin() + i * 4 + 4));
  };
  rows(ds, all);
  rows(tr, parts);
  rows(va, parts);
  CHECK(all == parts);
  auto [tr2, va2] = split_val_balanced(ds, 100);
  CHECK(va2.pixels == va.pixels);

  const Dataset ten = limit_balanced(ds, 10);
  CHECK(ten.size() == 10);
  CHECK(classes_in(ten).size() == 10);
  CHECK(limit_balanced(ds, -1).size() == 1000);
  CHECK(limit_balanced(ds, 5000).size() == 1000);

  // The same rule through ImageOptions::limit on the readers.
  TempDir d;
  write_fake_cifar(d, 20);
  ImageOptions o;
  o.limit = 30;
  const Dataset lim = load_cifar10_bin(d.str(), "train", o);
  CHECK(lim.size() == 30);
  CHECK(classes_in(lim).size() == 10);
  for (int c = 0; c < 3; ++c) {
    write_png(d.path / "f/train/a" / (std::to_string(c) + ".png"), 4, 4, c);
    write_png(d.path / "f/train/b" / (std::to_string(c) + ".png"), 4, 4, c + 10);
  }
  o.limit = 2;
  const Dataset f = load_image_folder((d.path / "f").string(), "train", o);
  CHECK(f.size() == 2);
  CHECK(classes_in(f).size() == 2);
}

TEST_CASE("augment: crop shifts content by the drawn offset, pads with pixel 0, flip mirrors") {
  Dataset ds = pixel_dataset(40, 2, 5, 6);
  ds.scale = PixelScale::MinusOneToOne;
  ds.set_normalization({0.1f, -0.2f}, {0.5f, 2.0f});
  const int pad = 2;
  DataLoader plain(ds, 40, false, 9);
  DataLoader l(ds, 40, false, 9);
  l.set_augment(Augment{.crop_pad = pad, .hflip = true});
  const Batch b = l.epoch(3).batch(0);
  std::set<int> dys, dxs;
  int flips = 0;
  for (int64_t s = 0; s < 40; ++s) {
    const AugmentDraw r = l.augment_draw(3, s);
    CHECK(r.dy >= 0);
    CHECK(r.dy <= 2 * pad);
    CHECK(r.dx >= 0);
    CHECK(r.dx <= 2 * pad);
    dys.insert(r.dy);
    dxs.insert(r.dx);
    flips += r.flip;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t h = 0; h < 5; ++h)
        for (int64_t w = 0; w < 6; ++w) {
          const int64_t sh = h + r.dy - pad, sw = (r.flip ? 5 - w : w) + r.dx - pad;
          const uint8_t p = (sh < 0 || sh >= 5 || sw < 0 || sw >= 6) ? 0 : px_of(s, c, sh, sw);
          CHECK(b.x.data()[((s * 2 + c) * 5 + h) * 6 + w] == ds.pixel_value(c, p));
        }
  }
  CHECK(dys.size() == 5);  // every offset occurs
  CHECK(dxs.size() == 5);
  CHECK(flips > 5);
  CHECK(flips < 35);
  CHECK(l.augment_draw(3, 7) == l.augment_draw(3, 7));
  CHECK(!(l.augment_draw(3, 7) == l.augment_draw(4, 7) && l.augment_draw(3, 8) == l.augment_draw(4, 8) &&
          l.augment_draw(3, 9) == l.augment_draw(4, 9)));
  // Flip only: each sample is either untouched or exactly mirrored.
  DataLoader f(ds, 40, false, 9);
  f.set_augment(Augment{.hflip = true});
  const Batch fb = f.epoch(0).batch(0), pb = plain.epoch(0).batch(0);
  for (int64_t s = 0; s < 40; ++s) {
    const bool flip = f.augment_draw(0, s).flip;
    CHECK(f.augment_draw(0, s).dy == 0);
    for (int64_t row = 0; row < 10; ++row)
      for (int64_t w = 0; w < 6; ++w)
        CHECK(fb.x.data()[(s * 10 + row) * 6 + w] == pb.x.data()[(s * 10 + row) * 6 + (flip ? 5 - w : w)]);
  }
  // Float storage pads with float_pad.
  Dataset fl = to_float(ds);
  DataLoader lf(fl, 40, false, 9);
  lf.set_augment(Augment{.crop_pad = pad, .float_pad = -7.0f});
  const Batch bf = lf.epoch(3).batch(0);
  for (int64_t smp = 0; smp < 40; ++smp) {
    const AugmentDraw r = lf.augment_draw(3, smp);
    CHECK(!r.flip);
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t h = 0; h < 5; ++h)
        for (int64_t w = 0; w < 6; ++w) {
          const int64_t sh = h + r.dy - pad, sw = w + r.dx - pad;
          const bool out = sh < 0 || sh >= 5 || sw < 0 || sw >= 6;
          const float want = out ? -7.0f : fl.x[(size_t)(((smp * 2 + c) * 5 + sh) * 6 + sw)];
          CHECK(bf.x.data()[((smp * 2 + c) * 5 + h) * 6 + w] == want);
        }
  }
  // Bad settings.
  CHECK(contains(error_of([&] { l.set_augment(Augment{.crop_pad = -1}); }), "crop padding"));
  Dataset flat = pixel_dataset(4, 1, 1, 16);
  flat.sample_shape = {16};
  DataLoader lflat(flat, 2, false, 1);
  CHECK(contains(error_of([&] { lflat.set_augment(Augment{.hflip = true}); }), "CHW"));
}

TEST_CASE("augment: same (seed, epoch, sample) gives the same image for any batch size and thread count") {
  Dataset ds = pixel_dataset(300, 3, 32, 32);  // 300 x 3072: the parallel path of gather
  ds.scale = PixelScale::OddOver256;
  auto run = [&](int64_t batch, int threads) {
    omp_set_num_threads(threads);
    DataLoader l(ds, batch, true, 42);
    l.set_augment(Augment{.crop_pad = 4, .hflip = true});
    std::map<int64_t, std::vector<float>> by_sample;
    const auto ep = l.epoch(5);
    for (int64_t b = 0; b < ep.size(); ++b) {
      const Batch bt = ep.batch(b);
      for (int64_t j = 0; j < bt.size(); ++j) by_sample[ep.order()[(size_t)(b * batch + j)]] = batch_row(bt, j);
    }
    return by_sample;
  };
  const int saved = omp_get_max_threads();
  const auto a = run(300, 2), b = run(7, 1), c = run(128, 2);
  omp_set_num_threads(saved);
  REQUIRE(a.size() == 300);
  CHECK(a == b);
  CHECK(a == c);
  // Another seed draws differently.
  DataLoader other(ds, 300, true, 43);
  other.set_augment(Augment{.crop_pad = 4, .hflip = true});
  DataLoader same(ds, 300, true, 42);
  same.set_augment(Augment{.crop_pad = 4, .hflip = true});
  int differ = 0;
  for (int64_t s = 0; s < 50; ++s) differ += !(other.augment_draw(5, s) == same.augment_draw(5, s));
  CHECK(differ > 25);
}
