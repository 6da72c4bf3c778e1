// apps/svhn_standin.cpp — write an SVHN stand-in: MNIST digits composed into
// 32x32 colour crops, saved as train_32x32.mat / test_32x32.mat in SVHN's
// official layout, so that cifar_cnn --dataset svhn and sweep can run end to
// end where the real SVHN files cannot be had.
//
//   build/apps/svhn_standin --mnist datasets/mnist --out datasets/svhn-standin
//   build/apps/cifar_cnn --dataset svhn --data datasets/svhn-standin --model bnn
//
// IT IS NOT SVHN. Figures measured on it say how qnn trains on digits in
// SVHN's format and at SVHN's image size, not what it scores on street
// numbers; docs/results.md labels them so.
//
// What a crop looks like (each choice drawn from (--seed, split, index), so
// the files are the same on every machine and thread count):
//   - SVHN-like colours: a background and a digit brightness at least 64
//     levels apart (either may be the lighter), both tinted by one shared
//     hue of random strength (the plate and the light it is seen in) and the
//     digit by a weaker hue of its own. In SVHN most of the variation is in
//     brightness, little in hue; a first version drew both colours uniformly
//     from RGB, and on those crops a binarized net learned nothing
//     (docs/results-log.md, session 9): the colour varied more between
//     images than the strokes within one;
//   - uneven light: a brightness ramp of up to 1.5 levels per pixel along
//     each axis (+-24 levels at the crop's edges), random in strength and
//     direction;
//   - the labelled MNIST digit (28x28) placed at a random offset of 0..4
//     pixels in the 32x32 crop (SVHN's digits are roughly centred, not exactly);
//   - with probability 1/2 each, a neighbouring digit of the same colour cut
//     off at the left and at the right edge (SVHN's crops show the edges of
//     the neighbouring digits of the house number: distractors);
//   - pixel noise of +-12 levels.
// The digit 0 is stored as label 10, as in SVHN. Sizes are MNIST's (60,000
// training and 10,000 test crops; SVHN has 73,257 and 26,032).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "apps/common/cli_main.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/svhn.h"

using namespace qnn;

namespace {

// A random hue of strength `amount` levels: a direction in RGB with no
// brightness of its own (its components sum to 0), so it shifts the colour
// and keeps the grey level.
void add_hue(Rng& rng, float amount, float rgb[3]) {
  float h[3] = {rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)};
  const float mean = (h[0] + h[1] + h[2]) / 3;
  float norm = 0;
  for (float& v : h) v -= mean, norm += v * v;
  norm = std::sqrt(norm);
  if (norm < 1e-6f) return;
  for (int c = 0; c < 3; ++c) rgb[c] += amount * h[c] / norm;
}

