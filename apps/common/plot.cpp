// apps/common/plot.cpp — see plot.h.
#include "apps/common/plot.h"

#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "apps/common/flags.h"
#include "core/fileio.h"
#include "core/tensor.h"  // QNN_CHECK, fail

extern char** environ;

namespace qnn::app {
namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- gnuplot itself -------------------------------------------------------------

std::string find_gnuplot() {
  if (const char* env = std::getenv("QNN_GNUPLOT")) return ::access(env, X_OK) == 0 ? std::string(env) : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t b = 0;
  while (b <= dirs.size()) {
    size_t e = dirs.find(':', b);
    if (e == std::string::npos) e = dirs.size();
    const std::string dir = e > b ? dirs.substr(b, e - b) : ".";
    const std::string cand = dir + "/gnuplot";
    struct stat st {};
    if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(cand.c_str(), X_OK) == 0) return cand;
    b = e + 1;
  }
  return "";
}

void require_gnuplot(const std::string& flag) {
  QNN_CHECK(!find_gnuplot().empty(), flag + " needs gnuplot: apt-get install gnuplot-nox");
}

PlotFormat plot_format(const std::string& flag, const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (char& c : ext) c = (char)std::tolower((unsigned char)c);
  if (ext == ".svg") return PlotFormat::svg;
  if (ext == ".png") return PlotFormat::png;
  fail(flag + " " + path + ": the picture's name must end in .svg or .png");
}

void check_plot_path(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  plot_format(flag, path);
  check_writable(flag, path);
  require_gnuplot(flag);
}

// ---- script pieces ----------------------------------------------------------------

namespace {

// A gnuplot single-quoted string: no escapes inside except '' for a quote.
// Control characters (a newline would end the command) become spaces.
std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if ((unsigned char)c < 0x20 || c == 0x7f)
      out += ' ';
    else
      out += c;
  }
  return out + "'";
}

// Bare gnuplot keywords ("top right"): letters and spaces only, so nothing
// else can ride along into the command.
std::string words(const std::string& s) {
  std::string out;
  for (char c : s)
    if (std::isalpha((unsigned char)c) || c == ' ') out += c;
  return out;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "NaN";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string terminal(PlotFormat fmt, int width, int height) {
  // noenhanced: titles are file names and configs, where '_' and '^' are text.
  const std::string size = std::to_string(width) + "," + std::to_string(height);
  return fmt == PlotFormat::svg ? "set terminal svg size " + size + " noenhanced font 'sans,12' background '#ffffff'\n"
                                : "set terminal pngcairo size " + size + " noenhanced font 'sans,10'\n";
}

std::string data_path(const std::string& dir, const std::string& name) { return dir + "/" + name; }

}  // namespace

