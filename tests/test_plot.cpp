// tests/test_plot.cpp — the gnuplot script generators (apps/common/plot.h),
// as strings (no gnuplot needed), and real pictures when gnuplot is there.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "apps/common/plot.h"
#include "apps/sweep/report.h"
#include "core/fileio.h"
#include "core/tensor.h"

using namespace qnn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The --json "epochs" of a 3-epoch run; epoch 2 has no validation figures.
json small_run() {
  return json::array({
      {{"epoch", 1}, {"train_loss", 1.5}, {"train_acc", 0.5}, {"val_loss", 1.25}, {"val_acc", 0.625}},
      {{"epoch", 2}, {"train_loss", 1.0}, {"train_acc", 0.75}, {"val_loss", nullptr}, {"val_acc", nullptr}},
      {{"epoch", 3}, {"train_loss", 0.5}, {"train_acc", 0.875}, {"val_loss", 0.75}, {"val_acc", 0.8125}},
  });
}

const std::string* file_text(const app::GnuplotJob& j, const std::string& name) {
  for (const auto& [n, t] : j.files)
    if (n == name) return &t;
  return nullptr;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Temporarily set an environment variable.
struct EnvGuard {
  std::string name;
  std::string old;
  bool had;
  EnvGuard(const char* n, const char* v) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    ::setenv(n, v, 1);
  }
  ~EnvGuard() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

}  // namespace

TEST_CASE("plot: training figure script for a small run") {
  const app::LineFigure fig = app::training_figure(small_run(), "mnist bnn");
  const app::GnuplotJob j = app::line_figure_script(fig, app::PlotFormat::svg, "/D", "/D/out.svg");
  const std::string& s = j.script;
  CHECK(has(s, "set terminal svg size 1120,440 noenhanced"));
  CHECK(has(s, "set output '/D/out.svg'\n"));
  CHECK(has(s, "set multiplot layout 1,2 title 'mnist bnn'\n"));
  CHECK(has(s, "set title 'loss per epoch'\n"));
  CHECK(has(s, "set title 'accuracy per epoch'\n"));
  CHECK(has(s, "set xtics 1\n"));
  CHECK(has(s, "plot '/D/p0s0.dat' using 1:2 with linespoints title 'train', "
               "'/D/p0s1.dat' using 1:2 with linespoints title 'validation'\n"));
  CHECK(has(s, "plot '/D/p1s0.dat' using 1:2 with linespoints title 'train', "
               "'/D/p1s1.dat' using 1:2 with linespoints title 'validation'\n"));
  CHECK(has(s, "unset multiplot\n"));
  REQUIRE(j.files.size() == 4);
  REQUIRE(file_text(j, "p0s0.dat"));
  CHECK(*file_text(j, "p0s0.dat") == "1 1.5\n2 1\n3 0.5\n");
  CHECK(*file_text(j, "p1s1.dat") == "1 0.625\n2 NaN\n3 0.8125\n");  // no validation at epoch 2: a gap

  // --val 0: no validation lines at all.
  json no_val = small_run();
  for (auto& e : no_val) e["val_loss"] = nullptr, e["val_acc"] = nullptr;
  const auto j2 = app::line_figure_script(app::training_figure(no_val, "t"), app::PlotFormat::png, "/D", "/D/o.png");
  CHECK(has(j2.script, "set terminal pngcairo"));
  CHECK(!has(j2.script, "validation"));
  CHECK(j2.files.size() == 2);
}

TEST_CASE("plot: names cannot break out of the script") {
  app::LineFigure fig;
  fig.title = "it's\nset output '|rm -rf x'";
  app::PlotPanel p;
  p.key = "top right; system 'x'";
  p.series.push_back({"a'b", {1}, {2}});
  fig.panels = {p};
  const auto j = app::line_figure_script(fig, app::PlotFormat::svg, "/D", "/D/o.svg");
  // One quote doubled, the newline a space: still one command per line.
  CHECK(has(j.script, "title 'it''s set output ''|rm -rf x'''\n"));
  CHECK(has(j.script, "title 'a''b'\n"));
  CHECK(has(j.script, "set key top right system x box opaque\n"));
  int outputs = 0;
  for (size_t pos = 0; (pos = j.script.find("\nset output", pos)) != std::string::npos; ++pos) ++outputs;
  CHECK(outputs == 2);  // ours, and the final close
}

