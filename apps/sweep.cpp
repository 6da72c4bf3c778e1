// apps/sweep.cpp — the seed report's "bits x surrogate" study on the MNIST MLP.
//
// Trains the MLP of apps/common/mlp.h once per cell of
//   bits {1, 2, 3, 4} (weights = activations = b; b = 1 is the BNN with sign)
//   x surrogate {hardtanh, tanh:3, tanh:4, tanh:5}
// plus one full-precision reference run, all with one epoch budget, one seed
// and one protocol (mnist_mlp's: the last --val training images validate, the
// best-validation epoch's model is tested). Writes DIR/sweep.json (every run:
// config, per-epoch metrics, best epoch, test accuracy, seconds),
// DIR/sweep.csv (one row per run) and DIR/sweep.md (the report's table 5.2:
// rows = bits, columns = surrogates, cells = test accuracy %, plus the FP row).
//
//   build/apps/sweep --epochs 10 --threads 2                # the whole study
//   build/apps/sweep --only bits=2 --out runs/sweep-b2      # one slice per machine...
//   build/apps/sweep --merge runs/sweep-b1,runs/sweep-b2 --out runs/sweep   # ...combined
//
// Resumable: a run whose identical config (threads and data path aside) is
// already finished in DIR/sweep.json is skipped ("cached") unless --force; the
// outputs are rewritten atomically after every run. A cell of a run equals
//   mnist_mlp --model qnn --wbits b --abits b --surrogate S --epochs N --seed S ...
// (--model bnn for b = 1, --model fp for the reference) with the same flags.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "apps/common/mlp.h"
#include "core/fileio.h"
#include "core/serialize.h"
#include "kernels/sgemm.h"
#include "layers/quant/surrogate.h"
#include "optim/optim.h"

using namespace qnn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kDefaultSurrogates = "hardtanh,tanh:3,tanh:4,tanh:5";

struct Options {
  int epochs = 10;
  int64_t hidden = 2048, layers = 3, batch = 100;
  float lr = -1, lr_end = -1;  // <0: the model's default (as mnist_mlp)
  std::string bits = "1,2,3,4";
  std::string surrogates = kDefaultSurrogates;
  bool no_fp = false;
  std::string only;
  bool periodic_kbit = false;
  uint64_t seed = 1;
  int threads = 0;
  std::string dataset = "mnist", data;
  int64_t limit_train = -1, val = 10000;
  std::string out = "runs/sweep";
  std::string merge;
  bool force = false, quiet = false, dry_run = false;
};

// ---------------------------------------------------------------- parsing ---

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    std::string part = s.substr(start, p == std::string::npos ? std::string::npos : p - start);
    const auto b = part.find_first_not_of(" \t"), e = part.find_last_not_of(" \t");
    parts.push_back(b == std::string::npos ? "" : part.substr(b, e - b + 1));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return parts;
}

int parse_bits_value(const std::string& s, const std::string& flag) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  QNN_CHECK(!s.empty() && ec == std::errc() && ptr == s.data() + s.size(),
            flag + ": '" + s + "' is not an integer (bits are 1..16; 1 = BNN with sign)");
  QNN_CHECK(v >= 1 && v <= 16, flag + ": " + s + " bits is out of range 1..16 (1 = BNN with sign; "
                                   "the full-precision reference is the separate fp run)");
  return v;
}

std::vector<int> parse_bits_list(const std::string& s) {
  std::vector<int> out;
  for (const auto& p : split(s, ',')) {
    const int b = parse_bits_value(p, "--bits");
    QNN_CHECK(std::find(out.begin(), out.end(), b) == out.end(), "--bits lists " + p + " twice");
    out.push_back(b);
  }
  return out;
}

// Canonical spelling ("ste" -> "hardtanh", "tanh:3.0" -> "tanh:3"), so that
// column keys and --only values compare equal however they were typed.
std::string canonical_surrogate(const std::string& s, const std::string& flag) {
  try {
    return parse_surrogate(s).str();
  } catch (const std::exception& e) {
    fail(flag + ": " + e.what());
  }
}

std::vector<std::string> parse_surrogate_list(const std::string& s) {
  std::vector<std::string> out;
  for (const auto& p : split(s, ',')) {
    const std::string c = canonical_surrogate(p, "--surrogates");
    QNN_CHECK(std::find(out.begin(), out.end(), c) == out.end(), "--surrogates lists " + c + " twice");
    out.push_back(c);
  }
  return out;
}

struct Only {
  bool active = false, fp = false;
  std::optional<int> bits;
  std::optional<std::string> surrogate;
};