GnuplotJob line_figure_script(const LineFigure& fig, PlotFormat fmt, const std::string& data_dir,
                              const std::string& out_file) {
  GnuplotJob job;
  const int panels = std::max<int>(1, (int)fig.panels.size());
  std::string& s = job.script;
  // A key below the graph takes a line per series: grow the picture by that
  // much so the graph keeps its height.
  size_t below = 0;
  for (const auto& pan : fig.panels)
    if (pan.key.find("below") != std::string::npos) below = std::max(below, pan.series.size());
  s += terminal(fmt, 560 * panels, 440 + 22 * (int)below);
  s += "set output " + q(out_file) + "\n";
  s += "set datafile missing 'NaN'\n";
  s += "set grid\nset offsets graph 0.02, graph 0.02, graph 0.05, graph 0.05\n";
  s += "set multiplot layout 1," + std::to_string(panels) + " title " + q(fig.title) + "\n";
  for (size_t p = 0; p < fig.panels.size(); ++p) {
    const PlotPanel& pan = fig.panels[p];
    s += "set title " + q(pan.title) + "\n";
    s += "set xlabel " + q(pan.xlabel) + "\n";
    s += "set ylabel " + q(pan.ylabel) + "\n";
    s += "set key " + words(pan.key) + " box opaque\n";
    // Whole-number ticks for up to 20 epochs, gnuplot's own beyond (too dense).
    double xmax = 0;
    for (const auto& ser : pan.series)
      for (double x : ser.x) xmax = std::isfinite(x) ? std::max(xmax, x) : xmax;
    s += pan.integer_x && xmax <= 20 ? "set xtics 1\n" : "set xtics autofreq\n";
    std::string cmd;
    for (size_t i = 0; i < pan.series.size(); ++i) {
      const PlotSeries& ser = pan.series[i];
      const std::string name = "p" + std::to_string(p) + "s" + std::to_string(i) + ".dat";
      std::string data;
      for (size_t k = 0; k < ser.x.size() && k < ser.y.size(); ++k) data += num(ser.x[k]) + " " + num(ser.y[k]) + "\n";
      job.files.emplace_back(name, data);
      cmd += std::string(cmd.empty() ? "plot " : ", ") + q(data_path(data_dir, name)) + " using 1:2 with linespoints title " +
             q(ser.title);
    }
    // A panel without series still takes its place (an empty frame).
    s += (cmd.empty() ? "plot NaN notitle" : cmd) + "\n";
  }
  s += "unset multiplot\nset output\n";
  return job;
}

GnuplotJob heatmap_script(const HeatMap& map, PlotFormat fmt, const std::string& data_dir, const std::string& out_file) {
  GnuplotJob job;
  const size_t cols = map.col_names.size(), rows = map.row_names.size();
  QNN_CHECK(map.z.size() == rows, "heatmap: " + std::to_string(map.z.size()) + " rows of values for " +
                                      std::to_string(rows) + " row names");
  for (const auto& r : map.z)
    QNN_CHECK(r.size() == cols, "heatmap: a row has " + std::to_string(r.size()) + " values for " +
                                    std::to_string(cols) + " column names");
  // One line per cell: column index, row index (row 0 on top), value (NaN:
  // a blank cell), and the printed label ("-" for NaN).
  std::string data;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      const double v = map.z[r][c];
      char label[64] = "-";
      if (std::isfinite(v)) std::snprintf(label, sizeof label, map.cell_format.c_str(), v);
      data += std::to_string(c) + " " + std::to_string(rows - 1 - r) + " " + num(v) + " \"" + label + "\"\n";
    }
    data += "\n";  // gnuplot's grid format: a blank line between rows
  }
  job.files.emplace_back("cells.dat", data);
  const std::string file = q(data_path(data_dir, "cells.dat"));
  std::string& s = job.script;
  s += terminal(fmt, std::max<int>(480, 110 * (int)cols + 200), std::max<int>(320, 60 * (int)rows + 160));
  s += "set output " + q(out_file) + "\n";
  s += "set title " + q(map.title) + "\n";
  s += "set xlabel " + q(map.xlabel) + "\n";
  s += "set ylabel " + q(map.ylabel) + "\n";
  s += "set cblabel " + q(map.zlabel) + "\n";
  std::string xt, yt;
  for (size_t c = 0; c < cols; ++c) xt += (c ? ", " : "") + q(map.col_names[c]) + " " + std::to_string(c);
  for (size_t r = 0; r < rows; ++r) yt += (r ? ", " : "") + q(map.row_names[r]) + " " + std::to_string(rows - 1 - r);
  s += "set xtics (" + xt + ")\n";
  s += "set ytics (" + yt + ")\n";
  s += "set xrange [-0.5:" + num((double)cols - 0.5) + "]\n";
  s += "set yrange [-0.5:" + num((double)rows - 0.5) + "]\n";
  s += "set palette defined (0 '#f7fbff', 1 '#6baed6', 2 '#08306b')\n";
  s += "unset key\n";
  s += "plot " + file + " using 1:2:3 with image, " + file + " using 1:2:4 with labels font ',11'\n";
  s += "set output\n";
  return job;
}

