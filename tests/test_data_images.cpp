// tests/test_data_images.cpp — pixel datasets and the CIFAR-10 / image-folder /
// SVHN readers (on small files the tests write). The last case reads the real
// CIFAR-10 JPEG copy when ../shared/data/cifar-10-images.tar.gz is present next
// to the repository. Class-keeping subsets and batch-time augmentation:
// test_data_subsets.cpp.
#include <doctest/doctest.h>
#include <matio.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "data/cifar.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "tests/data_test_util.h"
#include "data/image_folder.h"
#include "data/images.h"
#include "data/svhn.h"
#include "tests/image_test_util.h"

namespace fs = std::filesystem;
using namespace qnn;

namespace {

// This file's scratch directories.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("qnn_test_images") {}
};
using test::contains;
using test::error_of;
using test::kMeta;
using test::pixel_dataset;
using test::px_of;
using test::write_bytes;
using test::write_fake_cifar;
using test::write_png;

std::string read_bytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// --- SVHN .mat ---------------------------------------------------------------------

// X (rows x cols x ch x n) uint8 in column-major order holding px_of(n, c, h, w)
// at (h, w, c, n); y (n x 1) double with the digits 1..10 (label i % 10, 0 -> 10).
struct MatSpec {
  size_t x_dims[4] = {32, 32, 3, 4};
  int x_rank = 4;
  matio_classes x_class = MAT_C_UINT8;
  size_t y_n = 4;
  std::vector<double> y_values;  // default: (i % 10 == 0 ? 10 : i % 10)
  bool write_x = true, write_y = true;
  bool compress = true;
};

void write_mat(const fs::path& p, const MatSpec& s) {
  fs::create_directories(p.parent_path());
  mat_t* mat = Mat_CreateVer(p.string().c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  const auto comp = s.compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
  size_t xn = 1;
  for (int i = 0; i < s.x_rank; ++i) xn *= s.x_dims[i];
  std::vector<uint8_t> xb(xn);
  std::vector<double> xd(xn);
  if (s.x_rank == 4) {
    const size_t R = s.x_dims[0], C = s.x_dims[1], K = s.x_dims[2], N = s.x_dims[3];
    for (size_t n = 0; n < N; ++n)
      for (size_t k = 0; k < K; ++k)
        for (size_t w = 0; w < C; ++w)
          for (size_t h = 0; h < R; ++h) {
            const size_t at = h + R * w + R * C * k + R * C * K * n;
            xb[at] = px_of((int64_t)n, (int64_t)k, (int64_t)h, (int64_t)w);
            xd[at] = xb[at];
          }
  }
  if (s.write_x) {
    size_t dims[4] = {s.x_dims[0], s.x_dims[1], s.x_dims[2], s.x_dims[3]};
    const bool dbl = s.x_class == MAT_C_DOUBLE;
    matvar_t* v = Mat_VarCreate("X", s.x_class, dbl ? MAT_T_DOUBLE : MAT_T_UINT8, s.x_rank, dims,
                                dbl ? (void*)xd.data() : (void*)xb.data(), 0);
    REQUIRE(v != nullptr);
    REQUIRE(Mat_VarWrite(mat, v, comp) == 0);
    Mat_VarFree(v);
  }
  if (s.write_y) {
    std::vector<double> y = s.y_values;
    if (y.empty())
      for (size_t i = 0; i < s.y_n; ++i) y.push_back(i % 10 == 0 ? 10.0 : (double)(i % 10));
    size_t dims[2] = {y.size(), 1};
    matvar_t* v = Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, y.data(), 0);
    REQUIRE(v != nullptr);
    REQUIRE(Mat_VarWrite(mat, v, comp) == 0);
    Mat_VarFree(v);
  }
  Mat_Close(mat);
}

}  // namespace

// ---------------------------------------------------------------------------------

