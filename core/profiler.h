// core/profiler.h — where does a training step's time go? A per-op wall-clock
// table, off by default and free when off (one branch per op).
//
//   qnn::profiler::enable(true);
//   ... forward (Sequential times each child module), backward (each node) ...
//   qnn::profiler::print(stdout, steps);   // ms per step, sorted, with %
//
// Forward rows are module types ("fwd Linear"); backward rows are autograd node
// names ("bwd linear"). Timings are wall clock on the calling thread, so an
// OpenMP-parallel op counts once, with its barrier.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace qnn::profiler {

bool enabled();
void enable(bool on);
void reset();
void add(const std::string& row, double seconds);
struct Row {
  std::string name;
  double seconds;  // total since reset()
  long calls;
};
std::vector<Row> rows();  // sorted by time, largest first
// Prints rows sorted by time: milliseconds per step (total / steps) and share.
void print(std::FILE* f, int steps);
double now();

// Times a scope into `row` when the profiler is on.
class Scope {
 public:
  Scope(const char* prefix, const char* name) : on_(enabled()) {
    if (on_) row_ = std::string(prefix) + name, t0_ = now();
  }
  ~Scope() {
    if (on_) add(row_, now() - t0_);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool on_;
  std::string row_;
  double t0_ = 0;
};

}  // namespace qnn::profiler
