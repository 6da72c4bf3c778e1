// tests/test_data_fuzz.cpp — what the fuzzers of tests/fuzz/ found in the
// image readers, kept as regression tests on small crafted files: each hostile
// file must give a qnn::Error naming the file, before anything is allocated
// from its numbers. The inputs the fuzzers saved are in the seed corpora too
// (tests/fuzz/corpus/fuzz_svhn_mat/huge_y_dims.mat, fuzz_image/dht_overflow.jpg).
#include <doctest/doctest.h>
#include <zlib.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "tests/data_test_util.h"
#include "data/image_folder.h"
#include "data/images.h"
#include "data/svhn.h"

namespace fs = std::filesystem;
using namespace qnn;

namespace {

// This file's scratch directories.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("qnn_test_fuzz") {}
};
using test::contains;
using test::error_of;
using test::write_bytes;


std::string le32(uint32_t v) { return {(char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)}; }
std::string be32(uint32_t v) { return {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v}; }

// --- MATLAB v5, uncompressed (as tests/fuzz/make_corpus.py writes it) -------------
std::string mat_element(uint32_t type, const std::string& data) {
  if (!data.empty() && data.size() <= 4 && type != 14)  // small data element
    return std::string{(char)type, 0, (char)data.size(), 0} + data + std::string(4 - data.size(), '\0');
  return le32(type) + le32((uint32_t)data.size()) + data + std::string((8 - data.size() % 8) % 8, '\0');
}
std::string mat_matrix(const std::string& name, uint32_t cls, const std::vector<uint32_t>& dims, uint32_t dtype,
                       const std::string& data) {
  std::string d;
  for (uint32_t x : dims) d += le32(x);
  const std::string body = mat_element(6, le32(cls) + le32(0)) + mat_element(5, d) + mat_element(1, name) +
                           mat_element(dtype, data);
  return le32(14) + le32((uint32_t)body.size()) + body;
}
std::string mat_file(const std::string& vars) {
  std::string head = "MATLAB 5.0 MAT-file, written by qnn tests/test_data_fuzz.cpp";
  head.resize(116, ' ');
  return head + std::string(8, '\0') + std::string{0x00, 0x01, 'I', 'M'} + vars;
}
std::string one_image() { return std::string(3072, '\x07'); }
std::string label_one() {  // the double 1.0
  const double v = 1.0;
  return std::string(reinterpret_cast<const char*>(&v), 8);
}

// --- a PNG of one IHDR (stb_image ignores CRCs; they are right anyway) ----------
std::string png_header(uint32_t w, uint32_t h) {
  const std::string ihdr = "IHDR" + be32(w) + be32(h) + std::string{8, 2, 0, 0, 0};
  const uint32_t crc = (uint32_t)crc32(0, reinterpret_cast<const Bytef*>(ihdr.data()), (uInt)ihdr.size());
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + ihdr + be32(crc);
}

// The input fuzz_image saved (fuzz-findings/fuzz_image/crash-bfec7e80...): a
// JPEG whose second Huffman table declares 0x14 + 0x10 + 0xFF + 0xFF + ... codes.
// stb_image 2.27 wrote past its 257-entry size list (UBSan: index 257 out of bounds).
const unsigned char kDhtOverflow[] = {
    0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0xe2, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0xff,
    0xc0, 0x00, 0x11, 0x08, 0x00, 0x08, 0x00, 0x08, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00,
    0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xc4, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03,
    0x00, 0x00, 0x3f, 0x00, 0x03, 0xff, 0xd9};