TEST_CASE("images: class names of MNIST and Fashion-MNIST") {
  CHECK(mnist_class_names().size() == 10);
  CHECK(mnist_class_names()[7] == "7");
  CHECK(fashion_mnist_class_names()[0] == "T-shirt/top");
  CHECK(fashion_mnist_class_names()[9] == "Ankle boot");
  CHECK(mnist_class_names_for("fashion-mnist") == fashion_mnist_class_names());
  CHECK(mnist_class_names_for("mnist") == mnist_class_names());
  CHECK(cifar10_class_names()[9] == "truck");
}

TEST_CASE("images: MNIST kept as pixels gives the very same batch floats") {
  TempDir d;
  const int64_t n = 37;
  std::vector<uint8_t> px((size_t)(n * 28 * 28));
  for (size_t i = 0; i < px.size(); ++i) px[i] = (uint8_t)(i * 13 % 256);
  std::vector<uint8_t> lb((size_t)n);
  for (int64_t i = 0; i < n; ++i) lb[(size_t)i] = (uint8_t)(i % 10);
  write_idx((d.path / "train-images-idx3-ubyte").string(), {n, 28, 28}, px);
  write_idx((d.path / "train-labels-idx1-ubyte").string(), {n}, lb);
  for (PixelScale sc : {PixelScale::MinusOneToOne, PixelScale::ZeroToOne, PixelScale::OddOver256}) {
    MnistOptions fo;
    fo.scale = sc;
    fo.class_names = fashion_mnist_class_names();
    MnistOptions po = fo;
    po.keep_pixels = true;
    const Dataset f = load_mnist(d.str(), "train", fo);
    const Dataset p = load_mnist(d.str(), "train", po);
    CHECK(f.class_names[3] == "Dress");
    CHECK(p.class_names == f.class_names);
    CHECK(p.has_pixels());
    CHECK(p.x.empty());
    CHECK(p.pixels == px);
    p.validate();
    DataLoader lf(f, 8, true, 5), lp(p, 8, true, 5);
    for (int64_t b = 0; b < lf.num_batches(); ++b) {
      const Batch bf = lf.epoch(2).batch(b), bp = lp.epoch(2).batch(b);
      REQUIRE(bf.x.numel() == bp.x.numel());
      CHECK(std::memcmp(bf.x.data(), bp.x.data(), (size_t)bf.x.numel() * sizeof(float)) == 0);
      CHECK(bf.y == bp.y);
    }
    CHECK(to_float(p).x == f.x);
    std::vector<float> row(784);
    p.sample_floats(5, row.data());
    CHECK(std::memcmp(row.data(), f.sample(5), 784 * sizeof(float)) == 0);
    CHECK(!error_of([&] { p.sample(0); }).empty());
    // subset / split_tail keep the storage, names and scale.
    auto [tr, va] = split_tail(p, 7);
    CHECK(tr.pixels.size() == 30u * 784u);
    CHECK(va.class_names == p.class_names);
    CHECK(va.scale == sc);
    CHECK(va.pixels[0] == px[30 * 784]);
  }
  CHECK(contains(error_of([&] {
          MnistOptions o;
          o.class_names = {"a", "b"};
          load_mnist(d.str(), "train", o);
        }),
        "10 names"));
}

TEST_CASE("images: normalisation is (scale_pixel - mean) / std in float; channel stats") {
  Dataset ds = pixel_dataset(6, 3, 4, 5);
  ds.scale = PixelScale::ZeroToOne;
  ds.set_normalization({0.5f, 0.25f, 0.75f}, {0.2f, 0.3f, 0.4f});
  ds.validate();
  DataLoader l(ds, 6, false, 1);
  const Batch b = l.epoch(0).batch(0);
  const float m[3] = {0.5f, 0.25f, 0.75f}, s[3] = {0.2f, 0.3f, 0.4f};
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 5; ++w) {
          const float want = (scale_pixel(px_of(i, c, h, w), PixelScale::ZeroToOne) - m[c]) / s[c];
          CHECK(b.x.data()[((i * 3 + c) * 4 + h) * 5 + w] == want);
        }
  CHECK(contains(error_of([&] { ds.set_normalization({0.5f}, {0.2f}); }), "3 values per channel"));
  CHECK(contains(error_of([&] { ds.set_normalization({0, 0, 0}, {1, 0, 1}); }), "positive"));

  // Channel statistics on known values: channel 0 all 0, channel 1 half 0 / half 255.
  Dataset t = pixel_dataset(2, 2, 1, 2, 2);
  t.scale = PixelScale::ZeroToOne;
  t.pixels = {0, 0, 0, 255, 0, 0, 255, 0};
  auto [mean, sd] = channel_mean_std(t);
  CHECK(mean[0] == 0.0f);
  CHECK(sd[0] == 0.0f);
  CHECK(mean[1] == 0.5f);
  CHECK(sd[1] == 0.5f);
}