TEST_CASE("plot: heat map script") {
  app::HeatMap m;
  m.title = "t";
  m.col_names = {"hardtanh", "tanh:4"};
  m.row_names = {"1 (BNN)", "2"};
  m.z = {{97.5, NAN}, {98.25, 98.0}};
  const auto j = app::heatmap_script(m, app::PlotFormat::svg, "/D", "/D/o.svg");
  CHECK(has(j.script, "set xtics ('hardtanh' 0, 'tanh:4' 1)\n"));
  CHECK(has(j.script, "set ytics ('1 (BNN)' 1, '2' 0)\n"));  // row 0 on top
  CHECK(has(j.script, "plot '/D/cells.dat' using 1:2:3 with image, '/D/cells.dat' using 1:2:4 with labels"));
  REQUIRE(file_text(j, "cells.dat"));
  CHECK(*file_text(j, "cells.dat") == "0 1 97.5 \"97.50\"\n1 1 NaN \"-\"\n\n0 0 98.25 \"98.25\"\n1 0 98 \"98.00\"\n\n");
  m.z.pop_back();
  CHECK_THROWS_AS(app::heatmap_script(m, app::PlotFormat::svg, "/D", "/D/o.svg"), Error);

  // The sweep's table: bits x surrogate plus the FP row, diverged cells empty.
  std::vector<json> runs = {
      {{"key", "b1-hardtanh"}, {"bits", 1}, {"surrogate", "hardtanh"}, {"status", "ok"}, {"test_acc", 0.95}},
      {{"key", "b1-tanh:4"}, {"bits", 1}, {"surrogate", "tanh:4"}, {"status", "diverged"}},
      {{"key", "fp"}, {"status", "ok"}, {"test_acc", 0.98}},
  };
  const app::HeatMap t = sweep::table_heatmap(runs, {1, 2}, {"hardtanh", "tanh:4"});
  CHECK(t.row_names == std::vector<std::string>{"1 (BNN)", "2", "FP (32-bit)"});
  CHECK(t.z[0][0] == doctest::Approx(95.0));
  CHECK(std::isnan(t.z[0][1]));
  CHECK(std::isnan(t.z[1][0]));
  CHECK(t.z[2][0] == doctest::Approx(98.0));
}

TEST_CASE("plot: missing gnuplot and bad names give one-line errors") {
  CHECK_THROWS_WITH_AS(app::plot_format("--plot", "x.pdf"), doctest::Contains("--plot x.pdf: the picture's name must end in .svg or .png"), Error);
  CHECK(app::plot_format("--plot", "a/B.SVG") == app::PlotFormat::svg);
  EnvGuard g("QNN_GNUPLOT", "/nonexistent/gnuplot");
  CHECK(app::find_gnuplot().empty());
  CHECK_THROWS_WITH_AS(app::check_plot_path("--plot", "x.svg"),
                       "--plot needs gnuplot: apt-get install gnuplot-nox", Error);
  CHECK_THROWS_AS(app::plot_training(small_run(), "x.svg", "t"), Error);
}

TEST_CASE("plot: gnuplot draws an SVG naming the series") {
  if (app::find_gnuplot().empty()) {
    MESSAGE("gnuplot not installed: skipped (apt-get install gnuplot-nox)");
    return;
  }
  const fs::path d = fs::temp_directory_path() / ("qnn-test-plot-" + std::to_string(::getpid()));
  fs::create_directories(d);
  const std::string out = (d / "run's plot.svg").string();  // a quote in the name
  app::plot_training(small_run(), out, "tiny run");
  const std::string svg = read_file(out);
  CHECK(has(svg, "<svg"));
  CHECK(has(svg, "train"));
  CHECK(has(svg, "validation"));
  CHECK(has(svg, "accuracy per epoch"));

  std::vector<json> runs = {
      {{"key", "b1-hardtanh"}, {"bits", 1}, {"surrogate", "hardtanh"}, {"status", "ok"}, {"test_acc", 0.95}}};
  const std::string png = (d / "table.png").string();
  sweep::plot_table(png, runs, {1}, {"hardtanh"});
  CHECK(read_file(png).substr(1, 3) == "PNG");
  fs::remove_all(d);
}

TEST_CASE("sweep report: the fp run may have its own optimizer; quantized runs that differ are flagged") {
  // cifar_cnn's recipe: fp trains with adamw and weight decay, the quantized
  // nets with adam; the table states both and warns only when the quantized
  // cells disagree among themselves.
  auto run = [](const std::string& key, int bits, json config) {
    return json{{"key", key}, {"bits", bits}, {"surrogate", bits == 32 ? "" : "hardtanh"}, {"status", "ok"},
                {"test_acc", 0.9}, {"best_epoch", 1}, {"best_val_acc", 0.9}, {"seconds", 1.0},
                {"config", std::move(config)}};
  };
  const json adam = {{"optimizer", "adam"}, {"loss", "sqhinge"}};
  std::vector<json> runs = {run("fp", 32, {{"optimizer", "adamw"}, {"weight_decay", 0.2}, {"loss", "xent"}}),
                            run("bits=1,surrogate=hardtanh", 1, adam), run("bits=2,surrogate=hardtanh", 2, adam)};
  const fs::path dir = fs::temp_directory_path() / "qnn_test_sweep_report";
  std::string md = sweep::write_outputs(dir.string(), json::object(), runs, {1, 2}, {"hardtanh"});
  CHECK(md.find("WARNING") == std::string::npos);
  CHECK(md.find("Quantized: adam,") != std::string::npos);
  CHECK(md.find("FP: adamw, weight decay 0.2,") != std::string::npos);
  runs[2]["config"]["optimizer"] = "sgd";
  md = sweep::write_outputs(dir.string(), json::object(), runs, {1, 2}, {"hardtanh"});
  CHECK(md.find("WARNING: runs differ in `optimizer`") != std::string::npos);
  fs::remove_all(dir);
}
