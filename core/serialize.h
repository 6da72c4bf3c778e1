// core/serialize.h — named tensors (and an optional metadata string) to and
// from a versioned binary file.
//
// Checkpoint format (little-endian):
//   magic    8 bytes  "QNNCKPT\0"
//   version  u32      1 (no metadata) or 2 (with metadata)
//   version 2 only:
//     meta_len u32    bytes of metadata, 1 .. 2^20
//     meta     bytes  UTF-8 text, no NUL (apps store JSON; core does not parse it)
//   count    u32      number of tensors
//   then per tensor:
//     name_len u32, name bytes (UTF-8, no NUL)
//     ndim     u32, dims i64 * ndim
//     data     f32 * prod(dims)
//   crc32    u32      zlib CRC-32 of every byte before it (metadata included)
// A checkpoint without metadata is written as version 1, byte for byte what
// earlier builds wrote, so they can still read it; version 2 exists only for
// files that carry metadata. Files are written atomically (temporary file +
// rename), so an interrupted save never destroys the previous checkpoint.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qnn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// `meta`: opaque text stored with the tensors (empty: none, version 1 file).
// The rule is the .qnnx files' (kernels/packed_model.h meta_problem): at most
// kernels::kMaxMetaBytes (1 MiB), valid UTF-8, no NUL; else qnn::Error.
void save_tensors(const std::string& path, const NamedTensors& tensors, const std::string& meta = "");
// Throws qnn::Error naming the file and the problem. If `meta` is given it
// receives the stored metadata ("" for a file without any).
NamedTensors load_tensors(const std::string& path, std::string* meta = nullptr);
// Only the metadata ("" if none); the whole file is still checked (CRC).
std::string load_meta(const std::string& path);

// Copy loaded values into `dest` (e.g. a model's state()). Every name in dest
// must be present with the same shape; extra names in the file are an error
// too (they signal a different model). Messages name the offending tensor.
void assign_tensors(NamedTensors& dest, const NamedTensors& loaded, const std::string& path);

}  // namespace qnn