Only parse_only(const std::string& s, const std::vector<int>& bits, const std::vector<std::string>& surs, bool no_fp) {
  Only o;
  if (s.empty()) return o;
  o.active = true;
  const std::string syntax = "--only takes 'fp' or KEY=VALUE[,KEY=VALUE] with KEY bits or surrogate "
                             "(e.g. --only bits=2, --only bits=1,surrogate=hardtanh), got '" + s + "'";
  if (s == "fp") {
    QNN_CHECK(!no_fp, "--only fp contradicts --no-fp");
    o.fp = true;
    return o;
  }
  for (const auto& kv : split(s, ',')) {
    const auto eq = kv.find('=');
    QNN_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < kv.size(), syntax);
    const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "bits") {
      QNN_CHECK(!o.bits, "--only names bits twice");
      o.bits = parse_bits_value(v, "--only bits");
      QNN_CHECK(std::find(bits.begin(), bits.end(), *o.bits) != bits.end(),
                "--only bits=" + v + " is not in the --bits list");
    } else if (k == "surrogate") {
      QNN_CHECK(!o.surrogate, "--only names surrogate twice");
      o.surrogate = canonical_surrogate(v, "--only surrogate");
      QNN_CHECK(std::find(surs.begin(), surs.end(), *o.surrogate) != surs.end(),
                "--only surrogate=" + v + " is not in the --surrogates list");
    } else {
      fail(syntax);
    }
  }
  return o;
}

// ------------------------------------------------------------------- runs ---

// One cell of the study (or the fp reference).
struct Cell {
  std::string key;        // "bits=2,surrogate=tanh:3" (the --only syntax) or "fp"
  int bits = 32;          // 32 for fp
  std::string surrogate;  // the column; "" for fp
};

std::string cell_key(int bits, const std::string& sur) { return "bits=" + std::to_string(bits) + ",surrogate=" + sur; }

// Everything one training run needs, resolved as mnist_mlp resolves it.
struct RunSpec {
  Cell cell;
  app::MlpConfig mlp;
  std::string loss, optimizer = "adam", schedule = "exponential";
  float lr = 0, lr_end = 0;
  json config;    // mnist_mlp's config keys + limit_train
  json identity;  // config without threads / data: what "the same run" means
};

// A float as the double of its shortest decimal spelling (3e-3f -> 0.003, not
// 0.0030000000260770321), so the JSON reads like the flags.
double f2d(float v) {
  char buf[32];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  double d = v;
  if (ec == std::errc()) std::from_chars(buf, ptr, d);
  return d;
}

// Part of a run's identity: results from another input scaling are not reused.
std::string pixel_scale_name(PixelScale s) {
  switch (s) {
    case PixelScale::MinusOneToOne: return "p/127.5-1";
    case PixelScale::ZeroToOne: return "p/255";
    case PixelScale::OddOver256: return "(2p-255)/256";
  }
  return "?";
}

RunSpec make_spec(const Options& o, const Cell& cell) {
  RunSpec r;
  r.cell = cell;
  auto& m = r.mlp;
  m.hidden = o.hidden;
  m.layers = o.layers;
  if (cell.bits == 32) {
    m.model = "fp";
  } else if (cell.bits == 1) {
    m.model = "bnn";
  } else {
    m.model = "qnn";
    m.wbits = m.abits = cell.bits;
  }
  if (!cell.surrogate.empty()) {
    m.surrogate = cell.surrogate;
    // The seed report's k-bit variant of tanh(Kx) (its eq. 18): one riser per
    // quantization step.
    const Surrogate s = parse_surrogate(cell.surrogate);
    if (o.periodic_kbit && cell.bits >= 2 && s.kind == SurrogateKind::tanh)
      m.surrogate = Surrogate::periodic(s.param).str();
  }
  app::resolve_defaults(m);
  const bool quant = m.model != "fp";
  r.loss = quant ? "sqhinge" : "xent";
  r.lr = o.lr > 0 ? o.lr : (quant ? 3e-3f : 1e-3f);
  r.lr_end = o.lr_end > 0 ? o.lr_end : (quant ? 3e-7f : r.lr * 0.1f);
  r.config = json{{"dataset", o.dataset}, {"data", o.data}, {"model", m.model}, {"hidden", m.hidden},
                  {"layers", m.layers}, {"wbits", m.wbits}, {"abits", m.abits}, {"surrogate", m.surrogate}, {"weight_surrogate", m.weight_surrogate},
                  {"binarize", m.binarize}, {"shift_bn", m.shift_bn}, {"lr_scale", m.lr_scale},
                  {"dropout", f2d(m.dropout)}, {"input_dropout", f2d(m.input_dropout)}, {"epochs", o.epochs},
                  {"batch", o.batch}, {"optimizer", r.optimizer}, {"lr", f2d(r.lr)}, {"lr_end", f2d(r.lr_end)},
                  {"schedule", r.schedule}, {"loss", r.loss}, {"seed", o.seed}, {"threads", o.threads},
                  {"val", o.val}, {"patience", 0}, {"bn_momentum", f2d(m.bn_momentum)}, {"bn_eps", f2d(m.bn_eps)},
                  {"limit_train", o.limit_train}, {"pixel_scale", pixel_scale_name(app::mnist_options().scale)}};
  r.identity = r.config;
  r.identity.erase("threads");
  r.identity.erase("data");
  return r;
}

json identity_of(const json& config) {
  json id = config;
  if (id.is_object()) {
    id.erase("threads");
    id.erase("data");
  }
  return id;
}

// "epochs 10 -> 1, lr 0.003 -> 0.001" for messages.
std::string config_diff(const json& a, const json& b) {
  std::string d;
  std::set<std::string> keys;
  if (a.is_object())
    for (auto& [k, v] : a.items()) keys.insert(k);
  if (b.is_object())
    for (auto& [k, v] : b.items()) keys.insert(k);
  for (const auto& k : keys) {
    const json va = a.is_object() && a.contains(k) ? a[k] : json("(none)");
    const json vb = b.is_object() && b.contains(k) ? b[k] : json("(none)");
    if (va != vb) d += (d.empty() ? "" : ", ") + k + " " + va.dump() + " -> " + vb.dump();
  }
  return d.empty() ? "identical" : d;
}

