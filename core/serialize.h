// core/serialize.h — named tensors to and from a versioned binary file.
//
// Checkpoint format (little-endian), version 1:
//   magic    8 bytes  "QNNCKPT\0"
//   version  u32      1
//   count    u32      number of tensors
//   then per tensor:
//     name_len u32, name bytes (UTF-8, no NUL)
//     ndim     u32, dims i64 * ndim
//     data     f32 * prod(dims)
//   crc32    u32      zlib CRC-32 of every byte before it
// Files are written atomically (temporary file + rename), so an interrupted
// save never destroys the previous checkpoint.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qnn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

void save_tensors(const std::string& path, const NamedTensors& tensors);
NamedTensors load_tensors(const std::string& path);  // throws qnn::Error naming the problem

// Copy loaded values into `dest` (e.g. a model's state()). Every name in dest
// must be present with the same shape; extra names in the file are an error
// too (they signal a different model). Messages name the offending tensor.
void assign_tensors(NamedTensors& dest, const NamedTensors& loaded, const std::string& path);

}  // namespace qnn