TEST_CASE("images: CIFAR-10 binary batches") {
  TempDir d;
  const fs::path bin = write_fake_cifar(d, 7);
  for (const std::string& dir : {d.str(), bin.string()}) {
    CAPTURE(dir);
    CHECK(detect_image_layout(dir) == "cifar10-bin");
    const Dataset tr = load_cifar10_bin(dir, "train");
    tr.validate();
    CHECK(tr.size() == 35);
    CHECK(tr.sample_shape == Shape{3, 32, 32});
    CHECK(tr.class_names == cifar10_class_names());
    CHECK(tr.has_pixels());
    for (int64_t i : {0, 6, 7, 34}) {
      CHECK(tr.y[(size_t)i] == (int32_t)(i % 10));
      CHECK(tr.pixels[(size_t)(i * 3072 + 0)] == px_of(i, 0, 0, 0));
      CHECK(tr.pixels[(size_t)(i * 3072 + 1024 * 2 + 32 * 5 + 9)] == px_of(i, 2, 5, 9));  // CHW as stored
    }
    const Dataset te = load_image_dataset(dir, "test");
    CHECK(te.size() == 7);
    CHECK(te.y[0] == 0);  // record 1000 % 10
    CHECK(te.pixels[3071] == px_of(1000, 2, 31, 31));
  }
  // Custom names from batches.meta.txt; none -> the official names.
  write_bytes(bin / "batches.meta.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\r\n");
  CHECK(load_cifar10_bin(d.str(), "test").class_names[9] == "j");
  fs::remove(bin / "batches.meta.txt");
  CHECK(load_cifar10_bin(d.str(), "test").class_names == cifar10_class_names());
  // The pixels convert per batch with the scale.
  ImageOptions o;
  o.scale = PixelScale::OddOver256;
  const Dataset te = load_cifar10_bin(d.str(), "test", o);
  DataLoader l(te, 3, false, 0);
  CHECK(l.epoch(0).batch(0).x.data()[5] == scale_pixel(px_of(1000, 0, 0, 5), PixelScale::OddOver256));
}

TEST_CASE("images: damaged CIFAR-10 batches are refused with the file and the problem") {
  TempDir d;
  const fs::path bin = write_fake_cifar(d, 3);
  const std::string dir = d.str();
  auto err = [&] { return error_of([&] { load_cifar10_bin(dir, "train"); }); };

  const std::string b3 = (bin / "data_batch_3.bin").string();
  const std::string good = read_bytes(b3);
  write_bytes(b3, good.substr(0, good.size() - 100));  // truncated
  std::string msg = err();
  CHECK(contains(msg, b3));
  CHECK(contains(msg, "not a whole number of 3073-byte records"));
  write_bytes(b3, std::string(3074 * 2, '\0'));  // CIFAR-100 record size
  CHECK(contains(err(), "CIFAR-100"));
  write_bytes(b3, "");
  CHECK(contains(err(), "empty file"));
  std::string bad = good;
  bad[3073] = 10;  // record 1's label
  write_bytes(b3, bad);
  msg = err();
  CHECK(contains(msg, b3));
  CHECK(contains(msg, "record 1 has label 10"));
  fs::remove(b3);
  msg = err();
  CHECK(contains(msg, b3));
  CHECK(contains(msg, "missing"));
  CHECK(contains(msg, "fetch_data.sh cifar10"));
  write_bytes(b3, good);

  write_bytes(bin / "batches.meta.txt", "a\nb\n");
  msg = err();
  CHECK(contains(msg, "batches.meta.txt"));
  CHECK(contains(msg, "found 2"));
  write_bytes(bin / "batches.meta.txt", kMeta);

  CHECK(contains(error_of([&] { load_cifar10_bin(dir, "valid"); }), "split"));
  ImageOptions grey;
  grey.channels = 1;
  CHECK(contains(error_of([&] { load_cifar10_bin(dir, "train", grey); }), "channels must be 3"));
  CHECK(contains(error_of([&] { load_cifar10_bin((d.path / "nope").string(), "train"); }), "not found"));
  CHECK(err().empty());
}