bool finished(const json& run) {
  const std::string st = run.value("status", "");
  return st == "ok" || st == "diverged";
}

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

NamedTensors snapshot(const Module& m) {
  NamedTensors s;
  for (auto& [n, t] : m.state()) s.emplace_back(n, t.clone());
  return s;
}

struct Data {
  Dataset train, val, test;
};

std::string label(const Cell& c) { return c.key == "fp" ? "fp" : "bits=" + std::to_string(c.bits) + " " + c.surrogate; }

// Trains one cell; returns its JSON record. Divergence (train_epoch throws on
// a NaN/Inf loss) is recorded as status "diverged", other errors propagate.
json train_run(const Options& o, const RunSpec& r, const Data& d, const std::string& tag) {
  const double t0 = app::now_seconds();
  json run{{"key", r.cell.key}, {"bits", r.cell.bits},
           {"surrogate", r.cell.surrogate.empty() ? json(nullptr) : json(r.cell.surrogate)},
           {"config", r.config}, {"status", "running"}, {"epochs", json::array()}};
  app::MlpConfig m = r.mlp;
  m.in = d.train.sample_numel();
  m.classes = d.train.num_classes;
  Rng rng(o.seed);
  std::shared_ptr<Module> model = app::build_mlp(m, rng);
  const app::LossKind loss_kind = app::parse_loss(r.loss);
  const int64_t params = model->num_parameters();
  double bytes_packed = 0;
  for (const auto& row : summarize(*model)) bytes_packed += row.bytes_packed();
  run["model"] = {{"params", params}, {"bytes_fp32", params * 4}, {"bytes_packed", bytes_packed}};

  auto opt = make_optimizer(r.optimizer, model->parameters(), r.lr);
  ScheduleConfig sc;
  sc.lr = r.lr;
  sc.lr_end = r.lr_end;
  sc.total_epochs = o.epochs;
  auto sched = make_schedule(r.schedule, sc);
  DataLoader loader(d.train, o.batch, true, o.seed);
  int best_epoch = 0;
  double best_val = -1;
  NamedTensors best;
  try {
    for (int e = 0; e < o.epochs; ++e) {
      const float lr = sched->lr_at(e);
      opt->set_lr(lr);
      app::Progress prog(tag + " " + label(r.cell) + " epoch " + std::to_string(e + 1) + "/" +
                         std::to_string(o.epochs));
      auto st = app::train_epoch(*model, *opt, loader, e, loss_kind,
                                 [&](int64_t dn, int64_t t, double l) { prog.update(dn, t, l); });
      app::EvalStats vs = d.val.size() ? app::evaluate(*model, d.val, loss_kind) : app::EvalStats{};
      if (!o.quiet) {
        std::printf("    %s epoch %3d  lr %.3g  train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs\n",
                    label(r.cell).c_str(), e + 1, lr, st.loss, st.acc, vs.loss, vs.acc, st.seconds);
        std::fflush(stdout);
      }
      run["epochs"].push_back({{"epoch", e + 1}, {"train_loss", st.loss}, {"train_acc", st.acc},
                               {"val_loss", vs.loss}, {"val_acc", vs.acc}, {"seconds", st.seconds},
                               {"images_per_s", st.images_per_s}, {"lr", f2d(lr)}});
      if (vs.acc > best_val || d.val.size() == 0) {
        best_val = vs.acc;
        best_epoch = e + 1;
        best = snapshot(*model);
      }
    }
  } catch (const app::Diverged& e) {
    const std::string msg = e.what();
    if (isatty(2)) std::fputc('\n', stderr);  // end the progress line the throw cut short
    run["status"] = "diverged";
    run["error"] = msg;
    run["best_epoch"] = best_epoch;
    run["best_val_acc"] = best_val < 0 ? json(nullptr) : json(best_val);
    run["test_acc"] = nullptr;
    run["test_loss"] = nullptr;
    run["seconds"] = app::now_seconds() - t0;
    run["host"] = hostname();
    run["finished_at"] = utc_now();
    return run;
  }
  if (!best.empty()) {
    NamedTensors st = model->state();
    assign_tensors(st, best, "best-epoch snapshot");
  }
  app::EvalStats ts = app::evaluate(*model, d.test, loss_kind);
  run["status"] = "ok";
  run["best_epoch"] = best_epoch;
  run["best_val_acc"] = best_val < 0 ? json(nullptr) : json(best_val);
  run["test_acc"] = ts.acc;
  run["test_loss"] = ts.loss;
  run["seconds"] = app::now_seconds() - t0;
  run["host"] = hostname();
  run["finished_at"] = utc_now();
  return run;
}

// ---------------------------------------------------------------- outputs ---

// j[k] for a const object, null when absent (const operator[] would assert).
const json& at(const json& j, const std::string& k) {
  static const json null_json;
  if (!j.is_object()) return null_json;
  auto it = j.find(k);
  return it == j.end() ? null_json : *it;
}

