// apps/common/flags.cpp — see flags.h.
#include "apps/common/flags.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <thread>

#include "apps/common/dist.h"
#include "apps/common/plot.h"
#include "core/tensor.h"  // QNN_CHECK, fail
#include "kernels/sgemm.h"
#include "optim/adam.h"  // adamw_decay_problem

namespace qnn::app {
namespace fs = std::filesystem;

CLI::Validator number_in(double lo, double hi, bool lo_open, bool hi_open, const std::string& what) {
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        const char* b = s.c_str();
        char* end = nullptr;
        const double v = std::strtod(b, &end);
        const bool parsed = !s.empty() && end == b + s.size() && std::isfinite(v);
        const bool ok = parsed && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        return ok ? std::string() : "must be " + what + ", got " + s;
      },
      what, "number_in");
}

CLI::Validator integer_in(int64_t lo, int64_t hi, const std::string& what) {
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        int64_t v = 0;
        const char* b = s.data() + (!s.empty() && s[0] == '+' ? 1 : 0);
        auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
        const bool ok = !s.empty() && ec == std::errc() && p == s.data() + s.size() && v >= lo && v <= hi;
        return ok ? std::string() : "must be " + what + ", got " + s;
      },
      what, "integer_in");
}

CLI::Validator one_of(const std::vector<std::string>& words) {
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : "|") + w;
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        return std::find(words.begin(), words.end(), s) != words.end() ? std::string()
                                                                       : "must be one of " + list + ", got '" + s + "'";
      },
      list, "one_of");
}

const std::vector<std::string>& training_flag_names() {
  static const std::vector<std::string> names = {
      "--epochs", "--batch", "--optimizer", "--weight-decay", "--lr",   "--lr-end", "--schedule", "--loss",   "--val",
      "--limit-train", "--patience", "--seed", "--threads", "--json", "--save", "--load", "--eval-only",
      "--kernels", "--export", "--profile-steps", "--checkpoint", "--resume", "--plot", "--dist", "--micro-batches"};
  return names;
}

void add_training_flags(CLI::App& cli, TrainFlags& f, const std::vector<std::string>& only) {
  const auto& all = training_flag_names();
  for (const auto& n : only)
    if (std::find(all.begin(), all.end(), n) == all.end())
      throw std::logic_error("add_training_flags: unknown flag " + n);
  auto want = [&](const char* n) { return only.empty() || std::find(only.begin(), only.end(), n) != only.end(); };
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();

  if (want("--epochs"))
    cli.add_option("--epochs", f.epochs, "training epochs (>= 0)")
        ->capture_default_str()
        ->check(integer_in(0, 1000000, "an integer >= 0"));
  if (want("--batch"))
    cli.add_option("--batch", f.batch, "batch size (>= 1)")->capture_default_str()->check(integer_in(1, 1 << 24, "an integer >= 1"));
  if (want("--optimizer"))
    cli.add_option("--optimizer", f.optimizer, "adam | adamw | sgd | adamax | adamax-shift (default adam)")
        ->check(one_of({"adam", "adamw", "sgd", "adamax", "adamax-shift"}));
  if (want("--weight-decay"))
    cli.add_option("--weight-decay", f.weight_decay,
                   "weight decay of every parameter (>= 0; default 0, adamw 0.01): adamw shrinks the weights by "
                   "lr * wd per step, the other optimizers add wd * w to the gradient (L2)")
        ->check(number_in(0, 1e300, false, false, "a number >= 0"));
  if (want("--lr")) cli.add_option("--lr", f.lr, "start learning rate (> 0; default per model)")->check(positive_number());
  if (want("--lr-end"))
    cli.add_option("--lr-end", f.lr_end,
                   "learning rate of the last epoch (> 0): the decay runs from --lr to it over the run "
                   "(default per model)")
        ->check(positive_number());
  if (want("--schedule"))
    cli.add_option("--schedule", f.schedule, "exponential | cosine | step | constant")
        ->capture_default_str()
        ->check(one_of({"exponential", "cosine", "step", "constant"}));
  if (want("--loss"))
    cli.add_option("--loss", f.loss, "xent | sqhinge (default per model)")->check(one_of({"xent", "sqhinge"}));
  if (want("--val"))
    cli.add_option("--val", f.val, "validation images taken from the end of the training set (>= 0)")
        ->capture_default_str()
        ->check(integer_in(0, kBig, "an integer >= 0"));
  if (want("--limit-train"))
    cli.add_option("--limit-train", f.limit_train, "use only the first N training images (>= 1; quick runs)")
        ->check(integer_in(1, kBig, "an integer >= 1"));
  if (want("--patience"))
    cli.add_option("--patience", f.patience, "early stopping: epochs without validation-loss improvement (>= 0; 0 = off)")
        ->capture_default_str()
        ->check(integer_in(0, 1000000, "an integer >= 0"));
  if (want("--seed"))
    cli.add_option("--seed", f.seed, "seed for every random choice (>= 0)")
        ->capture_default_str()
        ->check(integer_in(0, kBig, "an integer >= 0"));
  if (want("--threads"))
    cli.add_option("--threads", f.threads, "threads for BLAS and OpenMP (1..1024; default: all cores)")
        ->check(integer_in(1, 1024, "an integer in 1..1024"));
  if (want("--json")) cli.add_option("--json", f.json_path, "write config, per-epoch metrics and results as JSON");
  if (want("--save")) cli.add_option("--save", f.save_path, "save the tested (best-validation) model as a checkpoint");
  if (want("--load"))
    cli.add_option("--load", f.load_path, "load a checkpoint before training / evaluation")->check(CLI::ExistingFile);
  if (want("--eval-only")) cli.add_flag("--eval-only", f.eval_only, "only evaluate the --load checkpoint on the test set");
  if (want("--kernels"))
    cli.add_option_function<std::string>(
           "--kernels", [&f](const std::string& v) { f.kernels = v == "on"; },
           "on | off: bit-packed kernels / fused ops for quantized layers (identical results; default: env "
           "QNN_QUANT_KERNELS, else on)")
        ->check(one_of({"on", "off"}));
  if (want("--export"))
    cli.add_option("--export", f.export_path, "write the tested model as a packed .qnnx file (run it with qnn_infer)");
  if (want("--profile-steps"))
    cli.add_option("--profile-steps", f.profile_steps, "time forward/backward/optimizer over N steps first (>= 0)")
        ->capture_default_str()
        ->check(integer_in(0, 1000000, "an integer >= 0"));
  if (want("--checkpoint"))
    cli.add_option("--checkpoint", f.checkpoint_path,
                   "after every epoch, write everything needed to resume the run (model, optimizer, generators, "
                   "history) atomically to FILE");
  if (want("--resume"))
    cli.add_option("--resume", f.resume_path,
                   "continue the run a --checkpoint FILE holds (same config; only --epochs and output paths may "
                   "change); keeps checkpointing to FILE")
        ->check(CLI::ExistingFile);
  if (want("--plot"))
    cli.add_option("--plot", f.plot_path, "draw loss and accuracy per epoch to FILE.svg or FILE.png (needs gnuplot)");
  if (want("--dist"))
    cli.add_option("--dist", f.dist,
                   "none | mpi: data-parallel training, each of the mpirun ranks takes an equal slice of every "
                   "--batch (mpirun -np P PROGRAM --dist mpi ...)")
        ->capture_default_str()
        ->check(one_of({"none", "mpi"}));
  if (want("--micro-batches"))
    cli.add_option("--micro-batches", f.micro_batches,
                   "gradient accumulation: run every --batch as M equal slices (forward + backward each, batch-norm "
                   "statistics per slice), sum their gradients, take one step; the same model as M MPI ranks "
                   "(1..65536; --batch must be a multiple)")
        ->capture_default_str()
        ->check(integer_in(1, 65536, "an integer in 1..65536"));
}