// A valid baseline 8x8 grey JPEG (make_corpus.py's jpeg(1)): one-code Huffman
// tables, one all-zero block. `ac_counts` / `ac_symbols` replace the AC table's 16 counts.
std::string tiny_jpeg(const std::string& ac_counts = std::string(1, '\x01') + std::string(15, '\0'),
                      const std::string& ac_symbols = std::string(1, '\0')) {
  std::string s = "\xff\xd8";
  s += std::string("\xff\xdb\x00\x43\x00", 5) + std::string(64, '\x01');
  s += std::string("\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00", 13);
  s += std::string("\xff\xc4\x00\x14\x00\x01", 6) + std::string(15, '\0') + std::string(1, '\0');
  const size_t len = 2 + 1 + 16 + ac_symbols.size();
  s += std::string("\xff\xc4", 2) + std::string{(char)(len >> 8), (char)len, 0x10} + ac_counts + ac_symbols;
  s += std::string("\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00", 10);
  s += std::string("\x3f\xff\xd9", 3);  // '0' DC + '0' EOB, padded with ones
  return s;
}

}  // namespace

TEST_CASE("fuzz findings: SVHN .mat dimensions are checked against the file before matio allocates") {
  TempDir d;
  const fs::path p = d.path / "train_32x32.mat";
  const std::string dir = d.path.string();
  auto err = [&] { return error_of([&] { load_svhn(dir, "train"); }); };
  // A kept fuzz input (tests/fuzz/corpus/fuzz_svhn_mat/NAME) as the file: its message.
  auto finding_error = [&](const std::string& name) {
    const fs::path f = fs::path(QNN_SOURCE_ROOT) / "tests/fuzz/corpus/fuzz_svhn_mat" / name;
    REQUIRE(fs::exists(f));
    fs::copy_file(f, p, fs::copy_options::overwrite_existing);
    return err();
  };
  // The control: one image, one label, read fine.
  write_bytes(p, mat_file(mat_matrix("X", 9, {32, 32, 3, 1}, 2, one_image()) + mat_matrix("y", 6, {1, 1}, 9, label_one())));
  CHECK(err().empty());
  // No images at all: 32x32x3x0 holds nothing, however small the file.
  write_bytes(p, mat_file(mat_matrix("X", 9, {32, 32, 3, 0}, 2, "") + mat_matrix("y", 6, {0, 1}, 9, "")));
  CHECK(err().empty());
  // What fuzz_svhn_mat found: y claims 704643073 x 1 doubles (5.6 GB) in a 3 KB file.
  write_bytes(p, mat_file(mat_matrix("X", 9, {32, 32, 3, 1}, 2, one_image()) +
                          mat_matrix("y", 6, {704643073u, 1}, 9, label_one())));
  std::string msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "'y' is 704643073x1 but 'X' has 1 images"));
  // Both agree on the lie: the size check says so, naming the variable.
  write_bytes(p, mat_file(mat_matrix("X", 9, {32, 32, 3, 100000000u}, 2, one_image()) +
                          mat_matrix("y", 6, {100000000u, 1}, 9, label_one())));
  msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "variable 'X' claims 32x32x3x100000000"));
  CHECK(contains(msg, "more than a"));
  // What fuzz_svhn_mat found next: X's dimension list declares 0x40000010 bytes
  // (matio asked for 2 GB for it, in a 248-byte file). Byte 156: the count of
  // the dimensions element (header 128, matrix tag 8, array flags 16, its type 4).
  std::string bad = mat_file(mat_matrix("X", 9, {32, 32, 3, 1}, 2, one_image()) + mat_matrix("y", 6, {1, 1}, 9, label_one()));
  REQUIRE(bad.substr(152, 8) == le32(5) + le32(16));
  bad.replace(156, 4, le32(0x40000010u));
  write_bytes(p, bad);
  msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "declares 1073741840 bytes of dimensions"));
  // Dimensions whose product overflows 64 bits.
  write_bytes(p, mat_file(mat_matrix("X", 9, {32, 32, 3, 1}, 2, one_image()) +
                          mat_matrix("y", 6, {1, 1}, 9, label_one()) +
                          mat_matrix("z", 6, {0xFFFFFFFFu, 0xFFFFFFFFu}, 9, label_one())));
  CHECK(err().empty());  // a variable we never read is not allocated either
  // What a 10-minute fuzz_svhn_mat run found (tests/fuzz/corpus/fuzz_svhn_mat/
  // finding-cell_dims.mat): a compressed variable of a non-numeric class, whose
  // header alone made matio ask for 3.2 GB. Here: X as a cell array (class 1).
  write_bytes(p, mat_file(mat_matrix("X", 1, {32, 32, 3, 1}, 2, one_image()) + mat_matrix("y", 6, {1, 1}, 9, label_one())));
  msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "of MATLAB class 1"));
  msg = finding_error("finding-cell_dims.mat");
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "of MATLAB class"));
  // What the session-6 10-minute run found (finding-bad_version.mat): a
  // 128-byte header whose version field is neither 5 nor 7.3; matio's
  // fallback reader spent seconds zeroing a buffer sized from its first bytes.
  std::string header = mat_file("");
  REQUIRE(header.size() == 128);
  header.replace(124, 2, "WW");
  write_bytes(p, header);
  msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "header version 0x5757"));
  CHECK(contains(finding_error("finding-bad_version.mat"), "header version"));
  // And the next (finding-dims_type.mat): y's dimension list stored with
  // data type 104 instead of miINT32 (5); matio read its bytes as
  // dimensions anyway and asked for 3.2 GB. Byte 152 of the control file is
  // the type of X's dimensions element.
  std::string typed = mat_file(mat_matrix("X", 9, {32, 32, 3, 1}, 2, one_image()) + mat_matrix("y", 6, {1, 1}, 9, label_one()));
  REQUIRE(typed.substr(152, 4) == le32(5));
  typed.replace(152, 4, le32(104));
  write_bytes(p, typed);
  msg = err();
  CHECK(contains(msg, p.string()));
  CHECK(contains(msg, "stores its dimensions as data type 104 (the format says 5)"));
  CHECK(contains(finding_error("finding-dims_type.mat"), "stores its dimensions as data type 104"));
}