std::string pct(const json& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", 100.0 * v.get<double>());
  return buf;
}

std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string md_escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string json_str(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return fmt_g(v.get<double>());
  return v.dump();
}

// The table's layout: rows = bits, columns = surrogates. The requested lists
// come first (so missing cells show as "-"), then anything else the runs hold.
struct Grid {
  std::vector<int> bits;
  std::vector<std::string> surrogates;
  const json* fp = nullptr;
  std::map<std::pair<int, std::string>, const json*> cells;
};

Grid make_grid(const std::vector<json>& runs, const std::vector<int>& bits, const std::vector<std::string>& surs) {
  Grid g;
  g.bits = bits;
  g.surrogates = surs;
  std::vector<int> extra_bits;
  for (const auto& r : runs) {
    if (r.value("key", "") == "fp") {
      g.fp = &r;
      continue;
    }
    const int b = r.value("bits", 0);
    const std::string s = r.value("surrogate", "");
    if (std::find(g.bits.begin(), g.bits.end(), b) == g.bits.end() &&
        std::find(extra_bits.begin(), extra_bits.end(), b) == extra_bits.end())
      extra_bits.push_back(b);
    if (std::find(g.surrogates.begin(), g.surrogates.end(), s) == g.surrogates.end()) g.surrogates.push_back(s);
    g.cells[{b, s}] = &r;
  }
  std::sort(extra_bits.begin(), extra_bits.end());
  g.bits.insert(g.bits.end(), extra_bits.begin(), extra_bits.end());
  std::stable_sort(g.bits.begin(), g.bits.end());
  return g;
}

std::string cell_text(const json* r) {
  if (!r) return "-";
  const std::string st = r->value("status", "");
  if (st == "diverged") return "diverged";
  if (st != "ok") return "-";
  return pct(at(*r, "test_acc"));
}

// Settings that must agree between runs for the table to compare like with
// like: all runs share `common`; the quantized runs also share `quant_only`
// (the fp run has its own model defaults for those).
const std::vector<std::string> kCommon = {"dataset", "hidden", "layers", "epochs", "batch", "optimizer", "schedule",
                                          "seed", "val", "limit_train", "bn_momentum", "patience"};
const std::vector<std::string> kQuantOnly = {"lr", "lr_end", "loss", "dropout", "input_dropout", "lr_scale",
                                             "bn_eps", "binarize", "shift_bn"};

std::vector<std::string> consistency_notes(const std::vector<json>& runs) {
  std::vector<std::string> notes;
  auto check = [&](const std::string& k, bool quant_only) {
    std::map<std::string, std::vector<std::string>> by_value;
    for (const auto& r : runs) {
      if (quant_only && r.value("key", "") == "fp") continue;
      const json& c = at(r, "config");
      by_value[c.contains(k) ? c[k].dump() : "(none)"].push_back(r.value("key", "?"));
    }
    if (by_value.size() <= 1) return;
    std::string n = "runs differ in `" + k + "`:";
    for (const auto& [v, keys] : by_value) {
      n += " " + v + " (" + std::to_string(keys.size()) + " run" + (keys.size() > 1 ? "s" : "");
      if (keys.size() <= 3) {
        n += ": ";
        for (size_t i = 0; i < keys.size(); ++i) n += (i ? "; " : "") + keys[i];
      }
      n += ")";
    }
    notes.push_back(n);
  };
  for (const auto& k : kCommon) check(k, false);
  for (const auto& k : kQuantOnly) check(k, true);
  return notes;
}

