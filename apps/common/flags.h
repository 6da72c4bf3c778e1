// apps/common/flags.h — the one flag contract of every training app.
//
// add_training_flags registers the flags every trainer shares, each with its
// documented range; a value outside it stops the program before any work
// with one line naming the flag and the range:
//
//   mnist_mlp: error: --lr: must be a number > 0, got -1 (see --help)
//
// A flag the user did not give is an empty std::optional (never a "-1 means
// default" sentinel, which would let a typed -1 slip through as "default");
// the app fills per-app defaults after parsing (e.g. the LR depends on
// --model), then calls resolve_training_flags for the checks that involve
// several flags.
//
//   TrainFlags f;
//   f.epochs = 3;                          // per-app defaults shown by --help
//   app::add_training_flags(cli, f);
//   ... parse ...
//   if (!f.lr) f.lr = 3e-3f;                // per-app defaults
//   app::resolve_training_flags(f);         // --eval-only needs --load, threads, ...
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qnn::app {

// ---- validators: one-line messages "must be ..., got X" (CLI11 prefixes the flag)

// A finite number in the interval; lo_open/hi_open exclude the ends. `what`
// words the range for --help and messages, e.g. "a number > 0", "in [0, 1)".
CLI::Validator number_in(double lo, double hi, bool lo_open, bool hi_open, const std::string& what);
// An integer in [lo, hi] (no sign tricks: "-1" for an unsigned flag is refused).
CLI::Validator integer_in(int64_t lo, int64_t hi, const std::string& what);
// One of the listed words, exactly.
CLI::Validator one_of(const std::vector<std::string>& words);

inline const CLI::Validator& positive_number() {
  static const CLI::Validator v = number_in(0, 1e300, true, false, "a number > 0");
  return v;
}
inline const CLI::Validator& probability_below_one() {
  static const CLI::Validator v = number_in(0, 1, false, true, "in [0, 1)");
  return v;
}

// ---- the shared training flags --------------------------------------------

struct TrainFlags {
  int epochs = 3;                           // >= 0 (an app may tighten it)
  int64_t batch = 100;                      // >= 1
  std::optional<std::string> optimizer;     // adam | adamw | sgd | adamax | adamax-shift; default per app/model (adam)
  std::optional<float> weight_decay;        // >= 0; default 0, adamw 0.01 (PyTorch's)
  std::optional<float> lr, lr_end;          // > 0; defaults per app/model
  std::string schedule = "exponential";     // exponential | cosine | step | constant
  std::optional<std::string> loss;          // xent | sqhinge; default per app/model
  int64_t val = 10000;                      // >= 0 images from the end of the training set
  std::optional<int64_t> limit_train;       // >= 1
  int patience = 0;                         // >= 0 (0 = no early stopping)
  uint64_t seed = 1;                        // >= 0
  std::optional<int> threads;               // >= 1; default: all cores
  std::string json_path, save_path, load_path, export_path;
  bool eval_only = false;                   // needs --load
  std::optional<bool> kernels;              // --kernels on|off; default: env QNN_QUANT_KERNELS, else on
  int profile_steps = 0;                    // >= 0
  // Resumable runs (apps/common/run_state.h): --checkpoint FILE writes the
  // whole run state after every epoch; --resume FILE continues it (and keeps
  // checkpointing to FILE unless --checkpoint names another).
  std::string checkpoint_path, resume_path;
  std::string plot_path;                    // --plot FILE.svg|png: loss and accuracy per epoch (gnuplot)
  std::string dist = "none";                // --dist none|mpi: data-parallel training (apps/common/dist.h)
  int micro_batches = 1;                    // --micro-batches M >= 1: gradient accumulation over M slices per batch
};

// The flag names add_training_flags knows, in registration order.
const std::vector<std::string>& training_flag_names();

// Registers the shared flags (all of them, or only those named in `only`,
// e.g. the sweep's subset) with their ranges; defaults shown by --help are
// the values already in `f`. Throws std::logic_error for an unknown name in
// `only` (a programming error).
void add_training_flags(CLI::App& cli, TrainFlags& f, const std::vector<std::string>& only = {});

// Cross-flag checks and process settings, after the app filled its defaults:
// --eval-only needs --load; --patience needs --val > 0; --optimizer defaults
// to adam and --weight-decay to its optimizer's; --threads (default all
// cores) is applied to BLAS/OpenMP. Throws qnn::Error naming the flags.
void resolve_training_flags(TrainFlags& f);

// Files the run will write (--json, --save, --export, ...): create each
// parent directory and check that a file can be written there, before any
// training. Throws qnn::Error naming the flag and the path.
void check_writable(const std::string& flag, const std::string& path);
void check_output_paths(const TrainFlags& f);

// Records --weight-decay in a run's config when it is > 0 (absent when 0,
// so configs, resume checks and sweep caches of runs without it keep their
// identity).
void record_weight_decay(nlohmann::json& config, const TrainFlags& f);

// ---- printing values as typed ---------------------------------------------

// A float as the double of its shortest decimal spelling (1e-4f -> 0.0001,
// not 9.999999747378752e-05), so JSON and printed configs read like the flags.
double f2d(float v);
// The same spelling as text ("0.0001", "3e-07").
std::string float_str(float v);

}  // namespace qnn::app
