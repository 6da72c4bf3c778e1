// core/profiler.cpp — the per-op time table of core/profiler.h.
#include "core/profiler.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>

namespace qnn::profiler {
namespace {
bool g_on = false;
std::map<std::string, std::pair<double, long>>& table() {
  static std::map<std::string, std::pair<double, long>> t;  // row -> (seconds, calls)
  return t;
}
}  // namespace

bool enabled() { return g_on; }
void enable(bool on) { g_on = on; }
void reset() { table().clear(); }
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
void add(const std::string& row, double seconds) {
  auto& e = table()[row];
  e.first += seconds;
  e.second += 1;
}

std::vector<Row> rows() {
  std::vector<Row> r;
  for (const auto& [name, v] : table()) r.push_back({name, v.first, v.second});
  std::sort(r.begin(), r.end(), [](const Row& a, const Row& b) { return a.seconds > b.seconds; });
  return r;
}

void print(std::FILE* f, int steps) {
  const std::vector<Row> rs = rows();
  double total = 0;
  for (const Row& r : rs) total += r.seconds;
  const int s = std::max(steps, 1);
  std::fprintf(f, "%-28s %10s %8s %7s\n", "op", "ms/step", "calls", "share");
  for (const Row& r : rs)
    std::fprintf(f, "%-28s %10.3f %8.1f %6.1f%%\n", r.name.c_str(), r.seconds * 1e3 / s, double(r.calls) / s,
                 total > 0 ? 100.0 * r.seconds / total : 0.0);
  std::fprintf(f, "%-28s %10.3f\n", "total (timed ops)", total * 1e3 / s);
}

}  // namespace qnn::profiler
