// Checkpoints: round trip, atomic replace, refusal of bad files.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "core/fileio.h"
#include "core/serialize.h"

using namespace qnn;
namespace fs = std::filesystem;

static std::string tmp_path(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qnn_test_ser_" + std::to_string(::getpid()));
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
  {  // other version
    std::string b = bytes;
    b[8] = 2;
    write_file_atomic(p, b);
    CHECK_THROWS_WITH_AS(load_tensors(p), doctest::Contains("version 2"), Error);
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
