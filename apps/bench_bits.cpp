// apps/bench_bits.cpp — time (and energy, where the CPU's RAPL counters are
// readable) per bit width for the study's three families: how the number of
// bits affects speed, the report's stated future work.
//
//   build/apps/bench_bits                                   # all families, bits 1,2,3,4,32, kernels on/off
//   build/apps/bench_bits --family cnn --bits 1,32 --threads 2 --json bits.json
//
// Each family is its app's default model, with random weights and inputs
// (speed depends on shapes, not on values):
//   mlp   mnist_mlp's 784-2048x3-10 MLP          training batch 100
//   cnn   cifar_cnn's BinaryNet, width 0.5         training batch 50
//   lstm  imdb_lstm's Embedding 5000x15 -> LSTM 100 over 300 tokens, training batch 64
// Bits b = weights = activations: 1 is the app's --model bnn (the LSTM:
// --model qnn --wbits 1 --abits 1), 2-4 --model qnn, 32 --model fp. Each
// quantized model runs with the bit-packed kernels on and off (the same
// numbers, tested elsewhere; only speed differs). Per row:
//   train         samples/s of whole optimizer steps (forward, backward, Adam)
//   eval b1, bB   samples/s of the framework's eval forward at batch 1 and --big-batch
//   deployed      the exported .qnnx in the packed runner at batch 1 and
//                 --big-batch (mlp, cnn; the runner has no kernel switch, so
//                 only the kernels-on row shows it)
//   J/sample      energy per training sample from RAPL (powercap
//                 intel-rapl package zones, which AMD CPUs expose too), or
//                 "not available" where the counters are missing or unreadable
// Every figure is the median of --reps repetitions after one warm-up call,
// each repetition running calls for at least --min-time seconds.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>

#include "apps/common/bench_util.h"
#include "apps/common/cli_main.h"
#include "apps/common/cnn.h"
#include "apps/common/flags.h"
#include "apps/common/lstm_train.h"
#include "apps/common/mlp.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/ops.h"
#include "kernels/denormals.h"
#include "kernels/isa.h"
#include "kernels/packed_model.h"
#include "kernels/sgemm.h"
#include "layers/batchnorm.h"
#include "layers/quant/export.h"
#include "layers/quant/quant_lstm.h"
#include "optim/optimizer.h"

using namespace qnn;
using json = nlohmann::json;
namespace k = qnn::kernels;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string families = "mlp,cnn,lstm";
  std::string bits = "1,2,3,4,32";
  int threads = 0;
  int reps = 3;
  double min_time = 0.5;
  int64_t big_batch = 100;
  uint64_t seed = 1;
  bool small = false;  // --small: tiny shapes (tests)
  std::string json_path;
};

// ---- RAPL energy counters (/sys/class/powercap) ------------------------------------

// The package zones "intel-rapl:N" (not their sub-zones "intel-rapl:N:M").
// energy_uj counts microjoules and wraps at max_energy_range_uj.
class Rapl {
 public:
  Rapl() {
    const fs::path root = "/sys/class/powercap";
    std::error_code ec;
    if (!fs::is_directory(root, ec)) {
      why_ = "no /sys/class/powercap on this machine";
      return;
    }
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("intel-rapl:", 0) != 0 || n.find(':', 11) != std::string::npos) continue;
      Zone z{e.path() / "energy_uj", 0};
      std::ifstream mf(e.path() / "max_energy_range_uj");
      mf >> z.max;
      if (read(z.path).has_value()) zones_.push_back(z);
    }
    if (zones_.empty()) why_ = "no readable RAPL package counter under /sys/class/powercap (intel-rapl:N/energy_uj)";
  }
  bool available() const { return !zones_.empty(); }
  const std::string& why() const { return why_; }
  // Microjoules per zone now.
  std::vector<double> sample() const {
    std::vector<double> v;
    for (const Zone& z : zones_) v.push_back(read(z.path).value_or(0.0));
    return v;
  }
  // Joules between two samples (each zone's counter may have wrapped once).
  double joules(const std::vector<double>& a, const std::vector<double>& b) const {
    double j = 0;
    for (size_t i = 0; i < zones_.size() && i < a.size() && i < b.size(); ++i) {
      double d = b[i] - a[i];
      if (d < 0) d += zones_[i].max;
      j += d * 1e-6;
    }
    return j;
  }

 private:
  struct Zone {
    fs::path path;
    double max;
  };
  static std::optional<double> read(const fs::path& p) {
    std::ifstream f(p);
    double v;
    if (!(f >> v)) return std::nullopt;
    return v;
  }
  std::vector<Zone> zones_;
  std::string why_;
};

