#include "layers/module.h"

#include "core/profiler.h"

#include <cstdio>
#include <sstream>

namespace qnn {

LayerSummary Module::summary_row() const {
  LayerSummary r;
  r.type = type_name();
  for (const auto& [n, t] : params_) r.params += t.numel();
  return r;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  QNN_CHECK(t.defined(), "register_parameter: '" + name + "' is undefined");
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, t);
  return buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", params, buffers, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> r;
  collect("", true, false, r);
  return r;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> r;
  collect("", false, true, r);
  return r;
}

std::vector<std::pair<std::string, Tensor>> Module::state() const {
  std::vector<std::pair<std::string, Tensor>> r;
  collect("", true, true, r);
  return r;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> r;
  for (auto& [n, t] : named_parameters()) r.push_back(t);
  return r;
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.zero_grad();
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& t : parameters()) n += t.numel();
  return n;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [n, c] : children()) {
    if (!profiler::enabled() || !c->children().empty()) {
      h = c->forward(h);
      continue;
    }
    profiler::Scope timed("fwd ", c->type_name().c_str());
    h = c->forward(h);
  }
  return h;
}

// ---- summary ---------------------------------------------------------------

static void summarize_rec(const Module& m, const std::string& name, std::vector<LayerSummary>& rows) {
  if (m.children().empty()) {
    LayerSummary r = m.summary_row();
    r.name = name.empty() ? "0" : name;
    rows.push_back(r);
    return;
  }
  for (const auto& [n, c] : m.children()) summarize_rec(*c, name.empty() ? n : name + "." + n, rows);
}

std::vector<LayerSummary> summarize(const Module& m) {
  std::vector<LayerSummary> rows;
  summarize_rec(m, "", rows);
  return rows;
}

static std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1024.0 * 1024.0) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024.0));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

std::string summary_table(const Module& m) {
  auto rows = summarize(m);
  std::ostringstream os;
  char line[256];
  std::snprintf(line, sizeof line, "%-6s %-16s %-13s %11s %6s %6s %12s %12s\n", "layer", "type", "output", "params",
                "w-bits", "a-bits", "fp32", "packed");
  os << line << std::string(88, '-') << "\n";
  int64_t params = 0, qparams = 0;
  double fp = 0, packed = 0;
  for (const auto& r : rows) {
    std::string wb = r.params == 0 ? "-" : std::to_string(r.quant_params ? r.weight_bits : 32);
    std::snprintf(line, sizeof line, "%-6s %-16s %-13s %11lld %6s %6d %12s %12s\n", r.name.c_str(), r.type.c_str(),
                  r.output.c_str(), (long long)r.params, wb.c_str(), r.input_bits, human_bytes(r.bytes_fp32()).c_str(),
                  human_bytes(r.bytes_packed()).c_str());
    os << line;
    params += r.params;
    qparams += r.quant_params;
    fp += r.bytes_fp32();
    packed += r.bytes_packed();
  }
  os << std::string(88, '-') << "\n";
  std::snprintf(line, sizeof line,
                "total params %lld (%lld quantized, %lld at 32 bit) | fp32 %s | packed %s | compression %.2fx\n",
                (long long)params, (long long)qparams, (long long)(params - qparams), human_bytes(fp).c_str(),
                human_bytes(packed).c_str(), packed > 0 ? fp / packed : 1.0);
  os << line;
  return os.str();
}

}  // namespace qnn
