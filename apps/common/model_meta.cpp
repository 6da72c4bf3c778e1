#include "apps/common/model_meta.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/tensor.h"

namespace qnn::app {

using json = nlohmann::json;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return s;
}

// What a model description must hold, read strictly: a file whose metadata
// has the wrong shape was not written by these apps (or was edited), and is
// treated like a mismatch rather than guessed at.
struct Stored {
  std::string dataset;
  Shape input_shape;
  int64_t classes = 0;
  std::vector<std::string> class_names;
};

// "" and fills `s`, or the problem.
std::string read_stored(const json& j, Stored& s) {
  if (!j.is_object()) return "the metadata is not a JSON object";
  auto field = [&](const char* k) -> const json* {
    auto it = j.find(k);
    return it == j.end() ? nullptr : &*it;
  };
  const json* d = field("dataset");
  if (!d || !d->is_string()) return "the metadata has no \"dataset\" string";
  s.dataset = d->get<std::string>();
  const json* sh = field("input_shape");
  if (!sh || !sh->is_array()) return "the metadata has no \"input_shape\" array";
  for (const auto& v : *sh) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) return "the metadata's \"input_shape\" is not a list of sizes";
    s.input_shape.push_back(v.get<int64_t>());
  }
  const json* c = field("classes");
  if (!c || !c->is_number_integer() || c->get<int64_t>() < 1) return "the metadata has no positive \"classes\" count";
  s.classes = c->get<int64_t>();
  if (const json* n = field("class_names"); n) {
    if (!n->is_array()) return "the metadata's \"class_names\" is not a list";
    for (const auto& v : *n) {
      if (!v.is_string()) return "the metadata's \"class_names\" is not a list of strings";
      s.class_names.push_back(v.get<std::string>());
    }
  }
  return "";
}

std::string side(const std::string& name, const Shape& shape, int64_t classes) {
  return (name.empty() ? std::string("unnamed data") : name) + " (input " + shape_str(shape) + ", " +
         std::to_string(classes) + " classes)";
}

std::string report(const std::string& line) {
  std::fflush(stdout);  // keep the order of stdout and stderr lines on a terminal
  std::fprintf(stderr, "%s\n", line.c_str());
  return line;
}

}  // namespace

json make_model_meta(const Dataset& train, const std::string& dataset_name, json arch) {
  QNN_CHECK(!dataset_name.empty(), "make_model_meta: empty data set name (for '" + train.name + "')");
  QNN_CHECK(train.num_classes > 0, "make_model_meta: data set '" + train.name + "' has no classes");
  std::vector<std::string> names = train.class_names;
  const std::string key = lower(dataset_name);
  if (names.empty() && (key == "mnist" || key == "fashion-mnist")) names = mnist_class_names_for(key);
  if ((int64_t)names.size() != train.num_classes) names.clear();  // a wrong table is worse than none
  return json{{"dataset", dataset_name},
              {"input_shape", train.sample_shape},
              {"classes", train.num_classes},
              {"class_names", names},
              {"arch", std::move(arch)}};
}

json parse_model_meta(const std::string& text, const std::string& what) {
  if (text.empty()) return nullptr;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  QNN_CHECK(!j.is_discarded(), what + ": its metadata is not JSON (a file from another program, or edited?)");
  QNN_CHECK(j.is_object(), what + ": its metadata is not a JSON object");
  return j;
}

std::string check_model_meta(const json& stored, const Dataset& data, const std::string& dataset_name,
                             bool allow_mismatch, const std::string& what, const std::string& override_flag) {
  const std::string data_side = side(dataset_name, data.sample_shape, data.num_classes);
  if (stored.is_null())
    return report("note: " + what + " has no metadata (written before models recorded their data set); not checked "
                  "against " + data_side);
  Stored s;
  std::string problem = read_stored(stored, s);
  if (problem.empty()) {
    const bool name_differs = !dataset_name.empty() && lower(s.dataset) != lower(dataset_name);
    if (name_differs || s.input_shape != data.sample_shape || s.classes != (int64_t)data.num_classes)
      problem = "was trained on " + side(s.dataset, s.input_shape, s.classes) + " but the data is " + data_side;
  }
  if (!problem.empty()) {
    // `problem` is either "was trained on ... but ..." or a description of bad metadata.
    const std::string head = problem.rfind("was trained", 0) == 0 ? what + " " + problem : what + ": " + problem;
    if (!allow_mismatch) fail(head + "; pass " + override_flag + " to run it anyway");
    return report("warning: " + head + " (running anyway: " + override_flag + ")");
  }
  if (!s.class_names.empty() && !data.class_names.empty() && s.class_names != data.class_names)
    return report("warning: " + what + " names its classes differently from " + data_side + " (e.g. class 0: '" +
                  s.class_names[0] + "' vs '" + data.class_names[0] + "')");
  return "";
}

std::string check_model_meta(const json& stored, const json& expected, bool allow_mismatch, const std::string& what,
                             const std::string& override_flag) {
  Stored e;
  const std::string problem = read_stored(expected, e);
  QNN_CHECK(problem.empty(), "check_model_meta: the expected metadata is not a model description: " + problem);
  Dataset d;
  d.name = e.dataset;
  d.sample_shape = e.input_shape;
  d.num_classes = (int)e.classes;
  d.class_names = e.class_names;
  return check_model_meta(stored, d, e.dataset, allow_mismatch, what, override_flag);
}

std::string meta_dataset(const json& stored) {
  if (!stored.is_object()) return "";
  auto it = stored.find("dataset");
  return it != stored.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string describe_model_meta(const json& stored) {
  if (stored.is_null()) return "no metadata";
  Stored s;
  const std::string problem = read_stored(stored, s);
  if (!problem.empty()) return "unreadable metadata (" + problem + ")";
  return s.dataset + ", input " + shape_str(s.input_shape) + ", " + std::to_string(s.classes) + " classes";
}

}  // namespace qnn::app