// ---- timing ------------------------------------------------------------------------

struct Figure {
  double per_s = 0;                  // samples per second (median)
  std::optional<double> j_per_sample;  // median, with RAPL
};

// call() processes `samples` samples; median rate over o.reps repetitions.
Figure measure(const std::function<void()>& call, int64_t samples, const Options& o, const Rapl& rapl) {
  call();  // warm-up: first-touch allocations, the runner's thread choice
  std::vector<double> rates, joules;
  for (int rep = 0; rep < o.reps; ++rep) {
    int64_t n = 0;
    const auto e0 = rapl.available() ? rapl.sample() : std::vector<double>{};
    const double t0 = app::now_s();
    double t;
    do {
      call();
      n += samples;
      t = app::now_s() - t0;
    } while (t < o.min_time);
    rates.push_back((double)n / t);
    if (rapl.available()) joules.push_back(rapl.joules(e0, rapl.sample()) / (double)n);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  Figure f;
  f.per_s = median(rates);
  if (!joules.empty()) f.j_per_sample = median(joules);
  return f;
}

// ---- one family ----------------------------------------------------------------------

// A model of one family at one bit width, and how to feed it.
struct Bench {
  std::shared_ptr<Module> model;
  int64_t train_batch = 0;
  std::vector<int64_t> sample_shape;  // one sample's dims (mlp, cnn)
  std::function<Tensor(int64_t rows, bool train)> forward;  // random inputs of `rows` samples
  bool exportable = false;
};

std::string model_of(int bits, bool lstm) { return bits == 32 ? "fp" : bits == 1 && !lstm ? "bnn" : "qnn"; }

Bench make_bench(const std::string& family, int bits, bool kernels_on, const Options& o, Rng& rng) {
  Bench b;
  if (family == "mlp") {
    app::MlpConfig c;
    c.model = model_of(bits, false);
    if (c.model == "qnn") c.wbits = c.abits = bits;
    if (c.model != "fp") c.kernels = kernels_on;
    if (o.small) c.hidden = 64, c.layers = 2;
    app::resolve_defaults(c);
    b.model = app::build_mlp(c, rng);
    b.train_batch = 100;
    b.sample_shape = {c.in};
    b.exportable = true;
  } else if (family == "cnn") {
    app::CnnConfig c;
    c.model = model_of(bits, false);
    if (c.model == "qnn") c.wbits = c.abits = bits;
    c.kernels = c.model == "fp" ? -1 : kernels_on ? 1 : 0;
    if (o.small) c.width = 0.125f, c.fc = 32;
    app::resolve_cnn_defaults(c);
    b.model = app::build_cnn(c, rng);
    b.train_batch = 50;
    b.sample_shape = {c.in_channels, c.image, c.image};
    b.exportable = true;
  } else {  // lstm
    app::LstmConfig c;
    c.model = bits == 32 ? "fp" : "qnn";
    if (c.model == "qnn") c.wbits = c.abits = bits;
    if (o.small) c.hidden = 8, c.vocab = 100;
    app::resolve_lstm_defaults(c);
    auto net = app::build_lstm_classifier(c, rng);
    if (auto* q = dynamic_cast<QuantLSTM*>(&net->rnn())) q->set_kernels(kernels_on);
    const int64_t T = o.small ? 20 : app::kLstmMaxlen, vocab = c.vocab;
    b.model = net;
    b.train_batch = 64;
    auto ids_rng = std::make_shared<std::mt19937>((unsigned)o.seed);
    b.forward = [net, T, vocab, ids_rng](int64_t rows, bool) {
      std::uniform_int_distribution<int32_t> tok(2, (int32_t)vocab - 1);
      std::vector<int32_t> ids((size_t)(rows * T));
      for (auto& v : ids) v = tok(*ids_rng);
      return net->forward_ids(ids, rows, T);
    };
    return b;
  }
  auto shape = b.sample_shape;
  auto model = b.model;
  auto xrng = std::make_shared<Rng>(o.seed + 7);
  b.forward = [model, shape, xrng](int64_t rows, bool) {
    Shape s{rows};
    for (int64_t d : shape) s.push_back(d);
    return model->forward(Tensor::uniform(s, -1.0f, 1.0f, *xrng));
  };
  return b;
}

json bench_row(const std::string& family, int bits, bool kernels_on, const Options& o, const Rapl& rapl) {
  Rng rng(o.seed);
  Bench b = make_bench(family, bits, kernels_on, o, rng);
  json row = {{"family", family}, {"bits", bits}, {"model", family == "lstm" ? (bits == 32 ? "fp" : "qnn") : model_of(bits, false)},
              {"kernels", bits == 32 ? "n/a" : kernels_on ? "on" : "off"}};
  // Training: whole optimizer steps on random rows with random labels.
  {
    auto opt = make_optimizer("adam", b.model->parameters(), 1e-3f);
    b.model->train(true);
    std::mt19937 g((unsigned)o.seed);
    const int64_t B = b.train_batch;
    Figure f = measure(
        [&] {
          Tensor logits = b.forward(B, true);
          std::vector<int32_t> y((size_t)B);
          for (auto& v : y) v = (int32_t)(g() % (uint32_t)logits.dim(1));
          opt->zero_grad();
          cross_entropy(logits, y).backward();
          opt->step();
        },
        B, o, rapl);
    row["train_per_s"] = f.per_s;
    row["train_j_per_sample"] = f.j_per_sample ? json(*f.j_per_sample) : json(nullptr);
  }
  // The framework's eval forward.
  b.model->eval();
  app::random_bn(*b.model, rng);
  for (int64_t batch : {int64_t(1), o.big_batch}) {
    NoGradGuard ng;
    Figure f = measure([&] { (void)b.forward(batch, false); }, batch, o, rapl);
    row[batch == 1 ? "eval_b1_per_s" : "eval_bbig_per_s"] = f.per_s;
  }
  // The deployed model (kernels on only: the runner has no switch).
  if (b.exportable && (kernels_on || bits == 32)) {
    try {
      ExportOptions eo;
      eo.input_dims = b.sample_shape;
      k::PackedRunner r(export_model(*b.model, eo));
      const int64_t D = r.model().in_features();
      std::mt19937 g((unsigned)o.seed + 3);
      std::vector<uint8_t> px((size_t)(o.big_batch * D));
      for (auto& p : px) p = (uint8_t)(g() & 0xFF);
      std::vector<float> out((size_t)(o.big_batch * r.model().num_classes()));
      for (int64_t batch : {int64_t(1), o.big_batch}) {
        Figure f = measure([&] { r.logits_u8(px.data(), batch, out.data()); }, batch, o, rapl);
        row[batch == 1 ? "deployed_b1_per_s" : "deployed_bbig_per_s"] = f.per_s;
      }
      row["deployed_weight_bits"] = r.model().weight_storage_bits();
    } catch (const Error& e) {
      row["deployed_note"] = std::string("export refused: ") + e.what();
    }
  }
  return row;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::string cur;
  for (char ch : s + ",") {
    if (ch != ',') {
      if (ch != ' ') cur += ch;
      continue;
    }
    if (!cur.empty()) parts.push_back(cur);
    cur.clear();
  }
  return parts;
}

std::vector<int> parse_bits(const std::string& s) {
  std::vector<int> v;
  for (const std::string& t : split_commas(s)) {
    int b = 0;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), b);
    QNN_CHECK(ec == std::errc() && ptr == t.data() + t.size() && ((b >= 1 && b <= 4) || b == 32),
              "--bits: each entry must be 1, 2, 3, 4 or 32, got '" + t + "'");
    QNN_CHECK(std::find(v.begin(), v.end(), b) == v.end(), "--bits lists " + t + " twice");
    v.push_back(b);
  }
  QNN_CHECK(!v.empty(), "--bits: give at least one bit width");
  return v;
}