std::string make_markdown(const std::vector<json>& runs, const Grid& g) {
  std::string dataset = "MNIST";
  for (const auto& r : runs)
    if (at(at(r, "config"), "dataset") == "fashion-mnist") dataset = "Fashion-MNIST";
  std::string md = "# Bits x surrogate sweep (" + dataset + " MLP)\n\n";
  md += "Test accuracy (%) at the best-validation epoch. Rows: bits of weights = activations "
        "(1 = BNN, sign); columns: the quantizers' surrogate gradient.\n\n";
  md += "| bits (W=A) |";
  for (const auto& s : g.surrogates) md += " " + s + " |";
  md += "\n|---|";
  for (size_t i = 0; i < g.surrogates.size(); ++i) md += "---:|";
  md += "\n";
  for (int b : g.bits) {
    md += "| " + std::to_string(b) + (b == 1 ? " (BNN)" : "") + " |";
    for (const auto& s : g.surrogates) {
      auto it = g.cells.find({b, s});
      md += " " + cell_text(it == g.cells.end() ? nullptr : it->second) + " |";
    }
    md += "\n";
  }
  if (g.fp) {
    md += "| FP (32-bit) | " + cell_text(g.fp) + " |";
    for (size_t i = 1; i < g.surrogates.size(); ++i) md += " |";
    md += "\n";
  }

  // Setup, from the runs' own configs.
  const json* q = nullptr;
  for (const auto& r : runs)
    if (r.value("key", "") != "fp") {
      q = &r;
      break;
    }
  const json* any = q ? q : g.fp;
  if (any) {
    const json& c = at(*any, "config");
    md += "\nSetup: " + json_str(at(c, "dataset")) + ", MLP " + json_str(at(c, "hidden")) + " x " + json_str(at(c, "layers")) +
          " hidden, " + json_str(at(c, "epochs")) + " epoch(s), batch " + json_str(at(c, "batch")) + ", " +
          json_str(at(c, "optimizer")) + ", seed " + json_str(at(c, "seed")) + ", validation " + json_str(at(c, "val")) +
          (c.value("limit_train", (int64_t)-1) > 0 ? ", first " + json_str(at(c, "limit_train")) + " training images"
                                                   : "") +
          ".";
    if (q) {
      const json& qc = at(*q, "config");
      md += " Quantized: " + json_str(at(qc, "loss")) + " loss, LR " + json_str(at(qc, "lr")) + " -> " +
            json_str(at(qc, "lr_end")) + " " + json_str(at(qc, "schedule")) + ", input dropout " +
            json_str(at(qc, "input_dropout")) + ".";
    }
    if (g.fp) {
      const json& fc = at(*g.fp, "config");
      md += " FP: " + json_str(at(fc, "loss")) + " loss, LR " + json_str(at(fc, "lr")) + " -> " + json_str(at(fc, "lr_end")) +
            ", dropout " + json_str(at(fc, "dropout")) + ".";
    }
    md += "\n";
  }

  // Per-run details.
  md += "\n| run | model | surrogate used | test % | best epoch | val % | seconds | host |\n"
        "|---|---|---|---:|---:|---:|---:|---|\n";
  for (int b : g.bits)
    for (const auto& s : g.surrogates) {
      auto it = g.cells.find({b, s});
      if (it == g.cells.end()) continue;
      const json& r = *it->second;
      const json& c = at(r, "config");
      char secs[32];
      std::snprintf(secs, sizeof secs, "%.1f", r.value("seconds", 0.0));
      md += "| " + r.value("key", "") + " | " + json_str(at(c, "model")) + " | " + json_str(at(c, "surrogate")) + " | " +
            cell_text(&r) + " | " + json_str(at(r, "best_epoch")) + " | " + pct(at(r, "best_val_acc")) + " | " + secs +
            " | " + r.value("host", "") + " |\n";
    }
  if (g.fp) {
    const json& r = *g.fp;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", r.value("seconds", 0.0));
    md += "| fp | fp | - | " + cell_text(&r) + " | " + json_str(at(r, "best_epoch")) + " | " + pct(at(r, "best_val_acc")) +
          " | " + secs + " | " + r.value("host", "") + " |\n";
  }

  std::vector<std::string> notes;
  for (const auto& r : runs)
    if (r.value("status", "") == "diverged")
      notes.push_back(r.value("key", "?") + " diverged: " + r.value("error", ""));
  for (const auto& r : runs)
    if (r.value("key", "") != "fp" && r.contains("surrogate") && at(r, "surrogate").is_string() &&
        at(r, "config").value("surrogate", "") != at(r, "surrogate").get<std::string>())
      notes.push_back(r.value("key", "?") + " used surrogate " + at(r, "config").value("surrogate", "") +
                      " (--periodic-kbit: the seed report's periodic tanh for k-bit quantizers)");
  for (const auto& n : consistency_notes(runs)) notes.push_back("WARNING: " + n);
  if (!notes.empty()) {
    md += "\nNotes:\n\n";
    for (const auto& n : notes) md += "- " + md_escape(n) + "\n";
  }
  return md;
}

std::string make_csv(const std::vector<json>& runs, const Grid& g) {
  std::string csv =
      "key,model,bits,surrogate,surrogate_used,status,test_acc,test_loss,best_epoch,best_val_acc,epochs_run,"
      "epochs,seconds,lr,lr_end,hidden,layers,batch,seed,limit_train,host,error\n";
  auto row = [&](const json& r) {
    const json& c = at(r, "config");
    std::vector<std::string> f = {r.value("key", ""),
                                  json_str(at(c, "model")),
                                  json_str(at(r, "bits")),
                                  json_str(at(r, "surrogate")),
                                  r.value("key", "") == "fp" ? "" : json_str(at(c, "surrogate")),
                                  r.value("status", ""),
                                  json_str(at(r, "test_acc")),
                                  json_str(at(r, "test_loss")),
                                  json_str(at(r, "best_epoch")),
                                  json_str(at(r, "best_val_acc")),
                                  std::to_string(at(r, "epochs").size()),
                                  json_str(at(c, "epochs")),
                                  json_str(at(r, "seconds")),
                                  json_str(at(c, "lr")),
                                  json_str(at(c, "lr_end")),
                                  json_str(at(c, "hidden")),
                                  json_str(at(c, "layers")),
                                  json_str(at(c, "batch")),
                                  json_str(at(c, "seed")),
                                  json_str(at(c, "limit_train")),
                                  r.value("host", ""),
                                  r.value("error", "")};
    for (size_t i = 0; i < f.size(); ++i) csv += (i ? "," : "") + csv_field(f[i]);
    csv += "\n";
  };
  if (g.fp) row(*g.fp);
  for (int b : g.bits)
    for (const auto& s : g.surrogates) {
      auto it = g.cells.find({b, s});
      if (it != g.cells.end()) row(*it->second);
    }
  return csv;
}

