// core/fileio.h — small file helpers shared by checkpoints, exports and apps.
#pragma once

#include <string>

namespace qnn {

// Write `bytes` to `path` atomically: write a temporary file in the same
// directory, flush and fsync it, then rename() over the target. A crash or a
// full disk never leaves a half-written file under the final name, and an
// existing file is only replaced once the new one is complete.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Whole file into a string; throws qnn::Error naming the path on failure.
std::string read_file(const std::string& path);

}  // namespace qnn