// One split: MNIST's images (N x 28 x 28) and labels in, SVHN-layout crops out.
Dataset compose(const IdxArray& img, const IdxArray& lbl, const std::string& name, uint64_t seed) {
  const int64_t n = img.shape[0];
  QNN_CHECK(img.shape[1] == 28 && img.shape[2] == 28,
            img.path + ": MNIST images are 28x28, got " + std::to_string(img.shape[1]) + "x" + std::to_string(img.shape[2]));
  QNN_CHECK(lbl.shape[0] == n, lbl.path + ": " + std::to_string(lbl.shape[0]) + " labels for " + std::to_string(n) +
                                   " images in " + img.path);
  QNN_CHECK(n > 0, img.path + ": no images");
  Dataset ds;
  ds.name = name;
  ds.sample_shape = {3, 32, 32};
  ds.num_classes = 10;
  ds.class_names = mnist_class_names();
  ds.pixels.resize((size_t)(n * 3072));
  ds.y.resize((size_t)n);
  std::vector<float> ink(32 * 32);
#pragma omp parallel for schedule(static) firstprivate(ink)
  for (int64_t i = 0; i < n; ++i) {
    Rng rng(Rng::stream_u64(seed, (uint64_t)i));  // one stream per crop: any thread count, same file
    float grey_bg = 0, grey_fg = 0;
    do {
      grey_bg = rng.uniform(16, 240);
      grey_fg = rng.uniform(16, 240);
    } while (std::fabs(grey_bg - grey_fg) < 64);
    float cb[3] = {grey_bg, grey_bg, grey_bg}, cf[3] = {grey_fg, grey_fg, grey_fg};
    float tint[3] = {0, 0, 0};
    add_hue(rng, rng.uniform(0, 48), tint);  // shared by plate and digit
    add_hue(rng, rng.uniform(0, 24), cf);    // the digit's own
    for (int c = 0; c < 3; ++c) cb[c] += tint[c], cf[c] += tint[c];
    const float ry = rng.uniform(-1.5f, 1.5f), rx = rng.uniform(-1.5f, 1.5f);  // no sin/cos: same bytes on any libm
    // Ink coverage of the crop: the digit, and maybe the edges of two neighbours.
    std::fill(ink.begin(), ink.end(), 0.0f);
    auto stamp = [&](int64_t k, int64_t oy, int64_t ox) {
      const uint8_t* d = img.data.data() + k * 784;
      for (int64_t h = 0; h < 28; ++h)
        for (int64_t w = 0; w < 28; ++w) {
          const int64_t y = oy + h, x = ox + w;
          if (y < 0 || y >= 32 || x < 0 || x >= 32) continue;
          float& v = ink[(size_t)(y * 32 + x)];
          v = std::max(v, d[h * 28 + w] / 255.0f);
        }
    };
    const int64_t oy = (int64_t)rng.below(5), ox = (int64_t)rng.below(5);
    if (rng.below(2)) stamp((int64_t)rng.below((uint64_t)n), oy, ox - 20 - (int64_t)rng.below(5));
    if (rng.below(2)) stamp((int64_t)rng.below((uint64_t)n), oy, ox + 20 + (int64_t)rng.below(5));
    stamp(i, oy, ox);
    uint8_t* px = ds.pixels.data() + i * 3072;
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < 1024; ++p) {
        const float a = ink[(size_t)p];
        const float light = ry * (float)(p / 32 - 16) + rx * (float)(p % 32 - 16);
        const float v = cb[c] * (1 - a) + cf[c] * a + light + rng.uniform(-12, 12);
        px[c * 1024 + p] = (uint8_t)std::lround(std::clamp(v, 0.0f, 255.0f));
      }
    ds.y[(size_t)i] = lbl.data[(size_t)i];
  }
  return ds;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mnist = "datasets/mnist", out = "datasets/svhn-standin";
  uint64_t seed = 1;
  bool plain = false;
  CLI::App cli{"Write an SVHN stand-in (MNIST digits as 32x32 colour crops) as train_32x32.mat / test_32x32.mat "
               "in SVHN's official layout. Not SVHN: for running the SVHN pipeline where SVHN is not available."};
  cli.add_option("--mnist", mnist, "directory with MNIST's IDX files (scripts/fetch_data.sh mnist)")->capture_default_str();
  cli.add_option("--out", out, "directory to write the two .mat files into (created if missing)")->capture_default_str();
  cli.add_option("--seed", seed, "seed of the colours, offsets, neighbours and noise")->capture_default_str();
  cli.add_flag("--uncompressed", plain, "write uncompressed MATLAB v5 (the official files are compressed)");
  return app::parse_and_run(cli, argc, argv, "svhn_standin", [&] {
    std::filesystem::create_directories(out);
    for (const std::string split : {"train", "test"}) {
      const bool train = split == "train";
      const std::string prefix = train ? "train" : "t10k";
      const std::string ip = find_idx(mnist, prefix + "-images-idx3-ubyte");
      const std::string lp = find_idx(mnist, prefix + "-labels-idx1-ubyte");
      QNN_CHECK(!ip.empty() && !lp.empty(), mnist + ": no MNIST " + split +
                                                " files (" + prefix + "-images-idx3-ubyte[.gz]); get them with "
                                                "`scripts/fetch_data.sh mnist`");
      const Dataset ds = compose(read_idx_images(ip), read_idx_labels(lp), "svhn-standin/" + split,
                                 Rng::stream_u64(seed, train ? 1 : 2));
      const std::string path = (std::filesystem::path(out) / (split + "_32x32.mat")).string();
      save_svhn_mat(path, ds, !plain);
      std::printf("%s: %lld crops (from %s)\n", path.c_str(), (long long)ds.size(), ip.c_str());
    }
    return 0;
  });
}