TEST_CASE("fuzz findings: hostile JPEG, PNG and BMP headers are refused before stb_image allocates or overruns") {
  TempDir d;
  const fs::path r = d.path;
  const std::string root = r.string();
  auto err = [&] { return error_of([&] { load_image_folder(root, "train"); }); };
  const fs::path img = r / "train/a/x.jpg";

  write_bytes(img, tiny_jpeg());
  REQUIRE(err().empty());  // the control decodes

  // What fuzz_image found (UBSan in stb's Huffman builder).
  write_bytes(img, std::string(reinterpret_cast<const char*>(kDhtOverflow), sizeof kDhtOverflow));
  std::string msg = err();
  CHECK(contains(msg, img.string()));
  CHECK(contains(msg, "Huffman table (DHT) has more codes of length 4 than exist"));  // 255 of them
  // The same fault in a table that is otherwise well formed: 257 codes fit the
  // code space but not stb's 256-entry tables.
  std::string counts(16, '\0');
  counts[8] = (char)200;  // 200 codes of length 9 ...
  counts[9] = (char)57;   // ... and 57 of length 10: 257 symbols, code space still free
  write_bytes(img, tiny_jpeg(counts, std::string(257, '\0')));
  msg = err();
  CHECK(contains(msg, "declares 257 codes, more than 256"));
  counts.assign(16, '\0');
  counts[0] = 3;  // three codes of length 1: more than exist
  write_bytes(img, tiny_jpeg(counts, std::string(3, '\0')));
  CHECK(contains(err(), "more codes of length 1 than exist"));
  // What fuzz_image found in session 8 (UBSan: stb read 1.8 KB past a
  // 257-byte array): a scan whose AC table no DHT defines. The kept input,
  // and the same fault in the control (its AC table filed as DC table 1).
  fs::copy_file(fs::path(QNN_SOURCE_ROOT) / "tests/fuzz/corpus/fuzz_image/finding-undefined_ac_table.jpg", img,
                fs::copy_options::overwrite_existing);
  CHECK(contains(err(), "a scan uses AC Huffman table 0, which no DHT before it defines"));
  std::string no_ac = tiny_jpeg();
  const size_t ac_at = no_ac.find(std::string("\xff\xc4\x00\x14\x10", 5));
  REQUIRE(ac_at != std::string::npos);
  no_ac[ac_at + 4] = 0x01;
  write_bytes(img, no_ac);
  CHECK(contains(err(), "a scan uses AC Huffman table 0, which no DHT before it defines"));
  // Cut off: a segment past the end, and no end-of-image marker.
  const std::string ok = tiny_jpeg();
  write_bytes(img, ok.substr(0, 30));
  CHECK(contains(err(), "the file ends"));
  write_bytes(img, ok.substr(0, ok.size() - 2));
  CHECK(contains(err(), "truncated"));

  // Formats stb_image would decode but we never asked for (GIF named .jpg).
  write_bytes(img, std::string("GIF89a\x01\x00\x01\x00\x80\x00\x00", 13));
  CHECK(contains(err(), "not a PNG, JPEG or BMP"));

  // A 45-byte PNG claiming 16384 x 16384 RGB (768 MiB): refused from its header.
  fs::remove(img);
  const fs::path png = r / "train/a/x.png";
  write_bytes(png, png_header(16384, 16384) + be32(0) + "IEND" + be32(0xAE426082u));
  msg = err();
  CHECK(contains(msg, png.string()));
  CHECK(contains(msg, "16384x16384"));
  CHECK(contains(msg, "more than a PNG of"));
  // What fuzz_image found next: a 2 x 1 PNG whose IDAT chunk declares 0x4700000D
  // bytes (stb_image allocates that much before reading it).
  write_bytes(png, png_header(2, 1) + be32(0x4700000Du) + "IDAT" + std::string(20, '\0') + be32(0) + "IEND" +
                       be32(0xAE426082u));
  msg = err();
  CHECK(contains(msg, png.string()));
  CHECK(contains(msg, "declares 1191182349 bytes"));
  write_bytes(png, png_header(2, 1));  // no IEND: cut off
  CHECK(contains(err(), "PNG ends without its IEND chunk"));
  // A BMP header claiming 20000 x 20000 at 24 bits, and nothing else.
  fs::remove(png);
  const fs::path bmp = r / "train/a/x.bmp";
  write_bytes(bmp, "BM" + le32(54) + le32(0) + le32(54) + le32(40) + le32(20000) + le32(20000) +
                       std::string{1, 0, 24, 0} + std::string(24, '\0'));
  msg = err();
  CHECK(contains(msg, bmp.string()));
  CHECK(contains(msg, "more than a BMP of 54 bytes"));
}

TEST_CASE("fuzz findings: every image file must be able to hold the data set's image size before pixels are allocated") {
  TempDir d;
  const fs::path r = d.path;
  const std::string root = r.string();
  // A real 512 x 512 grey PNG (one colour: it deflates to a few hundred bytes) fixes the size...
  std::vector<uint8_t> px(512 * 512, 77);
  fs::create_directories(r / "train/a");
  REQUIRE(stbi_write_png((r / "train/a/1.png").string().c_str(), 512, 512, 1, px.data(), 512) != 0);
  CHECK(error_of([&] { load_image_folder(root, "train"); }).empty());
  // ...then a 20-byte file cannot be such an image: refused by its size alone.
  write_bytes(r / "train/b/2.png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(12, '\0'));
  const std::string msg = error_of([&] { load_image_folder(root, "train"); });
  CHECK(contains(msg, (r / "train/b/2.png").string()));
  CHECK(contains(msg, "20 bytes cannot hold a 512x512 (WxH) image"));
  // A size given by the caller is bounded too.
  ImageOptions o;
  o.height = 1 << 20;
  o.width = 1 << 20;
  CHECK(contains(error_of([&] { load_image_folder(root, "train", o); }), "pixels"));
}
