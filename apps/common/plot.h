// apps/common/plot.h — figures through gnuplot (--plot, qnn_plot).
//
// qnn draws nothing itself: it writes the numbers to data files and a
// gnuplot script into a private temporary directory, runs gnuplot on it as a
// subprocess (no shell: file names never reach a command line), and moves the
// picture to the requested path atomically. The script generators are plain
// functions of the data, so tests check the commands without gnuplot.
//
// Safety of the generated script: every string that reaches it (titles from
// file names or configs, the temporary paths) is written as a gnuplot
// single-quoted string ('' for a quote, control characters dropped), and
// gnuplot never sees a user's path: it reads our data files and writes
// our output file (a user path beginning with '|' or '<' would otherwise be a
// pipe to a shell command in gnuplot).
//
//   app::check_plot_path("--plot", f.plot_path);   // before training: extension, gnuplot installed
//   ...
//   app::plot_training(result.epochs, f.plot_path, "mnist_mlp bnn");
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace qnn::app {

// ---- gnuplot itself ---------------------------------------------------------

// The gnuplot executable to run: $QNN_GNUPLOT if set (a path; tests point it
// at a missing file), else "gnuplot" found on $PATH; "" when there is none.
std::string find_gnuplot();
// qnn::Error "<flag> needs gnuplot: apt-get install gnuplot-nox" if find_gnuplot() is "".
void require_gnuplot(const std::string& flag);

enum class PlotFormat { svg, png };
// From the extension (.svg / .png, any case); qnn::Error naming the flag otherwise.
PlotFormat plot_format(const std::string& flag, const std::string& path);
// Everything --plot needs, checked before any work: a known extension, a
// writable place (flags.h check_writable), gnuplot installed. "" is a no-op.
void check_plot_path(const std::string& flag, const std::string& path);

// ---- figures ----------------------------------------------------------------

// One line: (x, y) points; a NaN y is a gap (e.g. no validation that epoch).
struct PlotSeries {
  std::string title;
  std::vector<double> x, y;
};
// One panel of a figure: axes with lines.
struct PlotPanel {
  std::string title, xlabel, ylabel;
  std::vector<PlotSeries> series;
  std::string key = "bottom right";  // where the legend goes (gnuplot `set key` words)
  bool integer_x = false;            // x is a count (epochs): ticks on whole numbers
};
// Panels side by side under one title.
struct LineFigure {
  std::string title;
  std::vector<PlotPanel> panels;
};
// A table of values as coloured cells with the value printed in each:
// z[row][col], row 0 on top (read like a table), NaN = empty cell ("-").
struct HeatMap {
  std::string title, xlabel, ylabel, zlabel;
  std::vector<std::string> col_names, row_names;
  std::vector<std::vector<double>> z;
  std::string cell_format = "%.2f";  // printf format of the printed values (one double)
};

// A gnuplot script and the data files it reads (file name in the data
// directory -> contents).
struct GnuplotJob {
  std::string script;
  std::vector<std::pair<std::string, std::string>> files;
};

// The scripts, given the directory the data files will be in and the file
// gnuplot writes (run_gnuplot passes its temporary ones).
GnuplotJob line_figure_script(const LineFigure& fig, PlotFormat fmt, const std::string& data_dir,
                              const std::string& out_file);
GnuplotJob heatmap_script(const HeatMap& map, PlotFormat fmt, const std::string& data_dir, const std::string& out_file);

// Runs a generator in a temporary directory and writes the picture to
// `path` atomically. `gen(data_dir, out_file)` makes the job. qnn::Error
// naming `path` if gnuplot is missing or fails (its messages go to stderr).
void render_job(const std::string& path, PlotFormat fmt,
                const std::function<GnuplotJob(const std::string&, const std::string&)>& gen);

// ---- the training apps' figure ------------------------------------------------

// Loss and accuracy per epoch, train and validation, from the --json "epochs" list.
LineFigure training_figure(const nlohmann::json& epochs, const std::string& title);
// training_figure drawn to `path` (.svg or .png).
void plot_training(const nlohmann::json& epochs, const std::string& path, const std::string& title);

// The keys of a run's per-epoch records that can be drawn (qnn_plot --metric).
const std::vector<std::string>& epoch_metrics();

}  // namespace qnn::app
