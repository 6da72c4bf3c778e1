// apps/common/run_state.cpp — see run_state.h.
#include "apps/common/run_state.h"

#include <charconv>
#include <cstdio>

namespace qnn::app {

using json = nlohmann::json;

namespace {

constexpr const char* kKind = "qnn-run-state";
constexpr int kVersion = 1;

// A generator state as 4 hex words: JSON numbers are doubles, which would
// round 64-bit words.
json rng_to_json(const Rng::State& s) {
  json a = json::array();
  for (uint64_t w : s) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)w);
    a.push_back(buf);
  }
  return a;
}

Rng::State rng_from_json(const json& a, const std::string& what) {
  QNN_CHECK(a.is_array() && a.size() == 4, what + ": expected 4 hex words");
  Rng::State s{};
  bool nonzero = false;
  for (size_t i = 0; i < 4; ++i) {
    QNN_CHECK(a[i].is_string(), what + ": expected 4 hex words");
    const std::string h = a[i].get<std::string>();
    auto [p, ec] = std::from_chars(h.data(), h.data() + h.size(), s[i], 16);
    QNN_CHECK(!h.empty() && h.size() <= 16 && ec == std::errc() && p == h.data() + h.size(),
              what + ": '" + h + "' is not a 64-bit hex word");
    nonzero = nonzero || s[i] != 0;
  }
  QNN_CHECK(nonzero, what + ": the all-zero state is not a valid generator state");
  return s;
}

void add_prefixed(NamedTensors& out, const std::string& prefix, const NamedTensors& in) {
  for (const auto& [n, t] : in) out.emplace_back(prefix + n, t);
}

template <class T>
T get_field(const json& meta, const char* key, const std::string& path) {
  QNN_CHECK(meta.contains(key), path + ": run state without '" + std::string(key) + "' (damaged or not a --checkpoint file)");
  try {
    return meta.at(key).get<T>();
  } catch (const json::exception&) {
    fail(path + ": run state field '" + std::string(key) + "' has the wrong type");
  }
}

}  // namespace

RunState capture_run_state(Module& model, const Optimizer& opt) {
  RunState s;
  s.model = model.state();
  s.optimizer = opt.state();
  for (const auto& [n, r] : model.named_rngs()) s.rngs.emplace_back(n, r->state());
  return s;
}

void save_run_state(const std::string& path, const RunState& s) {
  NamedTensors all;
  add_prefixed(all, "model/", s.model);
  add_prefixed(all, "optimizer/", s.optimizer);
  add_prefixed(all, "best/", s.best);
  json rngs = json::object();
  json rng_order = json::array();
  for (const auto& [n, st] : s.rngs) {
    rngs[n] = rng_to_json(st);
    rng_order.push_back(n);
  }
  json meta{{"kind", kKind},
            {"version", kVersion},
            {"epochs_done", s.epochs_done},
            {"stopped", s.stopped},
            {"best_epoch", s.best_epoch},
            {"best_val_acc", s.best_val_acc},
            {"best_val_loss", s.best_val_loss ? json(*s.best_val_loss) : json(nullptr)},
            {"since_best", s.since_best},
            {"rngs", rngs},
            {"rng_order", rng_order},
            {"history", s.history},
            {"config", s.config}};
  save_tensors(path, all, meta.dump());
}

