// data/svhn.h — SVHN's cropped digits, the official train_32x32.mat /
// test_32x32.mat (/ extra_32x32.mat), read with libmatio.
//
// Each file is MATLAB v5 (the official ones are compressed; v7.3 works too)
// with two variables:
//   X  32 x 32 x 3 x N uint8, MATLAB column-major: X(h, w, c, n) is byte
//      h + 32 w + 1024 c + 3072 n of the data; it is transposed to CHW here.
//   y  N x 1 (double in the official files; any real numeric class is
//      accepted), integers 1..10, where 10 means the digit 0: label = y mod 10.
// Refused: a file that is not a .mat or does not read (truncated, corrupt),
// a missing X or y, X not uint8 or not 32 x 32 x 3 x N, y not N x 1 (or 1 x N)
// for the same N, or a y value that is not an integer in 1..10. X's and y's
// class and dimensions are read (Mat_VarReadInfo) and checked, also against
// what the file's size can hold, before matio allocates anything for them.
#pragma once

#include <string>

#include "data/images.h"

namespace qnn {

// Loads DIR/<split>_32x32.mat, split "train", "test" or "extra"; class
// names "0".."9". opt.channels must be 3.
Dataset load_svhn(const std::string& dir, const std::string& split, const ImageOptions& opt = {});

// Reads one .mat file (the loader above minus the file-name convention).
Dataset load_svhn_mat(const std::string& path, const ImageOptions& opt = {});

// Writes a pixel Dataset of 3 x 32 x 32 images with labels 0..9 as an SVHN
// .mat file of the official layout (X 32x32x3xN uint8, y Nx1 double, the digit
// 0 stored as 10), MATLAB v5, zlib-compressed unless `compress` is false.
// Atomic: matio writes a temporary file beside `path`, renamed over it once
// complete. load_svhn_mat reads it back to the same pixels and labels; the
// same Dataset always gives the same bytes (no date in the header).
void save_svhn_mat(const std::string& path, const Dataset& ds, bool compress = true);

}  // namespace qnn