void resolve_training_flags(TrainFlags& f) {
  QNN_CHECK(!f.eval_only || !f.load_path.empty(),
            "--eval-only needs --load FILE (it evaluates a trained checkpoint; without one the model is random)");
  QNN_CHECK(f.patience == 0 || f.val > 0 || f.eval_only,
            "--patience " + std::to_string(f.patience) + " needs validation images (--val > 0) to watch");
  QNN_CHECK(f.resume_path.empty() || !f.eval_only, "--resume continues training; it cannot go with --eval-only");
  if (!f.resume_path.empty() && f.checkpoint_path.empty()) f.checkpoint_path = f.resume_path;
  if (!f.optimizer) f.optimizer = "adam";
  if (!f.weight_decay) f.weight_decay = *f.optimizer == "adamw" ? 0.01f : 0.0f;
  if (*f.optimizer == "adamw" && f.lr) {
    const std::string problem = adamw_decay_problem(*f.lr, *f.weight_decay);
    QNN_CHECK(problem.empty(), "--weight-decay " + float_str(*f.weight_decay) + " with --lr " + float_str(*f.lr) + ": " + problem);
  }
  dist::init(f.dist);  // --dist mpi: MPI_Init (an error if the build has no MPI)
  if (!f.eval_only) dist::check_batch(f.batch, f.micro_batches);
  // Default threads: the cores, shared by the ranks on this host.
  if (!f.threads) f.threads = (int)std::max(1u, std::thread::hardware_concurrency() / (unsigned)dist::local_size());
  kernels::set_num_threads(*f.threads);
}

void record_weight_decay(nlohmann::json& config, const TrainFlags& f) {
  if (f.weight_decay.value_or(0.0f) > 0.0f) config["weight_decay"] = f2d(*f.weight_decay);
}

void check_writable(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  const fs::path p(path);
  std::error_code ec;
  QNN_CHECK(!fs::is_directory(p, ec), flag + " " + path + ": is a directory, expected a file name");
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  fs::create_directories(dir, ec);
  QNN_CHECK(!ec, flag + " " + path + ": cannot create the directory " + dir.string() + " (" + ec.message() + ")");
  // Probe with a scratch file next to the target, as the atomic write will
  // (temporary file + rename): an existing target stays untouched.
  const fs::path probe = dir / (".qnn-write-check-" + std::to_string(::getpid()));
  {
    std::ofstream out(probe, std::ios::binary);
    QNN_CHECK(out.good(), flag + " " + path + ": cannot write in " + dir.string() + " (permission denied?)");
  }
  fs::remove(probe, ec);
}

void check_output_paths(const TrainFlags& f) {
  check_writable("--json", f.json_path);
  check_writable("--save", f.save_path);
  check_writable("--export", f.export_path);
  check_writable("--checkpoint", f.checkpoint_path);
  check_plot_path("--plot", f.plot_path);  // the extension, and gnuplot installed, before any training
}

double f2d(float v) {
  char buf[32];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  double d = v;
  if (ec == std::errc()) std::from_chars(buf, ptr, d);
  return d;
}

// JSON's spelling of that double (shortest round trip): "0.0001", "3e-07".
std::string float_str(float v) { return nlohmann::json(f2d(v)).dump(); }

}  // namespace qnn::app