TEST_CASE("images: image folders (PNG, grey, BMP, JPEG), sorted classes and files") {
  TempDir d;
  const fs::path r = d.path;
  // Classes created out of order; files too.
  write_png(r / "train/zebra/b.png", 8, 6, 11);
  write_png(r / "train/zebra/a.png", 8, 6, 10);
  write_png(r / "train/ant/x.png", 8, 6, 20);
  write_png(r / "train/ant/grey.png", 8, 6, 21, 1);  // 1 channel -> replicated to RGB
  write_png(r / "train/ant/rgba.PNG", 8, 6, 22, 4);  // alpha dropped; extension case-insensitive
  {
    std::vector<uint8_t> buf(8 * 6 * 3, 77);
    fs::create_directories(r / "train/mouse");
    REQUIRE(stbi_write_bmp((r / "train/mouse/m.bmp").string().c_str(), 8, 6, 3, buf.data()) != 0);
    REQUIRE(stbi_write_jpg((r / "train/mouse/n.jpg").string().c_str(), 8, 6, 3, buf.data(), 100) != 0);
  }
  write_bytes(r / "train/ant/.hidden.png", "junk");  // ignored
  write_bytes(r / "train/ant/notes.txt", "junk");    // ignored
  write_png(r / "test/ant/t.png", 8, 6, 30);
  write_png(r / "test/mouse/t.png", 8, 6, 31);
  write_png(r / "test/zebra/t.png", 8, 6, 32);

  CHECK(detect_image_layout(r.string()) == "image-folder");
  CHECK(image_folder_classes(r.string(), "train") == std::vector<std::string>{"ant", "mouse", "zebra"});
  const Dataset tr = load_image_dataset(r.string(), "train");
  tr.validate();
  CHECK(tr.size() == 7);
  CHECK(tr.sample_shape == Shape{3, 6, 8});
  CHECK(tr.class_names == std::vector<std::string>{"ant", "mouse", "zebra"});
  CHECK(tr.y == std::vector<int32_t>{0, 0, 0, 1, 1, 2, 2});
  // File order within ant: grey.png, rgba.PNG, x.png (byte order: 'g' < 'r' < 'x').
  const int64_t d3 = 3 * 6 * 8, plane = 48;
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 8; ++x) {
        const size_t at = (size_t)(k * plane + y * 8 + x);
        CHECK(tr.pixels[0 * d3 + at] == px_of(21, 0, y, x));  // grey -> all channels the same
        CHECK(tr.pixels[1 * d3 + at] == px_of(22, k, y, x));  // RGBA -> RGB
        CHECK(tr.pixels[2 * d3 + at] == px_of(20, k, y, x));
        CHECK(tr.pixels[5 * d3 + at] == px_of(10, k, y, x));  // zebra/a.png before b.png
      }
  CHECK(tr.pixels[3 * d3 + 17] == 77);                         // BMP, lossless
  CHECK(std::abs((int)tr.pixels[4 * d3 + 17] - 77) <= 2);      // JPEG q100 of a flat image
  // Grey decoding: 1 channel, RGB images converted to luminance by stb.
  ImageOptions g;
  g.channels = 1;
  const Dataset gr = load_image_folder(r.string(), "train", g);
  CHECK(gr.sample_shape == Shape{1, 6, 8});
  CHECK(gr.pixels[5] == px_of(21, 0, 0, 5));
  const Dataset te = load_image_folder(r.string(), "test");
  CHECK(te.y == std::vector<int32_t>{0, 1, 2});
  // Reproducible: a second load is identical.
  CHECK(load_image_folder(r.string(), "train").pixels == tr.pixels);
}

