// apps/sweep/report.h — the sweep's outputs: the table of test accuracies
// (rows = bits, columns = surrogates, plus the FP row) as sweep.md, one row
// per run as sweep.csv, every run's record as sweep.json; reading them back
// for resuming and --merge.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "apps/common/plot.h"

namespace qnn::sweep {

using json = nlohmann::json;

// j[k] for a const object, null when absent (const operator[] would assert).
const json& at(const json& j, const std::string& k);
std::string pct(const json& v);  // 0.9845 -> "98.45", "-" if not a number

// Writes DIR/sweep.json, sweep.csv and sweep.md (each atomically); returns the markdown.
std::string write_outputs(const std::string& dir, const json& settings, const std::vector<json>& runs,
                          const std::vector<int>& bits, const std::vector<std::string>& surs);
// The runs of a sweep.json ({} if the file does not exist); qnn::Error naming the file if it is not one.
std::vector<json> load_runs(const std::string& path);
// Replace the run with the same "key", or append.
void upsert(std::vector<json>& runs, const json& run);

// The table (test accuracy %, rows = bits then the FP run, columns =
// surrogates; missing or diverged cells empty) as a heat map, and drawn to
// `path` (.svg / .png) with gnuplot (--plot).
app::HeatMap table_heatmap(const std::vector<json>& runs, const std::vector<int>& bits,
                           const std::vector<std::string>& surs);
void plot_table(const std::string& path, const std::vector<json>& runs, const std::vector<int>& bits,
                const std::vector<std::string>& surs);

}  // namespace qnn::sweep
