// apps/qnn_plot.cpp — overlay training runs from their --json files.
//
//   build/apps/qnn_plot runs/bnn.json runs/fp.json -o runs/val_acc.svg
//   build/apps/qnn_plot runs/*.json -o loss.png --metric train_loss --label config
//
// One line per run: the chosen per-epoch metric (the --json "epochs" list)
// against the epoch. Labels: the file name without .json (--label name, the
// default) or the config keys that differ between the runs ("model=bnn
// lr=0.003"; --label config). Drawn by gnuplot (apps/common/plot.h).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "apps/common/cli_main.h"
#include "apps/common/flags.h"
#include "apps/common/plot.h"
#include "core/fileio.h"
#include "core/tensor.h"  // QNN_CHECK, fail

using namespace qnn;
using json = nlohmann::json;

namespace {

struct Options {
  std::vector<std::string> inputs;
  std::string out;
  std::string metric = "val_acc";
  std::string label = "name";
  std::string title;
};

struct Run {
  std::string file, name;
  json doc;
};

Run read_run(const std::string& path) {
  Run r;
  r.file = path;
  r.name = std::filesystem::path(path).stem().string();
  try {
    r.doc = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail(path + ": not JSON (" + std::string(e.what()) + ")");
  }
  QNN_CHECK(r.doc.is_object() && r.doc.contains("epochs") && r.doc["epochs"].is_array(),
            path + ": no \"epochs\" list (expected the --json file of a training app)");
  return r;
}

// A config value as a legend shows it: strings bare, numbers with 6
// significant digits (a float flag stored as 1.00000005e-4 reads 0.0001).
std::string value_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v.get<double>());
    return buf;
  }
  return v.dump();
}

// The config values that differ between runs, as "key=value ..." per run.
std::vector<std::string> config_labels(const std::vector<Run>& runs) {
  std::set<std::string> keys;
  for (const auto& r : runs)
    if (r.doc.contains("config") && r.doc["config"].is_object())
      for (auto it = r.doc["config"].begin(); it != r.doc["config"].end(); ++it) keys.insert(it.key());
  std::vector<std::string> differing;
  for (const auto& k : keys) {
    std::set<std::string> values;
    for (const auto& r : runs) {
      const json& c = r.doc.value("config", json::object());
      values.insert(c.contains(k) ? c[k].dump() : "");
    }
    if (values.size() > 1 && k != "threads") differing.push_back(k);
  }
  // What tells runs apart first: the model and its bits, then the rest A-Z.
  const std::vector<std::string> first = {"model", "wbits", "abits", "surrogate", "arch", "dataset"};
  std::stable_sort(differing.begin(), differing.end(), [&](const std::string& a, const std::string& b) {
    auto rank = [&](const std::string& k) { return std::find(first.begin(), first.end(), k) - first.begin(); };
    return rank(a) < rank(b);
  });
  std::vector<std::string> labels;
  for (const auto& r : runs) {
    const json& c = r.doc.value("config", json::object());
    std::string l;
    for (const auto& k : differing) {
      if (!c.contains(k)) continue;
      l += (l.empty() ? "" : " ") + k + "=" + value_text(c[k]);
    }
    labels.push_back(l.empty() ? r.name : l);
  }
  return labels;
}

int run(const Options& o) {
  const app::PlotFormat fmt = app::plot_format("-o", o.out);
  app::check_writable("-o", o.out);
  app::require_gnuplot("qnn_plot");
  std::vector<Run> runs;
  for (const auto& p : o.inputs) runs.push_back(read_run(p));
  std::vector<std::string> labels;
  if (o.label == "config")
    labels = config_labels(runs);
  else
    for (const auto& r : runs) labels.push_back(r.name);

  app::PlotPanel panel;
  panel.title = o.metric + " per epoch";
  panel.xlabel = "epoch";
  panel.ylabel = o.metric;
  panel.integer_x = true;
  panel.key = o.metric.find("acc") != std::string::npos ? "bottom right" : "top right";
  // Long labels (--label config) would cover the curves: put the key under
  // the graph, one run per line.
  for (const auto& l : labels)
    if (l.size() > 28) panel.key = "below left Left reverse";
  for (size_t i = 0; i < runs.size(); ++i) {
    app::PlotSeries s;
    s.title = labels[i];
    bool any = false;
    for (const auto& e : runs[i].doc["epochs"]) {
      const json& ep = e.contains("epoch") ? e["epoch"] : json();
      const json& v = e.contains(o.metric) ? e[o.metric] : json();
      if (!ep.is_number()) continue;
      s.x.push_back(ep.get<double>());
      s.y.push_back(v.is_number() ? v.get<double>() : NAN);
      any = any || v.is_number();
    }
    if (!any)
      std::fprintf(stderr, "qnn_plot: note: %s has no %s values (drawn as an empty line)\n", runs[i].file.c_str(),
                   o.metric.c_str());
    panel.series.push_back(std::move(s));
  }
  app::LineFigure fig;
  fig.title = o.title.empty() ? o.metric : o.title;
  fig.panels = {panel};
  app::render_job(o.out, fmt, [&](const std::string& dir, const std::string& out) {
    return app::line_figure_script(fig, fmt, dir, out);
  });
  std::printf("# wrote %s (%zu run%s, %s)\n", o.out.c_str(), runs.size(), runs.size() == 1 ? "" : "s",
              o.metric.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App cli{"Overlay training runs from their --json files as one gnuplot figure (qnn)."};
  cli.add_option("runs", o.inputs, "the --json files of training runs")->required()->check(CLI::ExistingFile);
  cli.add_option("-o,--output", o.out, "the picture to write: FILE.svg or FILE.png")->required();
  cli.add_option("--metric", o.metric, "the per-epoch value to draw")
      ->capture_default_str()
      ->check(app::one_of(app::epoch_metrics()));
  cli.add_option("--label", o.label, "name: each run's file name; config: the config values that differ")
      ->capture_default_str()
      ->check(app::one_of({"name", "config"}));
  cli.add_option("--title", o.title, "figure title (default: the metric)");
  return app::parse_and_run(cli, argc, argv, "qnn_plot", [&] { return run(o); });
}