TEST_CASE("images: damaged image folders are refused with the file and the problem") {
  TempDir d;
  const fs::path r = d.path;
  write_png(r / "train/a/1.png", 4, 4, 1);
  write_png(r / "train/b/1.png", 4, 4, 2);
  const std::string root = r.string();
  auto err = [&](const std::string& split = "train") { return error_of([&] { load_image_folder(root, split); }); };

  std::string msg = err("test");
  CHECK(contains(msg, "missing split folder"));
  CHECK(contains(msg, "test"));
  fs::create_directories(r / "test");
  CHECK(contains(err("test"), "no class folders"));
  write_png(r / "test/a/1.png", 4, 4, 3);
  write_png(r / "test/c/1.png", 4, 4, 3);
  msg = err("test");
  CHECK(contains(msg, "differ from train"));
  CHECK(contains(msg, "'c'"));
  fs::remove_all(r / "test");

  fs::create_directories(r / "train/e");
  write_bytes(r / "train/e/readme.txt", "x");
  msg = err();
  CHECK(contains(msg, "empty class folder"));
  CHECK(contains(msg, (r / "train/e").string()));
  fs::remove_all(r / "train/e");

  write_png(r / "train/b/2.png", 5, 4, 4);
  msg = err();
  CHECK(contains(msg, (r / "train/b/2.png").string()));
  CHECK(contains(msg, "5x4"));
  CHECK(contains(msg, "expected 4x4"));
  fs::remove(r / "train/b/2.png");

  write_bytes(r / "train/b/3.jpg", "this is not a jpeg at all");
  msg = err();
  CHECK(contains(msg, (r / "train/b/3.jpg").string()));
  CHECK(contains(msg, "does not decode"));
  const std::string png = read_bytes(r / "train/a/1.png");
  write_bytes(r / "train/b/3.jpg", "");
  CHECK(contains(err(), "empty file"));
  write_bytes(r / "train/b/3.jpg", png.substr(0, png.size() / 2));  // a cut-off PNG (named .jpg: stb sniffs)
  CHECK(contains(err(), "does not decode"));
  fs::remove(r / "train/b/3.jpg");

  ImageOptions o;
  o.height = 5;
  o.width = 5;
  CHECK(contains(error_of([&] { load_image_folder(root, "train", o); }), "expected 5x5"));
  o.channels = 2;
  CHECK(contains(error_of([&] { load_image_folder(root, "train", o); }), "channels must be 1 or 3"));
  CHECK(err().empty());
}

TEST_CASE("images: SVHN .mat files written by matio, compressed and not") {
  for (bool compress : {true, false}) {
    CAPTURE(compress);
    TempDir d;
    MatSpec s;
    s.compress = compress;
    s.x_dims[3] = 12;
    s.y_n = 12;
    write_mat(d.path / "train_32x32.mat", s);
    s.x_dims[3] = 3;
    s.y_n = 3;
    write_mat(d.path / "test_32x32.mat", s);
    CHECK(detect_image_layout(d.str()) == "svhn-mat");
    const Dataset tr = load_image_dataset(d.str(), "train");
    tr.validate();
    CHECK(tr.size() == 12);
    CHECK(tr.sample_shape == Shape{3, 32, 32});
    CHECK(tr.class_names == mnist_class_names());
    for (int64_t i = 0; i < 12; ++i) CHECK(tr.y[(size_t)i] == (int32_t)(i % 10));  // 10 -> 0
    // Column-major X(h, w, c, n) lands at CHW [n][c][h][w].
    for (int64_t i : {0, 5, 11})
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t h : {0, 1, 17, 31})
          for (int64_t w : {0, 2, 30, 31}) CHECK(tr.pixels[(size_t)(i * 3072 + c * 1024 + h * 32 + w)] == px_of(i, c, h, w));
    CHECK(load_svhn(d.str(), "test").size() == 3);
  }
}

