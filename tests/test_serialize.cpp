// Checkpoints: round trip, atomic replace, refusal of bad files.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/fileio.h"
#include "core/serialize.h"

using namespace qnn;
namespace fs = std::filesystem;

static fs::path scratch_dir() { return fs::temp_directory_path() / ("qnn_test_ser_" + std::to_string(::getpid())); }

// Removed when the test program exits, so runs leave nothing in the temp folder.
static const struct RemoveScratch {
  ~RemoveScratch() {
    std::error_code ec;
    fs::remove_all(scratch_dir(), ec);
  }
} remove_scratch;

static std::string tmp_path(const std::string& name) {
  const fs::path d = scratch_dir();
  fs::create_directories(d);
  return (d / name).string();
}

TEST_CASE("save/load round trip keeps names, shapes and values") {
  NamedTensors t = {{"0.weight", Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6})},
                    {"1.running_var", Tensor::from_vector({3}, {0.5f, -1e-30f, 7})},
                    {"s", Tensor::scalar(4.f)}};
  const std::string p = tmp_path("rt.qnn");
  save_tensors(p, t);
  NamedTensors l = load_tensors(p);
  REQUIRE(l.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(l[i].first == t[i].first);
    CHECK(l[i].second.shape() == t[i].second.shape());
    CHECK(l[i].second.to_vector() == t[i].second.to_vector());
  }
  NamedTensors dest = {{"0.weight", Tensor::zeros({2, 3})}, {"1.running_var", Tensor::zeros({3})}, {"s", Tensor::zeros({})}};
  assign_tensors(dest, l, p);
  CHECK(dest[0].second.at({1, 2}) == 6.f);
}

TEST_CASE("assign refuses missing names, wrong shapes and extra tensors") {
  const std::string p = tmp_path("m.qnn");
  save_tensors(p, {{"w", Tensor::zeros({2, 2})}});
  NamedTensors l = load_tensors(p);
  NamedTensors wrong_name = {{"v", Tensor::zeros({2, 2})}};
  CHECK_THROWS_WITH_AS(assign_tensors(wrong_name, l, p), doctest::Contains("no tensor 'v'"), Error);
  NamedTensors wrong_shape = {{"w", Tensor::zeros({2, 3})}};
  CHECK_THROWS_WITH_AS(assign_tensors(wrong_shape, l, p), doctest::Contains("'w' is [2, 2] but the model expects [2, 3]"),
                       Error);
  NamedTensors fewer = {};
  CHECK_THROWS_WITH_AS(assign_tensors(fewer, l, p), doctest::Contains("does not"), Error);
}

TEST_CASE("corrupt, truncated, foreign and wrong-version files are refused") {
  const std::string p = tmp_path("c.qnn");
  save_tensors(p, {{"w", Tensor::full({16}, 1.f)}});
  std::string bytes = read_file(p);
  {  // flip one data byte
    std::string b = bytes;
    b[b.size() - 10] ^= 0x40;
    write_file_atomic(p, b);
    CHECK_THROWS_WITH_AS(load_tensors(p), doctest::Contains("CRC"), Error);
  }
  {  // truncated
    write_file_atomic(p, bytes.substr(0, bytes.size() / 2));
    CHECK_THROWS_AS(load_tensors(p), Error);
  }
  {  // not a checkpoint
    write_file_atomic(p, "hello world, this is not a model file");
    CHECK_THROWS_WITH_AS(load_tensors(p), doctest::Contains("bad magic"), Error);
  }
  {  // other version (2 is the metadata format, see below)
    std::string b = bytes;
    b[8] = 7;
    write_file_atomic(p, b);
    CHECK_THROWS_WITH_AS(load_tensors(p), doctest::Contains("version 7"), Error);
  }
  CHECK_THROWS_WITH_AS(load_tensors(tmp_path("missing.qnn")), doctest::Contains("cannot open"), Error);
}

