// apps/common/model_meta.h — what a saved model was trained on, stored with it.
//
// A checkpoint (core/serialize.h) and a .qnnx export (kernels/packed_model.h)
// each carry an opaque metadata string; the apps put this JSON object in it:
//
//   {"dataset": "fashion-mnist",          the app's --dataset name
//    "input_shape": [784],                one sample's shape
//    "classes": 10,                       number of classes
//    "class_names": ["T-shirt/top", ...], one name per class
//    "arch": {...}}                       the app's architecture / training
//                                         flags (free-form, e.g. its config JSON)
//
// Why: the files cannot tell MNIST from Fashion-MNIST (same layout, same
// sizes), so without it a Fashion-MNIST model run on MNIST reports ~8 %
// accuracy without a word. With it, loading a model checks the data against
// what the model was trained on and refuses a mismatch (unless the user
// overrides it), and qnn_infer picks the right data set by itself.
//
// Files written before metadata existed have none; they load with a one-line
// note, unchecked.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "data/dataset.h"

namespace qnn::app {

// The metadata object for a model trained on `train` (its sample_shape,
// num_classes and class_names; class names fall back to the MNIST /
// Fashion-MNIST tables when the dataset has none). `dataset_name` is the
// app's --dataset value (e.g. "mnist", "fashion-mnist"); `arch` is stored
// as given. Throws qnn::Error if dataset_name is empty or the dataset has
// no classes.
nlohmann::json make_model_meta(const Dataset& train, const std::string& dataset_name, nlohmann::json arch);

// Stored metadata text (load_meta / load_tensors(path, &meta) /
// PackedModel::meta) as JSON: null for "" (a file written before metadata
// existed). Throws qnn::Error naming `what` (e.g. the file) if the text is
// not a JSON object.
nlohmann::json parse_model_meta(const std::string& text, const std::string& what);

// Check a model's stored metadata against the data it is about to see.
//   - stored is null (old file): returns (and prints to stderr) one note
//     "note: <what> has no metadata ...; not checked against <data>";
//   - the data set name (case-insensitive; skipped if dataset_name is empty),
//     the input shape or the class count differ: throws qnn::Error naming
//     <what>, both data sets and `override_flag`; with allow_mismatch it
//     prints and returns a one-line warning instead;
//   - only the class names differ: a warning, never an error;
//   - stored is not a model description (missing or mistyped fields): as a
//     mismatch (refused unless allow_mismatch).
// Returns "" when everything matches. `data` needs only sample_shape,
// num_classes and class_names (x / y may be empty).
std::string check_model_meta(const nlohmann::json& stored, const Dataset& data, const std::string& dataset_name,
                             bool allow_mismatch, const std::string& what,
                             const std::string& override_flag = "--allow-mismatch");

// The same check against the metadata the current run would store
// (make_model_meta of its training data): for code that holds the expected
// metadata rather than the Dataset (e.g. a checkpoint loader). Only
// "dataset", "input_shape", "classes" and "class_names" are compared; "arch"
// is not (the weights' names and shapes check the architecture). Throws
// qnn::Error if `expected` is not a model description itself.
std::string check_model_meta(const nlohmann::json& stored, const nlohmann::json& expected, bool allow_mismatch,
                             const std::string& what, const std::string& override_flag = "--allow-mismatch");

// The stored data set name, or "" (no metadata, or none recorded).
std::string meta_dataset(const nlohmann::json& stored);

// One line for logs: "fashion-mnist, input [784], 10 classes", or
// "no metadata" for null.
std::string describe_model_meta(const nlohmann::json& stored);

}  // namespace qnn::app
