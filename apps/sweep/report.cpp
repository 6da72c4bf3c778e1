// apps/sweep/report.cpp — see report.h.
#include "apps/sweep/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/fileio.h"
#include "apps/common/plot.h"
#include "core/tensor.h"  // QNN_CHECK, fail

namespace qnn::sweep {
namespace fs = std::filesystem;

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

// Helpers of write_outputs and table_heatmap: internal to this file.
namespace {

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
// (the fp run has its own model defaults for those: cifar_cnn's fp trains
// with adamw and weight decay, its quantized nets with adam).
const std::vector<std::string> kCommon = {"dataset", "hidden", "layers", "epochs", "batch", "schedule",
                                          "seed", "val", "limit_train", "bn_momentum", "patience",
                                          "arch", "width", "augment", "pad"};
const std::vector<std::string> kQuantOnly = {"optimizer", "weight_decay", "lr", "lr_end", "lr_decay", "loss", "dropout", "input_dropout", "lr_scale",
                                             "bn_eps", "binarize", "shift_bn", "shortcuts"};

// "adam", or "adamw, weight decay 0.2" when the config records a decay.
std::string optimizer_words(const json& config) {
  std::string w = json_str(at(config, "optimizer"));
  if (config.contains("weight_decay")) w += ", weight decay " + json_str(config["weight_decay"]);
  return w;
}

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
  bool cnn = false;  // --app cifar_cnn runs: their config names an "arch"
  for (const auto& r : runs) {
    const json& ds = at(at(r, "config"), "dataset");
    if (ds == "fashion-mnist") dataset = "Fashion-MNIST";
    if (ds == "cifar10") dataset = "CIFAR-10";
    if (ds == "svhn") dataset = "SVHN";
    if (ds == "imdb") dataset = "IMDB";
    cnn = cnn || at(r, "config").contains("arch");
  }
  std::string md = "# Bits x surrogate sweep (" + dataset + (cnn ? " CNN" : dataset == "IMDB" ? " LSTM" : " MLP") + ")\n\n";
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
      md += ' ';
      md += cell_text(it == g.cells.end() ? nullptr : it->second);
      md += " |";
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
    const std::string net = c.contains("arch") ? "CNN " + json_str(at(c, "arch")) + " width " + json_str(at(c, "width")) +
                                                     ", augmentation " + json_str(at(c, "augment"))
                            : c.contains("maxlen") ? "Embedding " + json_str(at(c, "embed")) + " -> LSTM " +
                                                     json_str(at(c, "hidden")) + " over the last " +
                                                     json_str(at(c, "maxlen")) + " tokens"
                                               : "MLP " + json_str(at(c, "hidden")) + " x " + json_str(at(c, "layers")) +
                                                     " hidden";
    md += "\nSetup: " + json_str(at(c, "dataset")) + ", " + net + ", " + json_str(at(c, "epochs")) + " epoch(s), batch " + json_str(at(c, "batch")) + ", seed " + json_str(at(c, "seed")) + ", validation " + json_str(at(c, "val")) +
          (c.value("limit_train", (int64_t)-1) > 0 ? ", first " + json_str(at(c, "limit_train")) + " training images"
                                                   : "") +
          ".";
    if (q) {
      const json& qc = at(*q, "config");
      md += " Quantized: " + optimizer_words(qc) + ", " + json_str(at(qc, "loss")) + " loss, LR " + json_str(at(qc, "lr")) + " -> " +
            json_str(at(qc, "lr_end")) + " " + json_str(at(qc, "schedule")) +
            (qc.contains("input_dropout") ? ", input dropout " + json_str(at(qc, "input_dropout")) : "") + ".";
    }
    if (g.fp) {
      const json& fc = at(*g.fp, "config");
      md += " FP: " + optimizer_words(fc) + ", " + json_str(at(fc, "loss")) + " loss, LR " + json_str(at(fc, "lr")) + " -> " + json_str(at(fc, "lr_end")) +
            (fc.contains("dropout") ? ", dropout " + json_str(at(fc, "dropout")) : "") +
            (fc.value("normalize", false) ? ", per-channel normalisation" : "") + ".";
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
                      " (--periodic-kbit: the student report's periodic tanh for k-bit quantizers)");
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
    for (size_t i = 0; i < f.size(); ++i) {
      if (i) csv += ',';
      csv += csv_field(f[i]);
    }
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

}  // namespace

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

app::HeatMap table_heatmap(const std::vector<json>& runs, const std::vector<int>& bits,
                           const std::vector<std::string>& surs) {
  const Grid g = make_grid(runs, bits, surs);
  // Test accuracy in %; a missing or diverged cell is empty.
  auto value = [](const json* r) {
    return r && r->value("status", "") == "ok" && at(*r, "test_acc").is_number() ? 100.0 * at(*r, "test_acc").get<double>()
                                                                                 : NAN;
  };
  app::HeatMap m;
  m.title = "test accuracy (%) by bits and surrogate gradient";
  m.xlabel = "surrogate gradient";
  m.ylabel = "bits (W = A)";
  m.zlabel = "test %";
  m.col_names = g.surrogates;
  for (int b : g.bits) {
    m.row_names.push_back(std::to_string(b) + (b == 1 ? " (BNN)" : ""));
    std::vector<double> row;
    for (const auto& s : g.surrogates) {
      auto it = g.cells.find({b, s});
      row.push_back(value(it == g.cells.end() ? nullptr : it->second));
    }
    m.z.push_back(row);
  }
  if (g.fp) {  // the full-precision run: one cell, under the first column, as in sweep.md
    m.row_names.push_back("FP (32-bit)");
    std::vector<double> row(g.surrogates.size(), NAN);
    if (!row.empty()) row[0] = value(g.fp);
    m.z.push_back(row);
  }
  return m;
}

void plot_table(const std::string& path, const std::vector<json>& runs, const std::vector<int>& bits,
                const std::vector<std::string>& surs) {
  const app::PlotFormat fmt = app::plot_format("--plot", path);
  const app::HeatMap m = table_heatmap(runs, bits, surs);
  app::render_job(path, fmt, [&](const std::string& dir, const std::string& out) {
    return app::heatmap_script(m, fmt, dir, out);
  });
}

}  // namespace qnn::sweep