TEST_CASE("atomic write replaces the old file only when complete") {
  const std::string p = tmp_path("a.qnn");
  write_file_atomic(p, "old");
  write_file_atomic(p, "new contents");
  CHECK(read_file(p) == "new contents");
  // Writing into a directory that does not exist fails and leaves nothing behind.
  CHECK_THROWS_AS(write_file_atomic(tmp_path("nodir/x.qnn"), "x"), Error);
  for (auto& e : fs::directory_iterator(fs::path(p).parent_path()))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

// ---- metadata (checkpoint format version 2) ----------------------------------------

// A checkpoint written by the code before metadata existed (format version 1):
// tensors w [2, 2] = {1.5, -2, 0.25, 3} and b [1] = {-0.5}. Kept as bytes so the
// test does not depend on today's writer.
static const std::string kOldCheckpoint(
    "\x51\x4e\x4e\x43\x4b\x50\x54\x00\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x77\x02\x00\x00"
    "\x00\x02\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc0\x3f\x00\x00\x00"
    "\xc0\x00\x00\x80\x3e\x00\x00\x40\x40\x01\x00\x00\x00\x62\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\xbf\xb0\x91\xdd\x6e",
    82);

TEST_CASE("checkpoint metadata: round trip, and no metadata writes the old format byte for byte") {
  const NamedTensors t = {{"w", Tensor::from_vector({2, 2}, {1.5f, -2.f, 0.25f, 3.f})},
                          {"b", Tensor::from_vector({1}, {-0.5f})}};
  const std::string p = tmp_path("meta.qnn");
  // JSON-like text with non-ASCII UTF-8 (core does not parse it).
  const std::string meta = "{\"dataset\":\"fashion-mnist\",\"class_names\":[\"T-shirt/top\",\"Ankle boot\"],\"x\":\"\xc3\xa9\xe2\x82\xac\"}";
  save_tensors(p, t, meta);
  std::string got = "unset";
  NamedTensors l = load_tensors(p, &got);
  CHECK(got == meta);
  CHECK(load_meta(p) == meta);
  REQUIRE(l.size() == 2);
  CHECK(l[0].first == "w");
  CHECK(l[0].second.to_vector() == t[0].second.to_vector());
  CHECK(l[1].second.to_vector() == t[1].second.to_vector());
  CHECK(read_file(p).substr(8, 4) == std::string("\x02\x00\x00\x00", 4));  // version 2: has metadata

  save_tensors(p, t);  // no metadata: version 1, exactly what earlier builds wrote
  CHECK(read_file(p) == kOldCheckpoint);
  got = "unset";
  load_tensors(p, &got);
  CHECK(got.empty());
  CHECK(load_meta(p).empty());
}

TEST_CASE("checkpoint metadata: a file written before metadata existed still loads") {
  const std::string p = tmp_path("old.qnn");
  write_file_atomic(p, kOldCheckpoint);
  std::string meta = "unset";
  NamedTensors l = load_tensors(p, &meta);
  CHECK(meta.empty());
  REQUIRE(l.size() == 2);
  CHECK(l[0].first == "w");
  CHECK(l[0].second.shape() == Shape{2, 2});
  CHECK(l[0].second.to_vector() == std::vector<float>{1.5f, -2.f, 0.25f, 3.f});
  CHECK(l[1].first == "b");
  CHECK(l[1].second.to_vector() == std::vector<float>{-0.5f});
}

TEST_CASE("checkpoint metadata: damaged, truncated or invalid metadata is refused with the file named") {
  const std::string p = tmp_path("badmeta.qnn");
  const std::string meta = "{\"dataset\":\"mnist\"}";
  save_tensors(p, {{"w", Tensor::full({3}, 2.f)}}, meta);
  const std::string good = read_file(p);
  auto fix_crc = [](std::string& b) {
    const uint32_t c = (uint32_t)crc32(0L, reinterpret_cast<const Bytef*>(b.data()), (uInt)(b.size() - 4));
    std::memcpy(b.data() + b.size() - 4, &c, 4);
  };
  auto load_err = [&](const std::string& bytes) -> std::string {
    write_file_atomic(p, bytes);
    try {
      load_tensors(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  REQUIRE(load_err(good).empty());
  SUBCASE("a flipped metadata byte: CRC") {
    std::string b = good;
    b[12 + 4 + 3] ^= 0x01;
    const std::string e = load_err(b);
    CHECK_MESSAGE(e.find("CRC mismatch") != std::string::npos, e);
    CHECK(e.find(p) != std::string::npos);
  }
  SUBCASE("cut inside the metadata") {
    const std::string e = load_err(good.substr(0, 12 + 4 + meta.size() / 2));
    CHECK_MESSAGE(e.find(p) != std::string::npos, e);
    CHECK(!e.empty());
    CHECK_THROWS_AS(load_meta(p), Error);
  }
  SUBCASE("a metadata length that runs past the end (CRC recomputed)") {
    std::string b = good;
    const uint32_t len = 1000;
    std::memcpy(b.data() + 12, &len, 4);
    fix_crc(b);
    const std::string e = load_err(b);
    CHECK_MESSAGE(e.find("bad metadata block (length 1000") != std::string::npos, e);
    CHECK(e.find(p) != std::string::npos);
  }
  SUBCASE("an empty metadata block (version 2 always has some)") {
    std::string b = good;
    const uint32_t len = 0;
    std::memcpy(b.data() + 12, &len, 4);
    fix_crc(b);
    CHECK(load_err(b).find("bad metadata block (length 0") != std::string::npos);
  }
  SUBCASE("metadata that is not UTF-8 (CRC recomputed)") {
    std::string b = good;
    b[12 + 4 + 2] = '\xff';
    fix_crc(b);
    const std::string e = load_err(b);
    CHECK_MESSAGE(e.find("bad metadata block: the metadata is not valid UTF-8 (byte 0xff at offset 2)") !=
                      std::string::npos,
                  e);
    CHECK(e.find(p) != std::string::npos);
    CHECK_THROWS_WITH_AS(load_meta(p), doctest::Contains("UTF-8"), Error);
  }
  SUBCASE("a newer version") {
    std::string b = good;
    b[8] = 3;
    CHECK(load_err(b).find("version 3, this build reads versions 1 and 2") != std::string::npos);
  }
  // Metadata the writer must refuse (and leave the old file in place).
  write_file_atomic(p, good);
  CHECK_THROWS_WITH_AS(save_tensors(p, {{"w", Tensor::zeros({1})}}, std::string("a\0b", 3)),
                       doctest::Contains("NUL byte"), Error);
  CHECK_THROWS_WITH_AS(save_tensors(p, {{"w", Tensor::zeros({1})}}, "\xc0\xaf"), doctest::Contains("UTF-8"), Error);
  CHECK_THROWS_WITH_AS(save_tensors(p, {{"w", Tensor::zeros({1})}}, "\xed\xa0\x80"), doctest::Contains("UTF-8"),
                       Error);  // a UTF-16 surrogate
  CHECK_THROWS_WITH_AS(save_tensors(p, {{"w", Tensor::zeros({1})}}, std::string((1 << 20) + 1, 'x')),
                       doctest::Contains("at most 1048576"), Error);
  CHECK(read_file(p) == good);
}