// ---- running gnuplot ----------------------------------------------------------------

void render_job(const std::string& path, PlotFormat fmt,
                const std::function<GnuplotJob(const std::string&, const std::string&)>& gen) {
  const std::string exe = find_gnuplot();
  QNN_CHECK(!exe.empty(), "plot " + path + ": needs gnuplot: apt-get install gnuplot-nox");
  std::error_code ec;
  fs::path tmp_root = fs::temp_directory_path(ec);
  if (ec) tmp_root = "/tmp";
  std::string templ = (tmp_root / "qnn-plot-XXXXXX").string();
  QNN_CHECK(::mkdtemp(templ.data()) != nullptr, "plot " + path + ": cannot create a temporary directory in " +
                                                    tmp_root.string());
  const std::string dir = templ;
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(d, e);
    }
  } cleanup{dir};

  const std::string out = dir + (fmt == PlotFormat::svg ? "/out.svg" : "/out.png");
  const GnuplotJob job = gen(dir, out);
  for (const auto& [name, text] : job.files) write_file_atomic(dir + "/" + name, text);
  const std::string script = dir + "/plot.gp";
  write_file_atomic(script, job.script);

  // gnuplot reads the script file; no shell, so nothing in a name is a command.
  std::vector<std::string> args = {exe, script};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), environ);
  QNN_CHECK(rc == 0, "plot " + path + ": cannot run " + exe + " (" + std::strerror(rc) + ")");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    QNN_CHECK(errno == EINTR, "plot " + path + ": waiting for gnuplot failed");
  }
  QNN_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "plot " + path + ": gnuplot failed (" +
                (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                   : "killed by signal " + std::to_string(WTERMSIG(status))) +
                "; its messages are above)");
  QNN_CHECK(fs::exists(out, ec), "plot " + path + ": gnuplot wrote no picture");
  write_file_atomic(path, read_file(out));
}

// ---- the training apps' figure ----------------------------------------------------------

namespace {
double field(const json& e, const char* k) {
  auto it = e.find(k);
  return it != e.end() && it->is_number() ? it->get<double>() : NAN;
}
PlotSeries series_of(const json& epochs, const char* key, const std::string& title) {
  PlotSeries s;
  s.title = title;
  for (const auto& e : epochs) {
    s.x.push_back(field(e, "epoch"));
    s.y.push_back(field(e, key));
  }
  return s;
}
bool any_finite(const PlotSeries& s) {
  return std::any_of(s.y.begin(), s.y.end(), [](double v) { return std::isfinite(v); });
}
}  // namespace

LineFigure training_figure(const json& epochs, const std::string& title) {
  LineFigure f;
  f.title = title;
  PlotPanel loss{"loss per epoch", "epoch", "loss", {}, "top right", true};
  PlotPanel acc{"accuracy per epoch", "epoch", "accuracy", {}, "bottom right", true};
  for (auto [panel, key, name] : {std::tuple{&loss, "train_loss", "train"}, std::tuple{&loss, "val_loss", "validation"},
                                  std::tuple{&acc, "train_acc", "train"}, std::tuple{&acc, "val_acc", "validation"}}) {
    PlotSeries s = series_of(epochs, key, name);
    if (any_finite(s)) panel->series.push_back(std::move(s));  // --val 0: no validation line
  }
  f.panels = {loss, acc};
  return f;
}

void plot_training(const json& epochs, const std::string& path, const std::string& title) {
  const PlotFormat fmt = plot_format("--plot", path);
  const LineFigure fig = training_figure(epochs, title);
  render_job(path, fmt, [&](const std::string& dir, const std::string& out) {
    return line_figure_script(fig, fmt, dir, out);
  });
}

const std::vector<std::string>& epoch_metrics() {
  static const std::vector<std::string> m = {"val_acc", "val_loss", "train_acc", "train_loss", "lr", "seconds"};
  return m;
}

}  // namespace qnn::app