json table_json(const Grid& g) {
  json cells = json::object();
  for (int b : g.bits) {
    json row = json::object();
    for (const auto& s : g.surrogates) {
      auto it = g.cells.find({b, s});
      const json* r = it == g.cells.end() ? nullptr : it->second;
      row[s] = !r                                    ? json(nullptr)
               : r->value("status", "") == "ok"      ? at(*r, "test_acc")
                                                     : json(r->value("status", ""));
    }
    cells[std::to_string(b)] = row;
  }
  return json{{"bits", g.bits}, {"surrogates", g.surrogates}, {"test_acc", cells},
              {"fp", g.fp ? (g.fp->value("status", "") == "ok" ? at(*g.fp, "test_acc") : json(g.fp->value("status", "")))
                          : json(nullptr)}};
}

// Writes sweep.json, sweep.csv and sweep.md (each atomically); returns the markdown.
std::string write_outputs(const std::string& dir, const json& settings, const std::vector<json>& runs,
                          const std::vector<int>& bits, const std::vector<std::string>& surs) {
  fs::create_directories(dir);
  const Grid g = make_grid(runs, bits, surs);
  json out{{"tool", "qnn sweep"}, {"settings", settings}, {"table", table_json(g)}, {"runs", runs}};
  const std::string md = make_markdown(runs, g);
  write_file_atomic(dir + "/sweep.json", out.dump(2) + "\n");
  write_file_atomic(dir + "/sweep.csv", make_csv(runs, g));
  write_file_atomic(dir + "/sweep.md", md);
  return md;
}

std::vector<json> load_runs(const std::string& path) {
  std::vector<json> runs;
  if (!fs::exists(path)) return runs;
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("cannot parse " + path + " (" + e.what() + "); move it away or pick another --out");
  }
  QNN_CHECK(j.is_object() && j.contains("runs") && j["runs"].is_array(),
            path + " is not a sweep.json (no \"runs\" array)");
  for (const auto& r : j["runs"]) {
    QNN_CHECK(r.is_object() && r.contains("key") && r["key"].is_string() && r.contains("config"),
              path + ": a run without \"key\"/\"config\"");
    runs.push_back(r);
  }
  return runs;
}

void upsert(std::vector<json>& runs, const json& run) {
  for (auto& r : runs)
    if (r["key"] == run["key"]) {
      r = run;
      return;
    }
  runs.push_back(run);
}

json settings_json(const Options& o, const std::vector<int>& bits, const std::vector<std::string>& surs) {
  return json{{"dataset", o.dataset}, {"data", o.data}, {"epochs", o.epochs}, {"hidden", o.hidden},
              {"layers", o.layers}, {"batch", o.batch}, {"lr", o.lr > 0 ? json(f2d(o.lr)) : json("model default")},
              {"lr_end", o.lr_end > 0 ? json(f2d(o.lr_end)) : json("model default")}, {"bits", bits},
              {"surrogates", surs}, {"fp", !o.no_fp}, {"only", o.only}, {"periodic_kbit", o.periodic_kbit},
              {"seed", o.seed}, {"threads", o.threads}, {"val", o.val}, {"limit_train", o.limit_train},
              {"out", o.out}};
}

// ------------------------------------------------------------------ modes ---

int run_merge(const Options& o, const std::vector<int>& bits, const std::vector<std::string>& surs) {
  std::vector<json> runs;
  std::map<std::string, std::string> origin;  // key -> file it came from
  std::vector<std::string> sources;
  for (const auto& d : split(o.merge, ',')) {
    QNN_CHECK(!d.empty(), "--merge: empty directory name in '" + o.merge + "'");
    const std::string path = d.size() > 5 && d.substr(d.size() - 5) == ".json" ? d : d + "/sweep.json";
    QNN_CHECK(fs::exists(path), "--merge: " + path + " does not exist");
    const auto in = load_runs(path);
    sources.push_back(path);
    int added = 0;
    for (const auto& r : in) {
      if (!finished(r)) continue;
      const std::string key = r["key"];
      auto it = std::find_if(runs.begin(), runs.end(), [&](const json& x) { return x["key"] == key; });
      if (it == runs.end()) {
        runs.push_back(r);
        origin[key] = path;
        ++added;
        continue;
      }
      const json a = identity_of((*it)["config"]), b = identity_of(r["config"]);
      QNN_CHECK(a == b, "--merge: " + key + " is in " + origin[key] + " and " + path +
                            " with different configs (" + config_diff(a, b) + "); merge slices of one sweep");
      // Same run twice (e.g. a slice copied around): keep a finished "ok" over "diverged".
      if ((*it).value("status", "") != "ok" && r.value("status", "") == "ok") {
        *it = r;
        origin[key] = path;
      }
    }
    std::printf("# %s: %zu run(s), %d new\n", path.c_str(), in.size(), added);
  }
  QNN_CHECK(!runs.empty(), "--merge: no finished runs in " + o.merge);
  json settings{{"merged_from", sources}};
  const std::string md = write_outputs(o.out, settings, runs, bits, surs);
  std::printf("\n%s\n# wrote %s/sweep.json, sweep.csv, sweep.md (%zu runs)\n", md.c_str(), o.out.c_str(),
              runs.size());
  return 0;
}