TEST_CASE("images: save_svhn_mat writes what load_svhn_mat reads back (compressed and not), atomically") {
  Dataset ds;
  ds.name = "roundtrip";
  ds.sample_shape = {3, 32, 32};
  ds.num_classes = 10;
  ds.class_names = mnist_class_names();
  const int64_t n = 13;
  ds.pixels.resize((size_t)(n * 3072));
  for (size_t k = 0; k < ds.pixels.size(); ++k) ds.pixels[k] = (uint8_t)((k * 37 + k / 1024) % 256);
  for (int64_t i = 0; i < n; ++i) ds.y.push_back((int32_t)((i * 7) % 10));  // every digit, 0 included
  for (bool compress : {true, false}) {
    CAPTURE(compress);
    TempDir d;
    const fs::path p = d.path / "train_32x32.mat";
    save_svhn_mat(p.string(), ds, compress);
    const Dataset back = load_svhn_mat(p.string());
    CHECK(back.y == ds.y);
    CHECK(back.pixels == ds.pixels);
    // Only the file itself is left (the temporary one was renamed over it).
    int64_t files = 0;
    for (const auto& e : fs::directory_iterator(d.path)) files += e.is_regular_file();
    CHECK(files == 1);
    // The digit 0 is stored as 10 in y: an independent reading of the file.
    mat_t* mat = Mat_Open(p.string().c_str(), MAT_ACC_RDONLY);
    REQUIRE(mat != nullptr);
    matvar_t* y = Mat_VarRead(mat, "y");
    REQUIRE(y != nullptr);
    CHECK(y->class_type == MAT_C_DOUBLE);
    CHECK(static_cast<const double*>(y->data)[0] == 10.0);  // ds.y[0] = 0
    CHECK(static_cast<const double*>(y->data)[1] == 7.0);
    Mat_VarFree(y);
    Mat_Close(mat);
  }
  TempDir d;
  // Not SVHN-shaped, or nowhere to write: refused, and nothing left behind.
  Dataset grey = ds;
  grey.sample_shape = {1, 32, 32};
  CHECK(contains(error_of([&] { save_svhn_mat((d.path / "x.mat").string(), grey); }), "3x32x32"));
  const std::string missing = (d.path / "no_such_dir" / "train_32x32.mat").string();
  CHECK(contains(error_of([&] { save_svhn_mat(missing, ds); }), "could not write"));
  CHECK(fs::is_empty(d.path));
}