RunState load_run_state(const std::string& path) {
  std::string text;
  NamedTensors all = load_tensors(path, &text);
  json meta;
  try {
    meta = json::parse(text);
  } catch (const json::exception&) {
    fail(path + ": not a run state written by --checkpoint (its metadata is not JSON); a --save checkpoint "
                "holds only the model: use --load for it");
  }
  QNN_CHECK(meta.is_object() && meta.value("kind", std::string()) == kKind,
            path + ": not a run state written by --checkpoint (a --save checkpoint holds only the model: use --load "
                   "for it)");
  const int version = get_field<int>(meta, "version", path);
  QNN_CHECK(version == kVersion, path + ": run state version " + std::to_string(version) + ", this build reads " +
                                     std::to_string(kVersion));
  RunState s;
  s.epochs_done = get_field<int>(meta, "epochs_done", path);
  QNN_CHECK(s.epochs_done >= 0, path + ": negative epochs_done");
  s.stopped = get_field<bool>(meta, "stopped", path);
  s.best_epoch = get_field<int>(meta, "best_epoch", path);
  s.best_val_acc = get_field<double>(meta, "best_val_acc", path);
  if (!meta.at("best_val_loss").is_null()) s.best_val_loss = get_field<double>(meta, "best_val_loss", path);
  s.since_best = get_field<int>(meta, "since_best", path);
  s.history = get_field<json>(meta, "history", path);
  s.config = get_field<json>(meta, "config", path);
  QNN_CHECK(s.history.is_array() && (int)s.history.size() == s.epochs_done,
            path + ": run state history has " + std::to_string(s.history.size()) + " epochs, expected " +
                std::to_string(s.epochs_done));
  const json rngs = get_field<json>(meta, "rngs", path);
  for (const auto& n : get_field<json>(meta, "rng_order", path)) {
    const std::string name = n.get<std::string>();
    QNN_CHECK(rngs.contains(name), path + ": run state lists generator '" + name + "' without a state");
    s.rngs.emplace_back(name, rng_from_json(rngs.at(name), path + ": generator '" + name + "'"));
  }
  for (auto& [n, t] : all) {
    const size_t slash = n.find('/');
    const std::string part = slash == std::string::npos ? "" : n.substr(0, slash);
    const std::string rest = slash == std::string::npos ? n : n.substr(slash + 1);
    if (part == "model")
      s.model.emplace_back(rest, std::move(t));
    else if (part == "optimizer")
      s.optimizer.emplace_back(rest, std::move(t));
    else if (part == "best")
      s.best.emplace_back(rest, std::move(t));
    else
      fail(path + ": run state holds an unknown tensor '" + n + "'");
  }
  return s;
}

void check_resume_config(const json& stored, const json& current, const std::string& path) {
  std::vector<std::string> diffs;
  auto show = [](const json& j, const std::string& k) { return j.contains(k) ? j.at(k).dump() : std::string("(absent)"); };
  std::vector<std::string> keys;
  for (auto it = stored.begin(); it != stored.end(); ++it) keys.push_back(it.key());
  for (auto it = current.begin(); it != current.end(); ++it)
    if (!stored.contains(it.key())) keys.push_back(it.key());
  for (const auto& k : keys) {
    if (k == "epochs") continue;  // extending (or shortening) a run is allowed
    const bool same = stored.contains(k) && current.contains(k) && stored.at(k) == current.at(k);
    if (!same) diffs.push_back(k + " " + show(stored, k) + " -> " + show(current, k));
  }
  if (diffs.empty()) return;
  std::string msg = "--resume " + path + ": this run's config differs from the stored run's in ";
  for (size_t i = 0; i < diffs.size(); ++i) msg += (i ? ", " : "") + diffs[i];
  fail(msg + " (only --epochs and output paths may change)");
}

void restore_run_state(const RunState& s, Module& model, Optimizer& opt, const std::string& path) {
  NamedTensors st = model.state();
  assign_tensors(st, s.model, path + " (model)");
  opt.load_state(s.optimizer);
  auto rngs = model.named_rngs();
  std::string have, stored;
  for (const auto& [n, r] : rngs) have += (have.empty() ? "" : ", ") + n;
  for (const auto& [n, st2] : s.rngs) stored += (stored.empty() ? "" : ", ") + n;
  QNN_CHECK(rngs.size() == s.rngs.size(), "--resume " + path + ": the model has random generators [" + have +
                                              "] but the run state stores [" + stored + "] (a different model?)");
  for (size_t i = 0; i < rngs.size(); ++i) {
    QNN_CHECK(rngs[i].first == s.rngs[i].first, "--resume " + path + ": the model has random generators [" + have +
                                                    "] but the run state stores [" + stored + "]");
    rngs[i].second->set_state(s.rngs[i].second);
  }
}

}  // namespace qnn::app