std::string fmt(const json& v, const char* f = "%.1f") {
  if (!v.is_number()) return "-";
  char b[32];
  std::snprintf(b, sizeof b, f, v.get<double>());
  return b;
}

int run(const Options& o) {
  const std::vector<int> bits = parse_bits(o.bits);
  std::vector<std::string> fams = split_commas(o.families);
  for (const auto& f : fams) QNN_CHECK(f == "mlp" || f == "cnn" || f == "lstm", "--family: mlp, cnn or lstm, got '" + f + "'");
  QNN_CHECK(!fams.empty(), "--family: give at least one family");
  if (o.threads > 0) k::set_num_threads(o.threads);
  const Rapl rapl;
  std::printf("# qnn bench_bits | %s | denormals %s | kernels %s | threads %d\n", k::blas_info(), k::denormals_name(), k::isa_name(k::active_isa()),
              k::num_threads());
  std::printf("# energy: %s\n", rapl.available() ? "RAPL package counters" : ("not available (" + rapl.why() + ")").c_str());
  std::printf("# samples/s, median of %d x %.2f s; eval / deployed at batch 1 and %lld\n", o.reps, o.min_time,
              (long long)o.big_batch);
  std::printf("%-5s %5s %-7s %10s %10s %10s %11s %11s %11s\n", "fam", "bits", "kernels", "train/s", "eval b1",
              "eval bB", "deployed b1", "deployed bB", "J/sample");
  json rows = json::array();
  for (const auto& fam : fams)
    for (int b : bits)
      for (bool on : {true, false}) {
        if (b == 32 && !on) continue;  // no quantized product: nothing to switch
        json row = bench_row(fam, b, on, o, rapl);
        std::printf("%-5s %5d %-7s %10s %10s %10s %11s %11s %11s\n", fam.c_str(), b,
                    row["kernels"].get<std::string>().c_str(), fmt(row["train_per_s"]).c_str(),
                    fmt(row["eval_b1_per_s"]).c_str(), fmt(row["eval_bbig_per_s"]).c_str(),
                    fmt(row.value("deployed_b1_per_s", json())).c_str(),
                    fmt(row.value("deployed_bbig_per_s", json())).c_str(),
                    rapl.available() ? fmt(row["train_j_per_sample"], "%.4f").c_str() : "n/a");
        std::fflush(stdout);
        rows.push_back(row);
      }
  if (!o.json_path.empty()) {
    json j = {{"tool", "bench_bits"},
              {"threads", k::num_threads()},
              {"isa", k::isa_name(k::active_isa())},
              {"reps", o.reps},
              {"min_time", o.min_time},
              {"big_batch", o.big_batch},
              {"small", o.small},
              {"energy", rapl.available() ? json("rapl") : json("not available: " + rapl.why())},
              {"rows", rows}};
    write_file_atomic(o.json_path, j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App cli{"Training and inference speed per bit width (1, 2, 3, 4 and 32 bits; kernels on and off) for the MLP, "
               "CNN and LSTM of the study, with energy per sample from RAPL where readable."};
  cli.add_option("--family", o.families, "comma list of mlp, cnn, lstm")->capture_default_str();
  cli.add_option("--bits", o.bits, "comma list of bit widths (weights = activations): 1, 2, 3, 4, 32")->capture_default_str();
  cli.add_option("--threads", o.threads, "OpenMP / BLAS threads (default: all cores)")
      ->check(app::integer_in(1, 1024, "an integer in [1, 1024]"));
  cli.add_option("--reps", o.reps, "timed repetitions per figure (median)")
      ->capture_default_str()
      ->check(app::integer_in(1, 100, "1..100"));
  cli.add_option("--min-time", o.min_time, "seconds per repetition")
      ->capture_default_str()
      ->check(app::number_in(0, 60, true, false, "in (0, 60]"));
  cli.add_option("--big-batch", o.big_batch, "the large inference batch")
      ->capture_default_str()
      ->check(app::integer_in(2, 10000, "an integer in [2, 10000]"));
  cli.add_option("--seed", o.seed, "random weights' and inputs' seed")->capture_default_str();
  cli.add_flag("--small", o.small, "tiny models instead of the apps' (quick checks, tests)");
  cli.add_option("--json", o.json_path, "write the results as JSON");
  return app::parse_and_run(cli, argc, argv, "bench_bits", [&] { return run(o); });
}