TEST_CASE("images: damaged SVHN .mat files are refused with the file and the problem") {
  TempDir d;
  const fs::path p = d.path / "train_32x32.mat";
  const std::string dir = d.str();
  auto err = [&] { return error_of([&] { load_svhn(dir, "train"); }); };
  std::string msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "not found"));

  MatSpec s;
  s.y_n = 5;  // X has 4 images
  write_mat(p, s);
  msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "'y' is 5x1 but 'X' has 4 images"));

  s = MatSpec{};
  s.x_dims[2] = 1;  // grey
  write_mat(p, s);
  CHECK(contains(err(), "'X' is 32x32x1x4, expected 32x32x3xN"));
  s = MatSpec{};
  s.x_rank = 3;
  write_mat(p, s);
  CHECK(contains(err(), "expected 32x32x3xN"));
  s = MatSpec{};
  s.x_class = MAT_C_DOUBLE;
  write_mat(p, s);
  CHECK(contains(err(), "must be real uint8"));

  for (double bad : {0.0, 11.0, 2.5, -1.0}) {
    s = MatSpec{};
    s.y_values = {1, 2, bad, 4};
    write_mat(p, s);
    msg = err();
    CAPTURE(bad);
    CHECK(contains(msg, "label y(3)"));
    CHECK(contains(msg, "out of range"));
  }
  s = MatSpec{};
  s.write_y = false;
  write_mat(p, s);
  CHECK(contains(err(), "no readable variable 'y'"));
  s = MatSpec{};
  s.write_x = false;
  write_mat(p, s);
  CHECK(contains(err(), "no readable variable 'X'"));

  // Truncated (compressed and not) and not a .mat at all.
  for (bool compress : {true, false}) {
    s = MatSpec{};
    s.compress = compress;
    s.x_dims[3] = 40;
    s.y_n = 40;
    write_mat(p, s);
    const std::string full = read_bytes(p);
    for (size_t keep : {full.size() / 2, full.size() - 8, size_t(100), size_t(10)}) {
      CAPTURE(compress);
      CAPTURE(keep);
      write_bytes(p, full.substr(0, keep));
      msg = err();
      CHECK(contains(msg, p.string()));
      CHECK(contains(msg, "truncated"));
    }
    if (compress) {  // same length, garbage inside the zlib stream of X
      std::string bad = full;
      for (size_t i = 400; i < 700; ++i) bad[i] = (char)(i * 31);
      write_bytes(p, bad);
      msg = err();
      CHECK(contains(msg, p.string()));
      CHECK(contains(msg, "'X'"));
    }
  }
  write_bytes(p, std::string(4000, 'x'));
  CHECK(contains(err(), "not a MATLAB .mat file"));
  CHECK(contains(error_of([&] { load_svhn(dir, "valid"); }), "\"extra\""));
}

TEST_CASE("images: load_image_dataset says what it looked for") {
  TempDir d;
  std::string msg = error_of([&] { load_image_dataset(d.str(), "train"); });
  CHECK(contains(msg, d.str()));
  CHECK(contains(msg, "holds no image data set"));
  CHECK(contains(msg, "fetch_data.sh cifar10"));
  CHECK(detect_image_layout(d.str()).empty());
  CHECK(contains(error_of([&] { load_image_dataset((d.path / "nope").string(), "train"); }), "not found"));
}

namespace {
const fs::path kSharedCifar = fs::path(QNN_SOURCE_ROOT) / ".." / "shared" / "data" / "cifar-10-images.tar.gz";
}

TEST_CASE("images: the real CIFAR-10 JPEG copy, if present" *
          doctest::skip(!fs::exists(kSharedCifar))) {
  TempDir d;
  // A few images of three classes and both splits (tar reads the archive once).
  const std::string cmd = "tar -xzf '" + kSharedCifar.string() + "' -C '" + d.str() +
                          "' --wildcards 'train/airplane/00[0-4]?.jpg' 'train/cat/00[0-4]?.jpg' "
                          "'train/truck/00[0-4]?.jpg' 'test/airplane/000?.jpg' 'test/cat/000?.jpg' "
                          "'test/truck/000?.jpg' 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const Dataset tr = load_image_dataset(d.str(), "train");
  tr.validate();
  CHECK(tr.size() == 150);
  CHECK(tr.sample_shape == Shape{3, 32, 32});
  CHECK(tr.class_names == std::vector<std::string>{"airplane", "cat", "truck"});
  const Dataset te = load_image_dataset(d.str(), "test");
  CHECK(te.size() == 30);
  // Real photos: a spread of pixel values, and means in a plausible range.
  ImageOptions o;
  o.scale = PixelScale::ZeroToOne;
  auto [mean, sd] = channel_mean_std(load_image_folder(d.str(), "train", o));
  for (int c = 0; c < 3; ++c) {
    CHECK(mean[(size_t)c] > 0.3f);
    CHECK(mean[(size_t)c] < 0.7f);
    CHECK(sd[(size_t)c] > 0.15f);
  }
  const auto [mn, mx] = std::minmax_element(tr.pixels.begin(), tr.pixels.end());
  CHECK(*mn < 10);
  CHECK(*mx > 245);
}