int run_sweep(Options& o, const std::vector<int>& bits, const std::vector<std::string>& surs, const Only& only) {
  if (o.data.empty()) o.data = "datasets/" + o.dataset;
  QNN_CHECK(o.dataset == "mnist" || o.dataset == "fashion-mnist",
            "--dataset must be mnist or fashion-mnist, got '" + o.dataset + "'");
  QNN_CHECK(o.epochs >= 1, "--epochs must be >= 1");
  QNN_CHECK(o.batch > 0, "--batch must be positive");
  QNN_CHECK(o.val >= 0, "--val must be >= 0");
  QNN_CHECK(o.lr < 0 || (o.lr > 0 && std::isfinite(o.lr)), "--lr must be a positive number");
  QNN_CHECK(o.lr_end < 0 || (o.lr_end > 0 && std::isfinite(o.lr_end)), "--lr-end must be a positive number");
  if (o.threads <= 0) o.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  kernels::set_num_threads(o.threads);

  // The plan: fp first (the reference), then bits x surrogates, row by row.
  std::vector<Cell> plan;
  const bool want_fp = !o.no_fp && (!only.active || only.fp);
  if (want_fp) plan.push_back({"fp", 32, ""});
  if (!only.fp)
    for (int b : bits)
      for (const auto& s : surs) {
        if (only.bits && *only.bits != b) continue;
        if (only.surrogate && *only.surrogate != s) continue;
        plan.push_back({cell_key(b, s), b, s});
      }
  QNN_CHECK(!plan.empty(), "nothing to run (check --only / --no-fp)");
  std::vector<RunSpec> specs;
  for (const auto& c : plan) specs.push_back(make_spec(o, c));

  const json settings = settings_json(o, bits, surs);
  std::printf("# qnn sweep | %s\n", kernels::blas_info());
  std::printf("# settings %s\n", settings.dump().c_str());
  // The full config of the first run of each model kind; the others differ
  // only in bits and surrogate.
  std::set<std::string> shown;
  for (const auto& s : specs)
    if (shown.insert(s.mlp.model).second)
      std::printf("# config %-3s %s\n", s.mlp.model.c_str(), s.config.dump().c_str());
  std::string planned;
  for (const auto& s : specs) planned += (planned.empty() ? "" : " | ") + s.cell.key;
  std::printf("# plan (%zu runs): %s\n", specs.size(), planned.c_str());

  const std::string json_path = o.out + "/sweep.json";
  std::vector<json> runs = load_runs(json_path);
  if (!runs.empty()) std::printf("# resuming: %s holds %zu run(s)\n", json_path.c_str(), runs.size());
  auto stored = [&](const std::string& key) -> const json* {
    for (const auto& r : runs)
      if (r["key"] == key) return &r;
    return nullptr;
  };

  int todo = 0;
  for (const auto& s : specs) {
    const json* r = stored(s.cell.key);
    if (o.force || !r || !finished(*r) || identity_of((*r)["config"]) != s.identity) ++todo;
  }
  std::printf("# %zu run(s) planned, %d to train, %zu cached; %d epoch(s) each; output %s/\n", specs.size(), todo,
              specs.size() - todo, o.epochs, o.out.c_str());
  std::fflush(stdout);
  if (o.dry_run) return 0;

  std::optional<Data> data;
  const int n = (int)specs.size();
  for (int i = 0; i < n; ++i) {
    const RunSpec& s = specs[i];
    char tag[32];
    std::snprintf(tag, sizeof tag, "[%d/%d]", i + 1, n);
    const json* prev = stored(s.cell.key);
    if (prev && finished(*prev) && identity_of((*prev)["config"]) == s.identity && !o.force) {
      std::printf("%s %-8s %-10s cached: %s (use --force to rerun)\n", tag,
                  s.cell.key == "fp" ? "fp" : ("bits=" + std::to_string(s.cell.bits)).c_str(),
                  s.cell.surrogate.c_str(),
                  (*prev)["status"] == "ok" ? ("test " + pct(at(*prev, "test_acc")) + "%").c_str() : "diverged");
      std::fflush(stdout);
      continue;
    }
    if (prev && finished(*prev) && identity_of((*prev)["config"]) != s.identity)
      std::printf("%s %s: replacing a stored result with another config (%s)\n", tag, s.cell.key.c_str(),
                  config_diff(identity_of((*prev)["config"]), s.identity).c_str());
    if (!data) {
      // mnist_mlp's data: app::mnist_options (pixels (2p - 255) / 256).
      Dataset train_full = load_mnist(o.data, "train", app::mnist_options(o.limit_train > 0 ? o.limit_train : -1));
      QNN_CHECK(o.val < train_full.size(), "--val " + std::to_string(o.val) + " leaves no training images (" +
                                               std::to_string(train_full.size()) + " loaded)");
      auto [train, val] = split_tail(train_full, o.val);
      data = Data{std::move(train), std::move(val), load_mnist(o.data, "test", app::mnist_options())};
      std::printf("# data %s: train %lld, validation %lld, test %lld\n", o.data.c_str(),
                  (long long)data->train.size(), (long long)data->val.size(), (long long)data->test.size());
    }
    json run = train_run(o, s, *data, tag);
    if (run["status"] == "ok")
      std::printf("%s %-8s %-10s test %6.2f%%  best epoch %d/%d  val %s%%  %.1fs\n", tag,
                  s.cell.key == "fp" ? "fp" : ("bits=" + std::to_string(s.cell.bits)).c_str(),
                  s.cell.surrogate.c_str(), 100.0 * run["test_acc"].get<double>(), run["best_epoch"].get<int>(),
                  o.epochs, pct(run["best_val_acc"]).c_str(), run["seconds"].get<double>());
    else
      std::printf("%s %-8s %-10s DIVERGED: %s  %.1fs\n", tag,
                  s.cell.key == "fp" ? "fp" : ("bits=" + std::to_string(s.cell.bits)).c_str(),
                  s.cell.surrogate.c_str(), run.value("error", "").c_str(), run["seconds"].get<double>());
    std::fflush(stdout);
    upsert(runs, run);
    write_outputs(o.out, settings, runs, bits, surs);
  }
  const std::string md = write_outputs(o.out, settings, runs, bits, surs);
  std::printf("\n%s\n# wrote %s/sweep.json, sweep.csv, sweep.md\n", md.c_str(), o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  qnn::kernels::select_blas_core(argv);  // may restart the program once (see kernels/sgemm.h)
  Options o;
  CLI::App cli{"The bits x surrogate sweep (seed report, table 5.2): the MNIST MLP at bits {1,2,3,4} (weights = "
               "activations; 1 = BNN) x surrogate {hardtanh, tanh:3, tanh:4, tanh:5}, plus a full-precision "
               "reference, one epoch budget and seed for all. Writes DIR/sweep.{json,csv,md}; resumable."};
  cli.add_option("--epochs", o.epochs, "epoch budget of every run")->capture_default_str();
  cli.add_option("--hidden", o.hidden, "hidden width")->capture_default_str();
  cli.add_option("--layers", o.layers, "number of hidden layers")->capture_default_str();
  cli.add_option("--batch", o.batch, "batch size")->capture_default_str();
  auto* lr_opt = cli.add_option("--lr", o.lr, "start learning rate for every run (default: 3e-3 quantized, 1e-3 fp)");
  auto* lr_end_opt = cli.add_option("--lr-end", o.lr_end, "final learning rate of the exponential decay (default: 3e-7 quantized, lr/10 fp)");
  cli.add_option("--bits", o.bits, "rows: bits of weights = activations, each 1..16 (1 = BNN with sign)")
      ->capture_default_str();
  cli.add_option("--surrogates", o.surrogates, "columns: surrogates (hardtanh | ste:C | tanh:K | periodic:K | identity)")
      ->capture_default_str();
  cli.add_flag("--no-fp", o.no_fp, "skip the full-precision reference run");
  cli.add_option("--only", o.only,
                 "run a slice: 'fp', or KEY=VALUE[,KEY=VALUE] with KEY bits|surrogate, e.g. bits=2, "
                 "surrogate=tanh:3, bits=1,surrogate=hardtanh");
  cli.add_flag("--periodic-kbit", o.periodic_kbit,
               "for bits >= 2 train the tanh:K columns with periodic:K (the seed report's eq. 18)");
  cli.add_option("--seed", o.seed, "seed of every run (cells differ only by the studied choice)")->capture_default_str();
  cli.add_option("--threads", o.threads, "threads for BLAS and OpenMP (default: all cores)");
  cli.add_option("--dataset", o.dataset, "mnist | fashion-mnist")->capture_default_str();
  cli.add_option("--data", o.data, "directory with the IDX files (default: datasets/<dataset>)");
  auto* limit_opt = cli.add_option("--limit-train", o.limit_train, "use only the first N training images (quick runs)");
  cli.add_option("--val", o.val, "validation images taken from the end of the training set")->capture_default_str();
  cli.add_option("--out", o.out, "output directory for sweep.json, sweep.csv, sweep.md")->capture_default_str();
  cli.add_option("--merge", o.merge,
                 "DIR1,DIR2,...: merge the sweep.json of slices into one table in --out (no training)");
  cli.add_flag("--force", o.force, "rerun runs that are already finished in DIR/sweep.json");
  cli.add_flag("--quiet", o.quiet, "no per-epoch lines, only one line per run");
  cli.add_flag("--dry-run", o.dry_run, "print the plan (and what is cached) and exit");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);  // prints the message (or --help)
    return rc == 0 ? 0 : 1;
  }
  try {
    // Negative values are the "model default" sentinels: refuse them when typed.
    QNN_CHECK(!lr_opt->count() || (o.lr > 0 && std::isfinite(o.lr)), "--lr must be a positive number");
    QNN_CHECK(!lr_end_opt->count() || (o.lr_end > 0 && std::isfinite(o.lr_end)), "--lr-end must be a positive number");
    QNN_CHECK(!limit_opt->count() || o.limit_train > 0, "--limit-train must be positive");
    const auto bits = parse_bits_list(o.bits);
    const auto surs = parse_surrogate_list(o.surrogates);
    if (!o.merge.empty()) return run_merge(o, bits, surs);
    const Only only = parse_only(o.only, bits, surs, o.no_fp);
    return run_sweep(o, bits, surs, only);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sweep: error: %s\n", e.what());
    return 1;
  }
}
