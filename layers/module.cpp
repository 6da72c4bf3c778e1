#include "layers/module.h"

#include "core/profiler.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace qnn {

LayerSummary Module::summary_row() const {
  LayerSummary r;
  r.type = type_name();
  for (const auto& [n, t] : params_) r.params += t.numel();
  return r;
}

Shape Module::output_shape(const Shape& in) const {
  Shape s = in;
  for (const auto& [n, c] : children_) s = c->output_shape(s);
  return s;
}

Shape features_output_shape(const Shape& in, int64_t in_features, int64_t out_features, const std::string& who) {
  if (in.empty()) return {-1, out_features};
  QNN_CHECK(in.back() == -1 || in.back() == in_features,
            who + ": input " + shape_str(in) + " has " + std::to_string(in.back()) + " features, expected " +
                std::to_string(in_features));
  Shape out = in;
  out.back() = out_features;
  return out;
}

std::vector<std::pair<std::string, Rng*>> Module::named_rngs() {
  std::vector<std::pair<std::string, Rng*>> out;
  std::vector<std::pair<std::string, Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    std::vector<std::pair<std::string, Rng*>> own;
    m->own_rngs(own);
    for (auto& [n, r] : own) {
      // A quantizer shared by two layers is one generator: list it once.
      const bool seen = std::any_of(out.begin(), out.end(), [r = r](const auto& e) { return e.second == r; });
      if (!seen) out.emplace_back(prefix + n, r);
    }
    const auto& ch = m->children_;
    for (auto it = ch.rbegin(); it != ch.rend(); ++it) stack.emplace_back(prefix + it->first + ".", it->second.get());
  }
  return out;
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

// Leaves in registration order; `shape` carries each leaf's output to the
// next one, so an elementwise layer (BatchNorm, Dropout) shows the shape the
// layer before it produced.
static void summarize_rec(const Module& m, const std::string& name, Shape& shape, std::vector<LayerSummary>& rows) {
  if (m.children().empty()) {
    LayerSummary r = m.summary_row();
    r.name = name.empty() ? "0" : name;
    shape = m.output_shape(shape);
    if (!shape.empty()) r.output = shape_str(shape);
    rows.push_back(r);
    return;
  }
  const Shape in = shape;
  for (const auto& [n, c] : m.children()) summarize_rec(*c, name.empty() ? n : name + "." + n, shape, rows);
  if (m.summary_row_after_children()) {
    LayerSummary r = m.summary_row();
    r.name = name.empty() ? "0" : name;
    shape = m.output_shape(in);
    if (!shape.empty()) r.output = shape_str(shape);
    rows.push_back(r);
  }
}

std::vector<LayerSummary> summarize(const Module& m, const Shape& input) {
  std::vector<LayerSummary> rows;
  Shape shape = input;
  summarize_rec(m, "", shape, rows);
  return rows;
}

static std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1024.0 * 1024.0) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024.0));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

std::string summary_table(const Module& m, const Shape& input) {
  auto rows = summarize(m, input);
  // The output column grows for long shapes (e.g. [-1, 128, 32, 32]); MLP tables keep 13.
  int ow = 13;
  for (const auto& r : rows) ow = std::max(ow, (int)r.output.size());
  const std::string rule(88 + ow - 13, '-');
  std::ostringstream os;
  char line[320];
  std::snprintf(line, sizeof line, "%-6s %-16s %-*s %11s %6s %6s %12s %12s\n", "layer", "type", ow, "output", "params",
                "w-bits", "a-bits", "fp32", "packed");
  os << line << rule << "\n";
  int64_t params = 0, qparams = 0;
  double fp = 0, packed = 0;
  for (const auto& r : rows) {
    std::string wb = r.params == 0 ? "-" : std::to_string(r.quant_params ? r.weight_bits : 32);
    std::snprintf(line, sizeof line, "%-6s %-16s %-*s %11lld %6s %6d %12s %12s\n", r.name.c_str(), r.type.c_str(), ow,
                  r.output.c_str(), (long long)r.params, wb.c_str(), r.input_bits, human_bytes(r.bytes_fp32()).c_str(),
                  human_bytes(r.bytes_packed()).c_str());
    os << line;
    params += r.params;
    qparams += r.quant_params;
    fp += r.bytes_fp32();
    packed += r.bytes_packed();
  }
  os << rule << "\n";
  std::snprintf(line, sizeof line,
                "total params %lld (%lld quantized, %lld at 32 bit) | fp32 %s | packed %s | compression %.2fx\n",
                (long long)params, (long long)qparams, (long long)(params - qparams), human_bytes(fp).c_str(),
                human_bytes(packed).c_str(), packed > 0 ? fp / packed : 1.0);
  os << line;
  return os.str();
}

}  // namespace qnn
