// apps/sweep/cells.cpp — see cells.h.
#include "apps/sweep/cells.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <set>

#include "layers/quant/surrogate.h"

namespace qnn::sweep {

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

std::string cell_key(int bits, const std::string& sur) { return "bits=" + std::to_string(bits) + ",surrogate=" + sur; }

// Part of a run's identity: results from another input scaling are not reused.

// Part of a run's identity: results from another input scaling are not reused.
std::string pixel_scale_name(PixelScale s) {
  switch (s) {
    case PixelScale::MinusOneToOne: return "p/127.5-1";
    case PixelScale::ZeroToOne: return "p/255";
    case PixelScale::OddOver256: return "(2p-255)/256";
  }
  return "?";
}

json identity_of(const json& config) {
  json id = config;
  if (id.is_object()) {
    id.erase("threads");
    id.erase("data");
  }
  return id;
}

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

// The cell's surrogate as the model uses it: the student report's k-bit
// variant of tanh(Kx) (its eq. 18, one riser per quantization step) with
// --periodic-kbit.
static std::string cell_surrogate(const Options& o, const Cell& cell) {
  const Surrogate s = parse_surrogate(cell.surrogate);
  if (o.periodic_kbit && cell.bits >= 2 && s.kind == SurrogateKind::tanh) return Surrogate::periodic(s.param).str();
  return cell.surrogate;
}

// --app cifar_cnn: the cell is the cifar_cnn run with --model bnn / qnn
// --wbits b --abits b / fp and the sweep's flags, resolved by cifar_cnn's
// own resolve_cnn_app (recipe defaults, the --limit-train / --val rule).
static RunSpec make_cnn_spec(const Options& o, const Cell& cell) {
  RunSpec r;
  r.cell = cell;
  r.app = "cifar_cnn";
  app::CnnAppOptions a;
  a.dataset = o.dataset;
  a.data = o.data;
  a.cnn.arch = o.arch;
  a.cnn.width = o.width;
  if (cell.bits == 32) {
    a.cnn.model = "fp";
  } else if (cell.bits == 1) {
    a.cnn.model = "bnn";
  } else {
    a.cnn.model = "qnn";
    a.cnn.wbits = a.cnn.abits = cell.bits;
  }
  if (!cell.surrogate.empty()) a.cnn.surrogate = cell_surrogate(o, cell);
  a.cnn.shortcuts = o.shortcuts && cell.bits != 32;
  a.train = o.train;  // schedule exponential, patience 0: the sweep's fixed protocol
  a.val_given = o.val_given;
  r.lr_decay = app::resolve_cnn_app(a);
  r.cnn = a.cnn;
  r.train = a.train;
  r.augment = *a.augment;  // resolved by resolve_cnn_app
  r.normalize = a.normalize.value_or(false);
  r.config = app::cnn_config_json(a, r.lr_decay);
  r.identity = identity_of(r.config);
  return r;
}

// --app imdb_lstm: the cell is the imdb_lstm run with --model qnn --wbits b
// --abits b --surrogate S (fp: --model fp) and the sweep's flags, resolved by
// imdb_lstm's own resolve_lstm_app (apps/common/lstm_train.h: its recipe).
static RunSpec make_lstm_spec(const Options& o, const Cell& cell) {
  RunSpec r;
  r.cell = cell;
  r.app = "imdb_lstm";
  app::LstmAppOptions a;
  a.data = o.data.empty() ? "datasets/imdb" : o.data;
  a.lstm.hidden = o.hidden;
  if (cell.bits == 32) {
    a.lstm.model = "fp";
  } else {
    a.lstm.model = "qnn";
    a.lstm.wbits = a.lstm.abits = cell.bits;
  }
  if (!cell.surrogate.empty()) a.lstm.surrogate = cell_surrogate(o, cell);
  a.train = o.train;  // optimizer adam, schedule exponential, patience 0: the sweep's fixed protocol
  r.lr_decay = app::resolve_lstm_app(a);
  r.lstm = a;
  r.train = a.train;
  r.config = app::lstm_config_json(a, r.lr_decay);
  r.identity = identity_of(r.config);
  return r;
}

RunSpec make_spec(const Options& o, const Cell& cell) {
  if (o.app == "cifar_cnn") return make_cnn_spec(o, cell);
  if (o.app == "imdb_lstm") return make_lstm_spec(o, cell);
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
  if (!cell.surrogate.empty()) m.surrogate = cell_surrogate(o, cell);
  app::resolve_defaults(m);
  r.train = o.train;  // optimizer adam, schedule exponential, patience 0: the sweep's fixed protocol
  r.lr_decay = app::resolve_training_defaults(m.model, r.train);
  const auto& t = r.train;
  using app::f2d;
  r.config = json{{"dataset", o.dataset}, {"data", o.data}, {"model", m.model}, {"hidden", m.hidden},
                  {"layers", m.layers}, {"wbits", *m.wbits}, {"abits", *m.abits}, {"surrogate", m.surrogate},
                  {"weight_surrogate", m.weight_surrogate}, {"binarize", m.binarize}, {"shift_bn", m.shift_bn},
                  {"lr_scale", *m.lr_scale ? 1 : 0}, {"dropout", f2d(*m.dropout)},
                  {"input_dropout", f2d(*m.input_dropout)}, {"epochs", t.epochs}, {"batch", t.batch},
                  {"optimizer", *t.optimizer}, {"lr", f2d(*t.lr)}, {"lr_end", f2d(*t.lr_end)},
                  {"schedule", t.schedule}, {"loss", *t.loss}, {"seed", t.seed}, {"threads", t.threads.value_or(0)},
                  {"val", t.val}, {"patience", t.patience}, {"bn_momentum", f2d(m.bn_momentum)},
                  {"bn_eps", f2d(*m.bn_eps)}, {"limit_train", t.limit_train.value_or(-1)},
                  {"pixel_scale", pixel_scale_name(app::mnist_options().scale)}};
  // Only with the per-epoch default schedule, so runs with --lr-end keep the
  // identity (and the cache) of earlier builds.
  if (r.lr_decay > 0) r.config["lr_decay"] = f2d(r.lr_decay);
  r.identity = identity_of(r.config);
  return r;
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

}  // namespace qnn::sweep
