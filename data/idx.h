// data/idx.h — the IDX file format (MNIST, Fashion-MNIST), raw or gzip'd.
//
// An IDX file is a big-endian header followed by the elements, row-major:
//
//   bytes 0-1   0x00 0x00
//   byte  2     element type; qnn reads only 0x08 = unsigned byte
//   byte  3     number of dimensions, nd
//   then nd x   uint32 big-endian dimension sizes
//   then        prod(dims) bytes of data, and nothing after them
//
// So MNIST images have magic 0x00000803 (uint8, 3 dims: N x 28 x 28) and
// labels 0x00000801 (uint8, 1 dim: N).
//
// Every file is opened through zlib's gzopen, which reads gzip'd and plain
// files alike, so `foo` and `foo.gz` are the same to the reader. Errors are
// qnn::Error messages that start with the file path and say what is wrong
// (missing, bad magic, wrong number of dimensions, truncated, trailing bytes,
// label out of range).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"  // qnn::Shape, qnn::Error

namespace qnn {

struct IdxArray {
  Shape shape;                // e.g. {60000, 28, 28}
  std::vector<uint8_t> data;  // shape_numel(shape) bytes, row-major
  std::string path;           // the file it came from (for later messages)
};

// Reads a uint8 IDX file (raw or gzip'd). expected_ndim < 0 accepts any
// number of dimensions; otherwise a different count is an error.
IdxArray read_idx(const std::string& path, int expected_ndim = -1);

// read_idx with the checks for an image file (3 dims: N x H x W).
IdxArray read_idx_images(const std::string& path);

// read_idx with the checks for a label file (1 dim: N, every label < num_classes).
IdxArray read_idx_labels(const std::string& path, int num_classes = 10);

// The path of `basename` or, if that doesn't exist, `basename.gz` in `dir`;
// "" if neither exists (callers give the error, with a hint how to fetch).
std::string find_idx(const std::string& dir, const std::string& basename);

// The bytes of an IDX file holding `data` with `shape` (uint8 elements).
std::string encode_idx(const Shape& shape, const std::vector<uint8_t>& data);

// Writes an IDX file; gzip'd when `path` ends in ".gz". Used by the tests to
// make small files, and handy to export a subset.
void write_idx(const std::string& path, const Shape& shape, const std::vector<uint8_t>& data);

}  // namespace qnn
