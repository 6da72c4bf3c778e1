// apps/common/run_state.h — resumable training runs (--checkpoint / --resume).
//
// With --checkpoint FILE the training loop (train_loop.h) writes, at the end
// of every epoch, everything the run needs to go on as if it had never
// stopped; --resume FILE continues it. A run interrupted after epoch k and
// resumed ends with a model byte-identical to the uninterrupted run
// (tests/test_resume.cpp), because every input of the remaining epochs is
// restored exactly:
//   - the model's parameters and buffers (batch-norm running statistics);
//   - the optimizer's state (moments, per-parameter step counts, momentum:
//     Optimizer::state(), keyed by parameter index);
//   - the schedule position (the epoch: the LR of epoch e is lr_at(e)) and
//     the data order (DataLoader: a function of (seed, epoch) only);
//   - every random generator the model owns (dropout, stochastic quantizers:
//     Module::named_rngs), bit for bit;
//   - the best-validation snapshot, its figures, the patience counter, and
//     the per-epoch history that goes into --json.
//
// Format: the ordinary checkpoint container (core/serialize.h) — tensors
// named "model/<name>", "optimizer/<name>", "best/<name>", and the rest as
// the JSON metadata text ({"kind": "qnn-run-state", ...}; generator states as
// hex strings, exact). Written atomically (core/fileio.h): a kill during the
// save leaves the previous file whole.
//
// A resumed run must be the same run: its config (the --json "config") must
// equal the stored one except "epochs" (a run may be extended) — output
// paths are not part of the config. Otherwise qnn::Error names the keys.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "core/serialize.h"
#include "layers/module.h"
#include "optim/optimizer.h"

namespace qnn::app {

struct RunState {
  int epochs_done = 0;    // epochs completed (the next one to train is epochs_done, 0-based)
  bool stopped = false;   // early stopping ended the run (nothing left to train)
  nlohmann::json config = nlohmann::json::object();  // the run's --json "config"
  nlohmann::json history = nlohmann::json::array();  // the --json "epochs" so far
  int best_epoch = 0;                                 // 1-based; 0 = none kept
  double best_val_acc = -1;                           // -1: none yet
  std::optional<double> best_val_loss;                // absent: none yet (infinity)
  int since_best = 0;                                 // the patience counter
  NamedTensors model, optimizer, best;                // best: empty if none kept
  std::vector<std::pair<std::string, Rng::State>> rngs;
};

// The current state of a run. The tensors are the live ones (no copy of a
// large model): save before training on.
RunState capture_run_state(Module& model, const Optimizer& opt);

// Writes `s` to `path` atomically. qnn::Error naming the path on failure.
void save_run_state(const std::string& path, const RunState& s);
// Reads a file written by save_run_state; qnn::Error naming the file if it
// is not one (e.g. a plain --save checkpoint) or is damaged.
RunState load_run_state(const std::string& path);

// Refuses to resume `stored` under `current` unless the configs are equal
// except for "epochs": qnn::Error naming each differing key and both values.
void check_resume_config(const nlohmann::json& stored, const nlohmann::json& current, const std::string& path);

// Puts `s` back into a model built the same way and an optimizer over its
// parameters (model, optimizer, generators). Messages name `path` and the entry.
void restore_run_state(const RunState& s, Module& model, Optimizer& opt, const std::string& path);

}  // namespace qnn::app
