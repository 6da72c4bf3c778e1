// apps/sweep/cells.h — the sweep's plan: its flags, the cells of the study
// (bits x surrogate, plus the fp reference) and what one cell's run is.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "apps/common/cnn_train.h"
#include "apps/common/flags.h"
#include "apps/common/lstm_train.h"
#include "apps/common/mlp.h"

namespace qnn::sweep {

using json = nlohmann::json;

inline const char* kDefaultSurrogates = "hardtanh,tanh:3,tanh:4,tanh:5";
// --app cifar_cnn: the columns of the student report's CIFAR-10 table.
inline const char* kCnnSurrogates = "hardtanh,tanh:4";
// --app imdb_lstm: the columns of the student report's LSTM table.
inline const char* kLstmSurrogates = "hardtanh,tanh:4";

struct Options {
  std::string app = "mnist_mlp";  // mnist_mlp | cifar_cnn: the program a cell is a run of
  std::string arch = "binarynet";  // --app cifar_cnn: apps/common/cnn.h
  float width = app::kCnnWidth;
  bool shortcuts = false;          // --app cifar_cnn --shortcuts on: the quantized cells' (fp stays plain)
  bool val_given = false;          // --val on the command line (cifar_cnn scales it with --limit-train otherwise)
  app::TrainFlags train;  // --epochs --batch --lr --lr-end --seed --threads --limit-train --val
  int64_t hidden = 2048, layers = 3;
  std::string bits = "1,2,3,4";
  std::string surrogates = kDefaultSurrogates;
  bool no_fp = false;
  std::string only;
  bool periodic_kbit = false;
  std::string dataset = "mnist", data;
  std::string out = "runs/sweep";
  std::string merge;
  bool force = false, quiet = false, dry_run = false;
  double time_limit_min = 0;  // --time-limit: stop after the epoch that passes it (0 = none)
};

// "a, b,c" -> {"a", "b", "c"} (blanks trimmed; empty parts kept).
std::vector<std::string> split(const std::string& s, char sep);
// --bits "1,2,3,4": each 1..16, no repeats; messages name the flag.
std::vector<int> parse_bits_list(const std::string& s);
// --surrogates: canonical spellings ("ste" -> "hardtanh"), no repeats.
std::vector<std::string> parse_surrogate_list(const std::string& s);

// --only: "fp" or KEY=VALUE[,KEY=VALUE] with KEY bits | surrogate.
struct Only {
  bool active = false, fp = false;
  std::optional<int> bits;
  std::optional<std::string> surrogate;
};
Only parse_only(const std::string& s, const std::vector<int>& bits, const std::vector<std::string>& surs, bool no_fp);

// One cell of the study (or the fp reference).
struct Cell {
  std::string key;        // "bits=2,surrogate=tanh:3" (the --only syntax) or "fp"
  int bits = 32;          // 32 for fp
  std::string surrogate;  // the column; "" for fp
};
std::string cell_key(int bits, const std::string& sur);

// Everything one training run needs, resolved as mnist_mlp resolves it.
struct RunSpec {
  Cell cell;
  app::MlpConfig mlp;     // --app mnist_mlp
  std::string app = "mnist_mlp";
  app::CnnConfig cnn;     // --app cifar_cnn: resolved as cifar_cnn resolves it (app::resolve_cnn_app)
  app::LstmAppOptions lstm;  // --app imdb_lstm: resolved as imdb_lstm resolves it (app::resolve_lstm_app)
  std::string augment = "off";  // cifar_cnn: the recipe's data settings for this model
  bool normalize = false;
  app::TrainFlags train;  // lr, lr_end and loss filled with the model's defaults
  float lr_decay = 0;     // the default schedule's per-epoch factor (0: over the run)
  json config;            // mnist_mlp's config keys + limit_train, pixel_scale
  json identity;          // config without threads / data: what "the same run" means
};
RunSpec make_spec(const Options& o, const Cell& cell);

json identity_of(const json& config);
// "epochs 10 -> 1, lr 0.003 -> 0.001" for messages.
std::string config_diff(const json& a, const json& b);
bool finished(const json& run);  // status ok or diverged
std::string hostname();
std::string utc_now();

}  // namespace qnn::sweep
